// train_lm/memory_estimate.hpp — how much memory a GPT run will take, checked before
// anything is allocated, so that a large --layers or a forged block_size in a model
// file is refused with the numbers instead of ending in std::bad_alloc.
//
// The estimate, in scalars of the model's dtype, for windows of [B, T] (one backward's:
// in training, one process's rows of the batch divided by --grad-accum):
//   parameters            GPT:   P = V d + block d + L (12 d^2 + 9 d) + 2 d   (no attention biases)
//                         Llama: P = V d + L (4 d^2 + 3 d h + 2 d) + d   (SwiGLU width h, no biases)
//   training state        weights and gradients 2 P, AdamW's m and v 2 P / S (S the
//                         processes they are sharded over, --shard-optimizer; else 1)
//   a forward's values    B T (K L + 3 V): what each layer keeps, K = 24 d for a GPT
//                         (projections, GELU MLP), 12 d + 4 h for a Llama (RMSNorms,
//                         rotated q and k, SwiGLU's gate, up, silu and product), then the
//                         logits; x2 when training (their gradients)
//   attention scratch     T^2, 2 T^2 when training (ops/causal_attention.hpp keeps no
//                         T x T tensor, but computes through one, two in backward)
// It is meant to be an upper bound within a small factor of the peak: measured on
// 2 MB of text, 2 steps, one thread, it is 1.1x (small), 1.7x (medium) and 1.7x (long)
// the peak RSS.
#pragma once

#include <tapegrad/models/gpt/model.hpp>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

namespace train_lm {

struct MemoryNeed {
  tapegrad::models::GPTConfig config;
  std::size_t batch = 1, window = 1;  // B and T of one forward
  bool training = false;
  std::size_t scalar_bytes = 4;  // float 4, double 8
  std::size_t swiglu_hidden = 0;     // a Llama: its SwiGLU's width h (0: a GPT)
  std::size_t optimizer_shards = 1;  // training: the processes AdamW's moments are sharded over

  double parameter_count() const;
  double estimate_bytes() const;
};

// The machine's physical memory in bytes.
double physical_memory_bytes();

// The memory limit of this process's cgroup: memory.max (v2) or memory.limit_in_bytes
// (v1) of the group /proc/self/cgroup names under `root`, or of `root` itself (a
// container's view); nothing when there is no limit or none can be read.
std::optional<double> cgroup_memory_limit(const std::filesystem::path& self_cgroup = "/proc/self/cgroup",
                                          const std::filesystem::path& root = "/sys/fs/cgroup");

// What this process may still allocate: the smallest of the physical memory, what is
// left under RLIMIT_AS (the limit minus the virtual size now) and RLIMIT_DATA (minus
// the data now), and the cgroup's limit; `name` says which, for messages ("of this
// machine", "this process may still use under its address-space limit (RLIMIT_AS, ...)").
struct MemoryLimit {
  double bytes = 0;
  std::string name;
};
MemoryLimit usable_memory();

// "1.5 GiB"
std::string readable_bytes(double bytes);

// A std::runtime_error "<what>: <the values> need an estimated X of memory, more than
// the Y <which limit>" when the estimate is above usable_memory(). `what` names where
// the values come from ("--layers/--dim/...", or a model file).
void require_memory(const MemoryNeed& need, const std::string& what);

}  // namespace train_lm
