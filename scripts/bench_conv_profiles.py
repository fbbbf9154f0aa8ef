"""Energy, SRAM and fit of a trained conv network on every shipped hardware profile.

    python scripts/bench_conv_profiles.py --run-dir runs/ff-tiny-chip-cmos --out bench/conv_profiles.json

The run dir must hold measured event counts (``events.json``: a run trained under a
profile). Its per-sample counts — synops, neuron updates, weight reads and writes,
learning updates, state accesses, goodness operations, measured on the real activities of
the run — are priced with each profile's per-event energies, and the network is mapped
onto each profile's SRAM and cores (``ffneuro estimate --run RUN --profile NAME`` for
every profile). The counts are those of the run's own datapath: on a binary-spike
profile a graded activity would be a rate code whose spikes are not counted one by one
(a lower bound there; see the README's known limitations).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ffneuro import __version__
from ffneuro.hw.estimate import estimate_from_run
from ffneuro.hw.profiles import list_profiles
from ffneuro.runs.files import read_json, write_json


def profile_row(run_dir: Path, name: str) -> dict:
    rep = estimate_from_run(run_dir, name)
    mem = rep["memory"] if "memory" in rep else rep
    return {"profile": name,
            "inference_energy_pj_per_sample": rep["inference"]["energy_pj_per_sample"],
            "training_energy_pj_per_sample": rep["training"]["energy_pj_per_sample"],
            "ff_sram_bytes": mem.get("ff_sram_bytes"),
            "cores_used": rep.get("cores_used"), "cores_available": mem.get("cores_available"),
            "fits": rep.get("fits"), "misfit_reasons": mem.get("misfit_reasons", []),
            "backprop_sram_bytes": mem.get("backprop_sram_bytes")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--out", default=Path("bench/conv_profiles.json"), type=Path)
    args = ap.parse_args()
    config = read_json(args.run_dir / "config.json")
    rows = [profile_row(args.run_dir, name) for name in list_profiles()]
    write_json(args.out, {"ffneuro_version": __version__, "run_dir": str(args.run_dir.name),
                          "trained_under": config.get("profile_name"), "dataset": config.get("dataset"),
                          "layer_sizes": config["layer_sizes"], "parameters": config.get("parameters"),
                          "config": config["config"], "profiles": rows})
    for r in rows:
        print(f"{r['profile']:<16} infer {r['inference_energy_pj_per_sample'] / 1e3:10.1f} nJ  train "
              f"{r['training_energy_pj_per_sample'] / 1e3:10.1f} nJ  SRAM {r['ff_sram_bytes']:>10}  "
              f"fits {r['fits']}", flush=True)


if __name__ == "__main__":
    main()
