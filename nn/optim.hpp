// tapegrad/nn/optim.hpp — being written.
#pragma once
