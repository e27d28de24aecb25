// tapegrad/io/safetensors.hpp — being written.
#pragma once
