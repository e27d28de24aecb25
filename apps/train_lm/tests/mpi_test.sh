#!/usr/bin/env bash
# train_lm data parallel under mpirun, end to end. One case per call:
#   mpi_test.sh CASE path/to/train_lm path/to/compare_runs
#   equivalence2   mpirun -np 2, global batch 4, against one process with batch 4: tiny, 50 steps,
#                  same seed; every logged loss within 1e-5 and the final weights within 1e-5 of
#                  each tensor's scale (compare_runs)
#   equivalence3   the same with -np 3 and batch 6
#   resume_other_n -np 2 stops at step 25, -np 3 resumes to 50: the same run as one process
#   fault          rank 1 exits without a word at step 25, throws there, or is stopped
#                  (SIGSTOP) there: the job ends non-zero within seconds of the fault (the
#                  stop: within --collective-timeout and its grace), rank 0 says why and
#                  names the last checkpoint, no process is left, the checkpoint loads, and
#                  after the stop resumes to the one-process run
#   startup        rank 1 cannot read its data file: the job fails before step 1 with
#                  rank 0 naming the rank and the file, and writes nothing; a batch the
#                  processes do not divide is one clear error, and nothing more
#   accumulation   --grad-accum: one process with 4 micro-batches, and -np 2 with 2 each, against
#                  one process with the whole batch (compare_runs); a count that does not divide
#                  each process's rows is one clear error
#   settings       rank 1 is given another --preset, --steps, --eval-every, --lr, --batch or
#                  --seed than rank 0: each time the job fails before step 1, within the
#                  timeout, with one line naming the option and both values, and writes nothing
#   shard          --shard-optimizer against replicated AdamW, -np 2 (batch 4) and -np 3 (batch 6,
#                  shards of unequal length): losses and weights within 1e-6 (the state file's
#                  moments 1e-5: the gradients' sums over the ranks are taken in another order); rank 0
#                  holds 1/N of the replicated moments' bytes and the ranks together all of them;
#                  --threads 2 the same bits as 1; with --grad-accum 2 within 1e-6 of the replicated run
#   shard_resume   a sharded -np 2 checkpoint at step 25: resumed by -np 2 sharded, bit for bit the
#                  uninterrupted run; rewritten by one process and by -np 3 sharded (resumed with
#                  --steps 25), the same state bit for bit; resumed to 50 by -np 3 sharded and by -np 3
#                  replicated, within 1e-6 of each other (moments 1e-5); a replicated -np 2 checkpoint resumed
#                  by -np 3 sharded, within 1e-6 of the sharded one resumed alike; by one process, the same run
#   shard_errors   rank 1 without --shard-optimizer where rank 0 has it: one line naming the option,
#                  before step 1; --shard-optimizer with --optimizer muon: one clear error
#   shard_bytes    the bytes sent per step (all ranks, TCP over the loopback of a network namespace
#                  of its own: root only, else skipped), -np 2 and -np 3: sharded within 5% of the
#                  all-reduce's; per step = the difference between a 30-step and a 10-step run
# mpirun is given --oversubscribe (CI has 2 cores); running as root needs
# OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM), which the ctest entry sets.
set -uo pipefail
case=${1:?usage: mpi_test.sh CASE train_lm compare_runs}
bin=${2:?usage: mpi_test.sh CASE train_lm compare_runs}
compare=${3:?usage: mpi_test.sh CASE train_lm compare_runs}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
mpi() { local n=$1; shift; timeout "${MPI_TEST_TIMEOUT:-120}" mpirun --oversubscribe -np "$n" "$@"; }

# A small text with some variety (repeated lines would make every batch alike).
for i in $(seq 300); do echo "line $i: the cat $((i * 7 % 13)) sat on mat $((i * 3 % 11)), and the dog ran $((i % 5)) laps."; done \
  >"$work/text.txt"
tiny=(train --data "$work/text.txt" --preset tiny --steps 50 --eval-every 10 --save-every 10 --threads 1 --no-sample --seed 3)

one_process() {  # one_process DIR BATCH: the reference run
  "$bin" "${tiny[@]}" --batch "$2" --out "$1" 2>"$work/one.err" || fail "one process, batch $2: $(cat "$work/one.err")"
}

same_run() {  # same_run WHAT DIR_A DIR_B
  local report
  report=$("$compare" "$2" "$3") || fail "$1: $report"
  echo "$1: $report"
}

case $case in
equivalence2 | equivalence3)
  n=${case#equivalence}
  batch=$((n == 2 ? 4 : 6))
  one_process "$work/one" "$batch"
  mpi "$n" "$bin" "${tiny[@]}" --batch "$batch" --out "$work/dist" 2>"$work/err" || fail "-np $n: $(cat "$work/err")"
  grep -q "data parallel over $n processes" "$work/err" || fail "-np $n: the header does not name $n processes: $(cat "$work/err")"
  [ "$(grep -c "val loss" "$work/err")" -eq 6 ] || fail "-np $n: not one line per eval (rank 0 alone prints): $(cat "$work/err")"
  same_run "-np $n, batch $batch against one process" "$work/one" "$work/dist"
  ;;
resume_other_n)
  one_process "$work/one" 6
  mpi 2 "$bin" "${tiny[@]}" --batch 6 --stop-after 25 --out "$work/dist" 2>"$work/err" || fail "-np 2 to step 25: $(cat "$work/err")"
  mpi 3 "$bin" "${tiny[@]}" --batch 6 --resume --out "$work/dist" 2>"$work/err" || fail "-np 3 --resume: $(cat "$work/err")"
  grep -q "resuming .* at step 25" "$work/err" || fail "-np 3 --resume did not resume at step 25: $(cat "$work/err")"
  same_run "-np 2 to step 25, then -np 3 to 50, against one process" "$work/one" "$work/dist"
  ;;
fault)
  # The fault comes at the start of step 25 (rank 0 has logged step 24): rank 1 exits,
  # throws, or stops itself with SIGSTOP (as a hung process). Each time the job ends
  # within seconds of the fault, measured from rank 0's step-24 row to mpirun's exit.
  for how in exit throw stop; do
    rm -rf "$work/dist"
    extra=(--test-fail "1:25:$how")
    [ "$how" = stop ] && extra+=(--collective-timeout 4)
    mpi 2 "$bin" "${tiny[@]}" --batch 4 "${extra[@]}" --out "$work/dist" </dev/null >"$work/out" 2>"$work/err" &
    job=$!
    until grep -q '^train,24,' "$work/dist/log.csv" 2>/dev/null || ! kill -0 "$job" 2>/dev/null; do sleep 0.02; done
    fault=$(date +%s.%N)
    wait "$job"
    status=$?
    seconds=$(awk -v a="$fault" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    [ "$status" -ne 0 ] || fail "$how: the job exited 0"
    [ "$status" -ne 124 ] || fail "$how: the job hung (killed by timeout)"
    limit=$([ "$how" = stop ] && echo 14 || echo 10)  # stop: the deadline 4 s, a grace of 2 s, and a margin
    awk -v s="$seconds" -v l="$limit" 'BEGIN { exit !(s <= l) }' || fail "$how: the job took $seconds s from the fault to stop"
    saved=$(grep -a -o '"step":"[0-9]*"' "$work/dist/model.safetensors" | grep -o '[0-9]*')
    case $how in
    exit) grep -q "^train_lm train: the job was stopped from outside.*the last checkpoint in $work/dist is at step 20" "$work/err" \
            || fail "exit: rank 0 did not say why the job stopped: $(cat "$work/err")" ;;
    throw) grep -q "^train_lm train: error on rank 1: injected failure (--test-fail) at step 25 (the job is aborted)" "$work/err" \
             || fail "throw: no clear message naming rank 1: $(cat "$work/err")" ;;
    stop) grep -q "^train_lm train: error: rank 1 (host $(hostname)) did not arrive at .* within 4 s.*the last checkpoint in $work/dist is at step $saved: continue with --resume" "$work/err" \
            || fail "stop: rank 0 did not name rank 1, its host and the step-$saved checkpoint: $(cat "$work/err")"
          [ "$(grep -c "^train_lm train: " "$work/err")" -eq 1 ] || fail "stop: more than one message: $(cat "$work/err")" ;;
    esac
    [ "$saved" = 20 ] || fail "$how: model.safetensors is not the step-20 checkpoint"
    sleep 0.5
    pgrep -f -- "--out $work/dist" >/dev/null && { fail "$how: processes are left: $(pgrep -a -f -- "--out $work/dist")"; pkill -KILL -f -- "--out $work/dist"; }
    echo "$how: exit status $status $seconds s after the fault; stderr: $(grep "^train_lm" "$work/err")"
    ls "$work/dist" | grep -q "tmp" && fail "$how: a temporary file is left: $(ls "$work/dist")"
    "$bin" eval --checkpoint "$work/dist/model.safetensors" --data "$work/text.txt" >"$work/eval" 2>&1 \
      || fail "$how: the previous checkpoint does not load: $(cat "$work/eval")"
  done
  mpi 2 "$bin" "${tiny[@]}" --batch 4 --resume --out "$work/dist" 2>"$work/err" || fail "--resume after the fault: $(cat "$work/err")"
  one_process "$work/one" 4
  same_run "resumed after the fault, against one process" "$work/one" "$work/dist"
  ;;
startup)
  without_data=("${tiny[@]}")
  without_data[2]="$work/missing.txt"  # train --data FILE ...
  mpi 1 "$bin" "${tiny[@]}" --batch 4 --out "$work/dist" : -np 1 "$bin" "${without_data[@]}" --batch 4 --out "$work/dist" >"$work/out" 2>"$work/err" && fail "a rank without its data file: the job exited 0"
  grep -q "^train_lm train: error: rank 1: $work/missing.txt: no such file" "$work/err" \
    || fail "a rank without its data file: rank 0 does not name rank 1 and the file: $(cat "$work/err")"
  grep -q "step 1" "$work/err" && fail "a rank without its data file: training started"
  [ -e "$work/dist" ] && fail "a rank without its data file: --out was created"
  mpi 2 "$bin" "${tiny[@]}" --batch 5 --out "$work/dist" >"$work/out" 2>"$work/err" && fail "--batch 5 on 2 processes: exit 0"
  [ "$(grep -c "^train_lm train: error: --batch 5 (the global batch) must be divisible by the number of processes 2" "$work/err")" -eq 1 ] \
    || fail "--batch 5 on 2 processes: not one clear error line: $(cat "$work/err")"
  grep -q "stopped from outside" "$work/err" && fail "--batch 5 on 2 processes: a second reason is given: $(cat "$work/err")"
  ;;
accumulation)
  one_process "$work/one" 8
  "$bin" "${tiny[@]}" --batch 8 --grad-accum 4 --out "$work/accumulated" 2>"$work/err" || fail "--grad-accum 4: $(cat "$work/err")"
  same_run "one process, --batch 8 --grad-accum 4, against --batch 8" "$work/one" "$work/accumulated"
  mpi 2 "$bin" "${tiny[@]}" --batch 8 --grad-accum 2 --out "$work/dist" 2>"$work/err" || fail "-np 2 --grad-accum 2: $(cat "$work/err")"
  same_run "-np 2, --batch 8 --grad-accum 2, against one process with --batch 8" "$work/one" "$work/dist"
  "$bin" "${tiny[@]}" --batch 8 --grad-accum 3 --out "$work/bad" >"$work/out" 2>"$work/err" && fail "--batch 8 --grad-accum 3: exit 0"
  grep -q "^train_lm train: error: --grad-accum 3 must divide the 8 rows each process computes per step" "$work/err" \
    || fail "--batch 8 --grad-accum 3: no clear error: $(cat "$work/err")"
  ;;
settings)
  # OPTION RANK0_VALUE RANK1_VALUE; the other options as in tiny[@]
  with() {  # with OPTION VALUE: tiny's run with OPTION set to VALUE
    local -A given=([--preset]=tiny [--steps]=50 [--eval-every]=10 [--batch]=4 [--seed]=3 [--lr]=0.001 [--grad-accum]=1)
    given[$1]=$2
    local args=(train --data "$work/text.txt" --save-every 10 --threads 1 --no-sample --out "$work/dist") o
    for o in "${!given[@]}"; do args+=("$o" "${given[$o]}"); done
    echo "${args[@]}"
  }
  while read -r option root other; do
    rm -rf "$work/dist"
    # shellcheck disable=SC2046  # the paths are mktemp's, without spaces
    mpi 1 "$bin" $(with "$option" "$root") : -np 1 "$bin" $(with "$option" "$other") </dev/null >"$work/out" 2>"$work/err"
    status=$?
    [ "$status" -eq 124 ] && fail "$option $root against $other: the job hung"
    [ "$status" -eq 0 ] && fail "$option $root against $other: the job exited 0"
    [ "$(grep -c "^train_lm train: error: rank 1: $option $other differs from rank 0's $root; every process" "$work/err")" -eq 1 ] \
      || fail "$option $root against $other: not one line naming the option and both values: $(cat "$work/err")"
    [ "$(grep -c "^train_lm" "$work/err")" -eq 1 ] || fail "$option $root against $other: more than one message: $(cat "$work/err")"
    grep -q "val loss\|step 1" "$work/err" && fail "$option $root against $other: training started: $(cat "$work/err")"
    [ -e "$work/dist" ] && fail "$option $root against $other: --out was created"
    echo "$option $root against $other: exit $status: $(grep "^train_lm" "$work/err")"
  done <<'EOF_CASES'
--preset tiny small
--steps 50 40
--grad-accum 1 2
--eval-every 5 7
--lr 0.5 0.001
--batch 4 6
--seed 3 4
EOF_CASES
  ;;
shard)
  state_bytes() {  # state_bytes FILE: rank 0's and all ranks' optimiser state bytes, from rank 0's line
    sed -n 's/^train_lm: optimiser state \([0-9]*\) bytes on rank 0, \([0-9]*\) on the .*/\1 \2/p' "$1"
  }
  for n in 2 3; do
    batch=$((n == 2 ? 4 : 6))
    mpi "$n" "$bin" "${tiny[@]}" --batch "$batch" --out "$work/replicated$n" 2>"$work/err$n" || fail "-np $n: $(cat "$work/err$n")"
    mpi "$n" "$bin" "${tiny[@]}" --batch "$batch" --shard-optimizer --out "$work/sharded$n" 2>"$work/sharded_err$n" \
      || fail "-np $n --shard-optimizer: $(cat "$work/sharded_err$n")"
    report=$("$compare" "$work/replicated$n" "$work/sharded$n" --limit 1e-6 --state-limit 1e-5) \
      || fail "-np $n --shard-optimizer against replicated: $report"
    echo "-np $n, sharded against replicated: $report"
    read -r replicated_rank0 replicated_all < <(state_bytes "$work/err$n")
    read -r sharded_rank0 sharded_all < <(state_bytes "$work/sharded_err$n")
    [ -n "${replicated_rank0:-}" ] && [ -n "${sharded_rank0:-}" ] || { fail "-np $n: no optimiser state line"; continue; }
    [ "$replicated_all" -eq $((n * replicated_rank0)) ] || fail "-np $n replicated: $replicated_all bytes in all, not $n x $replicated_rank0"
    [ "$sharded_all" -eq "$replicated_rank0" ] \
      || fail "-np $n sharded: the ranks hold $sharded_all bytes together, one replica $replicated_rank0"
    awk -v s="$sharded_rank0" -v r="$replicated_rank0" -v n="$n" 'BEGIN { d = s * n - r; exit !((d < 0 ? -d : d) <= 0.001 * r) }' \
      || fail "-np $n sharded: rank 0 holds $sharded_rank0 bytes, not 1/$n of $replicated_rank0"
    echo "-np $n: optimiser state on rank 0: replicated $replicated_rank0 bytes, sharded $sharded_rank0"
  done
  threads2=("${tiny[@]}")
  threads2[12]=2  # train --data F --preset tiny --steps 50 --eval-every 10 --save-every 10 --threads N
  mpi 3 "$bin" "${threads2[@]}" --batch 6 --shard-optimizer --out "$work/threads2" 2>"$work/err" || fail "--threads 2: $(cat "$work/err")"
  report=$("$compare" "$work/sharded3" "$work/threads2" --limit 0 --state) || fail "-np 3 sharded, --threads 2 against 1: $report"
  echo "-np 3 sharded, --threads 2 against 1: $report"
  mpi 2 "$bin" "${tiny[@]}" --batch 8 --grad-accum 2 --out "$work/accumulated" 2>"$work/err" || fail "--grad-accum 2: $(cat "$work/err")"
  mpi 2 "$bin" "${tiny[@]}" --batch 8 --grad-accum 2 --shard-optimizer --out "$work/accumulated_sharded" 2>"$work/err" \
    || fail "--grad-accum 2 --shard-optimizer: $(cat "$work/err")"
  report=$("$compare" "$work/accumulated" "$work/accumulated_sharded" --limit 1e-6 --state-limit 1e-5) \
    || fail "-np 2 --grad-accum 2, sharded against replicated: $report"
  echo "-np 2 --grad-accum 2, sharded against replicated: $report"
  ;;
shard_resume)
  sharded=("${tiny[@]}" --batch 6 --shard-optimizer)
  mpi 2 "$bin" "${sharded[@]}" --out "$work/straight" 2>"$work/err" || fail "-np 2 sharded: $(cat "$work/err")"
  mpi 2 "$bin" "${sharded[@]}" --stop-after 25 --out "$work/at25" 2>"$work/err" || fail "-np 2 sharded to 25: $(cat "$work/err")"
  mpi 2 "$bin" "${tiny[@]}" --batch 6 --stop-after 25 --out "$work/replicated_at25" 2>"$work/err" \
    || fail "-np 2 replicated to 25: $(cat "$work/err")"
  for copy in same rewritten1 rewritten3 sharded3 replicated3 one; do cp -r "$work/at25" "$work/$copy"; done
  cp -r "$work/replicated_at25" "$work/from_replicated3"
  same() {  # same WHAT DIR_A DIR_B [compare_runs options]
    local what=$1 report
    shift
    report=$("$compare" "$@") || fail "$what: $report"
    echo "$what: $report"
  }
  mpi 2 "$bin" "${sharded[@]}" --resume --out "$work/same" 2>"$work/err" || fail "-np 2 sharded --resume: $(cat "$work/err")"
  same "-np 2 sharded, resumed at 25, against uninterrupted" "$work/straight" "$work/same" --limit 0 --state
  to25=("${sharded[@]}")
  to25[6]=25  # train --data F --preset tiny --steps N: a finished run, which --resume saves again at once
  touch -d 2000-01-01 "$work/rewritten1/state.safetensors" "$work/rewritten3/state.safetensors"
  "$bin" "${to25[@]}" --resume --out "$work/rewritten1" 2>"$work/err" || fail "one process --steps 25: $(cat "$work/err")"
  mpi 3 "$bin" "${to25[@]}" --resume --out "$work/rewritten3" 2>"$work/err" || fail "-np 3 --steps 25: $(cat "$work/err")"
  grep -q "resuming .* at step 25" "$work/err" || fail "-np 3 --steps 25 --resume did not resume at step 25: $(cat "$work/err")"
  for rewritten in rewritten1 rewritten3; do
    [ "$work/$rewritten/state.safetensors" -nt "$work/at25/state.safetensors" ] || fail "$rewritten: the state was not written again"
  done
  same "the -np 2 sharded state, rewritten by one process" "$work/at25" "$work/rewritten1" --limit 0 --state
  same "the -np 2 sharded state, rewritten by -np 3 sharded" "$work/at25" "$work/rewritten3" --limit 0 --state
  mpi 3 "$bin" "${sharded[@]}" --resume --out "$work/sharded3" 2>"$work/err" || fail "-np 3 sharded --resume: $(cat "$work/err")"
  mpi 3 "$bin" "${tiny[@]}" --batch 6 --resume --out "$work/replicated3" 2>"$work/err" || fail "-np 3 replicated --resume: $(cat "$work/err")"
  same "from the sharded checkpoint: -np 3 sharded against -np 3 replicated" "$work/replicated3" "$work/sharded3" --limit 1e-6 --state-limit 1e-5
  mpi 3 "$bin" "${sharded[@]}" --resume --out "$work/from_replicated3" 2>"$work/err" || fail "-np 3 sharded from replicated: $(cat "$work/err")"
  same "-np 3 sharded: from the replicated checkpoint against from the sharded one" "$work/sharded3" "$work/from_replicated3" --limit 1e-6 --state-limit 1e-5
  "$bin" "${tiny[@]}" --batch 6 --resume --out "$work/one" 2>"$work/err" || fail "one process --resume: $(cat "$work/err")"
  same "one process resumed from the sharded checkpoint, against -np 2 sharded throughout" "$work/straight" "$work/one"
  ;;
shard_errors)
  args=(train --data "$work/text.txt" --preset tiny --steps 5 --batch 4 --threads 1 --no-sample --out "$work/dist")
  mpi 1 "$bin" "${args[@]}" --shard-optimizer : -np 1 "$bin" "${args[@]}" </dev/null >"$work/out" 2>"$work/err"
  status=$?
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "ranks disagreeing on --shard-optimizer: exit $status"
  [ "$(grep -c "^train_lm train: error: rank 1: --shard-optimizer no differs from rank 0's yes; every process" "$work/err")" -eq 1 ] \
    || fail "ranks disagreeing on --shard-optimizer: not one line naming it: $(cat "$work/err")"
  [ "$(grep -c "^train_lm" "$work/err")" -eq 1 ] || fail "ranks disagreeing on --shard-optimizer: more than one message: $(cat "$work/err")"
  [ -e "$work/dist" ] && fail "ranks disagreeing on --shard-optimizer: --out was created"
  echo "ranks disagreeing: exit $status: $(grep "^train_lm" "$work/err")"
  mpi 2 "$bin" "${args[@]}" --shard-optimizer --optimizer muon </dev/null >"$work/out" 2>"$work/err" && fail "--shard-optimizer with Muon: exit 0"
  [ "$(grep -c "^train_lm train: error: --shard-optimizer shards AdamW's moments and does not support --optimizer muon" "$work/err")" -eq 1 ] \
    || fail "--shard-optimizer with Muon: not one clear error: $(cat "$work/err")"
  echo "Muon: $(grep "^train_lm" "$work/err")"
  ;;
shard_bytes)
  [ "$(id -u)" -eq 0 ] || { echo "SKIP: shard_bytes needs root (a network namespace of its own)" >&2; exit 77; }
  command -v unshare >/dev/null && command -v ip >/dev/null || { echo "SKIP: shard_bytes needs unshare and ip" >&2; exit 77; }
  # Runs in a fresh network namespace: its loopback carries this job's TCP alone.
  cat >"$work/count.sh" <<'EOF_COUNT'
set -u
bin=$1 text=$2 out=$3
ip link set lo up || exit 77
sent() { awk -F'[: ]+' '/ lo:/ { print $11 }' /proc/net/dev; }
for n in 2 3; do
  for mode in replicated sharded; do
    for steps in 10 30; do
      rm -rf "$out"
      before=$(sent)
      timeout 120 mpirun --oversubscribe -np "$n" --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo         --mca oob_tcp_if_include lo "$bin" train --data "$text" --preset tiny --steps "$steps" --batch 6         --eval-every 1000 --save-every 1000 --threads 1 --no-sample --out "$out"         $([ "$mode" = sharded ] && echo --shard-optimizer) >/dev/null 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
      echo "$n $mode $steps $(($(sent) - before))"
    done
  done
done
EOF_COUNT
  unshare -n bash "$work/count.sh" "$bin" "$work/text.txt" "$work/run" >"$work/bytes"
  status=$?
  [ "$status" -eq 77 ] && { echo "SKIP: cannot bring up a namespace's loopback here" >&2; exit 77; }
  [ "$status" -eq 0 ] || fail "the counting runs failed (exit $status)"
  for n in 2 3; do
    per_step() { awk -v n="$n" -v m="$1" '$1 == n && $2 == m { b[$3] = $4 } END { printf "%d", (b[30] - b[10]) / 20 }' "$work/bytes"; }
    all_reduce_bytes=$(per_step replicated)
    sharded_bytes=$(per_step sharded)
    echo "-np $n: bytes sent per step, all ranks: all-reduce $all_reduce_bytes, sharded $sharded_bytes"
    awk -v r="$all_reduce_bytes" -v s="$sharded_bytes" 'BEGIN { d = s - r; exit !(r > 100000 && (d < 0 ? -d : d) <= 0.05 * r) }' \
      || fail "-np $n: the sharded step sends $sharded_bytes bytes, the all-reduce's $all_reduce_bytes"
  done
  ;;
*)
  echo "mpi_test.sh: unknown case '$case'" >&2
  exit 2
  ;;
esac

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "mpi_test.sh $case: all checks passed"
