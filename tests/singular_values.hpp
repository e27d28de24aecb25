// The singular values of a row-major matrix, from LAPACK through xtensor-blas (test only).
// Its own translation unit: xtensor-blas declares the CBLAS functions itself, in a way that
// conflicts with OpenBLAS's cblas.h, which tapegrad includes.
#pragma once

#include <cstddef>
#include <vector>

namespace tapegrad::testing {

// Largest first.
std::vector<double> singular_values(const std::vector<double>& matrix, std::size_t rows, std::size_t cols);

}  // namespace tapegrad::testing
