// tapegrad/ops/cross_entropy.hpp — being written.
#pragma once

#include "../core/tape.hpp"
