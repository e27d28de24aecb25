# tests/dist/two_hosts_network.sh — sourced (bash): two hosts simulated on one machine, for
# two_hosts_test.sh and bench/bench_two_hosts.sh. Needs root, ip and unshare; the caller
# checks. Defines $work (a temporary directory), the names below, and:
#   make_network      two network namespaces joined by a veth pair, 10.77.0.1/24 (host A)
#                     and 10.77.0.2/24 (host B); an rsh agent that starts a command on host B
#                     (ip netns exec, its own hostname and mount namespace, where $work/b_view
#                     is mounted over $work/a_only: host B does not see what A keeps there)
#   two_hosts PROGRAM ARGS...   mpirun on host A, one rank on each host, TCP over the veth only
#                     ($MPIRUN_LAYOUT: the ranks, default "-np 2 --map-by node"; $TWO_HOSTS_TIMEOUT: seconds, 150)
#   remove_network    kills what runs in the namespaces, removes them (and the veth); the
#                     EXIT trap calls it with the removal of $work
# Names unique to this run (by $$): namespaces and veth ends tg<pid>a / tg<pid>b.
work=$(mktemp -d)
id=$$
ns_a=tg${id}a ns_b=tg${id}b veth_a=tg${id}a veth_b=tg${id}b host_a=tg${id}-host-a host_b=tg${id}-host-b

kill_namespace_processes() { local ns pids; for ns in "$ns_a" "$ns_b"; do
  pids=$(ip netns pids "$ns" 2>/dev/null) && [ -n "$pids" ] && kill -KILL $pids 2>/dev/null; done; }
remove_network() {
  kill_namespace_processes
  ip netns del "$ns_a" 2>/dev/null
  ip netns del "$ns_b" 2>/dev/null
  ip link del "$veth_a" 2>/dev/null  # in case it never moved into its namespace
}
trap 'remove_network; rm -rf "$work"' EXIT

# make_network: 0, or 77 when this machine cannot make namespaces, or 1.
make_network() {
  ip netns add "$ns_a" && ip netns add "$ns_b" || return 77
  ip link add "$veth_a" type veth peer name "$veth_b" || return 77
  ip link set "$veth_a" netns "$ns_a" && ip link set "$veth_b" netns "$ns_b" || return 1
  ip -n "$ns_a" addr add 10.77.0.1/24 dev "$veth_a" && ip -n "$ns_b" addr add 10.77.0.2/24 dev "$veth_b" || return 1
  ip -n "$ns_a" link set lo up && ip -n "$ns_a" link set "$veth_a" up || return 1
  ip -n "$ns_b" link set lo up && ip -n "$ns_b" link set "$veth_b" up || return 1
  mkdir -p "$work/a_only" "$work/b_view"
  # Like ssh, the agent gets "host command args..." and a shell parses the command.
  cat >"$work/agent.sh" <<EOF
#!/bin/sh
shift  # the host name: there is only host B
exec ip netns exec "$ns_b" unshare --uts --mount sh -c "hostname $host_b && mount --bind '$work/b_view' '$work/a_only' && exec \$*"
EOF
  chmod +x "$work/agent.sh"
  printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' >"$work/hostfile"
}

two_hosts() {
  # shellcheck disable=SC2086  # MPIRUN_LAYOUT is a list of options
  timeout "${TWO_HOSTS_TIMEOUT:-150}" ip netns exec "$ns_a" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$host_a" \
    mpirun --allow-run-as-root --hostfile "$work/hostfile" ${MPIRUN_LAYOUT:--np 2 --map-by node} \
    --mca plm_rsh_agent "$work/agent.sh" --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 "$@"
}
