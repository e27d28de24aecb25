#!/usr/bin/env bash
# bench/bench_two_hosts.sh — bench_dist's data-parallel step on two hosts simulated on one
# machine (tests/dist/two_hosts_network.sh: two network namespaces, a veth pair, TCP only),
# with the link shaped by tc netem, and the hybrid layouts. Root only. Prints one JSON line
# per configuration (bench_dist --worker's, with "link" and "layout" added). It measures;
# it asserts nothing. Figures are only valid on an otherwise idle machine.
#
#   bench/bench_two_hosts.sh path/to/bench_dist [PRESETS] [STEPS] [WARMUP]
#     PRESETS  default medium,long;  STEPS 5;  WARMUP 1
#
# Links: unshaped veth, then netem rate 1 Gbit/s and 10 Gbit/s, each with 0.1 ms and 1 ms
# delay each way. Layouts on each link: one rank per host with 1 thread ("rank per host");
# one rank per host with 2 threads (hybrid: --map-by ppr:1:node --bind-to none); two ranks
# per host with 1 thread each ("rank per core"). On each, bench_dist reports the overlapped
# step (median_ms_per_step), the blocking all-reduce's time (allreduce_ms), the share
# backward hid (hidden) and the step with the collective deadline (deadline_ms_per_step).
set -uo pipefail
bench=$(readlink -f "${1:?usage: bench_two_hosts.sh path/to/bench_dist [PRESETS] [STEPS] [WARMUP]}")
presets=${2:-medium,long} steps=${3:-5} warmup=${4:-1}
[ "$(id -u)" -eq 0 ] || { echo "bench_two_hosts.sh: needs root (network namespaces)" >&2; exit 1; }
# shellcheck source=../tests/dist/two_hosts_network.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/dist/two_hosts_network.sh"
make_network || { echo "bench_two_hosts.sh: cannot create the namespaces and veth pair" >&2; exit 1; }
export TWO_HOSTS_TIMEOUT=3600

# shape rate R delay D | shape none: netem on both ends of the veth. A kernel without
# sch_netem (some VMs) gets a token bucket (tbf) for the rate alone, and the link's label
# in the output says that the delay is missing.
label=none
shape() {
  local qdisc=(netem "$@") side
  ip netns exec "$ns_a" tc qdisc del dev "$veth_a" root 2>/dev/null
  ip netns exec "$ns_b" tc qdisc del dev "$veth_b" root 2>/dev/null
  label="$*"
  [ "$1" = none ] && return 0
  if ! ip netns exec "$ns_a" tc qdisc add dev "$veth_a" root netem "$@" 2>/dev/null; then
    qdisc=(tbf rate "$2" burst 256kb latency 50ms)
    label="$1 $2 (tbf: no netem in this kernel, so no $3 $4)"
    ip netns exec "$ns_a" tc qdisc add dev "$veth_a" root "${qdisc[@]}" || return 1
  fi
  ip netns exec "$ns_b" tc qdisc add dev "$veth_b" root "${qdisc[@]}"
}

for link in "none" "rate 1gbit delay 0.1ms" "rate 1gbit delay 1ms" "rate 10gbit delay 0.1ms" "rate 10gbit delay 1ms"; do
  # shellcheck disable=SC2086
  shape $link || { echo "bench_two_hosts.sh: shaping the link ($link) failed" >&2; exit 1; }
  for preset in ${presets//,/ }; do
    for layout in "rank-per-host 1 1" "hybrid 1 2" "rank-per-core 2 1"; do
      set -- $layout
      sed -i "s/slots=[0-9]*/slots=$2/" "$work/hostfile"
      MPIRUN_LAYOUT="-np $((2 * $2)) --map-by ppr:$2:node --bind-to none" \
        two_hosts "$bench" --worker "$preset" "$3" "$steps" "$warmup" </dev/null 2>"$work/err" |
        sed "s/^{/{\"link\": \"$label\", \"layout\": \"$1\", /" ||
        echo "bench_two_hosts.sh: $preset, $link, $1 failed: $(tail -3 "$work/err")" >&2
    done
  done
done
