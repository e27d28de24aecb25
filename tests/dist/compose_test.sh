#!/usr/bin/env bash
# The data-parallel example (examples/compose/data_parallel.cpp): under mpirun -np 2 it
# trains (the program itself fails unless every rank ends with rank 0's weights), its
# final loss is one process's to 1e-5, and it learned (held-out accuracy above 80%).
set -uo pipefail
bin=${1:?usage: compose_test.sh path/to/compose_data_parallel}
one=$("$bin") || { echo "FAIL: one process: $one" >&2; exit 1; }
two=$(timeout 120 mpirun --oversubscribe -np 2 "$bin") || { echo "FAIL: mpirun -np 2: $two" >&2; exit 1; }
echo "one process: ${one##*$'\n'}"
echo "two processes: ${two##*$'\n'}"
loss() { sed -n 's/^final loss \([^,]*\),.*/\1/p' <<<"$1"; }
awk -v a="$(loss "$one")" -v b="$(loss "$two")" 'BEGIN { d = a - b; if (d < 0) d = -d; if (a == "" || b == "" || d > 1e-5) exit 1 }' \
  || { echo "FAIL: final loss $(loss "$two") on 2 processes, $(loss "$one") on one" >&2; exit 1; }
grep -q "over 2 process(es), [2-9][0-9]* buckets" <<<"$two" || { echo "FAIL: expected several buckets on 2 processes" >&2; exit 1; }
grep -q "accuracy [89][0-9]\.[0-9]%" <<<"$two" || { echo "FAIL: held-out accuracy under 80% on 2 processes" >&2; exit 1; }
echo "compose_test.sh: passed"
