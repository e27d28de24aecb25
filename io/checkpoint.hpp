// tapegrad/io/checkpoint.hpp — being written.
#pragma once
