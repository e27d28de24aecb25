#!/usr/bin/env python3
"""The numbers in docs/derivations.md, section 10: one block's forward cost at d=128, h=4, B=1.

FLOPs count a multiply-add as 2: a GEMM (M,K) x (K,N) costs 2 M K N.
Memory counts the values the tape keeps alive (float, 4 bytes); see the text for the list.
Run: python3 docs/complexity.py
"""
d, h, B, f32 = 128, 4, 1, 4
dh = d // h


def mib(n):
    return f"{n / 2**20:.2f} MiB"


print(f"d={d} h={h} dh={dh} B={B}\n")
print("| T | projections 8BTd^2 | scores 4BT^2d | scores/proj | FFN 16BTd^2 | scores share of block | P: BhT^2 floats | 4 TxT tensors | 27 BTd tensors |")
print("|---|---|---|---|---|---|---|---|---|")
for T in (64, 256, 1024):
    proj = 4 * 2 * B * T * d * d            # x W_q, x W_k, x W_v, O W_o: (BT,d) x (d,d)
    scores = 2 * (2 * B * h * T * T * dh)   # Q K^T and P V: B h GEMMs of 2 T T dh each
    ffn = 2 * (2 * B * T * d * 4 * d)       # (BT,d) x (d,4d) and (BT,4d) x (4d,d)
    share = scores / (proj + scores + ffn)
    p = B * h * T * T * f32
    rows = 27 * B * T * d * f32
    print(f"| {T} | {proj:,} | {scores:,} | {scores / proj:g} | {ffn:,} | {share:.1%} | {p:,} B ({mib(p)}) "
          f"| {mib(4 * p)} | {mib(rows)} |")
