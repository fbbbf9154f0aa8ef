"""Sweeps on real MNIST: a 40-trial recipe search run by 1 and by 2 workers, and a
multi-objective search over profiles × widths × weight bits.

    python scripts/bench_sweep.py --data mnist:DIR --work runs/sweep-bench --out bench/sweep.json \
        [--part recipes|pareto|all]

Data: the first 10,000 MNIST training images (written once to an .npz in the work
folder) and the full 10,000-image test set: the budget of the hand-picked recipes in
``bench/cff_variants_10k.json`` (10,000 samples, 15 epochs), whose best test error is
the bar to beat.

Part ``recipes``: ``SPACE_RECIPES`` (below) run as the same 40-trial study twice, once by
one worker and once by two (``ffneuro sweep run --workers N``, one thread each, fixed
sampler seed), each in its own SQLite storage, timed from start to the last trial; the
ratio of the two wall times is the scaling measured. Trials are chosen on the 10 %
validation split; the best trial of the 2-worker study is then re-run on the whole 10,000
(``ffneuro sweep rerun``) and its test error compared with the hand-picked best.

Part ``pareto``: ``SPACE_PARETO``: validation error, inference energy and SRAM minimised
together over profiles × widths × weight bits (NSGA-II), 24 trials by 2 workers; its
Pareto front is written as CSV/JSON/PNG by ``ffneuro sweep show --out`` (the PNGs into
``docs/``).

Each part is skipped when its results are already in the JSON (``--force`` to redo).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ffneuro import __version__, api
from ffneuro.data.loaders import load_dataset
from ffneuro.runs.files import atomic_write_bytes, write_json

SUBSET = 10_000
EPOCHS = 15

SPACE_RECIPES = """
[study]
name = "{name}"
objectives = ["val_error"]
trials = 40
seed = 0
pruner = "median"
pruner_startup_trials = 5
pruner_warmup_epochs = 5
val_mode = "one_pass"

[fixed]
"data.name" = "npz:{npz}"
"data.val_fraction" = 0.1
"loop.epochs" = {epochs}
"loop.eval_every" = 5
"loop.entropy_probe" = 0

[params."optim.lr"]
low = 3e-4
high = 1e-2
log = true

[params."optim.head_lr"]
low = 3e-4
high = 1e-2
log = true

[params."loop.batch_size"]
choices = [32, 64, 128, 256]

[params."units.layers"]
choices = ["500,500,500", "1000,1000", "800,800,800"]

[params."units.loss"]
choices = ["ff", "symba"]

[params."units.peer_norm"]
choices = [0.0, 0.03]

[params."loop.algo"]
choices = ["ff", "cff"]
"""

SPACE_PARETO = """
[study]
name = "pareto"
objectives = ["val_error", "inference_energy_pj", "sram_bytes"]
trials = 24
seed = 0
val_mode = "one_pass"

[fixed]
"data.name" = "npz:{npz}"
"data.val_fraction" = 0.1
"loop.epochs" = 3
"loop.batch_size" = 64
"loop.eval_every" = 0
"loop.entropy_probe" = 0
"hardware.simulate_anyway" = true

[params."hardware.profile"]
choices = ["cmos-45nm", "cortex-m7-int8"]     # batch-holding chips: batch-1 chips train 8-16x slower here

[params."units.layers"]
choices = ["200,200", "500,500", "500,500,500", "1000,1000"]

[params."profile.precision.weight_bits"]
choices = [4, 6, 8]
"""


def subset_npz(data: str, path: Path) -> Path:
    """The first SUBSET training images and the whole test set as uint8 .npz (made once)."""
    if path.exists():
        return path
    ds = load_dataset(data)
    to_u8 = lambda x: np.round(x.numpy() * 255).astype(np.uint8)      # noqa: E731  (MNIST is k/255 exactly)
    import io

    buf = io.BytesIO()
    np.savez(buf, x_train=to_u8(ds.x_train[:SUBSET]), y_train=ds.y_train[:SUBSET].numpy().astype(np.int64),
             x_test=to_u8(ds.x_test), y_test=ds.y_test.numpy().astype(np.int64))
    atomic_write_bytes(path, buf.getvalue())
    return path


def hand_picked_best() -> dict:
    d = json.loads(Path("bench/cff_variants_10k.json").read_text())
    best = min(((r["variant"], mode, e) for r in d["rows"] for mode, e in r["test_error"].items()), key=lambda t: t[2])
    return {"file": "bench/cff_variants_10k.json", "subset": d["subset"], "epochs": d["epochs"],
            "variant": best[0], "mode": best[1], "test_error": best[2]}


def relative(obj, base: str):
    """``obj`` with every string path under ``base`` (this checkout) made relative to it."""
    if isinstance(obj, str):
        return obj.replace(base.rstrip("/") + "/", "")
    if isinstance(obj, list):
        return [relative(v, base) for v in obj]
    if isinstance(obj, dict):
        return {k: relative(v, base) for k, v in obj.items()}
    return obj


def run_study(space_text: str, work: Path, tag: str, workers: int) -> dict:
    space = work / f"{tag}.toml"
    space.write_text(space_text)
    storage, out = work / f"{tag}.db", work / f"{tag}-trials"
    for p in (storage, out):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    t0 = time.perf_counter()
    summary = api.sweep_run(space, storage=str(storage), out=out, workers=workers, threads=1,
                            on_trial=lambda row: print(tag, json.dumps(row, default=str), flush=True))
    wall = time.perf_counter() - t0
    return {"workers": workers, "wall_s": round(wall, 1), "storage": str(storage), "states": summary["states"],
            "objectives": summary["objectives"], "best": relative(summary["best"], str(Path.cwd()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="mnist:DIR")
    ap.add_argument("--work", type=Path, default=Path("runs/sweep-bench"))
    ap.add_argument("--part", choices=("recipes", "pareto", "all"), default="all")
    ap.add_argument("--out", type=Path, default=Path("bench/sweep.json"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    npz = subset_npz(args.data, args.work / "mnist-10k.npz").absolute()
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.update({"ffneuro_version": __version__, "data": f"first {SUBSET:,} MNIST training images, full test set",
                   "epochs": EPOCHS, "hand_picked": hand_picked_best()})
    if args.part in ("recipes", "all") and (args.force or "recipes" not in report):
        one = run_study(SPACE_RECIPES.format(name="recipes-1w", npz=npz, epochs=EPOCHS), args.work, "recipes-1w", 1)
        two = run_study(SPACE_RECIPES.format(name="recipes-2w", npz=npz, epochs=EPOCHS), args.work, "recipes-2w", 2)
        rerun = api.sweep_rerun("recipes-2w", storage=two["storage"], out=args.work / "recipes-best", progress=False,
                                threads=2, overwrite=True)
        report["recipes"] = {"trials": 40, "one_worker": one, "two_workers": two,
                             "wall_ratio_2w_over_1w": round(two["wall_s"] / one["wall_s"], 3),
                             "best_rerun": {"trial": rerun["sweep_trial"], "test_error": rerun["test_error"],
                                            "epochs": rerun["epochs"], "n_train": rerun["n_train"]}}
        write_json(args.out, report)
        print(json.dumps(report["recipes"], indent=1, default=str)[:3000], flush=True)
    if args.part in ("pareto", "all") and (args.force or "pareto" not in report):
        res = run_study(SPACE_PARETO.format(npz=npz), args.work, "pareto", 2)
        show = args.work / "pareto-report"
        api.sweep_show("pareto", storage=res["storage"], out=show, force=True)
        for png in show.glob("pareto_*.png"):
            shutil.copyfile(png, Path("docs") / f"sweep_{png.name}")
        csv = show / "trials.csv"
        report["pareto"] = {**res, "front_csv": relative(csv.read_text(), str(Path.cwd())) if csv.exists() else None,
                            "plots": sorted(f"docs/sweep_{p.name}" for p in show.glob("pareto_*.png"))}
        write_json(args.out, report)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
