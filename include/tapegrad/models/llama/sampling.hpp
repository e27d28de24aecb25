// tapegrad/models/llama/sampling.hpp — sampling from a Llama with a KV cache.
//
//   auto cache = llama.make_kv_cache()                 per layer, rotated K and V of the positions run so far
//   forward_cached(llama, cache, tokens, ctx, pool)    runs tokens at positions cache.length() ... and
//                                                      returns the logits (V) after the last one
//   generate(llama, prompt, n, options, rng, emit)     temperature / top-k / greedy, the window policy
// These are the GPT's functions (models/gpt/sampling.hpp), written for any model whose forward
// takes the cache: the cached forward is Llama::forward itself (nn/kv_cache.hpp, the design),
// each new row turned by rope at its real position p = cache.length() + t before its key is
// stored, so a stored key is never turned again and the logits equal Llama::forward's over
// the window the cache holds, up to rounding (tests: "llama: ..." in tests/test_generate.cpp).
// rope's scores depend on positions only through t - s, so a sliding window could keep its
// keys; generate() nevertheless clears a full cache and re-runs the last `keep` tokens at
// positions 0..keep as for the GPT, so that every logit is exactly a full forward's.
#pragma once

#include "../gpt/sampling.hpp"
#include "model.hpp"
