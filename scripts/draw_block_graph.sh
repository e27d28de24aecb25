#!/usr/bin/env bash
# Regenerates docs/transformer_block_graph.svg: the tape of one training step of a
# one-block GPT (preset tiny, one layer, batch 2, block 8) drawn by Graphviz from
# `train_lm graph`. Needs a built train_lm (default build/apps/train_lm) and
# Graphviz's dot (scripts/setup.sh installs it). Usage: scripts/draw_block_graph.sh [TRAIN_LM]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
train_lm="${1:-$root/build/apps/train_lm}"
command -v dot >/dev/null || { echo "draw_block_graph.sh: Graphviz's dot is not installed (scripts/setup.sh)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A small text of its own, so the figure does not depend on any data set.
printf 'First Citizen:\nBefore we proceed any further, hear me speak.\n%.0s' $(seq 1 40) > "$work/text.txt"
"$train_lm" graph --data "$work/text.txt" --preset tiny --layers 1 --batch 2 --block 8 --out "$work/step.dot"
dot -Tsvg "$work/step.dot" -o "$root/docs/transformer_block_graph.svg"
echo "wrote docs/transformer_block_graph.svg"
