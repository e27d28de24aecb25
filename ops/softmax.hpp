// tapegrad/ops/softmax.hpp — being written.
#pragma once

#include "../core/tape.hpp"
