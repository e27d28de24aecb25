// train_lm/graph.hpp — `train_lm graph`: one training step's tape as a Graphviz graph.
//
// The preset's GPT (with --layers, --block and --batch overrides) runs the forward and the
// loss of one batch of the text on a tape that keeps its graph (Tape::set_keep_graph), and
// Tape::write_dot draws it: every op with its output shape inside its module's cluster, the
// parameters by name, and which inputs gradients flow back to (the backward replays these
// nodes in reverse). `dot -Tsvg FILE > FILE.svg` renders it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>

namespace train_lm {

struct GraphOptions {
  std::filesystem::path data;  // empty: the fortunes corpus (text_data.hpp)
  std::string preset = "small";
  std::optional<std::int64_t> layers, block, batch;  // unset = the preset's
  bool checkpoint_activations = false;  // draw each block as its one checkpoint node
  std::filesystem::path out;            // empty: standard output
};

// Writes the graph; returns how many nodes the tape holds.
std::size_t run_graph(const GraphOptions& options, std::ostream& standard_output);

}  // namespace train_lm
