// tapegrad/ops/embedding.hpp — being written.
#pragma once

#include "../core/tape.hpp"
