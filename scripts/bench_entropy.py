"""Cost of the per-epoch functional-entropy log (target: under 5 % of training time).

    python scripts/bench_entropy.py --mnist ../shared/data/mnist --out bench/entropy_overhead.json

Trains the default 3×500 FF network on the first --subset MNIST training samples with the
entropy probe off and on (1,000 held-out samples), alternating --repeats times in one
process so that both see the same machine load, and compares the wall time of whole
epochs (training plus the probe; test evaluation is off in both).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from ffneuro.config import TrainConfig
from ffneuro.data import load_dataset
from ffneuro.runio import write_json
from ffneuro.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probe", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/entropy_overhead.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load_dataset(f"mnist:{a.mnist}")
    data = dataclasses.replace(data, x_train=data.x_train[:a.subset], y_train=data.y_train[:a.subset])
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(a.repeats):
        for mode, probe in (("off", 0), ("on", a.probe)):
            cfg = TrainConfig(data="mnist", epochs=a.epochs, eval_every=0, head=False, entropy_probe=probe).validate()
            t0 = time.perf_counter()
            train(cfg, data=data, progress=False)
            times[mode].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    result = {"subset": a.subset, "epochs": a.epochs, "probe": a.probe, "threads": a.threads, "wall_s": times,
              "best_wall_s": best, "overhead_pct": round((best["on"] / best["off"] - 1) * 100, 2)}
    write_json(a.out, result)
    print(result)


if __name__ == "__main__":
    main()
