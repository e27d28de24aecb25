// tapegrad/nn/kv_cache.hpp — the keys and values of the positions a decoder has already
// run, so that each new token runs one row through the model instead of the whole window.
//
// The design: one forward per module. A model's forward takes an optional KVCache*;
// without one it is the training forward. With one, the n tokens it is given sit at the
// positions length() .. length() + n - 1 (the position offset, read by the model before
// its layers: GPT adds wpe[offset + t]; a rotary model rotates q and k by offset + t).
// Each attention layer computes q, k, v of the new rows with the same ops as in
// training, then, instead of the causal attention op, calls
//
//   o = cache->attend(tape, q, k, v);     // the layer's own LayerKVCache
//
// which appends k and v at the new positions and attends every new query to all the
// positions held (the query at position p sees 0..p), with ops::causal_attention's own
// row kernel (causal_attention_rows). The norms, the MLP and the residuals run the
// training code unchanged, so a change to a block is made in one place.
//
// What is stored: per layer, keys and values of shape (B, kv_heads, capacity, head_dim).
// Keys are stored as the attention uses them, after any rotation: a rotary model passes
// k already rotated by its absolute position, so a stored key never changes when later
// tokens come. kv_heads may divide the query heads (grouped-query attention: query head
// h reads kv head h / (heads / kv_heads)). Positions are absolute and nothing shifts:
// when the cache is full the caller clears it and re-runs the tokens it wants to keep
// (models/gpt/sampling.hpp, generate()).
//
// Decoding records nothing: attend() is a StateError when the tape would need a
// gradient (run it under NoGradGuard). Threads: a multi-row pass (a prompt) runs the
// (batch, head) matrices on the tape's Context; a one-row pass runs serially.
#pragma once

#include "../core/error.hpp"
#include "../core/tape.hpp"
#include "../ops/causal_attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace tapegrad::nn {

struct KVCacheShape {
  std::size_t layers = 0, batch = 1, kv_heads = 0, capacity = 0, head_dim = 0;
};

// One attention layer's keys and values, (B, kv_heads, capacity, head_dim) each.
template <class T>
class LayerKVCache {
 public:
  explicit LayerKVCache(const KVCacheShape& s)
      : shape_(s), keys_(s.batch * s.kv_heads * s.capacity * s.head_dim), values_(keys_.size()) {}

  std::size_t length() const { return length_; }  // positions held
  const KVCacheShape& shape() const { return shape_; }
  void clear() { length_ = 0; }

  // q (B, heads, n, head_dim) of the positions length() .. length() + n - 1, k and v
  // (B, kv_heads, n, head_dim) of the same positions (k rotated, in a rotary model).
  // Stores k and v, and returns o (B, heads, n, head_dim) = softmax(q K^T / sqrt(head_dim))
  // V over the positions 0..p of each query's own position p.
  Tensor<T> attend(Tape& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v) {
    const Shape &qs = q.shape(), &ks = k.shape();
    const std::size_t B = shape_.batch, Hkv = shape_.kv_heads, dh = shape_.head_dim, cap = shape_.capacity;
    const auto is_kv_shape = [&](const Shape& s) {
      return s.size() == 4 && s[0] == B && s[1] == Hkv && s[2] == qs[2] && s[3] == dh;
    };
    if (qs.size() != 4 || !is_kv_shape(ks) || v.shape() != ks || qs[0] != B || qs[3] != dh || qs[1] == 0 ||
        qs[1] % Hkv != 0 || qs[2] == 0)
      throw ShapeError("KV cache: needs q (" + std::to_string(B) + ", H, n, " + std::to_string(dh) +
                       ") with H a multiple of " + std::to_string(Hkv) + " and k, v (" + std::to_string(B) + ", " +
                       std::to_string(Hkv) + ", n, " + std::to_string(dh) + "), got q " + shape_str(qs) + ", k " +
                       shape_str(ks) + ", v " + shape_str(v.shape()));
    if (tape.recording() && (q.requires_grad() || k.requires_grad() || v.requires_grad()))
      throw StateError("KV cache: decoding records no gradient; run the cached forward under NoGradGuard");
    const std::size_t H = qs[1], n = qs[2], p0 = length_, seen = p0 + n;
    if (seen > cap)
      throw ShapeError("KV cache: " + std::to_string(p0) + " cached + " + std::to_string(n) +
                       " new positions exceed its capacity " + std::to_string(cap));
    for (std::size_t m = 0; m < B * Hkv; ++m) {  // K[b, g, p0 + r] = k[b, g, r], likewise V
      std::copy_n(k.data() + m * n * dh, n * dh, keys_.data() + (m * cap + p0) * dh);
      std::copy_n(v.data() + m * n * dh, n * dh, values_.data() + (m * cap + p0) * dh);
    }
    length_ = seen;

    Tensor<T> o(Array<T>::from_shape(qs));
    const T c = T(1 / std::sqrt(double(dh)));
    const std::size_t group = H / Hkv, strip = n * seen + n;  // per (batch, head): its probabilities strip, its rows' lse
    if (scratch_.size() < B * H * strip) scratch_.resize(B * H * strip);  // kept: a decoding step allocates none
    parallel_blocks(n > 1 ? tape.context() : Context{}, B * H, 1, [&](std::size_t i, std::size_t) {
      const std::size_t b = i / H, kv = b * Hkv + (i % H) / group;
      T* p = scratch_.data() + i * strip;
      ops::causal_attention_rows(q.data() + i * n * dh, keys_.data() + kv * cap * dh, values_.data() + kv * cap * dh,
                                 p0, seen, dh, c, p, o.data() + i * n * dh, p + n * seen);
    });
    return o;
  }

 private:
  KVCacheShape shape_;
  std::vector<T> keys_, values_;  // (B, kv_heads, capacity, head_dim)
  std::vector<T> scratch_;        // attend()'s working memory, grown to the largest pass
  std::size_t length_ = 0;
};

// A model's cache: one LayerKVCache per attention layer, all holding the same positions.
template <class T>
class KVCache {
 public:
  explicit KVCache(const KVCacheShape& s) {
    if (s.layers == 0 || s.batch == 0 || s.kv_heads == 0 || s.capacity == 0 || s.head_dim == 0)
      throw ConfigError("KV cache: layers, batch, kv_heads, capacity and head_dim must be positive, got " +
                        std::to_string(s.layers) + ", " + std::to_string(s.batch) + ", " + std::to_string(s.kv_heads) +
                        ", " + std::to_string(s.capacity) + ", " + std::to_string(s.head_dim));
    layers_.assign(s.layers, LayerKVCache<T>(s));
  }

  // The positions held: the position of the next token. A forward that stopped half-way
  // (an error in a layer) leaves the layers apart; clear() before using the cache again.
  std::size_t length() const {
    const std::size_t n = layers_.front().length();
    for (const auto& l : layers_)
      if (l.length() != n)
        throw StateError("KV cache: its layers hold different lengths (a forward failed half-way); clear() it");
    return n;
  }
  const KVCacheShape& shape() const { return layers_.front().shape(); }
  std::size_t capacity() const { return shape().capacity; }
  bool full() const { return length() == capacity(); }
  void clear() {
    for (auto& l : layers_) l.clear();
  }
  std::size_t layer_count() const { return layers_.size(); }
  LayerKVCache<T>& layer(std::size_t l) { return layers_.at(l); }

 private:
  std::vector<LayerKVCache<T>> layers_;
};

}  // namespace tapegrad::nn
