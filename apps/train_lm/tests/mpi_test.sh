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
  # The fault comes at step 25 or 26 (rank 0 has logged step 24): exit, throw, or a
  # SIGSTOP from here. Each time the job ends within seconds of the fault, measured from
  # the fault to mpirun's exit.
  for how in exit throw stop; do
    rm -rf "$work/dist"
    extra=(--test-fail "1:25:$how")
    [ "$how" = stop ] && extra=(--collective-timeout 4)
    mpi 2 "$bin" "${tiny[@]}" --batch 4 "${extra[@]}" --out "$work/dist" </dev/null >"$work/out" 2>"$work/err" &
    job=$!
    until grep -q '^train,24,' "$work/dist/log.csv" 2>/dev/null || ! kill -0 "$job" 2>/dev/null; do sleep 0.02; done
    if [ "$how" = stop ]; then
      for pid in $(pgrep -f -- "--out $work/dist"); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && kill -STOP "$pid" && stopped=$pid
      done
      [ -n "${stopped:-}" ] || fail "stop: rank 1's process not found"
    fi
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
    [ "$how" = stop ] || [ "$saved" = 20 ] || fail "$how: model.safetensors is not the step-20 checkpoint"
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
*)
  echo "mpi_test.sh: unknown case '$case'" >&2
  exit 2
  ;;
esac

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "mpi_test.sh $case: all checks passed"
