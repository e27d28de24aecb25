#!/usr/bin/env bash
# bench/bench_two_hosts.sh — the figures of docs/distributed.md's "Measured on two hosts":
# bench_dist's data-parallel step on two hosts simulated on one machine
# (tests/dist/two_hosts_network.sh: two network namespaces, a veth pair, TCP only), with
# the link's rate limited by tc, and the hybrid layouts on one host. Root only. Prints one
# JSON line per configuration (bench_dist --worker's, with "link" and "layout" added), then
# the tables (bench/dist_figures.py). It measures; it asserts nothing. Figures are only
# valid on an otherwise idle machine; the defaults take about 3 minutes on one.
#
#   bench/bench_two_hosts.sh path/to/bench_dist [--presets medium,long] [--steps 2] [--warmup 1]
#                            [--latency] [--update docs/distributed.md]
#
# Two hosts, one rank of one thread on each: links of 1 Gbit/s and 10 Gbit/s (tbf on both
# ends of the veth), each with replicated AdamW, --shard-optimizer, --grad-accum 2 and both.
# --latency adds 0.1 ms and 1 ms of delay each way (tc netem) where the kernel has netem
# (docs/distributed.md: this VM's has not; without it the cases are left out, and said so).
# Every wait polls against a deadline, as train_lm's (bench_dist --polling).
# Hybrid, on this one host: one rank of two threads (--map-by ppr:1:node --bind-to none)
# against two ranks of one thread (--map-by ppr:2:node --bind-to core), replicated.
# --update FILE rewrites FILE's section between the markers
# "<!-- bench_two_hosts: begin -->" and "<!-- bench_two_hosts: end -->" with the tables.
set -uo pipefail
usage="usage: bench_two_hosts.sh path/to/bench_dist [--presets P] [--steps N] [--warmup N] [--latency] [--update FILE]"
bench=$(readlink -f "${1:?$usage}")
shift
presets=medium,long steps=2 warmup=1 latency=0 update=
while [ $# -gt 0 ]; do
  case $1 in
  --presets) presets=$2; shift 2 ;;
  --steps) steps=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --latency) latency=1; shift ;;
  --update) update=$(readlink -f "$2"); shift 2 ;;
  *) echo "$usage" >&2; exit 2 ;;
  esac
done
[ -x "$bench" ] || { echo "bench_two_hosts.sh: $bench is not an executable" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench_two_hosts.sh: needs root (network namespaces)" >&2; exit 1; }
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=../tests/dist/two_hosts_network.sh
source "$here/../tests/dist/two_hosts_network.sh"
make_network || { echo "bench_two_hosts.sh: cannot create the namespaces and veth pair" >&2; exit 1; }
export TWO_HOSTS_TIMEOUT=600 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2154  # $work: two_hosts_network.sh sets it
results=$work/results.jsonl
: >"$results"

# shape RATE [DELAY]: the same qdisc on both ends of the veth; 1 when the kernel lacks it.
shape() {
  local rate=$1 delay=${2:-} qdisc ns dev
  if [ -n "$delay" ]; then
    qdisc=(netem rate "$rate" delay "$delay" limit 100000)
  else  # a token bucket: a burst of 2 ms at the rate (RATE in gbit or mbit)
    local per_s=$((${rate%[gm]bit} * 125000))
    [ "${rate%gbit}" != "$rate" ] && per_s=$((per_s * 1000))
    qdisc=(tbf rate "$rate" burst $((per_s / 500)) latency 50ms)
  fi
  for side in a b; do
    ns=ns_$side dev=veth_$side
    ip netns exec "${!ns}" tc qdisc del dev "${!dev}" root 2>/dev/null
    ip netns exec "${!ns}" tc qdisc add dev "${!dev}" root "${qdisc[@]}" 2>"$work/tc.err" || return 1
  done
}

record() {  # record LINK LAYOUT: bench_dist's JSON lines from stdin, labelled, into the results
  sed "s/^{/{\"link\": \"$1\", \"layout\": \"$2\", /" | tee -a "$results"
}

links=("1gbit" "10gbit")
if [ "$latency" = 1 ]; then
  if shape 1gbit 0.1ms; then
    links+=("1gbit 0.1ms" "1gbit 1ms" "10gbit 0.1ms" "10gbit 1ms")
  else
    echo "bench_two_hosts.sh: no delay cases: tc netem fails here ($(cat "$work/tc.err"))" >&2
  fi
fi
for link in "${links[@]}"; do
  # shellcheck disable=SC2086  # RATE [DELAY]
  shape $link || { echo "bench_two_hosts.sh: shaping the link ($link) failed: $(cat "$work/tc.err")" >&2; exit 1; }
  for preset in ${presets//,/ }; do
    for mode in "" "--shard-optimizer" "--grad-accum 2" "--shard-optimizer --grad-accum 2"; do
      # shellcheck disable=SC2086  # mode is a list of options
      two_hosts "$bench" --worker "$preset" 1 "$steps" "$warmup" $mode --polling </dev/null 2>"$work/err" |
        record "$link" "two hosts, 1 rank x 1 thread each" ||
        echo "bench_two_hosts.sh: $preset, $link, $mode failed: $(tail -3 "$work/err")" >&2
    done
  done
done
remove_network

# Hybrid, on this host alone (shared memory).
for preset in ${presets//,/ }; do
  timeout 600 mpirun --oversubscribe -np 1 --map-by ppr:1:node --bind-to none \
    "$bench" --worker "$preset" 2 "$steps" "$warmup" --polling </dev/null 2>"$work/err" |
    record "one host" "1 rank x 2 threads" || echo "bench_two_hosts.sh: $preset, hybrid failed: $(tail -3 "$work/err")" >&2
  timeout 600 mpirun --oversubscribe -np 2 --map-by ppr:2:node --bind-to core \
    "$bench" --worker "$preset" 1 "$steps" "$warmup" --polling </dev/null 2>"$work/err" |
    record "one host" "2 ranks x 1 thread" || echo "bench_two_hosts.sh: $preset, 2 ranks failed: $(tail -3 "$work/err")" >&2
done

echo
python3 "$here/dist_figures.py" "$results" ${update:+--update "$update"} --command "bench/bench_two_hosts.sh build/bench/bench_dist --presets $presets --steps $steps --warmup $warmup$([ "$latency" = 1 ] && echo " --latency")"
