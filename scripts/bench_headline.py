"""The README's headline runs, measured: ``ffneuro train --profile loihi-like`` and the
float default ``ffneuro train``, both on the embedded digits dataset with default options.

    python scripts/bench_headline.py --out bench/headline.json

Writes each run's test errors (multi-pass, one-pass), per-layer and cumulative errors,
epochs, wall time, and for the chip run its energy per sample and cores used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.runs.files import write_json
from ffneuro.train.loop import train

KEEP = ("test_error", "per_layer_error", "cumulative_error", "epochs", "wall_s", "dataset", "profile",
        "batch_size_applied")


def run(profile: str | None) -> dict:
    cfg = RunConfig().replace(hardware={"profile": profile})
    t0 = time.perf_counter()
    m = train(cfg, progress=False)
    row = {k: m[k] for k in KEEP if k in m}
    row["process_s"] = round(time.perf_counter() - t0, 1)
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
    out = {"ffneuro_version": __version__, "runs": {}}
    for name, profile in (("float-default", None), ("loihi-like", "loihi-like")):
        out["runs"][name] = run(profile)
        print(name, out["runs"][name]["test_error"], flush=True)
        write_json(Path(args.out), out)


if __name__ == "__main__":
    main()
