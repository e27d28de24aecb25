// fuzz/text_data.cpp — libFuzzer target: train_lm's text loading on any bytes.
//
// The first byte picks a block size (1 to 64), the rest is the text: make_corpus
// (UTF-8 decoding, the vocabulary, token ids, the 90/10 split) may refuse it with
// DataError only; an accepted corpus has ids inside its vocabulary, decodes back to
// the text, and gives batches. The same bytes are also tried as a vocabulary's JSON
// (the model file's 'vocab' metadata).
#include "text_data.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

using namespace train_lm;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t block = 1 + data[0] % 64;
  const Text text{std::string(reinterpret_cast<const char*>(data) + 1, size - 1), "fuzz-input"};
  try {
    const Corpus corpus = make_corpus(text, block);
    std::vector<std::int64_t> all = corpus.train;
    all.insert(all.end(), corpus.val.begin(), corpus.val.end());
    for (const std::int64_t id : all)
      if (id < 0 || std::size_t(id) >= corpus.vocab.size()) std::abort();
    if (corpus.vocab.decode(all) != text.bytes) std::abort();
    std::mt19937_64 rng(size);
    const Batch batch = random_batch(corpus.train, 2, block, rng);
    if (batch.inputs.shape()[1] != block) std::abort();
  } catch (const DataError&) {
  }
  try {
    const Vocabulary vocab = Vocabulary::from_json(text.bytes, "fuzz-input");
    if (Vocabulary::from_json(vocab.to_json(), "again").tokens() != vocab.tokens()) std::abort();
  } catch (const DataError&) {
  }
  return 0;
}
