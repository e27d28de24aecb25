#!/usr/bin/env bash
# The data-parallel example (examples/data_parallel_mlp.cpp): under mpirun -np 2 it trains
# (the program itself fails unless every rank ends with rank 0's weights and the loss
# falls below 0.5), and its final loss is one process's to 1e-5.
set -uo pipefail
bin=${1:?usage: mlp_test.sh path/to/data_parallel_mlp}
one=$("$bin") || { echo "FAIL: one process: $one" >&2; exit 1; }
two=$(timeout 120 mpirun --oversubscribe -np 2 "$bin") || { echo "FAIL: mpirun -np 2: $two" >&2; exit 1; }
echo "one process: ${one##*$'\n'}"
echo "two processes: ${two##*$'\n'}"
loss() { sed -n 's/^final loss \([^ ]*\) over.*/\1/p' <<<"$1"; }
awk -v a="$(loss "$one")" -v b="$(loss "$two")" 'BEGIN { d = a - b; if (d < 0) d = -d; if (a == "" || b == "" || d > 1e-5) exit 1 }' \
  || { echo "FAIL: final loss $(loss "$two") on 2 processes, $(loss "$one") on one" >&2; exit 1; }
grep -q "over 2 process(es), [2-9][0-9]* buckets" <<<"$two" || { echo "FAIL: expected several buckets on 2 processes" >&2; exit 1; }
echo "mlp_test.sh: passed"
