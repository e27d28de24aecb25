#!/usr/bin/python3
"""An independent PyTorch implementation of SPEC.md's GPT, docs/llama.md's Llama and train_lm's recipe.

PyTorch is not a dependency of tapegrad; this script is a second implementation to
check tapegrad against (`apt-get install python3-torch`, then run it with Debian's
/usr/bin/python3). The GPT follows SPEC section 1 to the letter (biases in
LayerNorm and the MLP only, tanh GELU, tied wte); the Llama docs/llama.md (RMSNorm,
rotary q/k in the rotate-half layout, SwiGLU, no biases, tied wte). Subcommands:

  crosscheck --train-lm BIN [--family gpt|llama] [--limit 1e-10]
      Writes a random F64 checkpoint of the family and a batch, runs `BIN grad` on
      them and compares its loss and every gradient with PyTorch's float64 autograd.
      Exits 1 if any relative error is above --limit.

  replay --train-lm BIN --run-inputs BIN [--data FILE] [--preset P] [--steps N]
      Runs `BIN train` for N steps (one thread), re-creates its first weights
      and batches with tests' run_inputs, trains PyTorch from them with the same
      recipe and compares the per-step training losses of the two (float32).
      Without --data it makes its own text. Exits 1 above --limit.

  train --data FILE [--train-lm BIN] [--seed N] [--nanogpt]
      The train_lm recipe as nanoGPT's train.py runs it on CPU (random windows,
      AdamW with the SPEC's defaults, warm-up + cosine to lr/10, clip 1.0).
      Prints the 20-batch validation estimate every --eval-every steps and, at
      the end, the loss on the whole validation split in consecutive windows
      (as `train_lm eval`). --nanogpt: nanoGPT's own model (no biases, erf GELU).

  bench [--presets tiny,small,medium,long] [--threads 1] [--steps 10] [--warmup 2]
      Times full training steps (forward, backward, clip 1.0, AdamW as train) on
      random batches, vocabulary 65, presets from --train-lm, as bench/bench_train does, and prints one JSON
      line per preset: median ms/step, tokens/s, peak RSS. One thread count per
      process (torch.set_num_threads), so the peak RSS is the run's own.

The presets (sizes, batch, steps, recipe) are not copied here: each subcommand
reads them from `train_lm presets --json`, the table in tapegrad/models/gpt/presets.hpp.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # 77: ctest's "skipped"
    print(f"reference_torch.py: skipped: {e} (apt-get install python3-torch)")
    sys.exit(77)

PRESET_NAMES = ("tiny", "small", "medium", "long")  # SPEC section 4; their values come from train_lm


def read_presets(train_lm):
    """The preset table (model sizes, batch, steps, recipe) as `train_lm presets --json` prints it."""
    run = subprocess.run([train_lm, "presets", "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"reference_torch.py: {train_lm} presets --json failed: {run.stderr.strip()}")
    return json.loads(run.stdout)


class LayerNorm(torch.nn.Module):
    def __init__(self, d, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.bias = torch.nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Block(torch.nn.Module):
    def __init__(self, d, h, L, bias, gelu, std):
        super().__init__()
        self.h, self.gelu = h, gelu
        self.ln_1, self.ln_2 = LayerNorm(d, bias), LayerNorm(d, bias)
        proj_std = std / math.sqrt(2 * L)
        p = lambda *shape, s: torch.nn.Parameter(torch.randn(*shape) * s)
        self.w_q, self.w_k, self.w_v = p(d, d, s=std), p(d, d, s=std), p(d, d, s=std)
        self.w_o = p(d, d, s=proj_std)
        self.w_1, self.w_2 = p(d, 4 * d, s=std), p(4 * d, d, s=proj_std)
        self.b_1 = torch.nn.Parameter(torch.zeros(4 * d)) if bias else None
        self.b_2 = torch.nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x):
        B, T, d = x.shape
        a = self.ln_1(x)
        heads = lambda m: (a @ m).view(B, T, self.h, d // self.h).transpose(1, 2)
        q, k, v = heads(self.w_q), heads(self.w_k), heads(self.w_v)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        p = F.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, T, d)
        x = x + o @ self.w_o
        m = self.ln_2(x) @ self.w_1
        if self.b_1 is not None:
            m = m + self.b_1
        m = F.gelu(m, approximate=self.gelu) @ self.w_2
        if self.b_2 is not None:
            m = m + self.b_2
        return x + m


class GPT(torch.nn.Module):
    def __init__(self, V, T_max, L, h, d, bias=True, gelu="tanh", std=0.02):
        super().__init__()
        self.wte = torch.nn.Parameter(torch.randn(V, d) * std)
        self.wpe = torch.nn.Parameter(torch.randn(T_max, d) * std)
        self.h = torch.nn.ModuleList(Block(d, h, L, bias, gelu, std) for _ in range(L))
        self.ln_f = LayerNorm(d, bias)

    def named(self):  # SPEC section 1's checkpoint names
        return {name.replace(".b_", ".mlp.b_").replace(".w_1", ".mlp.w_1").replace(".w_2", ".mlp.w_2")
                .replace(".w_q", ".attn.w_q").replace(".w_k", ".attn.w_k").replace(".w_v", ".attn.w_v")
                .replace(".w_o", ".attn.w_o"): p for name, p in self.named_parameters()}

    def forward(self, idx, targets):
        x = self.wte[idx] + self.wpe[: idx.shape[1]]
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


class RMSNorm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rope(x, theta=10000.0):
    """Rows (..., T, dh) at positions 0..T-1; pairs (i, i + dh/2) turned by t * theta^(-2i/dh)."""
    T, dh = x.shape[-2], x.shape[-1]
    half = dh // 2
    freq = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / dh)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Weights(torch.nn.Module):
    """A bag of named matrices (the attention's w_q.., the MLP's w_gate..)."""
    def __init__(self, **shapes_and_stds):
        super().__init__()
        for name, (shape, std) in shapes_and_stds.items():
            setattr(self, name, torch.nn.Parameter(torch.randn(*shape) * std))


class LlamaBlock(torch.nn.Module):
    def __init__(self, d, h, d_hidden, L, std=0.02):
        super().__init__()
        self.h = h
        proj_std = std / math.sqrt(2 * L)
        self.norm_1 = RMSNorm(d)
        self.attn = Weights(w_q=((d, d), std), w_k=((d, d), std), w_v=((d, d), std), w_o=((d, d), proj_std))
        self.norm_2 = RMSNorm(d)
        self.mlp = Weights(w_gate=((d, d_hidden), std), w_up=((d, d_hidden), std), w_down=((d_hidden, d), proj_std))

    def forward(self, x):
        B, T, d = x.shape
        a, w = self.norm_1(x), self.attn
        heads = lambda m: (a @ m).view(B, T, self.h, d // self.h).transpose(1, 2)
        q, k, v = rope(heads(w.w_q)), rope(heads(w.w_k)), heads(w.w_v)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        p = F.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        x = x + (p @ v).transpose(1, 2).reshape(B, T, d) @ w.w_o
        m, f = self.norm_2(x), self.mlp
        return x + (F.silu(m @ f.w_gate) * (m @ f.w_up)) @ f.w_down


class Llama(torch.nn.Module):
    def __init__(self, V, L, h, d, d_hidden, std=0.02):
        super().__init__()
        self.wte = torch.nn.Parameter(torch.randn(V, d) * std)
        self.h = torch.nn.ModuleList(LlamaBlock(d, h, d_hidden, L, std) for _ in range(L))
        self.norm_f = RMSNorm(d)

    def named(self):  # docs/llama.md's checkpoint names are the module paths
        return dict(self.named_parameters())

    def forward(self, idx, targets):
        x = self.wte[idx]
        for block in self.h:
            x = block(x)
        logits = self.norm_f(x) @ self.wte.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def adamw(model, lr, p):
    """SPEC section 4's optimiser, with preset p's settings: weight decay on the 2-D parameters only."""
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": p["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(p["beta1"], p["beta2"]), eps=p["eps"])


def lr_at(step, base_lr, steps, p):
    """nanoGPT's get_lr: warm-up over min(warmup_steps, steps) steps, cosine to base_lr * min_lr_fraction at `steps`."""
    warmup, min_lr = min(p["warmup_steps"], steps), base_lr * p["min_lr_fraction"]
    if step < warmup:
        return base_lr * (step + 1) / (warmup + 1)
    if step >= steps:
        return min_lr
    ratio = (step - warmup) / (steps - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (base_lr - min_lr)


def train_step(model, opt, inputs, targets, lr, clip_norm):
    """Forward, backward, clip to clip_norm, AdamW at `lr`; returns the batch loss."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(inputs, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    opt.step()
    return loss.item()


def write_safetensors(path, tensors, metadata):
    """tensors: name -> numpy array (float64 or int64)."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, a in tensors.items():
        blob = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        dtype = {"float64": "F64", "int64": "I64"}[a.dtype.name]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F64": "<f8", "F32": "<f4", "I64": "<i8", "I32": "<i4"}
    return {name: np.frombuffer(data[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]],
                                dtype=dtypes[e["dtype"]]).reshape(e["shape"])
            for name, e in header.items()}


def crosscheck(args):
    """train_lm grad against PyTorch on one random F64 model and batch."""
    torch.manual_seed(args.seed)
    V, T_max, L, h, d, B, T = 11, 9, 2, 2, 8, 3, 7
    meta = {"format": "tapegrad-gpt", "version": "1", "vocab_size": str(V), "block_size": str(T_max),
            "n_layer": str(L), "n_head": str(h), "d_model": str(d)}
    if args.family == "gpt":
        model = GPT(V, T_max, L, h, d).double()
    else:  # a SwiGLU width other than the default (32), read from the metadata
        d_hidden = 12
        model = Llama(V, L, h, d, d_hidden).double()
        meta |= {"format": "tapegrad-llama", "d_hidden": str(d_hidden)}
    with torch.no_grad():  # weights well away from init so every term matters
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    idx, targets = torch.randint(V, (B, T)), torch.randint(V, (B, T))
    with tempfile.TemporaryDirectory() as tmp:
        w, b, g = (os.path.join(tmp, f) for f in ("w.safetensors", "b.safetensors", "g.safetensors"))
        write_safetensors(w, {n: p.detach().numpy() for n, p in model.named().items()}, meta)
        write_safetensors(b, {"inputs": idx.numpy(), "targets": targets.numpy()}, {})
        run = subprocess.run([args.train_lm, "grad", "--checkpoint", w, "--batch", b, "--out", g],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"crosscheck: train_lm grad failed: {run.stderr.strip()}")
        theirs = read_safetensors(g)
    loss = model(idx, targets)
    loss.backward()
    ours = {"loss": loss.detach().numpy()} | {"grad." + n: p.grad.numpy() for n, p in model.named().items()}
    if set(ours) != set(theirs):
        sys.exit(f"crosscheck: tensor names differ: {sorted(set(ours) ^ set(theirs))}")
    worst = 0.0
    for name in ours:
        a, b = ours[name], theirs[name]
        if a.shape != b.shape:
            sys.exit(f"crosscheck: {name} has shape {b.shape}, PyTorch {a.shape}")
        rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))
        worst = max(worst, rel)
        print(f"{name:24s} max rel. error {rel:.1e}")
    print(f"{args.family}: loss {loss.item():.6f}, worst {worst:.1e} over {len(ours)} tensors (limit {args.limit:.0e})")
    return 0 if worst <= args.limit else 1


@torch.no_grad()
def text_loss(model, tokens, T):
    """Mean loss over every prediction of `tokens` in consecutive windows of T, as
    `train_lm eval` computes it: full windows 16 at a time, then the shorter tail."""
    n = len(tokens) - 1  # predictions
    window = lambda starts, t: (torch.stack([tokens[i:i + t] for i in starts]),
                                torch.stack([tokens[i + 1:i + 1 + t] for i in starts]))
    full = list(range(0, n - T + 1, T))
    total = sum(model(*window(full[i:i + 16], T)).item() * len(full[i:i + 16]) * T for i in range(0, len(full), 16))
    if n % T:
        total += model(*window([n - n % T], n % T)).item() * (n % T)
    return total / n


def made_up_text(n_chars=20000, seed=0):
    """Word salad from a small vocabulary: enough structure for the loss to fall."""
    words = ("the of and to a in is it you that he was for on are with as his they be at one have this from "
             "or had by hot word but what some we can out other were all there when up use your how said an "
             "each she which do their time if will way about many then them write would like so these").split()
    rng = torch.Generator().manual_seed(seed)
    out, size = [], 0
    while size < n_chars:
        line = " ".join(words[i] for i in torch.randint(len(words), (12,), generator=rng).tolist()) + ".\n"
        out.append(line.capitalize())
        size += len(line)
    return "".join(out)


def replay(args):
    """train_lm train against PyTorch from the same first weights and batches."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = os.path.join(tmp, "text.txt")
            with open(data, "w", encoding="utf-8") as f:
                f.write(made_up_text())
        for command in ([args.run_inputs, data, args.preset, str(args.seed), str(args.steps), tmp],
                        [args.train_lm, "train", "--data", data, "--preset", args.preset, "--seed", str(args.seed),
                         "--steps", str(args.steps), "--threads", "1", "--no-sample", "--out", os.path.join(tmp, "run")]):
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"replay: {os.path.basename(command[0])} failed: {run.stderr.strip()}")
        with open(os.path.join(tmp, "run", "log.csv")) as f:
            rows = [line.split(",") for line in f.read().splitlines()[1:]]
        theirs = [float(r[2]) for r in rows if r[0] == "train"]
        init = read_safetensors(os.path.join(tmp, "init.safetensors"))
        batches = read_safetensors(os.path.join(tmp, "batches.safetensors"))
    p = read_presets(args.train_lm)[args.preset]
    model = GPT(init["wte"].shape[0], p["block_size"], p["n_layer"], p["n_head"], p["d_model"])
    with torch.no_grad():
        for name, q in model.named().items():
            q.copy_(torch.from_numpy(init[name].copy()))
    opt = adamw(model, p["lr"], p)
    inputs, targets = (torch.from_numpy(batches[k].copy()) for k in ("inputs", "targets"))
    worst, worst_step = 0.0, 0
    for step in range(args.steps):
        loss = train_step(model, opt, inputs[step], targets[step], lr_at(step, p["lr"], args.steps, p), p["clip_norm"])
        diff = abs(loss - theirs[step])
        if diff > worst:
            worst, worst_step = diff, step + 1
        if (step + 1) % args.print_every == 0 or step + 1 == args.steps:
            print(f"step {step + 1}: train_lm {theirs[step]:.6f} PyTorch {loss:.6f}", flush=True)
    print(f"largest loss difference {worst:.1e} at step {worst_step} of {args.steps} (limit {args.limit:.0e})")
    return 0 if worst <= args.limit else 1


def train(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    p = read_presets(args.train_lm)[args.preset]
    T, B = p["block_size"], p["batch"]
    if args.steps is None:
        args.steps = p["steps"]
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    n_train = int(0.9 * len(ids))
    split = {"train": ids[:n_train], "val": ids[n_train:]}

    def batch(name):
        data = split[name]
        start = torch.randint(len(data) - T, (B,))
        x = torch.stack([data[i : i + T] for i in start])
        y = torch.stack([data[i + 1 : i + 1 + T] for i in start])
        return x, y

    model = GPT(len(chars), T, p["n_layer"], p["n_head"], p["d_model"], bias=not args.nanogpt,
                gelu="none" if args.nanogpt else "tanh", std=p["init_stddev"])
    opt = adamw(model, args.lr if args.lr is not None else p["lr"], p)

    @torch.no_grad()
    def estimate(name, batches=20):
        return sum(model(*batch(name)).item() for _ in range(batches)) / batches

    t0 = time.time()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            print(f"step {step}: train {estimate('train'):.4f} val {estimate('val'):.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
        if step == args.steps:
            break
        train_step(model, opt, *batch("train"), lr_at(step, opt.defaults["lr"], args.steps, p), p["clip_norm"])
    val = text_loss(model, split["val"], T)
    print(f"full validation split: loss {val:.4f} perplexity {math.exp(val):.2f} "
          f"({time.time() - t0:.0f} s)")
    return 0


def bench(args):
    import resource
    import statistics
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    presets = read_presets(args.train_lm)
    for name in args.presets.split(","):
        p = presets[name]
        T, B = p["block_size"], p["batch"]
        model = GPT(65, T, p["n_layer"], p["n_head"], p["d_model"])
        opt = adamw(model, p["lr"], p)
        ms = []
        for step in range(args.warmup + args.steps):
            inputs, targets = torch.randint(0, 65, (B, T)), torch.randint(0, 65, (B, T))
            start = time.perf_counter()
            train_step(model, opt, inputs, targets, p["lr"], p["clip_norm"])
            if step >= args.warmup:
                ms.append(1000 * (time.perf_counter() - start))
        median = statistics.median(ms)
        print(json.dumps({"preset": name, "threads": args.threads, "steps": args.steps,
                          "median_ms_per_step": round(median, 2), "tokens_per_s": round(B * T / (median / 1000)),
                          "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("crosscheck", help="train_lm grad against PyTorch")
    c.add_argument("--train-lm", required=True, help="path of the train_lm binary")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--family", default="gpt", choices=("gpt", "llama"))
    c.add_argument("--limit", type=float, default=1e-10, help="largest allowed relative error")
    r = sub.add_parser("replay", help="train_lm train against PyTorch, step by step")
    r.add_argument("--train-lm", required=True, help="path of the train_lm binary")
    r.add_argument("--run-inputs", required=True, help="path of tests' run_inputs binary")
    r.add_argument("--data", help="text file (default: made-up text)")
    r.add_argument("--preset", default="tiny", choices=PRESET_NAMES)
    r.add_argument("--steps", type=int, default=100)
    r.add_argument("--seed", type=int, default=1337)
    r.add_argument("--limit", type=float, default=1e-4, help="largest allowed per-step loss difference")
    r.add_argument("--print-every", type=int, default=25)
    t = sub.add_parser("train", help="the train_lm recipe in PyTorch")
    t.add_argument("--data", required=True)
    t.add_argument("--train-lm", default=os.path.join(os.path.dirname(__file__), "..", "build", "examples", "train_lm"),
                   help="the train_lm binary whose preset table is used (default: build/apps/train_lm)")
    t.add_argument("--preset", default="small", choices=PRESET_NAMES)
    t.add_argument("--steps", type=int, default=None, help="default: the preset's")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--nanogpt", action="store_true", help="nanoGPT's model: no biases, erf GELU")
    b = sub.add_parser("bench", help="time training steps per preset, as bench_train")
    b.add_argument("--presets", default=",".join(PRESET_NAMES))
    b.add_argument("--train-lm", default=os.path.join(os.path.dirname(__file__), "..", "build", "examples", "train_lm"),
                   help="train_lm binary, for the preset table")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    return {"crosscheck": crosscheck, "replay": replay, "train": train, "bench": bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
