"""The weight-bit sweep re-priced: energy per sample of one network at 2–16-bit weights,
under the per-event table (every width costs the same) and under the bit-scaled model
(operands priced by their widths, Horowitz 45 nm coefficients of `cmos-45nm`).

Analytic event counts (`ffneuro estimate --layers`), so the two models see the same
events and only the prices differ. Profiles are `cmos-45nm` with the weight and learning
widths changed, written as TOML files that extend it.

    python scripts/bench_bits_energy.py --out bench/bits_energy.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ffneuro import __version__
from ffneuro.hw.estimate import estimate_from_layers
from ffneuro.runs.files import write_json

BITS = (2, 4, 6, 8, 12, 16)
LAYERS = (784, 500, 500, 500)
BASE = "cmos-45nm"


def profile_text(bits: int, model: str) -> str:
    why = 'source = "weight-bit sweep (bench_bits_energy.py)", confidence = "assumed"'
    return (f'name = "{BASE}-w{bits}-{model}"\nextends = "{BASE}"\n[precision]\n'
            f"weight_bits = {{ value = {bits}, {why} }}\nlearning_bits = {{ value = {bits}, {why} }}\n"
            f'[energy_model]\nmodel = {{ value = "{model}", {why} }}\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/bits_energy.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bits in BITS:
            row = {"weight_bits": bits}
            for model in ("table", "bit-scaled"):
                path = Path(tmp) / f"w{bits}-{model}.toml"
                path.write_text(profile_text(bits, model))
                r = estimate_from_layers(str(path), list(LAYERS))
                key = model.replace("-", "_")
                row[f"{key}_training_energy_pj"] = r["training"]["energy_pj_per_sample"]
                row[f"{key}_inference_energy_pj"] = r["inference"]["energy_pj_per_sample"]
                row[f"{key}_synop_dense_pj"] = r["energy_table_pj"]["synop_dense"]
                row["ff_sram_bytes"] = r["ff_sram_bytes"]
            rows.append(row)
            print(row, flush=True)
    write_json(args.out, {"ffneuro_version": __version__, "base_profile": BASE, "layers": list(LAYERS),
                          "counts": "analytic (activity 0.5, input activity 0.2, one-pass inference)",
                          "bits": rows})


if __name__ == "__main__":
    main()
