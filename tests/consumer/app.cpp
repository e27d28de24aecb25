#include <tapegrad/ops/matmul.hpp>  // one op on its own
#include <tapegrad/tapegrad.hpp>    // everything
#include <cstdio>
// y = sum over (x W); dy/dW = x^T 1: prints the gradient's first entry, x[0,0] = 2.
int main() {
  tapegrad::Tape tape;
  auto x = tapegrad::Tensor<double>::from({1, 2}, {2.0, 3.0});
  auto w = tapegrad::Tensor<double>::from({2, 1}, {0.5, -1.0}, /*requires_grad=*/true);
  auto y = tapegrad::ops::matmul(tape, x, w);
  tape.backward(y);
  std::printf("%g\n", w.grad()(0, 0));
  return w.grad()(0, 0) == 2.0 ? 0 : 1;
}
