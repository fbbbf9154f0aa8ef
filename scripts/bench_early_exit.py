"""Early-exit inference on MNIST: test error against energy per inference as the exit
threshold moves, on a fixed-point profile, with the threshold chosen on validation data.

    python scripts/bench_early_exit.py --data mnist:DIR --out bench/early_exit.json \
        [--profile loihi-like] [--epochs 10] [--run-dir runs/early-exit-mnist]

A 3×500 FF network (the default recipe, random negatives, a one-pass head) is trained in
float on the training set less a stratified 10 % validation split (resumable: the run dir
keeps its checkpoint), then quantised post-training to ``--profile`` exactly as
``ffneuro export`` does. On that integer network, for every threshold of the grid, the
exits, error and energy per inference come from ``ffneuro eval --exit-threshold``'s
library function (``analysis.early_exit.exit_curve``), first on the validation split,
then on the test set. The chosen threshold is the one with the least validation energy
whose validation error is at most that of the better full-depth inference on validation
(multi-pass over the run's inference layers, or the cumulative score of every unit, i.e.
early exit that never exits) + ``--budget`` points; the test numbers of that threshold are
reported against both full-depth inferences on test (and one-pass beside them). An export with that threshold is replayed by the golden model
on the whole test set, and its early-exit error must equal ffneuro's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.analysis.early_exit import exit_curve
from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.export import golden
from ffneuro.export.hdf5 import export_run
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def multi_pass(curve: dict) -> dict:
    return next(r for r in curve["reference"] if r["mode"] == "multi-pass")


def full_depth(curve: dict) -> dict:
    """The threshold that never exits early (θ = 1 on this grid): scores of every unit."""
    return max(curve["points"], key=lambda p: (p["mean_depth"], p["threshold"]))


def choose(val: dict, budget: float) -> dict | None:
    """The least-energy threshold on validation within ``budget`` points of the better of
    the two full-depth inferences (the run's multi-pass layers, or every unit's score)."""
    limit = min(multi_pass(val)["error"], full_depth(val)["error"]) + budget
    ok = [p for p in val["points"] if p["error"] <= limit]
    return min(ok, key=lambda p: (p["energy_pj_per_sample"], p["threshold"])) if ok else None


def plot(report: dict, path: Path) -> None:
    """Test error against energy per inference: the early-exit curve and the reference modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = report["test"]
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = test["points"]
    ax.plot([p["energy_pj_per_sample"] / 1e3 for p in pts], [p["error"] for p in pts], "o-", label="early exit")
    for p in pts[::2]:
        ax.annotate(f"θ={p['threshold']:g}", (p["energy_pj_per_sample"] / 1e3, p["error"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    for r, marker in zip(test["reference"], "sD"):
        ax.plot(r["energy_pj_per_sample"] / 1e3, r["error"], marker, label=r["mode"])
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per inference, nJ ({report['profile']})")
    ax.set_ylabel("test error, %")
    ax.set_title(f"Early exit, {report['network'].split(',')[0]}, {report['data']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="mnist:DIR")
    ap.add_argument("--profile", default="loihi-like")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--budget", type=float, default=0.2, help="points of error early exit may add (validation)")
    ap.add_argument("--run-dir", type=Path, default=Path("runs/early-exit-mnist"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/early_exit.json"))
    ap.add_argument("--plot", default="docs/early_exit.png", help="PNG of the curve ('' for none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = RunConfig.from_flat(data=args.data, epochs=args.epochs, val_fraction=0.1, seed=0).validate()
    metrics_path = args.run_dir / "metrics.json"
    t0 = time.perf_counter()
    if not metrics_path.exists() or json.loads(metrics_path.read_text()).get("epochs") != args.epochs:
        train(cfg, out=args.run_dir, resume=(args.run_dir / "config.json").exists(), progress=True)
    train_s = json.loads(metrics_path.read_text())["wall_s"]

    t1 = time.perf_counter()
    val = exit_curve(args.run_dir, list(GRID), profile=args.profile, split="val")
    test = exit_curve(args.run_dir, list(GRID), profile=args.profile, split="test")
    curve_s = time.perf_counter() - t1
    chosen = choose(val, args.budget)
    report = {"ffneuro_version": __version__, "data": args.data.split(":")[0], "profile": args.profile,
              "network": "784-500-500-500 FF, trained in float, quantised post-training",
              "epochs": args.epochs, "train_s": train_s, "curve_s": round(curve_s, 1),
              "threads": args.threads, "budget_points": args.budget, "grid": list(GRID),
              "val": val, "test": test}
    if chosen is not None:
        theta = chosen["threshold"]
        on_test = next(p for p in test["points"] if p["threshold"] == theta)
        full, deep = multi_pass(test), full_depth(test)
        report["chosen"] = {
            "threshold": theta, "val_error": chosen["error"],
            "val_full_error": min(multi_pass(val)["error"], full_depth(val)["error"]),
            "test_error": on_test["error"], "test_full_error": full["error"],
            "test_full_depth_error": deep["error"],
            "error_added_points": round(on_test["error"] - full["error"], 3),
            "error_added_points_vs_full_depth": round(on_test["error"] - deep["error"], 3),
            "energy_pj_per_sample": on_test["energy_pj_per_sample"],
            "full_energy_pj_per_sample": full["energy_pj_per_sample"],
            "energy_cut": round(1 - on_test["energy_pj_per_sample"] / full["energy_pj_per_sample"], 4),
            "mean_depth": on_test["mean_depth"], "exit_fraction": on_test["exit_fraction"]}
        with tempfile.TemporaryDirectory() as tmp:
            h5 = Path(tmp) / "m.h5"
            export_run(args.run_dir, h5, profile=args.profile, vectors=64, exit_threshold=theta)
            ds = load_dataset(args.data)
            g = golden.verify(h5, ds.x_test.numpy(), ds.y_test.numpy())
        report["golden"] = {"ok": g["ok"], "vectors": g["vectors"], "test_error": g["test_error"],
                            "early_exit_matches": abs(g["test_error"]["early_exit"] - on_test["error"]) < 1e-4}
    write_json(args.out, report)
    if args.plot:
        plot(report, Path(args.plot))
    print(json.dumps(report.get("chosen"), indent=1), report.get("golden"), f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
