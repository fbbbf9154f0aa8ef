"""What chips whose weights are too narrow to learn would need: a learning shadow.

    python scripts/bench_shadow.py --data mnist:DIR --out bench/shadow.json

``truenorth-like`` (2-bit weights) and ``akida-like`` (4-bit) cannot learn FF with their
own weights (bench/profiles.json). Here the same 3×500 network learns on each of them with
a wider shadow copy of every weight (``hardware.shadow_bits``: updates land on the shadow,
the chip computes with it rounded to its own weight format), against no shadow, on the
first --train-subset MNIST training images for --epochs epochs and the full test set.
Each run also reports what the wider words cost: the weight word, the FF SRAM, the cores
and the fit. The JSON is rewritten after every run; finished runs are skipped on a
restart.
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
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

RUNS = (("akida-like", 0), ("akida-like", 8), ("akida-like", 12), ("truenorth-like", 0), ("truenorth-like", 8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="mnist:DIR")
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/shadow.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    full = load_dataset(args.data)
    data = dataclasses.replace(full, x_train=full.x_train[:args.train_subset], y_train=full.y_train[:args.train_subset])
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.update({"ffneuro_version": __version__, "data": args.data.split(":")[0], "epochs": args.epochs,
                   "network": "784-500-500-500 FF (package defaults)", "train_samples": args.train_subset,
                   "test_samples": int(data.x_test.shape[0]), "threads": args.threads})
    runs = report.setdefault("runs", {})
    for profile, bits in RUNS:
        name = f"{profile}/{bits or 'none'}"
        if name in runs:
            continue
        cfg = RunConfig.from_flat(data=args.data, epochs=args.epochs, seed=0, shadow_bits=bits)
        t0 = time.perf_counter()
        m = train(cfg, data=data, profile=profile, progress=False, simulate_anyway=True)
        est = m["estimate"]
        runs[name] = {"profile": profile, "shadow_bits": bits, "test_error": m["test_error"],
                      "per_layer_error": m["per_layer_error"], "batch": m["batch_size_applied"],
                      "weight_word_bits": est["memory"]["weight_word_bits"],
                      "weight_sram_bytes": sum(layer["weight_sram_bytes"] for layer in est["layers"]),
                      "ff_sram_bytes": est["ff_sram_bytes"], "cores_used": est["cores_used"], "fits": est["fits"],
                      "misfit_reasons": est["memory"]["misfit_reasons"],
                      "training_energy_pj_per_sample": est["training"]["energy_pj_per_sample"],
                      "inference_energy_pj_per_sample": est["inference"]["energy_pj_per_sample"],
                      "wall_s": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps({k: runs[name][k] for k in ("test_error", "weight_word_bits", "fits")}), flush=True)
        write_json(args.out, report)


if __name__ == "__main__":
    main()
