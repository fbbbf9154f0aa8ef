"""Train a named recipe on real MNIST and write its learning curve and final metrics as JSON.

    python scripts/bench_mnist.py --preset cff-paper-cff --out bench/cff.json
    python scripts/bench_mnist.py --preset hinton --epochs 60 --eval-every 1 --out bench/hinton.json

The MNIST folder comes from --mnist, else $FFNEURO_MNIST_DIR, else ../shared/data/mnist.
Reports the training wall time (evaluation excluded) at which the multi-pass and one-pass
test errors first reach each threshold in --thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from ffneuro.api import build_config
from ffneuro.data.loaders import load_dataset
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

REPO = Path(__file__).resolve().parent.parent


def mnist_dir(arg: str | None) -> str:
    return arg or os.environ.get("FFNEURO_MNIST_DIR") or str(REPO.parent / "shared" / "data" / "mnist")


def time_to(history: list[dict], mode: str, threshold: float) -> dict | None:
    for h in history:
        err = h.get("test_error", {}).get(mode)
        if err is not None and err <= threshold:
            return {"epoch": h["epoch"], "train_s": h["train_s"], "error": err}
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mnist")
    ap.add_argument("--profile")
    ap.add_argument("--set", action="append", default=[],
                    help="extra override SECTION.KEY=VALUE, as `ffneuro train --set` (repeatable)")
    ap.add_argument("--thresholds", default="3.3,2.1,2.0,1.4")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"data": f"mnist:{mnist_dir(args.mnist)}", "epochs": args.epochs, "eval_every": args.eval_every,
                 "seed": args.seed}
    cfg = build_config(args.preset, overrides).with_sets(args.set)      # --set section.key=value, as the CLI
    data = load_dataset(cfg.data.name, seed=cfg.loop.seed)
    t0 = time.time()
    partial: list[dict] = []

    def save_partial(record: dict) -> None:      # a long run leaves its curve behind as it goes
        partial.append(record)
        write_json(Path(args.out).with_suffix(".partial.json"), {"preset": args.preset, "history": partial})

    metrics = train(cfg, data=data, progress=False, profile=args.profile, on_epoch=save_partial)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    result = {
        "preset": args.preset, "config": cfg.to_dict(), "profile": args.profile,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "total_wall_s": round(time.time() - t0, 1),
        "final": {k: v for k, v in metrics.items() if k not in ("history", "estimate")},
        "time_to": {mode: {str(t): time_to(metrics["history"], mode, t) for t in thresholds}
                    for mode in metrics["test_error"]},
        "history": metrics["history"],
    }
    write_json(Path(args.out), result)
    print(json.dumps({"preset": args.preset, "test_error": metrics["test_error"],
                      "per_layer_error": metrics["per_layer_error"], "wall_s": metrics["wall_s"]}))


if __name__ == "__main__":
    main()
