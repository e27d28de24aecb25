// tapegrad/ops/elementwise.hpp — being written.
#pragma once

#include "../core/tape.hpp"
