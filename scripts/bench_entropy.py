"""Cost of the per-epoch functional-entropy log (target: under 5 % of training time).

    python scripts/bench_entropy.py --mnist ../shared/data/mnist --out bench/entropy_overhead.json

Trains the default 3×500 FF network on the first --subset MNIST training samples with the
entropy probe off and on (1,000 held-out samples), alternating --repeats times in one
process so that both see the same machine load, and compares the wall time of whole
epochs (training plus the probe; test evaluation is off in both). Because that difference
is smaller than the machine's noise, it also times the probe computation itself (median
of --calls calls on the same network) and reports it as a share of the best epoch time.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from ffneuro import rng
from ffneuro.rng import Streams

from ffneuro.train.probe import entropy_record, probe_goodness, probe_indices
from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.functional.encoding import random_wrong_labels
from ffneuro.runs.files import write_json
from ffneuro.train.loop import build_network, train


def probe_call_s(cfg: RunConfig, data, calls: int) -> float:
    """Median wall time of one epoch-end entropy log (probe pass + decomposition)."""
    net = build_network(cfg, data, Streams(cfg.loop.seed, len(cfg.units.layers))).eval()
    x_test = net.prepare_input(data.x_test)
    g = rng.generator(cfg.loop.seed, 'probe')
    idx = probe_indices(x_test.shape[0], cfg.loop.entropy_probe, g)
    y = data.y_test[idx]
    probe = (x_test[idx], y, random_wrong_labels(y, net.num_classes, g))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        entropy_record(*probe_goodness(net, *probe)[:2])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--data", help="another dataset spec instead, e.g. digits")
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probe", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=20, help="timed calls of the probe alone")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/entropy_overhead.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load_dataset(a.data or f"mnist:{a.mnist}")
    data = dataclasses.replace(data, x_train=data.x_train[:a.subset], y_train=data.y_train[:a.subset])
    times: dict[str, list[float]] = {"off": [], "on": []}
    train_s: list[float] = []              # training loop only (no probe, no evaluation), probe off
    for _ in range(a.repeats):
        for mode, probe in (("off", 0), ("on", a.probe)):
            cfg = RunConfig.from_flat(data=data.name, epochs=a.epochs, eval_every=0, head=False, entropy_probe=probe).validate()
            t0 = time.perf_counter()
            m = train(cfg, data=data, progress=False)
            times[mode].append(time.perf_counter() - t0)
            if mode == "off":
                train_s.append(m["wall_s"])
    best = {k: min(v) for k, v in times.items()}
    call_s = probe_call_s(cfg, data, a.calls)
    epoch_s = min(train_s) / a.epochs
    result = {"data": data.name, "n_train": int(data.x_train.shape[0]), "subset": a.subset, "epochs": a.epochs, "probe": a.probe, "threads": a.threads, "wall_s": times,
              "best_wall_s": best, "overhead_pct": round((best["on"] / best["off"] - 1) * 100, 2),
              "probe_call_s": round(call_s, 5), "best_epoch_s": round(epoch_s, 3),
              "probe_share_of_epoch_pct": round(100 * call_s / epoch_s, 3)}
    write_json(a.out, result)
    print(result)


if __name__ == "__main__":
    main()
