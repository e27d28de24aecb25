#!/usr/bin/env python3
"""docs/scaling_model.py: the scaling model of docs/distributed.md, as numbers.

Data parallel, one rank per machine, each machine computing the same per-machine batch
(weak scaling: the global batch grows with N). A step takes

    T(N) = C + exposed(N),   exposed(N) = max(0, T_ar(N) - o * C)

with C the compute of one step on one machine, o the share of the step that the
all-reduce can overlap (backward after the first bucket is ready), and the ring
all-reduce of S bytes in k buckets over links of bandwidth BW and latency a:

    T_ar(N) = 2 (N - 1) / N * S / BW  +  2 (N - 1) * k * a

Efficiency is C / T(N); 90% needs exposed(N) <= C / 9. Prints T(N) for medium on a few
links, and the link bandwidth that keeps 90% at N = 8, 64, 512 (None: no bandwidth is
enough, the latency term alone is too large).

    python3 docs/scaling_model.py [--compute-s 1.4] [--overlap 0.6]
"""
import argparse

MB = 1e6
GBIT = 1e9 / 8  # bytes per second


def allreduce_s(n, size, bandwidth, latency, buckets):
    return 2 * (n - 1) / n * size / bandwidth + 2 * (n - 1) * buckets * latency


def step_s(n, compute, overlap, size, bandwidth, latency, buckets):
    return compute + max(0.0, allreduce_s(n, size, bandwidth, latency, buckets) - overlap * compute)


def bandwidth_for(efficiency, n, compute, overlap, size, latency, buckets):
    budget = compute * (1 / efficiency - 1) + overlap * compute - 2 * (n - 1) * buckets * latency
    return None if budget <= 0 else 2 * (n - 1) / n * size / budget


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--compute-s", type=float, default=1.4, help="one step of medium on one machine (s)")
    p.add_argument("--overlap", type=float, default=0.6, help="share of the step the all-reduce may hide behind")
    p.add_argument("--params", type=float, default=10_761_600, help="medium's parameters (vocabulary 65)")
    args = p.parse_args()
    size = 4 * args.params  # fp32 gradients
    c, o = args.compute_s, args.overlap
    print(f"medium: S = {size / MB:.1f} MB of gradients, C = {c} s per step, overlap o = {o}")
    print("\ntime per step T(N) in s (efficiency), 1 MiB buckets (k = %d):" % round(size / 2**20))
    links = [("1 Gbit/s, 0.1 ms", 1 * GBIT, 1e-4), ("10 Gbit/s, 0.1 ms", 10 * GBIT, 1e-4),
             ("10 Gbit/s, 1 ms", 10 * GBIT, 1e-3), ("100 Gbit/s, 5 us", 100 * GBIT, 5e-6)]
    ns = [2, 8, 64, 512]
    print("| link | " + " | ".join(f"N = {n}" for n in ns) + " |")
    print("|---|" + "---|" * len(ns))
    k = round(size / 2**20)
    for name, bw, a in links:
        cells = []
        for n in ns:
            t = step_s(n, c, o, size, bw, a, k)
            cells.append(f"{t:.2f} ({100 * c / t:.0f}%)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nlink bandwidth for 90% efficiency (Gbit/s), by latency and bucket size:")
    print("| latency | buckets | overlap | N = 8 | N = 64 | N = 512 |")
    print("|---|---|---|---|---|---|")
    for a in (5e-6, 1e-4, 1e-3):
        for buckets, label in ((k, "1 MiB"), (2, "25 MiB")):
            for overlap in (0.0, o):
                cells = []
                for n in (8, 64, 512):
                    bw = bandwidth_for(0.9, n, c, overlap, size, a, buckets)
                    cells.append("none suffices" if bw is None else f"{bw / GBIT:.2f}")
                print(f"| {a * 1e3:g} ms | {label} | {overlap} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
