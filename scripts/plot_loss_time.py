#!/usr/bin/python3
"""Validation loss against wall time, from train_lm runs' log.csv files, as one SVG.

  scripts/plot_loss_time.py --out docs/speedrun_loss_time.svg \\
      "small (SPEC)=runs/small/log.csv" "speedrun=runs/speedrun/log.csv" ...

Each series is LABEL=LOG: the "val" rows of LOG (train_lm's 20-batch validation
estimate) at their elapsed_s, the run's wall time since its first step. A run's final
full-split loss can be added as a marker with LABEL=LOG@LOSS. Time is drawn on a log
scale, so a 25-second run and a 10-minute run both show.
"""
import argparse
import csv
import math
import sys

WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 60
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def read_series(spec):
    label, _, rest = spec.partition("=")
    path, _, final = rest.partition("@")
    if not label or not path:
        sys.exit(f"series '{spec}': expected LABEL=LOG.csv or LABEL=LOG.csv@LOSS")
    points = []
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "val" and float(row["elapsed_s"]) > 0:
                points.append((float(row["elapsed_s"]), float(row["loss"])))
    if not points:
        sys.exit(f"{path}: no validation rows after the start")
    return {"label": label, "points": points, "final": float(final) if final else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("series", nargs="+", help="LABEL=LOG.csv[@FINAL_LOSS]")
    parser.add_argument("--out", required=True)
    parser.add_argument("--target", type=float, default=1.88, help="a dashed line at this loss (0: none)")
    parser.add_argument("--title", default="tinyshakespeare: validation loss against wall time, 2 cores")
    args = parser.parse_args()
    series = [read_series(s) for s in args.series]

    times = [t for s in series for t, _ in s["points"]]
    losses = [l for s in series for _, l in s["points"]] + [s["final"] for s in series if s["final"]]
    t_lo, t_hi = 10 ** math.floor(math.log10(min(times))), 10 ** math.ceil(math.log10(max(times)))
    y_lo, y_hi = math.floor(min(losses + [args.target or 9]) * 10) / 10, min(3.0, max(losses))
    y_hi = math.ceil(y_hi * 10) / 10
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t):
        return LEFT + plot_w * (math.log10(t) - math.log10(t_lo)) / (math.log10(t_hi) - math.log10(t_lo))

    def y(loss):
        return TOP + plot_h * (y_hi - min(loss, y_hi)) / (y_hi - y_lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="14">{args.title}</text>']
    decade = t_lo
    while decade <= t_hi:
        for m in range(1, 10):
            t = decade * m
            if t > t_hi:
                break
            stroke = "#ccc" if m == 1 else "#eee"
            out.append(f'<line x1="{x(t):.1f}" y1="{TOP}" x2="{x(t):.1f}" y2="{TOP + plot_h}" stroke="{stroke}"/>')
            if m in (1, 2, 5):
                out.append(f'<text x="{x(t):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{t:g}</text>')
        decade *= 10
    steps = round((y_hi - y_lo) / 0.1)
    for i in range(steps + 1):
        loss = y_lo + i * 0.1
        out.append(f'<line x1="{LEFT}" y1="{y(loss):.1f}" x2="{LEFT + plot_w}" y2="{y(loss):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(loss) + 4:.1f}" text-anchor="end">{loss:.1f}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">wall time, seconds (log scale)</text>')
    out.append(f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {TOP + plot_h / 2})">validation loss</text>')
    if args.target:
        out.append(f'<line x1="{LEFT}" y1="{y(args.target):.1f}" x2="{LEFT + plot_w}" y2="{y(args.target):.1f}" '
                   f'stroke="#555" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{LEFT + plot_w - 4}" y="{y(args.target) - 5:.1f}" text-anchor="end">{args.target}</text>')
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{x(t):.1f},{y(l):.1f}" for t, l in s["points"])
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        if s["final"]:
            t_end = s["points"][-1][0]
            out.append(f'<circle cx="{x(t_end):.1f}" cy="{y(s["final"]):.1f}" r="4" fill="{colour}"/>')
        legend_y = TOP + 10 + 36 * i
        out.append(f'<line x1="{LEFT + plot_w + 12}" y1="{legend_y}" x2="{LEFT + plot_w + 32}" y2="{legend_y}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{LEFT + plot_w + 38}" y="{legend_y + 4}">{s["label"]}</text>')
        if s["final"]:
            out.append(f'<text x="{LEFT + plot_w + 38}" y="{legend_y + 19}" fill="#555">full split {s["final"]:.3f} '
                       f'({s["points"][-1][0]:.0f} s)</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    out.append("</svg>")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
