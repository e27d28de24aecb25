#include "singular_values.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

namespace tapegrad::testing {

std::vector<double> singular_values(const std::vector<double>& matrix, std::size_t rows, std::size_t cols) {
  const xt::xarray<double> a = xt::adapt(matrix, std::vector<std::size_t>{rows, cols});
  const auto [u, s, vt] = xt::linalg::svd(a, false);
  return {s.begin(), s.end()};
}

}  // namespace tapegrad::testing
