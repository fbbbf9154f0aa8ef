"""The README's headline runs, measured as a user runs them: ``ffneuro train --profile
loihi-like`` and the float default ``ffneuro train``, each a fresh process (the command
line, import and start-up included), on the embedded digits with default options.

    python scripts/bench_headline.py --out bench/headline.json

Writes the commit run, then each run's test errors (multi-pass, one-pass), per-layer and cumulative errors,
epochs, the command's wall time (``command_s``) and the trainer's (``wall_s``), and for the
chip run its energy per sample and cores used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.runs.files import write_json
from ffneuro.runs.provenance import code_commit

KEEP = ("test_error", "per_layer_error", "cumulative_error", "epochs", "wall_s", "dataset", "profile",
        "batch_size_applied")


def command() -> list[str]:
    """The installed ``ffneuro`` command (beside this Python), else the module's CLI."""
    exe = shutil.which("ffneuro", path=str(Path(sys.executable).parent)) or shutil.which("ffneuro")
    return [exe] if exe else [sys.executable, "-c", "from ffneuro.cli import main; main()"]


def run(profile: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [*command(), "train", "--out", str(out), *(["--profile", profile] if profile else [])]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        m = json.loads((out / "metrics.json").read_text())
    row = {k: m[k] for k in KEEP if k in m}
    row["command_s"] = round(elapsed, 1)
    if "estimate" in m:
        est = m["estimate"]
        row["inference_energy_pj_per_sample"] = est["inference"]["energy_pj_per_sample"]
        row["training_energy_pj_per_sample"] = est["training"]["energy_pj_per_sample"]
        row["cores_used"] = est["cores_used"]
        row["fits"] = est["fits"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/headline.json")
    args = ap.parse_args()
    out = {"ffneuro_version": __version__, "commit": code_commit(), "torch": torch.__version__,
           "cpu_count": os.cpu_count(), "load_average_1min_before": os.getloadavg()[0], "runs": {}}
    for name, profile in (("float-default", None), ("loihi-like", "loihi-like")):
        out["runs"][name] = run(profile)
        print(name, out["runs"][name]["test_error"], flush=True)
        write_json(Path(args.out), out)


if __name__ == "__main__":
    main()
