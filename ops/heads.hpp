// tapegrad/ops/heads.hpp — being written.
#pragma once

#include "../core/tape.hpp"
