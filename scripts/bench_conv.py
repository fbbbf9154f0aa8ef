"""Convolutional FF on image data: a shipped preset (seed 002's light models, CwComp)
trained at full length, resumable, its test errors and trainable parameters written to
bench JSON.

    python scripts/bench_conv.py --preset ff-tiny --data cifar10:DIR --run-dir runs/ff-tiny \
        --out bench/conv_ff-tiny_cifar10.json [--set loop.epochs=30] [--threads 2]

The run dir keeps a checkpoint after every epoch: run the same command again and training
resumes exactly where it stopped; the JSON is rewritten after every epoch with the history
so far (``"complete": false`` until the last epoch is done). A run longer than one sitting
keeps its run dir under ``bench/resume/`` (see bench/resume/README.md; not tracked, the
checkpoint is generated state); the JSON records the run dir (``run_dir``) and the
results doc marks the run "resumable" where its checkpoint is present.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.config.run import preset
from ffneuro.runs.files import CHECKPOINT, write_json
from ffneuro.runs.provenance import code_commit
from ffneuro.train.loop import train

KEEP = ("test_error", "per_layer_error", "cumulative_error", "inference_layers", "epochs", "wall_s", "dataset",
        "n_train", "n_test", "batch_size_applied")


def redact(spec: str) -> str:
    """A dataset spec without the machine's path: ``cifar10:/a/b/cifar10-bin`` → ``cifar10:DIR``."""
    kind, sep, _ = spec.partition(":")
    return f"{kind}:DIR" if sep else spec


def where(run_dir: Path) -> str:
    """The run dir as the bench JSON records it: relative to the repository when inside it
    (``bench/resume/NAME``), else only its name (no machine's path)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return run_dir.resolve().relative_to(root).as_posix()
    except ValueError:
        return run_dir.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--data", required=True, help="dataset spec, e.g. cifar10:DIR or mnist:DIR")
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE overrides")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset).replace(data={"name": args.data}).with_sets(args.set)
    resume = (args.run_dir / CHECKPOINT).exists()
    started = time.perf_counter()
    config = cfg.to_dict()
    config["data"]["name"] = redact(args.data)       # the dataset, not this machine's folder
    report = {"ffneuro_version": __version__, "commit": code_commit(), "preset": args.preset, "sets": args.set,
              "config": config, "threads": args.threads, "run_dir": where(args.run_dir), "complete": False}

    def on_epoch(record: dict) -> None:
        report.setdefault("history", []).append(record)
        write_json(args.out, report)
        print(f"epoch {record['epoch']}: {record.get('test_error')} ({record['train_s']:.0f} s training)", flush=True)

    if resume and args.out.exists():
        report["history"] = json.loads(args.out.read_text()).get("history", [])
    m = train(cfg, out=args.run_dir, resume=resume, progress=False, on_epoch=on_epoch)
    saved = json.loads((args.run_dir / "config.json").read_text())
    report.update({k: m[k] for k in KEEP if k in m})
    report["history"] = m["history"]
    report["parameters"] = saved.get("parameters")
    report["seconds_per_epoch"] = round(m["wall_s"] / max(m["epochs"], 1), 1)
    report["process_s_this_session"] = round(time.perf_counter() - started, 1)
    report["complete"] = True
    write_json(args.out, report)
    print(args.preset, m["test_error"], flush=True)


if __name__ == "__main__":
    main()
