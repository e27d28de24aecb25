// tapegrad/ops/permute.hpp — being written.
#pragma once

#include "../core/tape.hpp"
