"""Cost of convolutional FF with channel-wise competition (``units.loss = cwc``) against
backprop training of the same CNN (``train.baselines.cnn``), in one script.

    python scripts/bench_conv_cost.py --out bench/conv_cost.json [--steps 20 --repeats 5 --threads 2]

1. Throughput. For each preset (``cwcomp``, ``ff-tiny``; CIFAR-10 shaped input (3, 32, 32),
   the preset's batch): seconds per training step of the FF net (``train_step``, every
   unit active: one pass, each unit's own local step) with the one-pass head (the
   preset default) and without it, and of backprop on the same CNN (same optimiser and
   rate, cross-entropy on a C-way linear output). Random inputs and labels (the content
   does not change the cost); --steps timed steps after --warmup steps; each figure is
   the best of --repeats repetitions, FF and backprop interleaved within each repetition
   (alternating order) so that background noise hits both. Epoch time = step time ×
   samples per epoch / batch (50,000 for CIFAR-10; 60,000 for the MNIST-shaped net:
   the cwcomp recipe with the stack MNIST_STACK on (1, 28, 28); --no-mnist skips it).
   The target: an FF epoch costs <= 1.2x a backprop epoch.
2. Memory vs depth. Like ``bench_memory.py``: a fresh subprocess per (method, depth) with
   glibc returning freed blocks at once, one thread; working memory = peak RSS minus
   the RSS after one warm-up step (weights, optimiser state and data batch allocated, no
   gradient held). The peak is the process's VmHWM, reset after the warm-up step, not
   ru_maxrss: Linux carries ru_maxrss over fork and exec, so every child would report the
   parent's RSS (about 1 GB once the throughput nets have run) instead of its own peak. Stack of depth L: L conv units of --mem-channels channels, kernel 3,
   padding 1, no pooling (every unit sees the same map and costs the same), batch norm,
   cwc loss, no input normalisation; FF with and without the head (which reads the last
   two units), backprop on the same CNN. 64 channels do not split into 10 class groups,
   so the default is 60. FF's working memory should stay flat with depth, backprop's
   grow with it.

--profile N adds the N most expensive operators of an FF step (torch profiler, self
CPU time) for each preset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.config.run import preset
from ffneuro.data.loaders import Dataset
from ffneuro.rng import Streams
from ffneuro.runs.provenance import code_commit
from ffneuro.train.baselines import cnn
from ffneuro.train.loop import build_network
from ffneuro.train.step import train_step
from ffneuro.units.optim import make_optimizer

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)
MNIST_STACK = "conv:20:k3:p1,conv:80:k3:p1:g10:pool2,conv:240:k3:p1,conv:480:k3:p1:g10:pool2"
N_TRAIN = {CIFAR: 50_000, MNIST: 60_000}
CLASSES = 10
TARGET = 1.2           # an FF epoch may cost at most this many backprop epochs
METHODS = ("ff", "ff_nohead", "bp")


# ----------------------------------------------------------------------------------------
# Models and one training step of each
# ----------------------------------------------------------------------------------------
def stack_config(base: RunConfig, stack: list[str], batch: int | None = None) -> RunConfig:
    """``base`` with another conv stack (every unit learning every epoch) and batch."""
    loop = {"unit_epochs": ()}
    if batch is not None:
        loop["batch_size"] = batch
    return base.replace(units={"stack": stack}, loop=loop)


def batch_of(shape: tuple[int, ...], batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs (batch, *shape) in [0, 1) and labels, from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *shape, generator=g), torch.randint(0, CLASSES, (batch,), generator=g)


def ff_stepper(cfg: RunConfig, shape: tuple[int, ...], x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """(step, parameter counts) of the FF net of ``cfg``: one ``train_step`` on (x, y)
    with every unit active."""
    n = cfg.units.n_units
    flat = x.reshape(x.shape[0], -1)
    streams = Streams(seed, n)
    net = build_network(cfg, Dataset("synthetic", flat, y, flat, y, CLASSES, tuple(shape)), streams)
    xp, active = net.prepare_input(flat), list(range(n))

    def step() -> None:
        train_step(net, cfg, xp, y, active, streams)
    params = {"units": sum(p.numel() for u in net.layers for p in u.parameters()),
              "head": sum(p.numel() for p in net.head.parameters()) if net.head is not None else 0}
    return step, params


def bp_stepper(cfg: RunConfig, shape: tuple[int, ...], x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """(step, parameter count) of backprop on the same CNN: cross-entropy, the FF units'
    optimiser and rate, zero_grad/backward/step."""
    torch.manual_seed(seed)
    model = cnn(cfg.units, tuple(shape), CLASSES).train()
    o = cfg.optim
    opt = make_optimizer(model.parameters(), o.optimizer, o.lr, o.momentum, o.weight_decay)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step.model, step.opt = model, opt
    return step, sum(p.numel() for p in model.parameters())


def per_step(step, k: int) -> float:
    """Seconds per step over k consecutive steps."""
    t0 = time.perf_counter()
    for _ in range(k):
        step()
    return (time.perf_counter() - t0) / k


# ----------------------------------------------------------------------------------------
# 1. Throughput
# ----------------------------------------------------------------------------------------
def throughput(cfg: RunConfig, shape: tuple[int, ...], *, steps: int = 20, warmup: int = 2, repeats: int = 5,
               n_train: int | None = None, seed: int = 0) -> dict:
    """Per-step seconds of FF (with and without the head) and backprop on one config,
    best of ``repeats`` interleaved repetitions, with their ratios and epoch times."""
    batch = cfg.loop.batch_size
    n_train = n_train if n_train is not None else N_TRAIN.get(tuple(shape), 50_000)
    x, y = batch_of(shape, batch, seed)
    ff, ff_params = ff_stepper(cfg.with_flat(head=True), shape, x, y, seed)
    ff_nohead, _ = ff_stepper(cfg.with_flat(head=False), shape, x, y, seed)
    bp, bp_params = bp_stepper(cfg, shape, x, y, seed)
    steppers = {"ff": ff, "ff_nohead": ff_nohead, "bp": bp}
    for step in steppers.values():
        for _ in range(warmup):
            step()
    runs: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(repeats):
        for m in (METHODS if r % 2 == 0 else METHODS[::-1]):
            runs[m].append(per_step(steppers[m], steps))
    best = {m: min(v) for m, v in runs.items()}
    return {"input_shape": list(shape), "batch": batch, "n_train": n_train,
            "steps": steps, "warmup": warmup, "repeats": repeats,
            "step_s": best, "all_step_s": runs,
            "ratio": {"ff_over_bp": best["ff"] / best["bp"], "ff_nohead_over_bp": best["ff_nohead"] / best["bp"],
                      "head_share_of_ff": 1 - best["ff_nohead"] / best["ff"]},
            "epoch_s": {m: best[m] * n_train / batch for m in METHODS},
            "parameters": {"ff_units": ff_params["units"], "ff_head": ff_params["head"], "bp": bp_params},
            "config": cfg.to_dict()}


def profile_ff(cfg: RunConfig, shape: tuple[int, ...], *, steps: int = 3, top: int = 12, seed: int = 0) -> list[dict]:
    """The ``top`` operators of an FF step by self CPU time (torch profiler, ``steps``
    steps after one warm-up step)."""
    from torch.profiler import ProfilerActivity, profile

    x, y = batch_of(shape, cfg.loop.batch_size, seed)
    step, _ = ff_stepper(cfg, shape, x, y, seed)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_cpu_s_per_step": e.self_cpu_time_total / 1e6 / steps,
             "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps} for e in events[:top]]


# ----------------------------------------------------------------------------------------
# 2. Working memory vs depth (one subprocess per method and depth)
# ----------------------------------------------------------------------------------------
def memory_config(depth: int, channels: int, batch: int, head: bool = True) -> RunConfig:
    """``depth`` conv units of ``channels`` channels, kernel 3, padding 1, no pooling, batch
    norm, channel-wise competition (the cwcomp recipe's optimiser)."""
    return preset("cwcomp").replace(
        units={"stack": [f"conv:{channels}:k3:p1"] * depth, "loss": "cwc", "norm": "none", "batch_norm": True},
        loop={"batch_size": batch, "unit_epochs": ()}, inference={"head": head})


def status_kib(field: str = "VmRSS") -> int:
    """A size from /proc/self/status (VmRSS: resident now; VmHWM: peak since start or reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mem_child(method: str, depth: int, channels: int, batch: int, steps: int,
              shape: tuple[int, ...] = CIFAR) -> dict:
    """Working memory of training (peak RSS − RSS after one warm-up step) of ``method``
    (ff, ff+head, backprop) on a stack of ``depth`` units: meaningful in a fresh process."""
    cfg = memory_config(depth, channels, batch, head=method == "ff+head")
    x, y = batch_of(shape, batch)
    if method == "backprop":
        step, weights = bp_stepper(cfg, shape, x, y)
    elif method in ("ff", "ff+head"):
        step, params = ff_stepper(cfg, shape, x, y)
        weights = params["units"] + params["head"]
    else:
        raise ValueError(f"method {method!r}: choose ff, ff+head or backprop")
    step()                       # allocate the optimisers' state once
    if method == "backprop":
        step.opt.zero_grad(set_to_none=True)   # FF frees each unit's gradient after its update
    base = status_kib("VmRSS")
    reset = reset_peak()          # else the peak includes the warm-up step (and the process start)
    for _ in range(steps):
        step()
    peak = status_kib("VmHWM")
    return {"method": method, "depth": depth, "channels": channels, "batch": batch, "input_shape": list(shape),
            "weight_bytes": weights * 4, "training_peak_over_base_bytes": max(0, peak - base) * 1024,
            "peak_rss_bytes": peak * 1024, "base_rss_bytes": base * 1024, "peak_reset_after_warmup": reset,
            "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def memory(depths: list[int], channels: int, batch: int, steps: int) -> dict:
    # Large blocks straight from mmap and back on free, so RSS follows live memory (glibc
    # otherwise keeps freed blocks and raises its mmap threshold, hiding the real peak).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    rows = []
    for depth in depths:
        for method in ("ff", "ff+head", "backprop"):
            out = subprocess.run([sys.executable, __file__, "--child", method, str(depth), "--mem-channels",
                                  str(channels), "--mem-batch", str(batch), "--mem-steps", str(steps)],
                                 check=True, capture_output=True, text=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  {method:<9} depth {depth:>2}: weights {r['weight_bytes'] / 2**20:6.2f} MiB, training working "
                  f"memory {r['training_peak_over_base_bytes'] / 2**20:7.1f} MiB", flush=True)
    lo, hi = min(depths), max(depths)
    work = {(r["method"], r["depth"]): r["training_peak_over_base_bytes"] for r in rows}
    ratio = {m: work[(m, hi)] / work[(m, lo)] if work[(m, lo)] else None for m in ("ff", "ff+head", "backprop")}
    return {"note": "training working memory = peak RSS (VmHWM, reset after one warm-up step) - RSS after the "
                    "warm-up step (one thread, fresh process); ru_maxrss is inherited from the parent, "
                    "kept for reference only",
            "depths": depths, "channels": channels, "batch": batch, "steps": steps, "input_shape": list(CIFAR),
            "config": {d: memory_config(d, channels, batch).to_dict() for d in (lo, hi)},
            f"working_ratio_depth{hi}_vs_depth{lo}": ratio, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="cwcomp,ff-tiny")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per repetition")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-mnist", action="store_true", help="skip the MNIST-shaped cwcomp net (cwcomp-mnist)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-from", metavar="JSON", help="take the memory section from an earlier output of "
                    "this script instead of measuring it (memory does not depend on the CPU load)")
    ap.add_argument("--depths", default="4,8,12")
    ap.add_argument("--mem-channels", type=int, default=60)
    ap.add_argument("--mem-batch", type=int, default=64)
    ap.add_argument("--mem-steps", type=int, default=2)
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="top N operators of an FF step per preset")
    ap.add_argument("--out", default="bench/conv_cost.json")
    ap.add_argument("--merge", action="store_true", help="keep the throughput rows and memory section of an "
                    "existing --out that this run does not measure (re-measure one case alone)")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "DEPTH"))
    args = ap.parse_args()
    if args.child:
        torch.set_num_threads(1)
        print(json.dumps(mem_child(args.child[0], int(args.child[1]), args.mem_channels, args.mem_batch,
                                   args.mem_steps)))
        return
    from ffneuro.runs.files import write_json

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {"ffneuro_version": __version__, "commit": code_commit(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "target_ff_over_bp": TARGET,
                    "loadavg_start": os.getloadavg()}
    cases = [(name, preset(name), CIFAR) for name in args.presets.split(",") if name]
    if not args.no_mnist:
        cases.append(("cwcomp-mnist", stack_config(preset("cwcomp"), MNIST_STACK.split(",")), MNIST))
    old = json.loads(Path(args.out).read_text()) if args.merge and Path(args.out).exists() else {}
    report["throughput"] = dict(old.get("throughput", {}))
    if "memory" in old:
        report["memory"] = old["memory"]
    for name, cfg, shape in cases:
        load = os.getloadavg()
        row = throughput(cfg, shape, steps=args.steps, warmup=args.warmup, repeats=args.repeats)
        row["measured"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg_before": load,
                           "loadavg_after": os.getloadavg()}
        row["target_met"] = {"head": row["ratio"]["ff_over_bp"] <= TARGET,
                             "nohead": row["ratio"]["ff_nohead_over_bp"] <= TARGET}
        if args.profile:
            row["ff_profile"] = profile_ff(cfg, shape, top=args.profile)
        report["throughput"][name] = row
        s, r, e = row["step_s"], row["ratio"], row["epoch_s"]
        print(f"{name:<13} {tuple(shape)} batch {row['batch']}: step FF {s['ff']:.3f} s, FF no head "
              f"{s['ff_nohead']:.3f} s, BP {s['bp']:.3f} s -> FF/BP {r['ff_over_bp']:.2f} (no head "
              f"{r['ff_nohead_over_bp']:.2f}); epoch FF {e['ff']:.0f} s, BP {e['bp']:.0f} s", flush=True)
        write_json(Path(args.out), report)
    report["loadavg_after_throughput"] = os.getloadavg()
    if args.memory_from:
        report["memory"] = {**json.loads(Path(args.memory_from).read_text())["memory"],
                            "source": "an earlier run of this script (--memory-from)"}
    elif not args.no_memory:
        print("memory vs depth (one thread, fresh process each):", flush=True)
        report["memory"] = memory([int(d) for d in args.depths.split(",")], args.mem_channels, args.mem_batch,
                                  args.mem_steps)
        key = next(k for k in report["memory"] if k.startswith("working_ratio"))
        print(f"  {key}: " + ", ".join(f"{m} {v:.2f}" for m, v in report["memory"][key].items() if v), flush=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(Path(args.out), report)


if __name__ == "__main__":
    main()
