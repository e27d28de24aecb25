#!/usr/bin/env bash
# train_lm's command line, end to end: --help of each subcommand, a tiny run,
# eval, sample, Ctrl-C then --resume, and one-line errors with a non-zero exit.
# Usage: cli_test.sh path/to/train_lm
set -uo pipefail
bin=${1:?usage: cli_test.sh path/to/train_lm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_error "what" "message part" command...: non-zero exit, one stderr line containing the part.
expect_error() {
  local what=$1 part=$2
  shift 2
  "$@" >"$work/out" 2>"$work/err" && { fail "$what: exit status 0"; return; }
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "$what: stderr is not one line: $(cat "$work/err")"
  grep -qF -- "$part" "$work/err" || fail "$what: stderr lacks '$part': $(cat "$work/err")"
}

# wait_for FILE TEXT: until FILE contains TEXT (a started run has installed its signal
# handlers once it prints its header), at most 60 s.
wait_for() {
  for _ in $(seq 600); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "waited 60 s for '$2' in $1"
}

# catches_sigint PID: whether the process has a handler for SIGINT (bit 1 of SigCgt).
catches_sigint() {
  local mask
  mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$mask" ] && (( 0x$mask & 2 ))
}

for sub in train eval sample grad graph presets; do
  "$bin" "$sub" --help >"$work/help" || fail "$sub --help exits non-zero"
done
# (grep reads the help from a file: grep -q on a pipe may close it early, and pipefail
# then counts the writer's SIGPIPE as a failure.)
"$bin" train --help >"$work/train_help"
"$bin" sample --help >"$work/sample_help"
grep -q -- "--eval-every" "$work/train_help" || fail "train --help lacks --eval-every"
grep -q -- "--top-k" "$work/sample_help" || fail "sample --help lacks --top-k"
grep -q -- "--steps INT:1 to 1000000000" "$work/train_help" || fail "train --help does not state the --steps maximum"
grep -q -- "--threads INT:1 to 256" "$work/train_help" || fail "train --help does not state the --threads maximum"
grep -q -- "--tokens UINT:1 to 1000000" "$work/sample_help" || fail "sample --help does not state the --tokens maximum"

# The preset table, as people and programs (scripts/reference_torch.py) read it: the contract's
# four presets with their sizes, batch, steps and recipe.
"$bin" presets | grep -q "tiny: 2 layers, 4 heads, d_model 32, block 32, batch 4, 200 steps" \
  || fail "presets does not list tiny as docs/contracts.md states it"
"$bin" presets --json >"$work/presets.json" || fail "presets --json exits non-zero"
for key in '"tiny"' '"small"' '"medium"' '"long"' '"clip_norm": 1.0' '"warmup_steps": 100' '"min_lr_fraction": 0.1' \
  '"beta2": 0.99' '"weight_decay": 0.1'; do
  grep -qF -- "$key" "$work/presets.json" || fail "presets --json lacks $key"
done

for i in $(seq 200); do echo "the cat sat on the mat and the dog ran to the big red sun."; done >"$work/text.txt"

# The README's preset table is train_lm's, line for line (every preset, the library's and
# the project's own), and the speedrun presets train.
readme="$(dirname "$0")/../../../README.md"
"$bin" presets | grep "^  [a-z0-9-]*: " >"$work/presets.txt" || fail "presets lists nothing"
[ "$(wc -l <"$work/presets.txt")" -ge 6 ] || fail "presets lists fewer than six presets: $(cat "$work/presets.txt")"
while IFS= read -r line; do
  grep -qxF -- "$line" "$readme" || fail "the README's preset table does not state, word for word: $line"
done <"$work/presets.txt"
grep -qF -- '"lr": 0.006' "$work/presets.json" || fail "presets --json lacks speedrun's lr"
for preset in speedrun speedrun-10m; do
  "$bin" train --data "$work/text.txt" --preset $preset --steps 3 --out "$work/$preset" --no-sample >/dev/null 2>&1 \
    || fail "train --preset $preset does not run"
  [ -f "$work/$preset/model.safetensors" ] || fail "train --preset $preset wrote no model"
done

"$bin" train --data "$work/text.txt" --preset tiny --steps 30 --eval-every 10 --print-every 10 --out "$work/run" \
  >"$work/out" 2>"$work/err" || fail "train exits non-zero: $(cat "$work/err")"
grep -q "step 10/30 | loss" "$work/err" || fail "no plain progress line every 10 steps"
grep -q "step 30: val loss .*, perplexity" "$work/err" || fail "no val loss line"
grep -q -- "--- sample ---" "$work/out" || fail "no sample at the end"
for f in model.safetensors state.safetensors log.csv loss.svg; do [ -s "$work/run/$f" ] || fail "no $f"; done
[ "$(grep -c '^train,' "$work/run/log.csv")" -eq 30 ] || fail "log.csv lacks 30 train rows"

"$bin" eval --checkpoint "$work/run/model.safetensors" --data "$work/text.txt" | grep -q "^loss .* perplexity" \
  || fail "eval prints no loss"
[ "$("$bin" sample --checkpoint "$work/run/model.safetensors" --prompt "the " --tokens 20 --seed 1 | wc -c)" -eq 25 ] \
  || fail "sample does not print prompt + 20 characters + newline"
# Past the window (tiny: block_size 32) the KV-cached sampler refills it and goes on; one seed, one text.
sample_long() { "$bin" sample --checkpoint "$work/run/model.safetensors" --prompt "the " --tokens 100 --seed 2 --top-k 5; }
[ "$(sample_long | wc -c)" -eq 105 ] || fail "sample past block_size does not print prompt + 100 characters + newline"
[ "$(sample_long)" = "$(sample_long)" ] || fail "sample past block_size gives two texts for one seed"

# A log.csv row with a non-finite loss (a hand-edited or foreign log) is dropped on --resume,
# and the loss curve is still drawn.
cp -r "$work/run" "$work/run_inf"
echo "val,5,inf,inf,0.001,0.0,0.000" >>"$work/run_inf/log.csv"
echo "train,6,nan,nan,0.001,0.0,0.000" >>"$work/run_inf/log.csv"
"$bin" train --data "$work/text.txt" --preset tiny --steps 32 --eval-every 10 --print-every 10 --no-sample \
  --out "$work/run_inf" --resume >/dev/null 2>"$work/err" || fail "--resume with inf in log.csv: $(cat "$work/err")"
grep -qE "inf|nan" "$work/run_inf/log.csv" && fail "--resume kept a non-finite row of log.csv"
grep -q "<polyline" "$work/run_inf/loss.svg" || fail "--resume with inf in log.csv drew no loss curve"

# Ctrl-C: the run stops after the current step with a checkpoint and exit 130; --resume continues it.
"$bin" train --data "$work/text.txt" --preset tiny --steps 1000000 --no-sample --out "$work/long" 2>"$work/err" &
pid=$!
wait_for "$work/err" "step 0 of"
kill -INT "$pid"
wait "$pid"
status=$?
[ "$status" -eq 130 ] || fail "SIGINT: exit status $status, expected 130"
grep -q "continue with the same options and --resume" "$work/err" || fail "SIGINT: no resume hint"
"$bin" train --data "$work/text.txt" --preset tiny --steps 1000000 --stop-after 999999 --no-sample --out "$work/long" \
  --resume >/dev/null 2>"$work/err" &
pid=$!
wait_for "$work/err" "resuming"
kill -TERM "$pid"
wait "$pid"
grep -q "resuming" "$work/err" || fail "--resume after SIGINT did not resume: $(cat "$work/err")"

# The first Ctrl-C asks the run to stop after its step and save; it also puts SIGINT back
# to its default (SA_RESETHAND), so a second Ctrl-C kills a run still finishing (here:
# slow evals after every step). Checked on the handler itself, so no timing is involved.
"$bin" train --data "$work/text.txt" --preset tiny --dim 128 --block 256 --batch 8 --threads 1 --steps 1000 \
  --eval-every 1 --no-sample --out "$work/slow" >/dev/null 2>"$work/err" &
pid=$!
wait_for "$work/err" "step 0 of"
catches_sigint "$pid" || fail "train does not catch SIGINT"
kill -INT "$pid"
reset=0
for _ in $(seq 1000); do
  catches_sigint "$pid" || { reset=1; break; }
  sleep 0.01
done
[ "$reset" -eq 1 ] || fail "SIGINT is still caught after the first Ctrl-C: a second one could not kill the run"
wait "$pid"

expect_error "fresh run into a checkpoint" "already holds a checkpoint" \
  "$bin" train --data "$work/text.txt" --preset tiny --out "$work/run"
expect_error "resume with other options" "--batch 5 differs" \
  "$bin" train --data "$work/text.txt" --preset tiny --batch 5 --out "$work/run" --resume
expect_error "unknown preset" "unknown preset 'huge'" "$bin" train --data "$work/text.txt" --preset huge --out "$work/x"
expect_error "zero steps" "--steps: must be a whole number from 1 to" "$bin" train --data "$work/text.txt" --steps 0 --out "$work/x"
expect_error "negative batch" "--batch: must be a whole number from 1 to" "$bin" train --data "$work/text.txt" --batch -4 --out "$work/x"
# Out-of-range numbers: refused on the text, not wrapped (-1 -> 2^64-1) or saturated (-> INT64_MAX).
expect_error "negative seed" "--seed: must be a whole number from 0 to 2^64-1, got '-1'" \
  "$bin" train --data "$work/text.txt" --seed -1 --out "$work/x"
expect_error "huge steps" "--steps: must be a whole number from 1 to 1000000000, got '99999999999999999999'" \
  "$bin" train --data "$work/text.txt" --steps 99999999999999999999 --out "$work/x"
expect_error "too many threads" "--threads: must be a whole number from 1 to 256, got '100000'" \
  "$bin" train --data "$work/text.txt" --threads 100000 --out "$work/x"
expect_error "huge sample" "--tokens: must be a whole number from 1 to 1000000" \
  "$bin" sample --checkpoint "$work/run/model.safetensors" --tokens 99999999999999999999999
expect_error "negative top-k" "--top-k: must be a whole number from 0 to" \
  "$bin" sample --checkpoint "$work/run/model.safetensors" --top-k -1
expect_error "sample seed overflow" "--seed: must be a whole number" \
  "$bin" sample --checkpoint "$work/run/model.safetensors" --seed 18446744073709551616
expect_error "eval --block 0" "--block: must be a whole number" \
  "$bin" eval --checkpoint "$work/run/model.safetensors" --data "$work/text.txt" --block 0
# grad --out: checked before the files are read and the pass runs (the batch file here does not even exist).
expect_error "grad --out a directory" "--out: $work/run is a directory" \
  "$bin" grad --checkpoint "$work/run/model.safetensors" --batch "$work/missing.safetensors" --out "$work/run"
expect_error "grad --out without a file name" "does not name a file" \
  "$bin" grad --checkpoint "$work/run/model.safetensors" --batch "$work/missing.safetensors" --out "$work/run/"
expect_error "missing data" "no such file" "$bin" train --data "$work/missing.txt" --out "$work/x"
expect_error "unwritable --out" "--out" "$bin" train --data "$work/text.txt" --preset tiny --out "$work/text.txt/sub"
expect_error "--block above the checkpoint's" "above the checkpoint's block size 32" \
  "$bin" eval --checkpoint "$work/run/model.safetensors" --data "$work/text.txt" --block 64
expect_error "unknown prompt character" "character 'Z'" \
  "$bin" sample --checkpoint "$work/run/model.safetensors" --prompt "Zebra"
head -c 100 "$work/run/model.safetensors" >"$work/cut.safetensors"
expect_error "corrupt checkpoint" "cut.safetensors" "$bin" sample --checkpoint "$work/cut.safetensors"
expect_error "unknown option" "--frobnicate" "$bin" train --frobnicate
[ -e "$work/x" ] && fail "a failed run left --out behind"

# ---- reliability: corrupt state, bad data files, memory, concurrent runs, temporary files

# A state file whose second moments v.wte are all -1, NaN or Inf is refused on
# --resume (it used to train on, save NaN weights over the good model and exit 0), and
# the checkpoint files stay byte for byte as they were.
# set_tensor FILE NAME BYTES: every 4-byte element of tensor NAME becomes BYTES (printf escapes).
set_tensor() {
  local file=$1 name=$2 value=$3 header_length header offsets begin end
  header_length=$(od -An -t u8 -N8 "$file" | tr -d ' ')
  header=$(head -c $((8 + header_length)) "$file" | tail -c "$header_length")
  offsets=$(grep -o "\"$name\":{[^}]*}" <<<"$header" | grep -o '"data_offsets":\[[0-9]*,[0-9]*\]' | grep -o '[0-9][0-9]*')
  begin=$(head -1 <<<"$offsets")
  end=$(tail -1 <<<"$offsets")
  for _ in $(seq $(((end - begin) / 4))); do printf "$value"; done >"$work/tensor.bin"
  dd if="$work/tensor.bin" of="$file" bs=1 seek=$((8 + header_length + begin)) conv=notrunc status=none
}
for value in '\x00\x00\x80\xbf' '\x00\x00\xc0\x7f' '\x00\x00\x80\x7f'; do  # -1, NaN, Inf
  rm -rf "$work/corrupt" && cp -r "$work/run" "$work/corrupt"
  set_tensor "$work/corrupt/state.safetensors" v.wte "$value"
  cp "$work/corrupt/model.safetensors" "$work/good_model" && cp "$work/corrupt/state.safetensors" "$work/bad_state"
  expect_error "--resume from a state whose v.wte is $value" "state 'v.wte' holds" \
    "$bin" train --data "$work/text.txt" --preset tiny --steps 32 --stop-after 31 --no-sample --out "$work/corrupt" --resume
  cmp -s "$work/corrupt/model.safetensors" "$work/good_model" || fail "a corrupt state ($value) changed model.safetensors"
  cmp -s "$work/corrupt/state.safetensors" "$work/bad_state" || fail "a corrupt state ($value) was overwritten"
  "$bin" eval --checkpoint "$work/corrupt/model.safetensors" --data "$work/text.txt" >/dev/null 2>&1 \
    || fail "the model kept after a corrupt state ($value) does not evaluate"
done
rm -rf "$work/corrupt" && cp -r "$work/run" "$work/corrupt"
set_tensor "$work/corrupt/state.safetensors" m.wpe '\x00\x00\x80\xff'  # -Inf in a first moment
expect_error "--resume from a state whose m.wpe is -Inf" "state 'm.wpe' holds -inf" \
  "$bin" train --data "$work/text.txt" --preset tiny --steps 32 --stop-after 31 --no-sample --out "$work/corrupt" --resume
set_tensor "$work/corrupt/state.safetensors" m.wpe '\x00\x00\x00\x00'
set_tensor "$work/corrupt/state.safetensors" param.ln_f.bias '\x00\x00\xc0\x7f'  # a NaN weight in the state
expect_error "--resume from a state with a NaN weight" "tensor 'param.ln_f.bias' holds a non-finite value" \
  "$bin" train --data "$work/text.txt" --preset tiny --steps 32 --stop-after 31 --no-sample --out "$work/corrupt" --resume

# --data must be a regular file of at most 256 MiB (a FIFO blocked forever,
# /dev/zero ran until bad_alloc).
mkfifo "$work/fifo"
expect_error "--data a FIFO" "$work/fifo: not a regular file" \
  timeout -k 5 20 "$bin" train --data "$work/fifo" --preset tiny --out "$work/x"
expect_error "--data /dev/zero" "/dev/zero: not a regular file" \
  timeout -k 5 20 "$bin" train --data /dev/zero --preset tiny --out "$work/x"
truncate -s $((256 * 1024 * 1024 + 1)) "$work/huge.txt"
expect_error "--data over 256 MiB" "huge.txt: 268435457 bytes is over the limit of 256 MiB" \
  timeout -k 5 20 "$bin" train --data "$work/huge.txt" --preset tiny --out "$work/x"
expect_error "eval --data a FIFO" "not a regular file" \
  timeout -k 5 20 "$bin" eval --checkpoint "$work/run/model.safetensors" --data "$work/fifo"

# Sizes whose memory would not fit are refused with the value and the estimate
# (--layers 999999999 ended in a bare std::bad_alloc after two minutes).
expect_error "--layers 999999999" "n_layer 999999999" \
  timeout -k 5 20 "$bin" train --data "$work/text.txt" --preset tiny --layers 999999999 --out "$work/x"
expect_error "--layers 999999999 (the estimate)" "need an estimated" \
  timeout -k 5 20 "$bin" train --data "$work/text.txt" --preset tiny --layers 999999999 --out "$work/x"

# One run per --out at a time (two used to interleave log.csv and both exit 0).
"$bin" train --data "$work/text.txt" --preset tiny --steps 1000000 --no-sample --out "$work/locked" 2>"$work/err_first" &
pid=$!
wait_for "$work/err_first" "step 0 of"
expect_error "a second run on a directory in use" "--out $work/locked is in use by another train_lm run" \
  timeout -k 5 20 "$bin" train --data "$work/text.txt" --preset tiny --steps 1000000 --no-sample --out "$work/locked" --resume
expect_error "a fresh run on a directory in use" "is in use by another train_lm run" \
  timeout -k 5 20 "$bin" train --data "$work/text.txt" --preset tiny --no-sample --out "$work/locked"
kill -INT "$pid"
wait "$pid"

# Temporary files of killed runs are removed at the next start (those of a live
# process stay), and an atomic replace keeps a 0600 file 0600.
rm -rf "$work/tidy" && cp -r "$work/run" "$work/tidy"
head -c 1000 /dev/urandom >"$work/tidy/.state.safetensors.tmp-2147483646-0"  # no such process
head -c 1000 /dev/urandom >"$work/tidy/.model.safetensors.tmp-2147483646-3"
head -c 1000 /dev/urandom >"$work/tidy/.model.safetensors.tmp-$$-0"  # this shell: alive
chmod 600 "$work/tidy/model.safetensors" "$work/tidy/state.safetensors"
"$bin" train --data "$work/text.txt" --preset tiny --steps 31 --no-sample --out "$work/tidy" --resume >/dev/null 2>"$work/err" \
  || fail "resume in tidy: $(cat "$work/err")"
[ -e "$work/tidy/.state.safetensors.tmp-2147483646-0" ] && fail "a stale temporary state file was not removed"
[ -e "$work/tidy/.model.safetensors.tmp-2147483646-3" ] && fail "a stale temporary model file was not removed"
[ -e "$work/tidy/.model.safetensors.tmp-$$-0" ] || fail "the temporary file of a live process was removed"
for f in model.safetensors state.safetensors; do
  [ "$(stat -c %a "$work/tidy/$f")" = 600 ] || fail "$f: mode $(stat -c %a "$work/tidy/$f") after a save, was 600"
done

# --detect-anomaly: a diverging run (--lr 1e30: the first step's update overflows the
# next forward) ends with one line naming the op, its place on the tape and its module.
"$bin" train --help >"$work/train_help" && grep -q -- "--detect-anomaly" "$work/train_help" || fail "train --help lacks --detect-anomaly"
# (The run's header and first validation line come before it on stderr.)
"$bin" train --data "$work/text.txt" --preset tiny --steps 5 --lr 1e30 --detect-anomaly --no-sample \
  --out "$work/anomaly" >/dev/null 2>"$work/err" && fail "anomaly mode on a diverging run: exit status 0"
[ "$(grep -c "error" "$work/err")" -eq 1 ] || fail "anomaly mode: not one error line: $(cat "$work/err")"
tail -n 1 "$work/err" | grep -qE "^train_lm train: error: anomaly: [a-z_]+ \(tape position [0-9]+, (module [a-z_.0-9]+|outside any module)\) produced (NaN|Inf|-Inf) at \[" ||
  fail "the anomaly error is not the last line, or lacks op, position, module or index: $(cat "$work/err")"

# ---- files train_lm reads and writes, and what it prints from them

# log.csv is read on --resume as a regular file only: a FIFO there blocked forever while
# holding the lock, a link to /dev/zero was read without a bound.
for kind in fifo zero; do
  rm -rf "$work/logged" && cp -r "$work/run" "$work/logged" && rm "$work/logged/log.csv"
  if [ $kind = fifo ]; then mkfifo "$work/logged/log.csv"; part="log.csv: not a regular file (a FIFO)"
  else ln -s /dev/zero "$work/logged/log.csv"; part="log.csv: is a symbolic link, which is not followed here"; fi
  cp "$work/logged/state.safetensors" "$work/state_before"
  expect_error "--resume with log.csv a $kind" "$part" \
    timeout -k 5 20 "$bin" train --data "$work/text.txt" --preset tiny --steps 32 --no-sample --out "$work/logged" --resume
  cmp -s "$work/logged/state.safetensors" "$work/state_before" || fail "--resume with log.csv a $kind wrote the state"
done
# A file under /proc reports size 0 but has content: it is not called empty.
expect_error "--data a /proc file" "/proc/self/status: reports size 0 but has content" \
  "$bin" train --data /proc/self/status --preset tiny --out "$work/x"
grep -q "empty" "$work/err" && fail "a /proc file is called empty: $(cat "$work/err")"

# The text just long enough for tiny's block 32 (the minimum the error states) trains.
head -c 10 "$work/text.txt" >"$work/short.txt"
expect_error "text too short" "so the text at least" "$bin" train --data "$work/short.txt" --preset tiny --out "$work/x"
minimum=$(grep -o "so the text at least [0-9]*" "$work/err" | grep -o "[0-9]*$")
head -c "$minimum" "$work/text.txt" >"$work/minimum.txt"
"$bin" train --data "$work/minimum.txt" --preset tiny --steps 1 --no-sample --out "$work/minimum" >/dev/null 2>"$work/err" \
  || fail "a text of the stated minimum ($minimum characters) does not train: $(cat "$work/err")"

# forged_model VALUE: a copy of the run's model whose wte and ln_f.weight are all VALUE
# (printf escapes of a little-endian float).
forged_model() {
  cp "$work/run/model.safetensors" "$work/forged.safetensors"
  set_tensor "$work/forged.safetensors" wte "$1"
  set_tensor "$work/forged.safetensors" ln_f.weight "$1"
}
# A model whose finite weights are 1e30 (as one step at --lr 1e30 leaves them) is refused by
# eval, sample and grad alike, and grad writes nothing (it wrote a NaN loss and exited 0).
forged_model '\xca\xf2\x49\x71'
# A batch of one row of 4 zero ids (I64), inputs and targets.
perl -e '
  my $h = q({"inputs":{"dtype":"I64","shape":[1,4],"data_offsets":[0,32]},"targets":{"dtype":"I64","shape":[1,4],"data_offsets":[32,64]}});
  $h .= " " x ((8 - length($h) % 8) % 8); print pack("Q<", length($h)), $h, "\0" x 64;' >"$work/batch.safetensors"
"$bin" grad --checkpoint "$work/run/model.safetensors" --batch "$work/batch.safetensors" --out "$work/g.safetensors" \
  >/dev/null 2>"$work/err" || fail "grad on the run's model: $(cat "$work/err")"
for sub in eval sample grad; do
  case $sub in
    eval) args=(--data "$work/text.txt") ;;
    sample) args=(--tokens 5) ;;
    grad) args=(--batch "$work/batch.safetensors" --out "$work/g_diverged.safetensors") ;;
  esac
  expect_error "$sub on a diverged model" "forged.safetensors: tensor 'wte' holds 1e+30 at flat index 0" \
    "$bin" $sub --checkpoint "$work/forged.safetensors" "${args[@]}"
  grep -q "the model is diverged or corrupt" "$work/err" || fail "$sub on a diverged model: $(cat "$work/err")"
done
[ -e "$work/g_diverged.safetensors" ] && fail "grad on a diverged model wrote its output"
# And a save refuses what they refuse: one step at --lr 1e30 saves nothing.
"$bin" train --data "$work/text.txt" --preset tiny --steps 2 --stop-after 1 --lr 1e30 --no-sample --out "$work/diverged" \
  >/dev/null 2>"$work/err" && fail "a save after one step at --lr 1e30: exit status 0"
tail -n 1 "$work/err" | grep -q "error: .*diverged: checkpoint not saved, the previous one is kept: tensor '.*' holds .*e+2[0-9]" \
  || fail "a save after one step at --lr 1e30: $(cat "$work/err")"
[ -e "$work/diverged/model.safetensors" ] && fail "a diverged model was saved"

# An output that is an input (same file through any path or link) is refused; the input stays.
cp "$work/run/model.safetensors" "$work/model_copy.safetensors"
ln -sfn "$work" "$work/link_to_work"
ln -f "$work/model_copy.safetensors" "$work/hard_link.safetensors"
for out in "$work/model_copy.safetensors" "$work/link_to_work/model_copy.safetensors" "$work/hard_link.safetensors"; do
  expect_error "grad --out $out" "is the same file as --checkpoint" \
    "$bin" grad --checkpoint "$work/model_copy.safetensors" --batch "$work/batch.safetensors" --out "$out"
  cmp -s "$work/model_copy.safetensors" "$work/run/model.safetensors" || fail "grad --out $out changed the checkpoint"
done
expect_error "grad --out the batch" "is the same file as --batch" \
  "$bin" grad --checkpoint "$work/run/model.safetensors" --batch "$work/batch.safetensors" --out "$work/batch.safetensors"
mkdir -p "$work/logdata" && cp "$work/text.txt" "$work/logdata/log.csv"
expect_error "train --data --out's log.csv" "--out's log.csv $work/logdata/log.csv is the same file as --data" \
  "$bin" train --data "$work/logdata/log.csv" --preset tiny --steps 2 --no-sample --out "$work/logdata"
cmp -s "$work/logdata/log.csv" "$work/text.txt" || fail "train --data --out's log.csv changed the text"

# Text from a state file is escaped before it reaches the terminal: a forged data_source with
# a newline and an ANSI colour code stays on the one error line, without the escape byte.
rm -rf "$work/forged_run" && cp -r "$work/run" "$work/forged_run"
perl -e '
  open(my $f, "<:raw", $ARGV[0]) or die; local $/; my $bytes = <$f>; close $f;
  my $n = unpack("Q<", substr($bytes, 0, 8)); my $header = substr($bytes, 8, $n); my $data = substr($bytes, 8 + $n);
  $header =~ s/"data_source":"[^"]*"/"data_source":"x\\n\\u001b[32mdone, all good\\u001b[0m"/ or die "no data_source";
  $header =~ s/ +$//; $header .= " " x ((8 - length($header) % 8) % 8);
  open($f, ">:raw", $ARGV[0]) or die; print $f pack("Q<", length($header)), $header, $data; close $f;
' "$work/forged_run/state.safetensors"
expect_error "--resume with a forged data_source" 'x\x0a\x1b[32mdone, all good' \
  "$bin" train --data "$work/minimum.txt" --preset tiny --out "$work/forged_run" --resume
grep -q $'\x1b' "$work/err" && fail "an escape byte from a state file reached the terminal"

# After a crash between the two renames of a save, model.safetensors is one save ahead of
# state.safetensors; --resume says so, resumes from the state and ends with the same model.
"$bin" train --data "$work/text.txt" --preset tiny --steps 30 --eval-every 10 --print-every 10 --stop-after 20 \
  --no-sample --out "$work/pair" >/dev/null 2>&1 || fail "the run stopped at step 20 failed"
cp "$work/run/model.safetensors" "$work/pair/model.safetensors"  # the step-30 model
"$bin" train --data "$work/text.txt" --preset tiny --steps 30 --eval-every 10 --print-every 10 --no-sample \
  --out "$work/pair" --resume >/dev/null 2>"$work/err" || fail "--resume of a pair one save apart: $(cat "$work/err")"
grep -qF "model.safetensors is at step 30, state.safetensors at step 20 (a save was interrupted): resuming from the state's step 20" \
  "$work/err" || fail "--resume does not say that the model and the state differ: $(cat "$work/err")"
cmp -s "$work/pair/model.safetensors" "$work/run/model.safetensors" || fail "the pair resumed does not end with the same model"

# A fresh run on a full disk leaves no --out directory behind (needs root to mount a tmpfs).
mnt="$work/full_disk"
mkdir -p "$mnt"
if mount -t tmpfs -o size=64k tmpfs "$mnt" 2>/dev/null; then
  dd if=/dev/zero of="$mnt/filler" bs=4k status=none 2>/dev/null
  expect_error "a fresh run on a full disk" "out/a/b" \
    "$bin" train --data "$work/text.txt" --preset tiny --steps 2 --no-sample --out "$mnt/out/a/b"
  [ -e "$mnt/out" ] && fail "a fresh run on a full disk left its --out directory: $(ls -R "$mnt/out")"
  umount "$mnt"
else
  echo "cli_test: note: the full-disk case did not run (mounting a tmpfs needs root)" >&2
fi

# --optimizer muon: a run stopped after 12 steps and resumed writes the model of an
# uninterrupted one, bit for bit (its state holds the momentum buffers); --checkpoint-activations
# changes no result; a Muon state refuses to resume as AdamW.
muon=(train --data "$work/text.txt" --preset tiny --steps 24 --optimizer muon --no-sample)
"$bin" "${muon[@]}" --out "$work/muon_straight" >/dev/null 2>&1 || fail "--optimizer muon run failed"
"$bin" "${muon[@]}" --out "$work/muon_resumed" --stop-after 12 >/dev/null 2>&1 || fail "--optimizer muon --stop-after failed"
"$bin" "${muon[@]}" --out "$work/muon_resumed" --resume >/dev/null 2>&1 || fail "--optimizer muon --resume failed"
cmp -s "$work/muon_straight/model.safetensors" "$work/muon_resumed/model.safetensors" ||
  fail "--optimizer muon: stop and --resume ends with another model than an uninterrupted run"
grep -q "momentum.h.0.attn.w_q" "$work/muon_straight/state.safetensors" || fail "a Muon state lacks its momentum buffers"
grep -q "momentum\." "$work/run/state.safetensors" && fail "an AdamW state holds momentum buffers"
"$bin" "${muon[@]}" --out "$work/muon_checkpointed" --checkpoint-activations >/dev/null 2>&1 ||
  fail "--checkpoint-activations run failed"
cmp -s "$work/muon_straight/model.safetensors" "$work/muon_checkpointed/model.safetensors" ||
  fail "--checkpoint-activations changed the trained model"
expect_error "resume a Muon run as AdamW" "--optimizer adamw differs from the checkpoint's muon" \
  "$bin" train --data "$work/text.txt" --preset tiny --steps 30 --no-sample --out "$work/muon_resumed" --resume

# graph: one training step's tape as a Graphviz digraph, one node line per op.
"$bin" graph --data "$work/text.txt" --preset tiny --layers 1 --out "$work/step.dot" 2>"$work/err" || fail "graph failed"
nodes=$(grep -oE "^train_lm graph: [0-9]+ nodes" "$work/err" | grep -oE "[0-9]+")
[ "$(grep -cE '^ *n[0-9]+ \[label=' "$work/step.dot")" = "${nodes:-none}" ] || fail "graph: node lines differ from the count printed"
grep -q '"h.0.mlp.w_1' "$work/step.dot" || fail "graph: no parameter named h.0.mlp.w_1"
if command -v dot >/dev/null; then
  dot -Tsvg "$work/step.dot" -o "$work/step.svg" && grep -q "<svg" "$work/step.svg" || fail "graph: dot cannot render it"
fi

if [ "$failures" -ne 0 ]; then
  echo "cli_test: $failures failure(s)" >&2
  exit 1
fi
echo "cli_test: all passed"
