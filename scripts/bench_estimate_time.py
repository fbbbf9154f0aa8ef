"""Wall time of `ffneuro estimate` for a 4×2000 net, process start-up included (the
command an architect runs in a loop), with the machine's load beside it.

    python scripts/bench_estimate_time.py --out bench/estimate_time.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ffneuro import __version__
from ffneuro.runs.files import write_json

COMMAND = ["estimate", "--profile", "loihi-like", "--layers", "784,2000,2000,2000,2000"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/estimate_time.json"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    wall_s = []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ffneuro.cli", *COMMAND], check=True, capture_output=True)
        wall_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_s = time.perf_counter() - t0
    imported = subprocess.run([sys.executable, "-c", "import sys; from ffneuro.cli import app; "
                               "print('torch' in sys.modules)"], check=True, capture_output=True, text=True)
    result = {"ffneuro_version": __version__, "command": "ffneuro " + " ".join(COMMAND),
              "wall_s": [round(w, 3) for w in wall_s], "median_wall_s": round(statistics.median(wall_s), 3),
              "min_wall_s": round(min(wall_s), 3), "bare_python_s": round(python_s, 3),
              "torch_imported": imported.stdout.strip() == "True",
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count()}
    write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
