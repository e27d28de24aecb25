// tapegrad/ops/reduce.hpp — being written.
#pragma once

#include "../core/tape.hpp"
