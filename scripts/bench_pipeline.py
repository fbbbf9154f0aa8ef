"""Pipeline-parallel FF against one process, and backprop beside it: one epoch of a 4×1000
MLP on MNIST (60,000 images, batch 32, network schedule, random negatives).

    python scripts/bench_pipeline.py [--mnist DIR] [--out bench/pipeline.json] [--force]
    python scripts/bench_pipeline.py --staleness [--force]

``--staleness`` measures instead what CFF's stale γ costs (docs/pipeline.md): the preset
cff-paper-cff (3×500, γ over all units, batch 200) on the embedded digits for
STALENESS_EPOCHS epochs and three seeds, in one process and in 2 and 3 stages, where the
later members of γ come from copies refreshed every R = (number of stages) batches.

Configurations, each a fresh process running what ``ffneuro train`` runs: (a) FF in one process, 1 thread;
(b) FF in one process, 2 threads; (c) FF in 2 balanced pipeline stages (units 1–2 | 3–4
and the head), 1 thread each; (d) the backprop baseline (``loop.algo = bp``) of the same
MLP, 2 threads. ``train_s`` is the run's own training time for the epoch (metrics.json's
``wall_s``: batches only, without start-up, evaluation or writing); ``process_s`` the whole
command, start-up and evaluation included, and ``process_cpu_s`` the CPU time of all its
processes (less sensitive than wall time to other work on the machine); a pipeline run
also records each stage's time busy and waiting in its batch loop (``per_stage``). The machine's load average is recorded before
each configuration. Configurations already in the output file are kept unless --force
(re-measure them on an idle machine).

The MNIST folder comes from --mnist, else $FFNEURO_MNIST_DIR, else ../shared/data/mnist.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ffneuro import __version__
from ffneuro.runs.files import write_json

REPO = Path(__file__).resolve().parent.parent
COMMON = ["units.layers=1000,1000,1000,1000", "loop.epochs=1", "loop.schedule=network", "loop.negatives=random",
          "loop.batch_size=32"]
CONFIGS = {       # name: (threads, stages, extra --set assignments)
    "ff_1_process_1_thread": (1, 1, []),
    "ff_1_process_2_threads": (2, 1, []),
    "ff_2_stages_1_thread_each": (1, 2, []),
    "bp_1_process_2_threads": (2, 1, ["loop.algo=bp"]),
}
# What `ffneuro train --set ... --threads T --stages S --out DIR` runs, without printing.
RUNNER = ("import json, sys; from pathlib import Path; from ffneuro import api; "
          "a = json.loads(sys.argv[1]); "
          "api.train_run(api.resolve_train_config(sets=a['sets']), out=Path(a['out']), progress=False, "
          "threads=a['threads'], stages=a['stages'])")


STALENESS_EPOCHS = 40
STALENESS_SEEDS = (0, 1, 2)
STALENESS_STAGES = (1, 2, 3)


def staleness(report: dict, force: bool, out: Path) -> None:
    """Test errors of CFF (γ over all units) with 1, 2 and 3 stages on the digits."""
    sect = report.setdefault("cff_staleness", {})
    sect.update({"preset": "cff-paper-cff", "data": "digits", "epochs": STALENESS_EPOCHS,
                 "gamma_refresh_batches": "the number of stages", "seeds": list(STALENESS_SEEDS)})
    runs = sect.setdefault("runs", {})
    for stages in STALENESS_STAGES:
        for seed in STALENESS_SEEDS:
            key = f"{stages}_stages_seed{seed}"
            if key in runs and not force:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-c", "from ffneuro.cli import main; main()", "train", "--preset",
                       "cff-paper-cff", "--epochs", str(STALENESS_EPOCHS), "--seed", str(seed), "--threads", "1",
                       "--stages", str(stages), "--no-progress", "--json", "--out", str(Path(tmp) / "run")]
                r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"error: {key}: {r.stderr.strip().splitlines()[-1]}")
            m = json.loads(r.stdout)
            runs[key] = {"test_error": m["test_error"], "per_layer_error": m["per_layer_error"]}
            print(f"{key}: {m['test_error']}", flush=True)
            write_json(out, report)
    mean = {}
    for stages in STALENESS_STAGES:
        errs = [runs[f"{stages}_stages_seed{s}"]["test_error"] for s in STALENESS_SEEDS]
        mean[f"{stages}_stages"] = {mode: round(sum(e[mode] for e in errs) / len(errs), 2) for mode in errs[0]}
    sect["mean_test_error"] = mean
    sect["cost_points"] = {k: {mode: round(v - mean["1_stages"][mode], 2) for mode, v in m.items()}
                           for k, m in mean.items() if k != "1_stages"}
    write_json(out, report)
    print(json.dumps({"mean_test_error": mean, "cost_points": sect["cost_points"]}, indent=2))


def mnist_dir(arg: str | None) -> str:
    return arg or os.environ.get("FFNEURO_MNIST_DIR") or str(REPO.parent / "shared" / "data" / "mnist")


def measure(data: str, threads: int, stages: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        job = {"sets": [f"data.name={data}", *COMMON, *extra], "out": str(Path(tmp) / "run"), "threads": threads,
               "stages": stages}
        load = os.getloadavg()
        t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(job)], capture_output=True, text=True)
        process_s = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise SystemExit(f"error: {job['sets']}: "
                             f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        m = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    out = {"threads": threads, "stages": stages, "sets": extra, "train_s": m["wall_s"],
           "process_s": round(process_s, 1),
           "process_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
           "test_error": m["test_error"], "load_average_before": [round(v, 2) for v in load]}
    if "pipeline" in m:
        out["per_stage"] = m["pipeline"]["per_stage"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "pipeline.json")
    ap.add_argument("--force", action="store_true", help="re-measure configurations already in --out")
    ap.add_argument("--only", nargs="*", choices=list(CONFIGS), help="measure these configurations only")
    ap.add_argument("--staleness", action="store_true", help="measure CFF's stale γ on the digits instead")
    args = ap.parse_args()
    data = f"mnist:{mnist_dir(args.mnist)}"
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.staleness:
        return staleness(report, args.force, args.out)
    report.update({
        "what": "one FF epoch of 4x1000 on MNIST (60,000 images, batch 32, network schedule, random negatives): "
                "one process with 1 and 2 threads, 2 pipeline stages with 1 thread each; the backprop baseline "
                "of the same MLP with 2 threads",
        "command": "python scripts/bench_pipeline.py --force",
        "ffneuro_version": __version__,
        "host": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                 "platform": platform.platform()},
        "full_epochs": True,
    })
    runs = report.setdefault("runs", {})
    for name, (threads, stages, extra) in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        if name in runs and not args.force:
            print(f"{name}: kept ({runs[name]['train_s']} s)")
            continue
        runs[name] = measure(data, threads, stages, extra)
        print(f"{name}: {runs[name]['train_s']} s training, {runs[name]['process_s']} s in all", flush=True)
        write_json(args.out, report)
    if all(k in runs for k in CONFIGS):
        one, two, pipe, bp = (runs[k]["train_s"] for k in CONFIGS)
        report["ratios"] = {
            "pipeline_over_1_thread": round(pipe / one, 3),
            "pipeline_over_2_threads": round(pipe / two, 3),
            "pipeline_over_backprop_2_threads": round(pipe / bp, 3),
            "2_threads_over_1_thread": round(two / one, 3),
        }
        report["targets"] = {
            "pipeline <= 0.65 x one thread": pipe <= 0.65 * one,
            "pipeline faster than one process with 2 threads": pipe < two,
            "pipeline faster than backprop with 2 threads": pipe < bp,
        }
    write_json(args.out, report)
    print(json.dumps({k: report.get(k) for k in ("ratios", "targets")}, indent=2))


if __name__ == "__main__":
    main()
