// tapegrad/ops/layernorm.hpp — being written.
#pragma once

#include "../core/tape.hpp"
