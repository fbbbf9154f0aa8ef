"""Batch-aware chip learning: how a chip that holds several samples before writing its
weights learns under each batch rule, against batch 1 at the same bit width and epochs.

    python scripts/bench_batch_rule.py --out bench/batch_rule.json [--data digits] [--epochs 20]
    python scripts/bench_batch_rule.py --data mnist:DIR --train-subset 10000 --epochs 3 \
        --out bench/batch_rule_mnist.json
    python scripts/bench_batch_rule.py --data mnist:DIR --epochs 10 --val-fraction 0.1 \
        --profiles cmos-45nm --rules mean,sqrt --out bench/batch_rule_val.json

For each batch-holding profile (``cmos-45nm``: 8-bit weights, stochastic rounding, 16
samples; ``cortex-m7-int8``: 8-bit, round to nearest, 8 samples) the same 3×500 network
is trained at the profile's batch under each ``hardware.batch_rule``, which scales the
rate of the batch's mean update: ``mean`` (×1, the per-sample rate), ``sqrt`` (×√B) and
``sum`` (×B: each sample's update at the per-sample rate, accumulated before the one
write), and at batch 1 (the same profile, one sample per write, where the rules
coincide). Errors are on the test set after the same number of epochs, selected on
nothing; with --val-fraction a stratified share of the training set is held out and
its error reported beside the test error (the figure to choose a rule by). Memory limits are not enforced (cortex-m7-int8 does not hold 3×500 on one core;
the learning rule is what is compared). Results are written after every run, so a long
sweep can be stopped and re-run: finished runs are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.hw.profiles import load_profile
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

PROFILES = ("cmos-45nm", "cortex-m7-int8")


def run(cfg: RunConfig, data, profile: str) -> dict:
    t0 = time.perf_counter()
    m = train(cfg, data=data, progress=False, profile=profile, simulate_anyway=True)
    out = {"test_error": m["test_error"], "per_layer_error": m["per_layer_error"], "epochs": m["epochs"],
           "batch": m["batch_size_applied"], "wall_s": round(time.perf_counter() - t0, 1)}
    if "val_error" in m:
        out["val_error"] = m["val_error"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--train-subset", type=int, default=0, help="first N training samples (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: several runs side by side)")
    ap.add_argument("--val-fraction", type=float, default=0.0, help="hold out this stratified share (e.g. 0.1)")
    ap.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated batch-holding profiles")
    ap.add_argument("--rules", default="sum,mean,batch1,sqrt", help="comma-separated: sum, mean, sqrt, batch1")
    ap.add_argument("--out", type=Path, default=Path("bench/batch_rule.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed)
    if args.train_subset:
        data = dataclasses.replace(data, x_train=data.x_train[:args.train_subset],
                                   y_train=data.y_train[:args.train_subset])
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.update({"ffneuro_version": __version__, "data": args.data.split(":")[0], "epochs": args.epochs,
                   "train_samples": int(data.x_train.shape[0]), "test_samples": int(data.x_test.shape[0]),
                   "seed": args.seed, "val_fraction": args.val_fraction})
    runs = report.setdefault("runs", {})
    profiles, rules = args.profiles.split(","), args.rules.split(",")
    for profile in profiles:
        held = load_profile(profile).streaming.max_batch
        for name, batch, rule in ((f"{profile}/sum", held, "sum"), (f"{profile}/mean", held, "mean"),
                                  (f"{profile}/batch1", 1, "mean"), (f"{profile}/sqrt", held, "sqrt")):
            if name in runs or name.split("/")[1] not in rules:
                continue
            cfg = RunConfig.from_flat(data=args.data, epochs=args.epochs, batch_size=batch, seed=args.seed,
                                      batch_rule=rule, eval_every=0, val_fraction=args.val_fraction)
            runs[name] = {"profile": profile, "rule": rule, **run(cfg, data, profile)}
            print(name, runs[name], flush=True)
            write_json(args.out, report)
    for profile in profiles:
        if f"{profile}/batch1" not in runs:
            continue
        base = runs[f"{profile}/batch1"]["test_error"]["multi_pass"]
        for rule in ("mean", "sqrt", "sum"):
            if f"{profile}/{rule}" in runs:
                r = runs[f"{profile}/{rule}"]
                r["gap_to_batch1_points"] = round(r["test_error"]["multi_pass"] - base, 2)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
