// tapegrad — a reverse-mode autodiff tape with hand-written op rules, and the
// Transformer language models built from it. Include this one header.
#pragma once

#include "core/blas.hpp"
#include "core/checkpoint.hpp"
#include "core/error.hpp"
#include "core/gradcheck.hpp"
#include "core/memory.hpp"
#include "core/tape.hpp"
#include "core/tensor.hpp"

#include "ops/causal_attention.hpp"
#include "ops/causal_mask.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"
#include "ops/embedding.hpp"
#include "ops/gelu.hpp"
#include "ops/heads.hpp"
#include "ops/layernorm.hpp"
#include "ops/matmul.hpp"
#include "ops/permute.hpp"
#include "ops/reduce.hpp"
#include "ops/relu.hpp"
#include "ops/reshape.hpp"
#include "ops/scale.hpp"
#include "ops/softmax.hpp"

#include "nn/layers.hpp"
#include "nn/module.hpp"
#include "nn/muon.hpp"
#include "nn/optim.hpp"
#include "nn/train_step.hpp"

#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "io/utf8.hpp"

#include "models/gpt/attention.hpp"
#include "models/gpt/block.hpp"
#include "models/gpt/checkpoint_metadata.hpp"
#include "models/gpt/model.hpp"
#include "models/gpt/presets.hpp"
#include "models/gpt/sampling.hpp"
