"""On-chip learning at full length on real MNIST: every fixed-point profile that learns,
beside the float run of the same recipe.

    python scripts/bench_mnist_chip.py --data mnist:DIR --runs-dir runs/mnist-chip \
        --out bench/mnist_chip.json [--epochs 10] [--only loihi-like,cmos-45nm]

The same 3×500 FF network (the package defaults) is trained on all 60,000 training
images under each profile, at the profile's own batch (the samples the chip holds before
it writes its weights) and learning rule, and evaluated on the full test set; the float
twin is the same recipe without a profile (Adam, batch 32). Each run is a run dir under
``--runs-dir`` with a checkpoint per epoch: stop the script at any time and start it
again, and every run continues where it stopped (``ffneuro train --resume``), so the
whole table can be finished across sessions. The JSON is rewritten after every epoch of
every run with what is known so far: finished runs with their errors, wall time, energy
per training sample and per inference, SRAM and fit, and the run in progress with its
epochs done, each with the commit of the code that ran it. Runs go cheapest first
(batch-holding chips, then batch-1 chips).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.runs.files import read_json, write_json
from ffneuro.runs.provenance import code_commit
from ffneuro.train.loop import train

# (name, profile, config overrides): the float twin, then chips cheapest first; the
# batch-holding chips under both batch rules worth comparing (hardware.batch_rule: sqrt,
# the default, and mean). truenorth-like (2-bit) and akida-like (4-bit) weights cannot
# learn with this rule (bench/profiles.json; scripts/bench_shadow.py shows what they would
# need); speck-like is a spiking chip (its runs are in the spiking section).
RUNS = (("float", None, {}),
        ("cmos-45nm-mean", "cmos-45nm", {"batch_rule": "mean"}),
        ("cortex-m7-int8-mean", "cortex-m7-int8", {"batch_rule": "mean"}),
        ("cmos-45nm-sqrt", "cmos-45nm", {"batch_rule": "sqrt"}),
        ("cortex-m7-int8-sqrt", "cortex-m7-int8", {"batch_rule": "sqrt"}),
        ("loihi-like", "loihi-like", {}), ("loihi2-like", "loihi2-like", {}),
        ("spinnaker2-like", "spinnaker2-like", {}))


def summary(m: dict, wall_s: float) -> dict:
    est = m.get("estimate") or {}
    return {"test_error": m["test_error"], "per_layer_error": m["per_layer_error"],
            "cumulative_error": m["cumulative_error"], "epochs": m["epochs"], "batch": m["batch_size_applied"],
            "train_s": m["wall_s"], "wall_s": round(wall_s, 1),
            "training_energy_pj_per_sample": (est.get("training") or {}).get("energy_pj_per_sample"),
            "inference_energy_pj_per_sample": (est.get("inference") or {}).get("energy_pj_per_sample"),
            "inference_mode": m.get("inference_events_mode"),
            "ff_sram_bytes": est.get("ff_sram_bytes"), "fits": m.get("sram_fits"),
            "history": [{"epoch": h["epoch"], "test_error": h.get("test_error")} for h in m.get("history", [])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="mnist:DIR")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/mnist-chip"))
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/mnist_chip.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.update({"ffneuro_version": __version__, "data": args.data.split(":")[0], "epochs": args.epochs,
                   "network": "784-500-500-500 FF (package defaults)", "threads": args.threads,
                   "train_samples": int(data.x_train.shape[0]), "test_samples": int(data.x_test.shape[0])})
    runs = report.setdefault("runs", {})
    wanted = [r for r in RUNS if not args.only or r[0] in args.only.split(",")]
    commit = code_commit()
    def save(name: str) -> None:
        """Write this process's entry for ``name`` into the report as it is on disk now, so
        processes running disjoint ``--only`` sets can share one --out file."""
        on_disk = json.loads(args.out.read_text()) if args.out.exists() else {}
        on_disk.update({k: v for k, v in report.items() if k != "runs"})
        on_disk.setdefault("runs", {})[name] = runs[name]
        write_json(args.out, on_disk)

    for name, profile, overrides in wanted:
        if runs.get(name, {}).get("epochs") == args.epochs:
            continue
        run_dir = args.runs_dir / name
        cfg = RunConfig.from_flat(data=args.data, epochs=args.epochs, seed=0, **overrides)
        done = (run_dir / "metrics.json").exists() and read_json(run_dir / "metrics.json").get("epochs") == args.epochs
        t0 = time.perf_counter()

        def on_epoch(record: dict, name=name) -> None:
            runs[name] = {"profile": profile, **overrides, "in_progress": True, "epochs_done": record["epoch"],
                          "test_error": record.get("test_error"), "commit": commit}
            save(name)

        m = read_json(run_dir / "metrics.json") if done else train(
            cfg, out=run_dir, resume=(run_dir / "config.json").exists(), data=data, profile=profile,
            progress=False, simulate_anyway=True, on_epoch=on_epoch)
        runs[name] = {"profile": profile, **overrides, **summary(m, time.perf_counter() - t0), "commit": commit}
        print(name, json.dumps({k: v for k, v in runs[name].items() if k != "history"}), flush=True)
        save(name)
    final = json.loads(args.out.read_text())
    float_err = (final["runs"].get("float") or {}).get("test_error")
    for name, r in final["runs"].items():
        if float_err and name != "float" and not r.get("in_progress"):
            r["gap_to_float_points"] = round(r["test_error"]["multi_pass"] - float_err["multi_pass"], 2)
    write_json(args.out, final)


if __name__ == "__main__":
    main()
