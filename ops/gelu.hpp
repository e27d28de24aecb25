// tapegrad/ops/gelu.hpp — being written.
#pragma once

#include "../core/tape.hpp"
