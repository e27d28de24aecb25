#!/usr/bin/env bash
# train_lm data parallel on two hosts, simulated on one machine: two network namespaces
# joined by a veth pair (10.77.0.1/24 and 10.77.0.2/24), each with its own hostname (a
# UTS namespace) and mount namespace; mpirun in the first starts the second's orted
# through an rsh agent that is `ip netns exec` (no ssh); Open MPI talks TCP over the veth
# only. --out lies in a directory the second host does not see (an empty directory is
# mounted over it there, so anything rank 1 wrote would land in that directory instead).
# One case per call:
#   two_hosts_test.sh CASE path/to/train_lm path/to/compare_runs
#   equivalence  one process against two hosts (tiny, batch 6, seed 5, 50 steps): every logged
#                loss and the final weights within 1e-5 (compare_runs); each rank ran on its own
#                host; at least the gradients' bytes crossed the link each way (veth counters);
#                rank 1 wrote nothing where --out is
#   resume       two hosts stop at step 25, two hosts resume to 50: the one-process run
#   killed       the remote rank is killed (SIGKILL) at step 25: the job ends non-zero within
#                seconds of the kill, rank 0 says why and names the last checkpoint
#   link_down    the link goes down (ip link set down) at step 25: the job ends within
#                --collective-timeout (4 s), its grace and a margin, naming rank 1 and its host
# Every case: afterwards no process is left in either namespace, and every namespace and
# veth is removed (also on failure: trap). Needs root, ip and unshare: otherwise it exits 77,
# which ctest reports as skipped.
set -uo pipefail
case=${1:?usage: two_hosts_test.sh CASE train_lm compare_runs}
bin=${2:?usage: two_hosts_test.sh CASE train_lm compare_runs}
compare=${3:?usage: two_hosts_test.sh CASE train_lm compare_runs}
skip() { echo "SKIP: two_hosts_test.sh: $*" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (it creates network namespaces and a veth pair)"
for tool in ip unshare mpirun; do command -v "$tool" >/dev/null || skip "needs $tool"; done

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# shellcheck source=two_hosts_network.sh
source "$(dirname "${BASH_SOURCE[0]}")/two_hosts_network.sh"
make_network
case $? in
0) ;;
77) skip "cannot create network namespaces and a veth pair here" ;;
*) fail "setting up the two hosts"; exit 1 ;;
esac
# Each rank says where it runs, then becomes train_lm.
cat >"$work/rank.sh" <<'EOF'
#!/bin/sh
echo "rank $OMPI_COMM_WORLD_RANK runs on $(hostname)" >&2
exec "$@"
EOF
chmod +x "$work/rank.sh"
train_two_hosts() { two_hosts "$work/rank.sh" "$bin" "$@"; }
link_bytes() { ip netns exec "$ns_a" cat "/sys/class/net/$veth_a/statistics/$1"; }
# rank_pid RANK: the process of that rank in the namespaces
rank_pid() { local pid; for pid in $(ip netns pids "$ns_a") $(ip netns pids "$ns_b"); do
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && [ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$bin")" ] && echo "$pid"; done; }
wait_for_step() {  # wait_for_step N JOB: until rank 0 has logged step N (or the job ended)
  until grep -q "^train,$1," "$out/log.csv" 2>/dev/null || ! kill -0 "$2" 2>/dev/null; do sleep 0.02; done
}

for i in $(seq 300); do echo "line $i: the cat $((i * 7 % 13)) sat on mat $((i * 3 % 11)), and the dog ran $((i % 5)) laps."; done \
  >"$work/text.txt"
run=(train --data "$work/text.txt" --preset tiny --eval-every 10 --save-every 10 --threads 1 --no-sample --seed 5 --batch 6)
tiny=("${run[@]}" --steps 50)
out=$work/a_only/out
one_process() { "$bin" "${tiny[@]}" --out "$work/one" 2>"$work/one.err" || fail "one process: $(cat "$work/one.err")"; }
same_run() {  # same_run WHAT
  local report
  report=$("$compare" "$work/one" "$out") || fail "$1: $report"
  echo "$1: $report"
}
ended_within() {  # ended_within WHAT START LIMIT STATUS
  local seconds
  seconds=$(awk -v a="$2" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$4" -ne 0 ] || fail "$1: the job exited 0"
  [ "$4" -ne 124 ] || fail "$1: the job hung (killed by timeout)"
  awk -v s="$seconds" -v l="$3" 'BEGIN { exit !(s <= l) }' || fail "$1: the job took $seconds s to end (limit $3 s)"
  echo "$1: exit status $4, $seconds s after the fault"
}

case $case in
equivalence)
  one_process
  tx=$(link_bytes tx_bytes) rx=$(link_bytes rx_bytes)
  train_two_hosts "${tiny[@]}" --out "$out" </dev/null >"$work/out" 2>"$work/err" || fail "two hosts: $(cat "$work/err")"
  sent=$(($(link_bytes tx_bytes) - tx)) received=$(($(link_bytes rx_bytes) - rx))
  grep -qx "rank 0 runs on $host_a" "$work/err" && grep -qx "rank 1 runs on $host_b" "$work/err" \
    || fail "the ranks did not run one on each host: $(grep "runs on" "$work/err")"
  same_run "two hosts against one process"
  params=$(sed -n 's/.*, \([0-9]*\) parameters;.*/\1/p' "$work/err" | head -1)
  # Each of 50 steps all-reduces every fp32 gradient: with two ranks each sends at least its size.
  least=$((50 * ${params:-0} * 4))
  [ "${params:-0}" -gt 0 ] && [ "$sent" -ge "$least" ] && [ "$received" -ge "$least" ] \
    || fail "too few bytes crossed the link: $sent sent, $received received, expected at least $least each way"
  echo "link: $sent bytes sent, $received received (the gradients: $least each way)"
  [ -z "$(ls -A "$work/b_view")" ] || fail "rank 1 wrote where --out is: $(ls -A "$work/b_view")"
  ;;
resume)
  one_process
  train_two_hosts "${tiny[@]}" --stop-after 25 --out "$out" </dev/null >"$work/out" 2>"$work/err" || fail "to step 25: $(cat "$work/err")"
  train_two_hosts "${tiny[@]}" --resume --out "$out" </dev/null >"$work/out" 2>"$work/err" || fail "--resume: $(cat "$work/err")"
  grep -q "resuming .* at step 25" "$work/err" || fail "--resume did not resume at step 25: $(cat "$work/err")"
  same_run "two hosts to step 25, then two hosts to 50, against one process"
  [ -z "$(ls -A "$work/b_view")" ] || fail "rank 1 wrote where --out is: $(ls -A "$work/b_view")"
  ;;
killed | link_down)
  train_two_hosts "${run[@]}" --steps 2000 --collective-timeout 4 --out "$out" </dev/null >"$work/out" 2>"$work/err" &
  job=$!
  wait_for_step 24 "$job"
  if [ "$case" = killed ]; then
    pid=$(rank_pid 1)
    [ -n "$pid" ] || fail "rank 1's process not found"
    kill -KILL $pid
  else
    ip -n "$ns_a" link set "$veth_a" down
  fi
  fault=$(date +%s.%N)
  wait "$job"
  status=$?
  saved=$(grep -a -o '"step":"[0-9]*"' "$out/model.safetensors" | grep -o '[0-9]*')
  if [ "$case" = killed ]; then
    ended_within "the remote rank killed" "$fault" 10 "$status"
    grep -q "^train_lm train: the job was stopped from outside.*the last checkpoint in $out is at step $saved" "$work/err" \
      || fail "rank 0 did not say why the job stopped and where the checkpoint is: $(cat "$work/err")"
  else
    ended_within "the link down" "$fault" 16 "$status"  # the deadline 4 s, a grace of 2 s, a margin
    grep -q "^train_lm train: error: rank 1 (host $host_b) did not arrive at .* within 4 s.*the last checkpoint in $out is at step $saved" "$work/err" \
      || fail "rank 0 did not name rank 1, its host and the step-$saved checkpoint: $(cat "$work/err")"
  fi
  echo "stderr: $(grep "^train_lm train" "$work/err")"
  ;;
*)
  echo "two_hosts_test.sh: unknown case '$case'" >&2
  exit 2
  ;;
esac

# Nothing left behind: no process in either namespace (mpirun has returned; a child it
# left is reaped by init within moments), then the network removed.
for _ in $(seq 50); do [ -z "$(ip netns pids "$ns_a")$(ip netns pids "$ns_b")" ] && break; sleep 0.1; done
for ns in "$ns_a" "$ns_b"; do
  left=$(ip netns pids "$ns")
  [ -z "$left" ] || fail "processes left in namespace $ns: $(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)")"
done
remove_network
ip netns list | grep -q "^tg$id[ab]\b" && fail "a namespace is left: $(ip netns list)"
ip link show "$veth_a" >/dev/null 2>&1 && fail "the veth $veth_a is left"

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "two_hosts_test.sh $case: all checks passed"
