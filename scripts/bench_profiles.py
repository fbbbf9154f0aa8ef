"""Accuracy under each hardware profile, and accuracy against weight bits, on real MNIST.

    python scripts/bench_profiles.py --out bench/profiles.json

Part 1 trains the same 3×500 FF network (float recipe: the package defaults) under every
shipped profile: each profile imposes its own number formats, batch limit and learning
rule (plain SGD at --onchip-lr / fan-in for chips without optimiser state). The float
reference is the same network trained without a profile (Adam, batch --batch).
Part 2 sweeps weight bits (learning bits equal) with a profile that extends --bits-base
(cmos-45nm: 8-bit activations, stochastic rounding, batch 16; loihi-like: batch 1). Batch-1 learning visits every sample separately, so to bound the run time the
training set can be cut to its first --train-subset samples (the test set is always the
full 10,000).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.hw.profiles import list_profiles
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

REPO = Path(__file__).resolve().parent.parent


def run(cfg: RunConfig, data, profile) -> dict:
    t0 = time.time()
    m = train(cfg, data=data, progress=False, profile=profile, simulate_anyway=True)
    return {"test_error": m["test_error"], "per_layer_error": m["per_layer_error"], "wall_s": round(time.time() - t0, 1),
            "batch": m["batch_size_applied"],
            "inference_energy_pj": m.get("estimate", {}).get("inference", {}).get("energy_pj_per_sample"),
            "training_energy_pj": m.get("estimate", {}).get("training", {}).get("energy_pj_per_sample"),
            "fits": m.get("sram_fits")}


def bits_profile(folder: Path, base: str, bits: int) -> Path:
    path = folder / f"{base}-w{bits}.toml"
    path.write_text(
        f'name = "{base}-w{bits}"\nextends = "{base}"\n[precision]\n'
        f'weight_bits = {{ value = {bits}, source = "bench_profiles.py sweep", confidence = "assumed" }}\n'
        f'learning_bits = {{ value = {bits}, source = "bench_profiles.py sweep", confidence = "assumed" }}\n')
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=os.environ.get("FFNEURO_MNIST_DIR", str(REPO.parent / "shared/data/mnist")))
    ap.add_argument("--layers", default="500,500,500")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--onchip-lr", type=float, default=RunConfig().hardware.onchip_lr)
    ap.add_argument("--bits", default="2,3,4,6,8,10,12,16")
    ap.add_argument("--profiles", default="all", help="comma-separated names, all, or none")
    ap.add_argument("--bits-base", default="cmos-45nm", help="profile the weight-bit sweep extends")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="bench/profiles.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    full = load_dataset(f"mnist:{args.mnist}")
    n = args.train_subset or full.x_train.shape[0]
    data = dataclasses.replace(full, x_train=full.x_train[:n], y_train=full.y_train[:n])
    cfg = RunConfig.from_flat(data="mnist", layers=tuple(int(w) for w in args.layers.split(",")), epochs=args.epochs,
                      batch_size=args.batch, onchip_lr=args.onchip_lr, eval_every=0)
    result = {"config": cfg.to_dict(), "train_samples": n, "profiles": {}, "references": {}, "bits": {},
              "bits_base": args.bits_base}
    out = Path(args.out)
    result["references"]["float-adam"] = run(cfg, data, None)
    print(result["references"], flush=True)
    names = {"all": list_profiles(), "none": []}.get(args.profiles, args.profiles.split(","))
    for name in names:
        result["profiles"][name] = run(cfg, data, name)
        print(name, result["profiles"][name], flush=True)
        write_json(out, result)
    with tempfile.TemporaryDirectory() as tmp:
        for bits in [int(b) for b in args.bits.split(",")]:
            result["bits"][str(bits)] = run(cfg, data, str(bits_profile(Path(tmp), args.bits_base, bits)))
            print("bits", bits, result["bits"][str(bits)], flush=True)
            write_json(out, result)
    write_json(out, result)


if __name__ == "__main__":
    main()
