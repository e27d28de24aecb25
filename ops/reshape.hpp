// tapegrad/ops/reshape.hpp — being written.
#pragma once

#include "../core/tape.hpp"
