"""Throughput: an FF epoch against a backprop epoch of the same MLP, in the same process,
plus the cost of training under a chip profile and of counting events.

    python scripts/bench_throughput.py --out bench/throughput.json

1. MNIST epoch (60k samples, batch 200) for hidden widths --layers: backprop (Adam, CE on
   a 10-way output layer), FF (random negatives, no head: two forward passes and the
   weight gradients only), FF + one-pass head (the default: adds the neutral pass).
2. Step time on the same batch: float FF vs FF under a fixed-point profile (quantised
   weights/activities, fixed-point updates), with and without event counting.
Each timing is the best of --repeats runs, to keep noise from the other core out.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from ffneuro.config import RunConfig
from ffneuro.data.loaders import Dataset, load_dataset
from ffneuro.hw.events import EventLedger
from ffneuro.hw.chip import chip_spec
from ffneuro.hw.profiles import load_profile
from ffneuro.runs.files import write_json
from ffneuro.rng import Streams
from ffneuro.train.loop import build_network
from ffneuro.train.step import train_step

REPO = Path(__file__).resolve().parent.parent


def backprop_epoch(x, y, sizes, bs, gen) -> float:
    mods = []
    for a, b in zip(sizes, sizes[1:]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods, torch.nn.Linear(sizes[-1], 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(x.shape[0], generator=gen)
    t0 = time.perf_counter()
    for s in range(0, x.shape[0], bs):
        idx = perm[s:s + bs]
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def ff_epoch(data: Dataset, cfg: RunConfig, gen) -> float:
    streams = Streams(0, len(cfg.units.layers))
    net = build_network(cfg, data, streams)
    x, y = net.prepare_input(data.x_train), data.y_train
    active = list(range(len(cfg.units.layers)))
    perm = torch.randperm(x.shape[0], generator=gen)
    t0 = time.perf_counter()
    for s in range(0, x.shape[0], cfg.loop.batch_size):
        idx = perm[s:s + cfg.loop.batch_size]
        train_step(net, cfg, x[idx], y[idx], active, streams)
    return time.perf_counter() - t0


def step_time(data: Dataset, cfg: RunConfig, profile, steps: int, count: bool, gen) -> float:
    chip = chip_spec(profile) if profile is not None else None
    streams = Streams(0, len(cfg.units.layers))
    net = build_network(cfg, data, streams, chip)
    x, y = net.prepare_input(data.x_train), data.y_train
    if chip is not None:
        net.calibrate(x[:256], y[:256])
    ledger = EventLedger() if count else None
    active = list(range(len(cfg.units.layers)))
    bs = cfg.loop.batch_size
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.arange(s * bs, (s + 1) * bs) % x.shape[0]
        train_step(net, cfg, x[idx], y[idx], active, streams, ledger, bs)
    return (time.perf_counter() - t0) / steps


def best(fn, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=os.environ.get("FFNEURO_MNIST_DIR", str(REPO.parent / "shared/data/mnist")))
    ap.add_argument("--layers", default="500,500,500")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/throughput.json")
    args = ap.parse_args()
    data = load_dataset(f"mnist:{args.mnist}")
    widths = tuple(int(w) for w in args.layers.split(","))
    gen = torch.Generator().manual_seed(0)
    base = RunConfig.from_flat(data="mnist", layers=widths, batch_size=args.batch)
    epoch = {
        "backprop_s": best(lambda: backprop_epoch(data.x_train, data.y_train, [784, *widths], args.batch, gen),
                           args.repeats),
        "ff_s": best(lambda: ff_epoch(data, base.with_flat(head=False), gen), args.repeats),
        "ff_head_s": best(lambda: ff_epoch(data, base, gen), args.repeats),
    }
    epoch["ff_over_backprop"] = epoch["ff_s"] / epoch["backprop_s"]
    epoch["ff_head_over_backprop"] = epoch["ff_head_s"] / epoch["backprop_s"]
    print({k: round(v, 3) for k, v in epoch.items()}, flush=True)

    steps = {}
    for name, bs, n in (("cmos-45nm", 16, 200), ("loihi-like", 1, 1000)):
        prof = load_profile(name)
        cfg = base.with_flat(batch_size=bs)
        row = {"batch": bs,
               "float_step_s": best(lambda: step_time(data, cfg, None, n, False, gen), args.repeats),
               "chip_step_s": best(lambda: step_time(data, cfg, prof, n, False, gen), args.repeats),
               "chip_counted_step_s": best(lambda: step_time(data, cfg, prof, n, True, gen), args.repeats)}
        row["chip_over_float"] = row["chip_step_s"] / row["float_step_s"]
        row["counting_overhead"] = row["chip_counted_step_s"] / row["chip_step_s"] - 1
        steps[name] = row
        print(name, {k: round(v, 5) for k, v in row.items()}, flush=True)
    write_json(Path(args.out), {"layers": list(widths), "batch": args.batch, "torch_threads": torch.get_num_threads(),
                                "epoch": epoch, "step": steps})


if __name__ == "__main__":
    main()
