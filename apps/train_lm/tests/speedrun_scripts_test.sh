#!/usr/bin/env bash
# scripts/speedrun_sweep.py and scripts/plot_loss_time.py end to end on a made-up text:
# two configurations, held-out and full split, one CSV row per run with a finite loss
# that train_lm eval also gives, and an SVG with one line per series.
#   speedrun_scripts_test.sh TRAIN_LM
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "speedrun_scripts_test: $*" >&2; exit 1; }

for i in $(seq 300); do echo "the cat sat on the mat and the dog ran to the big red sun $i."; done >"$work/text.txt"
cat >"$work/configs.txt" <<'CONFIGS'
# two tiny runs
tiny-a --preset tiny --steps 4 --eval-every 2
tiny-b --preset tiny --steps 6 --lr 2e-3 --batch 2
CONFIGS
sweep() { /usr/bin/python3 "$root/scripts/speedrun_sweep.py" --train-lm "$bin" --configs "$work/configs.txt" \
  --data "$work/text.txt" --out "$work/runs.csv" --workdir "$work/runs" --budget-minutes 5 "$@"; }
sweep --seeds 1,2 >/dev/null || fail "the held-out sweep failed"
sweep --split full --only tiny-b >/dev/null || fail "the full-split sweep failed"
sweep --only nothing >/dev/null 2>&1 && fail "--only with an unknown name was accepted"

/usr/bin/python3 - "$work/runs.csv" <<'PY' || fail "the CSV is not as expected: $(cat "$work/runs.csv")"
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [(r["config"], r["split"], r["seed"]) for r in rows] == [
    ("tiny-a", "heldout", "1"), ("tiny-a", "heldout", "2"), ("tiny-b", "heldout", "1"), ("tiny-b", "heldout", "2"),
    ("tiny-b", "full", "1337")], rows
for r in rows:
    assert 0 < float(r["loss"]) < 10 and math.isfinite(float(r["wall_s"])), r
    assert 0 < float(r["cpu_s"]) < 1000, r
assert [int(r["steps"]) for r in rows] == [4, 4, 6, 6, 6]
assert [int(r["tokens"]) for r in rows] == [4 * 4 * 32, 4 * 4 * 32, 6 * 2 * 32, 6 * 2 * 32, 6 * 2 * 32]
assert rows[0]["loss"] != rows[1]["loss"], "two seeds gave one loss"
PY

# A wall budget replaces each configuration's --steps by floor((budget - fixed) x steps/s):
# (2 - 0.5) x 10 = 15 and (2 - 0.5) x 4 = 6, given; or estimated from a one-thread cost run.
sweep --wall-budget 2 --fixed-seconds 0.5 --steps-per-s tiny-a=10,tiny-b=4 --out "$work/budget.csv" \
  --workdir "$work/budget" >"$work/budget.out" || fail "the wall-budget sweep failed"
/usr/bin/python3 - "$work/budget.csv" <<'PY' || fail "the wall-budget runs are not as expected: $(cat "$work/budget.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [(r["config"], int(r["steps"])) for r in rows] == [("tiny-a", 15), ("tiny-b", 6)], rows
assert "--steps 15" in rows[0]["options"] and "--steps 6" in rows[1]["options"], rows
PY
sweep --wall-budget 2 --steps-per-s 10 --plan-only --out "$work/plan.csv" --workdir "$work/plan" >"$work/plan.out" \
  || fail "--plan-only failed"
grep -q "^tiny-b: 17 steps fit 2 s at 10.0 steps/s" "$work/plan.out" || fail "--plan-only printed: $(cat "$work/plan.out")"
[ ! -e "$work/plan.csv" ] || fail "--plan-only ran the configurations"
sweep --wall-budget 100 --cost-steps 3 --plan-only --out "$work/plan.csv" --workdir "$work/cost" >"$work/cost.out" \
  || fail "the cost estimate failed"
grep -Eq "^tiny-a: [0-9.]+ ms of CPU per step on 1 thread" "$work/cost.out" || fail "no cost line: $(cat "$work/cost.out")"
grep -Eq "^tiny-a: [1-9][0-9]* steps fit 100 s" "$work/cost.out" || fail "no steps from the cost: $(cat "$work/cost.out")"
printf 'config,loss\n' >"$work/old.csv"
sweep --only tiny-a --out "$work/old.csv" >/dev/null 2>&1 && fail "appending to a CSV of other columns was accepted"

# The full-split row's loss is train_lm eval's on the last 10% of the characters.
n=$(wc -c <"$work/text.txt")
tail -c +$((n * 9 / 10 + 1)) "$work/text.txt" >"$work/val.txt"
expected=$("$bin" eval --checkpoint "$work/runs/tiny-b.seed1337/model.safetensors" --data "$work/val.txt" | awk '{printf "%.4f", $2}')
grep -q "^tiny-b,full,1337,.*,$expected\$" "$work/runs.csv" || fail "the full-split loss is not train_lm eval's $expected"

/usr/bin/python3 "$root/scripts/plot_loss_time.py" --out "$work/plot.svg" "a=$work/runs/tiny-a.seed1/log.csv@2.5" \
  "b=$work/runs/tiny-b.seed1/log.csv" || fail "plot_loss_time.py failed"
[ "$(grep -c '<polyline' "$work/plot.svg")" = 2 ] || fail "the plot does not have one line per series"
/usr/bin/python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" "$work/plot.svg" || fail "the plot is not valid XML"
echo "speedrun_scripts_test: ok"
