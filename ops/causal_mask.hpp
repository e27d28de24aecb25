// tapegrad/ops/causal_mask.hpp — being written.
#pragma once

#include "../core/tape.hpp"
