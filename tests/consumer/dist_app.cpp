#include <tapegrad/dist/communicator.hpp>  // data parallelism over MPI: the tapegrad::dist target
#include <cstdio>
// Run without mpirun: a job of one process, rank 0; the sum over it is the value itself.
int main() {
  tapegrad::dist::Communicator& world = tapegrad::dist::Communicator::world();
  const double total = world.sum(2.5);
  std::printf("rank %d of %d, sum %g\n", world.rank(), world.size(), total);
  return world.rank() == 0 && world.size() == 1 && total == 2.5 ? 0 : 1;
}
