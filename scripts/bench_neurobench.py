"""NeuroBench's own metric code against ffneuro's figures of the same runs and samples:
a 784-500-500-500 FF net trained on a real-MNIST subset, and small digits nets (graded
one-pass and multi-pass, LIF, conv, CwComp conv with batch norm).

For each run: NeuroBench's ``Benchmark`` on the mirror (``ffneuro neurobench``), ffneuro's
count pass of the same samples, the estimate's ``"neurobench"`` entry (from the run's
``events.json``), and ffneuro / NeuroBench per metric. One thread; about 1.5 minutes.

    python scripts/bench_neurobench.py --data mnist:DIR --out bench/neurobench.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.hw.estimate import estimate_from_run
from ffneuro.hw.neurobench_run import ratios, run_benchmark
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

COMMON = ["loop.entropy_probe=0"]
DIGITS = {
    "digits-relu-one-pass": ["units.layers=64,64", "loop.epochs=3"],
    "digits-relu-multi-pass": ["units.layers=64,64", "loop.epochs=3", "inference.head=false"],
    "digits-lif-latency": ["units.neuron=lif", "units.layers=64,64", "units.spike_encoding=latency",
                           "units.steps=8", "loop.epochs=3"],
    "digits-conv": ["units.stack=conv:8:k3:p1:pool2,dense:64", "loop.epochs=3"],
    "digits-cwcomp-batchnorm": ["units.stack=conv:10:k3:p1,conv:20:k3:p1:g10:pool2", "units.loss=cwc",
                                "units.norm=none", "units.batch_norm=true", "optim.lr=0.01", "loop.epochs=3"],
}


def measure(name: str, sets: list[str], data, spec: str | None, root: Path) -> dict:
    cfg = RunConfig().with_sets(COMMON + sets)
    out = root / name
    t0 = time.perf_counter()
    metrics = train(cfg, data=data, out=out, progress=False, count_events=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = run_benchmark(out, data=spec)
    bench_s = time.perf_counter() - t0
    est = estimate_from_run(out, "float32")["neurobench"]
    strip = {"units", "sample"}
    return {"config": sets, "train_samples": int(data.x_train.shape[0]), "epochs": metrics["epochs"],
            "test_error_pct": metrics["test_error"], "n_test": r["n_test"], "inference": r["inference"],
            "neurobench": r["neurobench"], "ffneuro_count_pass": {k: v for k, v in r["ffneuro"].items() if k not in strip},
            "ratio_count_pass_to_neurobench": r["ratio_ffneuro_to_neurobench"],
            "ffneuro_estimate": {k: v for k, v in est.items() if k not in strip},
            "ratio_estimate_to_neurobench": ratios(est, r["neurobench"]),
            "train_s": round(train_s, 2), "neurobench_s": round(bench_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the MNIST spec (mnist:DIR)")
    ap.add_argument("--train-subset", type=int, default=10000, help="first N MNIST training samples")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/neurobench.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        mnist = load_dataset(args.data)
        mnist = dataclasses.replace(mnist, x_train=mnist.x_train[:args.train_subset],
                                    y_train=mnist.y_train[:args.train_subset])
        runs["mnist-784-500-500-500"] = measure(
            "mnist", ["units.layers=500,500,500", f"loop.epochs={args.epochs}"], mnist, args.data, Path(tmp))
        digits = load_dataset("digits")
        for name, sets in DIGITS.items():
            runs[name] = measure(name, sets, digits, None, Path(tmp))
    result = {"ffneuro_version": __version__, "neurobench_version": _version("neurobench"),
              "torch_version": torch.__version__, "threads": 1, "cpus": os.cpu_count(),
              "sample": "one test sample's inference in the run's mode (one-pass: 1 neutral pass + head; "
                        "multi-pass: C label passes); the first test samples the trainer counted (events.json)",
              "runs": runs, "wall_s": round(time.perf_counter() - t0, 1)}
    write_json(args.out, result)
    for name, r in runs.items():
        print(name, {k: (None if v is None else round(v, 5)) for k, v in r["ratio_count_pass_to_neurobench"].items()})


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
