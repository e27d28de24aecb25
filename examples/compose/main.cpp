// compose — trains examples/compose/rings.hpp's classifier and prints its accuracy.
#include "rings.hpp"

#include <cstdio>

int main() {
  const double accuracy = compose::train_and_test(/*steps=*/600, /*seed=*/1);
  std::printf("ring classifier: %.1f%% of 2000 held-out points in the right ring\n", 100 * accuracy);
  return 0;
}
