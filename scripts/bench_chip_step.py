"""A training step against the floor of the work it must do, measured in the same run.

    python scripts/bench_chip_step.py --out bench/chip_step.json [--threads 1] [--steps 400]
    PYTHONPATH=OLD_CHECKOUT python scripts/bench_chip_step.py --out bench/chip_step_before.json   # an older commit

For each network (784-500-500-500 on MNIST-shaped input, 74-500-500-500 on the digits'
shape) and batch (1 and 16) this times, with the same shapes, dtypes and thread count:

- the floor: the bare matrix products an FF step with the one-pass head must do (the
  neutral pass, the positive+negative pass, and per unit the rank-2B update
  ``W += g·xᵀ`` as one ``addmm_``), float32, nothing else;
- the floor with Adam: the same products, the weight gradients materialised and one
  fused Adam step over every weight (what the default float recipe cannot avoid);
- the float step (``train.step.train_step``, the default recipe: Adam, one-pass head);
- the chip step under ``loihi-like`` (batch 1) or ``cmos-45nm`` (batch 16), with and
  without event counting;
- the chip's floor: the floor plus the random numbers its stochastic rounding must make
  (one per synapse an update can touch, counted on the chip step itself), made in one
  compiled call by the same generator (``kernels.fill_uniforms``).

Each figure is the median of --repeats timings of --steps consecutive steps on real
MNIST rows (or random rows in [0, 1] if MNIST is absent), after a warm-up; the closures
of one row take turns, one timing each per round. Ratios step / floor are written beside
them.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.data.loaders import Dataset, load_dataset
from ffneuro.hw.chip import chip_spec
from ffneuro.hw.events import EventLedger
from ffneuro.hw.profiles import load_profile
from ffneuro.rng import Streams
from ffneuro.runs.files import write_json
from ffneuro.runs.provenance import code_commit
from ffneuro.train.loop import build_network
from ffneuro.train.step import train_step

REPO = Path(__file__).resolve().parent.parent
CHIP_FOR_BATCH = {1: "loihi-like", 16: "cmos-45nm"}


def median_times(fns: dict, steps: int, repeats: int, warmup: int = 30) -> dict[str, float]:
    """For each closure, the median over ``repeats`` of the mean time of one call over
    ``steps`` calls (seconds). The closures take turns, one timing each per round, so a
    slow spell of a shared machine falls on all of them rather than on one."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def floor_step(sizes: list[int], batch: int, classes: int, adam: bool):
    """A closure doing the bare products of one FF step (and, with ``adam``, the weight
    gradients and one fused Adam step over them)."""
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(o, i, generator=gen) * 0.01 for i, o in zip(sizes, sizes[1:])]
    head = torch.randn(classes, sum(sizes[2:]), generator=gen) * 0.01
    x = torch.rand(batch, sizes[0], generator=gen)
    pair = torch.cat([x, x])
    params = [torch.nn.Parameter(w) for w in [*weights, head]]
    opt = torch.optim.Adam(params, lr=1e-9, fused=True) if adam else None

    def step() -> None:
        h, kept = x, []
        for w in weights:                       # neutral pass
            h = torch.mm(h, w.t())
            kept.append(h)
        logits = torch.mm(torch.cat(kept[1:], dim=1), head.t())
        h = pair
        for p, w in zip(params, weights):       # positive + negative pass, local updates
            z = torch.mm(h, w.t())
            if adam:
                p.grad = torch.mm(z.t(), h)
            else:
                w.addmm_(z.t(), h, alpha=-1e-9)
            h = z
        if adam:
            params[-1].grad = torch.mm(logits.t(), torch.cat(kept[1:], dim=1))
            opt.step()
        else:
            head.addmm_(logits.t(), torch.cat(kept[1:], dim=1), alpha=-1e-9)
    return step


def ff_step(data: Dataset, widths: tuple[int, ...], batch: int, profile: str | None, count: bool):
    """A closure doing one ``train_step`` on the next rows of ``data``."""
    cfg = RunConfig.from_flat(data="bench", layers=widths, batch_size=batch)
    chip = chip_spec(load_profile(profile)) if profile else None
    streams = Streams(0, len(widths))
    net = build_network(cfg, data, streams, chip)
    x, y = net.prepare_input(data.x_train), data.y_train
    if chip is not None:
        net.calibrate(x[:256], y[:256])
    ledger = EventLedger() if count else None
    active = list(range(len(widths)))
    n = x.shape[0]
    state = {"s": 0}

    def step() -> None:
        idx = torch.arange(state["s"], state["s"] + batch) % n
        state["s"] += batch
        train_step(net, cfg, x[idx], y[idx], active, streams, ledger, batch)
    return step


def rounding_draws(step, steps: int = 50) -> float:
    """Random numbers the chip's stochastic rounding uses per step (counted, not timed):
    every rounding call takes its key from ``functional.quant.rounding_key`` with the
    count of numbers it will use (``uniforms`` at commits before the counter-based draws)."""
    import ffneuro.functional.quant as quant

    drawn = {"n": 0}
    name = "rounding_key" if hasattr(quant, "rounding_key") else "uniforms"
    real = getattr(quant, name)

    def counting(*args):
        drawn["n"] += args[1] if name == "rounding_key" else math.prod(args[0])
        return real(*args)
    setattr(quant, name, counting)
    try:
        for _ in range(steps):
            step()
    finally:
        setattr(quant, name, real)
    return drawn["n"] / steps


def draw_numbers(count: int):
    """One call making ``count`` rounding numbers: the counter-based generator compiled
    where the code has it (``kernels.fill_uniforms``), else torch's generator (earlier
    commits)."""
    from ffneuro.functional import kernels

    if getattr(kernels, "fill_uniforms", None) is not None:
        out = np.empty(count, np.float32)
        return lambda: kernels.fill_uniforms(np.uint64(12345), out)
    gen = torch.Generator().manual_seed(0)
    return lambda: torch.rand(count, generator=gen)


def dataset(kind: str, mnist_dir: str) -> Dataset:
    if kind == "digits":
        return load_dataset("digits")
    try:
        return load_dataset(f"mnist:{mnist_dir}")
    except Exception:           # noqa: BLE001 - MNIST absent: random rows of the same shape
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(4096, 784, generator=gen)
        y = torch.randint(0, 10, (4096,), generator=gen)
        return Dataset(name="random-784", x_train=x, y_train=y, x_test=x[:256], y_test=y[:256], num_classes=10,
                       feature_shape=(784,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/chip_step.json"))
    ap.add_argument("--mnist", default=os.environ.get("FFNEURO_MNIST_DIR", str(REPO.parent / "shared/data/mnist")))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=400, help="steps per timing (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for kind, widths in (("mnist", (500, 500, 500)), ("digits", (500, 500, 500))):
        data = dataset(kind, args.mnist)
        sizes = [int(data.x_train[0].numel()), *widths]
        if kind == "digits":
            sizes[0] += data.num_classes         # the digits' label is concatenated, MNIST's overlaid
        for batch in (1, 16):
            profile = CHIP_FOR_BATCH[batch]
            steps = max(args.steps // batch, 40)
            draws = round(rounding_draws(ff_step(data, widths, batch, profile, False)))
            row = {"layers": sizes, "batch": batch, "profile": profile, "data": data.name,
                   **median_times({"floor_s": floor_step(sizes, batch, data.num_classes, False),
                                   "floor_adam_s": floor_step(sizes, batch, data.num_classes, True),
                                   "float_step_s": ff_step(data, widths, batch, None, False),
                                   "chip_step_s": ff_step(data, widths, batch, profile, False),
                                   "chip_counted_step_s": ff_step(data, widths, batch, profile, True),
                                   "rounding_rng_s": draw_numbers(draws)}, steps, args.repeats),
                   "rounding_draws_per_step": draws}
            row["floor_chip_s"] = row["floor_s"] + row["rounding_rng_s"]
            row["chip_over_floor_chip"] = row["chip_step_s"] / row["floor_chip_s"]
            row["float_over_floor"] = row["float_step_s"] / row["floor_s"]
            row["float_over_floor_adam"] = row["float_step_s"] / row["floor_adam_s"]
            row["chip_over_floor"] = row["chip_step_s"] / row["floor_s"]
            row["chip_counted_over_floor"] = row["chip_counted_step_s"] / row["floor_s"]
            row["chip_over_float"] = row["chip_step_s"] / row["float_step_s"]
            rows.append(row)
            print({k: (round(v * 1e3, 3) if k.endswith("_s") else round(v, 2) if isinstance(v, float) else v)
                   for k, v in row.items()}, flush=True)
    write_json(args.out, {"ffneuro_version": __version__, "commit": code_commit(), "torch": torch.__version__, "threads": args.threads,
                          "steps": args.steps, "repeats": args.repeats, "load_average_1min": os.getloadavg()[0],
                          "rows": rows})


if __name__ == "__main__":
    main()
