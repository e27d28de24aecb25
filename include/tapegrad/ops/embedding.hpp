// tapegrad/ops/embedding.hpp — row lookup: y[..., :] = table[ids[...], :].
//   table (V, d), ids (...) integers in [0, V), y (..., d)
//   Saved: table (the input) and a copy of ids.
//   Backward: dtable[ids[k], :] += dy[k, :] (scatter-add; a repeated id accumulates).
#pragma once

#include "../core/tape.hpp"

#include <algorithm>
#include <string>

namespace tapegrad::ops {

inline const OpName kEmbedding{"embedding"};

template <class T>
Tensor<T> embedding(Tape& tape, const Tensor<T>& table, const Ids& ids) {
  const Shape ts = table.shape();
  if (ts.size() != 2 || ts[1] == 0) throw op_error(kEmbedding, "table needs shape (V, d) with d > 0, got " + shape_str(ts));
  const std::size_t d = ts[1];
  check_ids(kEmbedding, "id", ids, ts[0]);

  Shape ys = shape_of(ids);
  ys.push_back(d);
  Tensor<T> y(Array<T>::from_shape(ys));
  const Context ctx = tape.context();
  parallel_blocks(ctx, ids.size(), std::max<std::size_t>(1, kElementBlock / d), [&](std::size_t b, std::size_t e) {
    for (std::size_t k = b; k < e; ++k) std::copy_n(table.data() + ids.data()[k] * d, d, y.data() + k * d);
  });

  // The scatter-add is split by blocks of columns: each thread walks every id, in order,
  // over its own columns.
  return tape.record(kEmbedding, y, [table = GradRef<T>(table), y = GradRef<T>(y), ids = Ids(ids), ctx, d] {
    const T* dy = y.grad().data();
    T* dt = table.grad_accumulator(kEmbedding.name()).data();
    parallel_blocks(ctx, d, 64, [&](std::size_t jb, std::size_t je) {
      for (std::size_t k = 0; k < ids.size(); ++k) {
        T* row = dt + ids.data()[k] * d;
        for (std::size_t j = jb; j < je; ++j) row[j] += dy[k * d + j];
      }
    });
  }, table);
}

}  // namespace tapegrad::ops
