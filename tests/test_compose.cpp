// examples/compose: the ring classifier trains to a stated accuracy.
#include "rings.hpp"

#include <doctest/doctest.h>

TEST_CASE("compose: the ring classifier (MLP from nn::Linear and ops) reaches 95% held-out accuracy in 600 steps") {
  for (const std::uint64_t seed : {1, 2}) {
    CAPTURE(seed);
    const double accuracy = compose::train_and_test(600, seed);
    MESSAGE("seed " << seed << ": held-out accuracy " << accuracy);
    CHECK(accuracy >= 0.95);
  }
  // The check can fail: untrained, the model is at chance (about a third right).
  CHECK(compose::train_and_test(0, 1) < 0.6);
}
