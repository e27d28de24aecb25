#!/usr/bin/env python3
"""bench/dist_figures.py: the tables of docs/distributed.md's "Measured on two hosts", from
bench/bench_two_hosts.sh's JSON lines (one bench_dist --worker line per configuration).

    python3 bench/dist_figures.py RESULTS.jsonl [--update docs/distributed.md] [--command TEXT]

Prints the tables as Markdown; --update FILE replaces what lies between the lines
"<!-- bench_two_hosts: begin -->" and "<!-- bench_two_hosts: end -->" in FILE with them.
"""
import argparse
import datetime
import json
import os
import platform
import re

BEGIN, END = "<!-- bench_two_hosts: begin -->", "<!-- bench_two_hosts: end -->"


def mode(row):
    sharded = row.get("optimizer") == "sharded"
    accum = row.get("grad_accum", 1)
    text = "sharded" if sharded else "replicated"
    return text + (f", --grad-accum {accum}" if accum > 1 else "")


def cpu_name():
    """The CPU's model name, CPUID family and model, and core count, from /proc/cpuinfo."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "an unknown CPU"
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, "
            f"{os.cpu_count()} cores)")


def tables(rows, command):
    out = [f"Measured with `{command}` on {platform.node()}, {cpu_name()}, "
           f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    two = [r for r in rows if r.get("layout", "").startswith("two hosts")]
    if two:
        out += ["| preset | link | optimiser | ms per step | tokens/s | communication, blocking (ms) | exposed with overlap (ms) | hidden | optimiser state per rank (MB) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in two:
            out.append(f"| {r['preset']} | {r['link']} | {mode(r)} | {r['median_ms_per_step']:.0f} | {r['tokens_per_s']:.0f} | "
                       f"{r['allreduce_ms']:.1f} | {r['exposed_ms']:.1f} | {100 * r['hidden']:.0f}% | "
                       f"{r['optimizer_state_bytes'] / 1e6:.1f} |")
        out.append("")
    hybrid = [r for r in rows if r.get("link") == "one host"]
    if hybrid:
        out += ["| preset | layout (one host) | ms per step | tokens/s |", "|---|---|---|---|"]
        for r in hybrid:
            out.append(f"| {r['preset']} | {r['layout']} | {r['median_ms_per_step']:.0f} | {r['tokens_per_s']:.0f} |")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--update")
    parser.add_argument("--command", default="bench/bench_two_hosts.sh build/bench/bench_dist")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.results) if line.startswith("{")]
    text = tables(rows, args.command)
    print(text)
    if args.update:
        doc = open(args.update).read()
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        if not pattern.search(doc):
            raise SystemExit(f"dist_figures.py: {args.update} has no {BEGIN} ... {END} section")
        doc = pattern.sub(lambda _: BEGIN + "\n" + text + "\n" + END, doc)
        open(args.update, "w").write(doc)
        print(f"dist_figures.py: updated {args.update}")


if __name__ == "__main__":
    main()
