#!/usr/bin/python3
"""The speedrun study: train_lm recipes compared by loss against wall time.

Each configuration is a name and train_lm train options (a preset and overrides).
Every run trains with `train_lm train --no-sample`, times the whole command, and then
scores the model with `train_lm eval`:

  --split heldout (the default, for choosing a recipe)
      Trains on the first 90% of the *training* split (the first 81% of the file) and
      scores on the rest of the training split. train_lm splits any text 90/10 by
      characters, so the run is simply given the training split as its --data. The
      validation split (the last 10% of the file) is never seen.
  --split full (for reporting a chosen recipe)
      Trains on the file as train_lm does (first 90%) and scores on the whole
      validation split, as the README's speedrun figures are measured.

It writes one CSV row per run (appended, so a sweep can be continued):
  config, split, seed, options, steps, tokens, concurrent, threads, wall_s, cpu_s, tokens_per_s, loss
wall_s is the whole `train` command and cpu_s its CPU time (user + system);
tokens_per_s = tokens / wall_s. Wall times are speeds only for runs made one at a time
(`--concurrent 1`) on an otherwise quiet machine: with `--concurrent 2` two runs share the
cores (each with --threads 1), which leaves every loss unchanged (train_lm's results do not
depend on the thread count) and halves the time a sweep takes, but not the time of one run.
On a loaded machine cpu_s of a one-thread run is the better measure of cost: load moves it
far less than the wall time.

Runs sized for a wall budget (--wall-budget SECONDS): every configuration's --steps is
replaced by the steps that fill the budget on 2 quiet cores,

  steps = floor((budget - fixed seconds) x steps per second),

where the steps per second are given (--steps-per-s, as measured quietly, e.g. by
`train_lm train` itself: 1000 / the ms/step of its `done:` line) or estimated from a
one-thread run of --cost-steps steps per configuration, less a run of 1 step. Its CPU
seconds per step are converted in one of two ways:
  --reference NAME=STEPS_PER_S   configuration NAME runs NAME's quiet 2-core steps/s (e.g.
      the `small` preset's, from bench_train on a quiet machine); every configuration's
      rate is that times NAME's CPU time per step over its own, both measured now. Load
      slows both alike, so this holds on a busy machine; it assumes every configuration
      gains from the second thread as NAME does.
  otherwise                      1 / (CPU seconds per step) x --thread-scaling, the quiet
      2-thread speed-up: right on a quiet machine only (a busy one inflates CPU time too).
--fixed-seconds is what the command costs besides its steps (start-up, reading the text,
the two evaluations, the final save). --plan-only prints the steps and runs nothing.

The sweep stops starting runs once --budget-minutes have passed.

  scripts/speedrun_sweep.py --configs scripts/speedrun_10m_candidates.txt \\
      --data tinyshakespeare.txt --out docs/speedrun_sweep.csv --seeds 1337

A configuration file has one configuration per line: a name, then train_lm options.
Blank lines and lines starting with # are skipped.
"""
import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

FIELDS = ["config", "split", "seed", "options", "steps", "tokens", "concurrent", "threads", "wall_s", "cpu_s",
          "tokens_per_s", "loss"]


def read_configs(path):
    configs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, *options = shlex.split(line)
            if not options:
                sys.exit(f"{path}:{number}: configuration '{name}' has no train_lm options")
            configs.append((name, options))
    return configs


def split_at_90_percent(text):
    """train_lm's split: the first floor(0.9 n) characters train, the rest validate."""
    n_train = len(text) * 9 // 10
    return text[:n_train], text[n_train:]


def write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def run(command, log):
    """Runs command, appending its output to log; returns its stdout and its CPU seconds
    (user + system, of it and its children). RuntimeError on failure."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stdout, tempfile.TemporaryFile("w+",
                                                                                        encoding="utf-8") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + shlex.join(command) + "\n" + out + err)
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({process.returncode}); see {log}")
    return out, usage.ru_utime + usage.ru_stime


def last_value(log_csv, kind, column):
    value = None
    with open(log_csv, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["kind"] == kind:
                value = row[column]
    return value


def one_run(args, name, options, seed, files, workdir):
    out = os.path.join(workdir, f"{name}.seed{seed}")
    log = out + ".log"
    train = [args.train_lm, "train", "--data", files["train"], *options, "--seed", str(seed),
             "--threads", str(args.threads), "--no-sample", "--out", out]
    start = time.monotonic()
    _, cpu = run(train, log)
    wall = time.monotonic() - start
    evaluation, _ = run([args.train_lm, "eval", "--checkpoint", os.path.join(out, "model.safetensors"),
                         "--data", files["score"]], log)
    loss = float(evaluation.split("loss")[1].split()[0].strip(":,="))
    steps = int(last_value(os.path.join(out, "log.csv"), "train", "step"))
    tokens = steps * batch_times_block(args, options)
    return {"config": name, "split": args.split, "seed": seed, "options": shlex.join(options), "steps": steps,
            "tokens": tokens, "concurrent": args.concurrent, "threads": args.threads, "wall_s": f"{wall:.1f}",
            "cpu_s": f"{cpu:.2f}", "tokens_per_s": f"{tokens / wall:.0f}", "loss": f"{loss:.4f}"}


def with_option(options, flag, value):
    """options with `flag value` (replacing the value of a `flag` already there)."""
    options = list(options)
    if flag in options:
        options[options.index(flag) + 1] = str(value)
    else:
        options += [flag, str(value)]
    return options


def steps_per_second_given(text, names):
    """--steps-per-s: one rate for every configuration, or name=rate,... for each."""
    if "=" not in text:
        return {name: float(text) for name in names}
    rates = {name: float(rate) for name, rate in (item.split("=") for item in text.split(","))}
    missing = [name for name in names if name not in rates]
    if missing:
        sys.exit(f"--steps-per-s names no rate for {', '.join(missing)}")
    return rates


def cpu_seconds_per_step(args, name, options, files, workdir):
    """One thread's CPU seconds per step of a configuration: a run of --cost-steps steps less a
    run of 1 step (so start-up, the first step's set-up, the evaluations and the save cancel)."""
    cpu = {}
    for steps in (1, args.cost_steps):
        out = os.path.join(workdir, f"{name}.cost{steps}")
        run_options = with_option(with_option(options, "--steps", steps), "--eval-every", steps)
        _, cpu[steps] = run([args.train_lm, "train", "--data", files["train"], *run_options, "--threads", "1",
                             "--no-sample", "--out", out], out + ".log")
    cpu_per_step = max(cpu[args.cost_steps] - cpu[1], 1e-9) / (args.cost_steps - 1)
    print(f"{name}: {1000 * cpu_per_step:.2f} ms of CPU per step on 1 thread", flush=True)
    return cpu_per_step


def estimated_steps_per_second(args, configs, files, workdir):
    """Each configuration's steps per second on 2 quiet cores (see the module docstring)."""
    cost = {name: cpu_seconds_per_step(args, name, options, files, workdir) for name, options in configs}
    if args.reference:
        reference, rate = args.reference.split("=")
        if reference not in cost:
            sys.exit(f"--reference: no configuration named {reference} among those run")
        rates = {name: float(rate) * cost[reference] / cost[name] for name in cost}
    else:
        rates = {name: args.thread_scaling / cost[name] for name in cost}
    for name, rate in rates.items():
        print(f"{name}: {rate:.1f} steps/s estimated on 2 quiet cores", flush=True)
    return rates


def fit_steps_to_wall_budget(args, configs, files, workdir):
    """The configurations with --steps replaced by the steps that fill --wall-budget."""
    names = [name for name, _ in configs]
    if args.steps_per_s:
        rates = steps_per_second_given(args.steps_per_s, names)
    else:
        rates = estimated_steps_per_second(args, configs, files, workdir)
    fitted = []
    for name, options in configs:
        steps = int((args.wall_budget - args.fixed_seconds) * rates[name])
        if steps < 1:
            sys.exit(f"{name}: {rates[name]:g} steps/s leave no step in {args.wall_budget:g} s "
                     f"less {args.fixed_seconds:g} s of fixed costs")
        print(f"{name}: {steps} steps fit {args.wall_budget:g} s at {rates[name]:.1f} steps/s "
              f"and {args.fixed_seconds:g} s of fixed costs", flush=True)
        fitted.append((name, with_option(options, "--steps", steps)))
    return fitted


PRESETS = {}


def batch_times_block(args, options):
    """B x T of a configuration: its --batch/--block, else its preset's (train_lm presets --json)."""
    if not PRESETS:
        PRESETS.update(json.loads(subprocess.run([args.train_lm, "presets", "--json"], capture_output=True,
                                                 text=True, check=True).stdout))

    def option(flag, default):
        return int(options[options.index(flag) + 1]) if flag in options else default

    preset = PRESETS[options[options.index("--preset") + 1] if "--preset" in options else "small"]
    return option("--batch", preset["batch"]) * option("--block", preset["block_size"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", required=True, help="configuration file (see the module docstring)")
    parser.add_argument("--data", required=True, help="the text file (tinyshakespeare)")
    parser.add_argument("--out", required=True, help="CSV to append to")
    parser.add_argument("--train-lm", default="build/apps/train_lm")
    parser.add_argument("--split", choices=["heldout", "full"], default="heldout")
    parser.add_argument("--seeds", default="1337", help="comma-separated")
    parser.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    parser.add_argument("--concurrent", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, default=0, help="threads per run (default: cores / --concurrent)")
    parser.add_argument("--budget-minutes", type=float, default=60, help="no run starts after this")
    parser.add_argument("--workdir", default="", help="where runs go (default: a new temporary directory)")
    parser.add_argument("--wall-budget", type=float, default=0,
                        help="seconds of wall time on 2 quiet cores: each configuration's --steps fills them")
    parser.add_argument("--steps-per-s", default="",
                        help="with --wall-budget: the quiet 2-core steps/s, one for all or name=rate,...")
    parser.add_argument("--cost-steps", type=int, default=200,
                        help="with --wall-budget and no --steps-per-s: steps of the one-thread cost run")
    parser.add_argument("--reference", default="",
                        help="NAME=STEPS_PER_S: with --cost-steps, configuration NAME's quiet 2-core steps/s")
    parser.add_argument("--thread-scaling", type=float, default=1.5,
                        help="with --cost-steps and no --reference: the quiet speed-up of 2 threads over 1")
    parser.add_argument("--fixed-seconds", type=float, default=0.3,
                        help="with --wall-budget: what the command costs besides its steps")
    parser.add_argument("--plan-only", action="store_true", help="with --wall-budget: print the steps, run nothing")
    args = parser.parse_args()
    if args.cost_steps < 2:
        sys.exit(f"--cost-steps must be at least 2, got {args.cost_steps}")
    if args.plan_only and not args.wall_budget:
        sys.exit("--plan-only needs --wall-budget")
    if args.threads <= 0:
        args.threads = max(1, (os.cpu_count() or 1) // args.concurrent)

    configs = read_configs(args.configs)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {name for name, _ in configs}
        if unknown:
            sys.exit(f"--only: no configuration named {', '.join(sorted(unknown))} in {args.configs}")
        configs = [c for c in configs if c[0] in wanted]
    seeds = [int(s) for s in args.seeds.split(",")]

    workdir = args.workdir or tempfile.mkdtemp(prefix="speedrun_sweep.")
    os.makedirs(workdir, exist_ok=True)
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    training_split, validation_split = split_at_90_percent(text)
    files = {"train": os.path.join(workdir, "train.txt"), "score": os.path.join(workdir, "score.txt")}
    if args.split == "heldout":
        write_text(files["train"], training_split)
        write_text(files["score"], split_at_90_percent(training_split)[1])
    else:
        files["train"] = args.data
        write_text(files["score"], validation_split)
    if args.wall_budget:
        configs = fit_steps_to_wall_budget(args, configs, files, workdir)
        if args.plan_only:
            return

    new_file = not os.path.exists(args.out) or os.path.getsize(args.out) == 0
    if not new_file:
        with open(args.out, encoding="utf-8") as f:
            header = f.readline().strip()
        if header != ",".join(FIELDS):
            sys.exit(f"{args.out} has the columns {header}, not {','.join(FIELDS)}: append to a new file")
    lock = threading.Lock()
    deadline = time.monotonic() + args.budget_minutes * 60
    with open(args.out, "a", newline="", encoding="utf-8") as out_file:
        writer = csv.DictWriter(out_file, fieldnames=FIELDS, lineterminator="\n")
        if new_file:
            writer.writeheader()

        def job(name, options, seed):
            if time.monotonic() > deadline:
                print(f"skipped {name} seed {seed}: the {args.budget_minutes:g}-minute budget is spent", flush=True)
                return
            row = one_run(args, name, options, seed, files, workdir)
            with lock:
                writer.writerow(row)
                out_file.flush()
                print(", ".join(f"{k} {row[k]}" for k in ("config", "seed", "steps", "wall_s", "cpu_s",
                                                          "tokens_per_s", "loss")), flush=True)

        with ThreadPoolExecutor(max_workers=args.concurrent) as pool:
            for future in [pool.submit(job, name, options, seed) for name, options in configs for seed in seeds]:
                future.result()
    print(f"runs and logs in {workdir}; rows appended to {args.out}")


if __name__ == "__main__":
    main()
