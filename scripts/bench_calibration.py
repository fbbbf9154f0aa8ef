"""Calibration against measured silicon (#16 item 6): ffneuro's estimates of the networks of
published on-chip measurements, beside the published figures.

    python scripts/bench_calibration.py --out bench/calibration.json
    python scripts/bench_calibration.py --no-train      # analytic estimates only (no run)

Each published measurement below is data: the figure as printed, its unit, where it is
printed and what it includes. For each one the script builds the same dense network shape
and asks ffneuro's own estimate functions (``estimate_from_layers`` and
``estimate_from_run``, the two behind ``ffneuro estimate --layers`` and ``--run``) for
the same figure under the matching profile:

* ``analytic``: the documented assumptions of ``ffneuro estimate`` (graded units, one
  step per pass, activity 0.5, input activity 0.2, one-pass inference);
* ``spiking``: the same, with binary spikes over the profile's ``time_steps``
  (``binary_input=True``), the form the published networks actually run in;
* ``measured``: where a measurement has a ``run``, a 1-epoch run of that shape is
  trained under the profile on a small data set of the published input size, and its
  measured event counts are priced (``estimate_from_run``).

The reported ffneuro figure is the measured one where a run exists, else the analytic one;
``ratio`` = published / ffneuro. The systematic factors (static power, host I/O and the
chip's management cores, routing, time steps) are quantified from the same numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Published values are converted to one unit per quantity: energy in pJ, time in s,
# throughput in samples/s, power in mW.
SI_UNIT = {"energy": "pJ", "latency": "s", "throughput": "samples/s", "power": "mW"}
TO_SI = {"pJ": 1.0, "nJ": 1e3, "µJ": 1e6, "mJ": 1e9, "J": 1e12,
         "s": 1.0, "ms": 1e-3, "µs": 1e-6, "samples/s": 1.0, "mW": 1.0, "W": 1e3}
COMPARED = ("energy", "latency", "throughput")       # quantities an estimate also gives

RENNER = ("Renner, Sheldon, Zlotnik, Tao & Sornborger, \"The backpropagation algorithm implemented on spiking "
          "neuromorphic hardware\", Nature Communications 15, 9691 (2024), doi:10.1038/s41467-024-53827-9")
BLOUW = ("Blouw, Choo, Hunsberger & Eliasmith, \"Benchmarking keyword spotting efficiency on neuromorphic "
         "hardware\", arXiv:1812.01739 (2018; NICE 2019); LaTeX source in github.com/abr/power_benchmarks, "
         "paper/power_summary.tex")
LIN = ("Lin et al., \"Programming spiking neural networks on Intel's Loihi\", IEEE Computer 51(3), 2018 "
       "(Renner et al. 2024's ref. 101), as tabulated in Renner et al. 2024, Table 1; the primary paper was "
       "not read")
DAVIES = "Davies et al., IEEE Micro 38(1) 2018, Table 2, as recorded in hw_profiles/loihi-like.toml (spike_route notes)"

MEASUREMENTS = [
    {
        "id": "renner2024",
        "chip": "Loihi 1",
        "profile": "loihi-like",
        "citation": RENNER,
        "where": "Table 1 (Review of the MNIST literature on neuromorphic hardware), rows 'Renner et al. (2024) "
                 "[This study]': on-chip nBP and inference",
        "network": "400-400-10 spiking network, all layers trained on chip by neuromorphic backpropagation "
                   "(synfire-gated phases)",
        "data": "MNIST (400 inputs; the table's note on the shape could not be read)",
        "layer_sizes": [400, 400, 10], "num_classes": 10,
        "approximation": "the same dense shape trained by FF: FF learns layer by layer from two forward passes "
                         "(positive and negative), the published network by a forward, a backward and an update "
                         "phase per sample",
        "includes": "energy and latency per sample as printed in the table; whether static power is included is "
                    "not stated in what we could read, but the inference figure's average power (energy / latency) "
                    "is below the board idle power measured by Blouw et al., so it cannot contain all of it",
        "run": {"data": "mnist-crop20", "n_train": 2000, "n_test": 500, "epochs": 1},
        "figures": [
            {"phase": "training", "quantity": "energy", "value": 0.59, "unit": "mJ",
             "quote": "On-chip backpropagation ... Energy per Sample (mJ) 0.59",
             "explains": "different algorithm: the published network passes activity forward and errors "
                         "backward through gated phases of spiking time steps, FF makes two forward passes and a "
                         "local update; a constant power would have to be several hundred mW to fill the gap "
                         "(see the factors)"},
            {"phase": "training", "quantity": "latency", "value": 1.5, "unit": "ms",
             "quote": "On-chip backpropagation ... Latency per Sample (ms) 1.5",
             "explains": "the chip steps through time steps with a barrier per step and the phases of the "
                         "algorithm; our time model charges events only, spread over the mapped cores"},
            {"phase": "inference", "quantity": "energy", "value": 0.0025, "unit": "mJ",
             "quote": "On-chip inference only ... Energy per Sample (mJ) 0.0025",
             "explains": "time steps: the published figure lies between our default (one synaptic op per "
                         "non-zero input and pass) and our spiking estimate (every one of the profile's 32 steps); "
                         "the network's own steps per inference, not given in the table, decide where"},
            {"phase": "inference", "quantity": "latency", "value": 0.17, "unit": "ms",
             "quote": "On-chip inference only ... Latency per Sample (ms) 0.17",
             "explains": "time steps and per-step barrier synchronisation, not modelled by the event-time sum"},
        ],
    },
    {
        "id": "blouw2019",
        "chip": "Loihi 1 (Wolf Mountain board)",
        "profile": "loihi-like",
        "citation": BLOUW,
        "where": "Table 1 (Mean power consumption and energy cost per inference), row 'Loihi'; Methodology, "
                 "Power Measurements ('Data I/O', 'Measurement Precision') for what the figures include and the "
                 "management-core overhead",
        "network": "390-256-256-29 keyword spotter (dense, trained off chip, run as a spiking network with "
                   "Nengo Loihi)",
        "data": "'aloha' keyword spotting (MFCC frames of 390 features, 29 character outputs)",
        "layer_sizes": [390, 256, 256, 29], "num_classes": 29,
        "approximation": "the same dense shape as an FF network with 29 classes; no on-chip learning was "
                         "measured, so only the inference figures are compared",
        "includes": "dynamic energy per inference = (running power - idle power) / inferences per second; the "
                    "idle power (measured after boot) holds silicon leakage and the embedded x86 cores' idling; "
                    "the dynamic part holds barrier synchronisation, spike processing, the x86 cores' work on "
                    "every time step and about 70 mW of x86 activity that starts after the first run; "
                    "inputs are injected from the host",
        "run": None,
        "figures": [
            {"phase": "inference", "quantity": "energy", "value": 0.00027, "unit": "J",
             "quote": "Loihi ... Joules/Inf 0.00027",
             "explains": "mostly the embedded x86 management cores and host I/O (about 70 mW of the 81 mW "
                         "dynamic power, see the factors); what is left is within the range of our graded and "
                         "spiking estimates"},
            {"phase": "inference", "quantity": "throughput", "value": 296, "unit": "samples/s",
             "quote": "Loihi ... Inf/Sec 296",
             "explains": "a real-time stream fed from the host, one frame per inference: the rate is set by "
                         "I/O and time steps, not by the cores' event time"},
            {"phase": None, "quantity": "power", "role": "idle", "value": 0.029, "unit": "W",
             "quote": "Loihi ... Idle (W) 0.029"},
            {"phase": None, "quantity": "power", "role": "running", "value": 0.110, "unit": "W",
             "quote": "Loihi ... Running (W) 0.110"},
            {"phase": None, "quantity": "power", "role": "dynamic", "value": 0.081, "unit": "W",
             "quote": "Loihi ... Dynamic (W) 0.081"},
            {"phase": None, "quantity": "power", "role": "host_overhead", "value": 70, "unit": "mW",
             "quote": "the difference between idling from boot and idling after model execution is "
                      "approximately 70mW"},
        ],
    },
    {
        "id": "lin2018",
        "chip": "Loihi 1",
        "profile": "loihi-like",
        "citation": LIN,
        "where": "Renner et al. 2024, Table 1, row '101 Lin et al. (2018), Loihi, S-STDP'",
        "network": "1920-10, a single layer trained on chip by supervised STDP (the table's note on the "
                   "shape could not be read)",
        "data": "MNIST",
        "layer_sizes": [1920, 10], "num_classes": 10,
        "approximation": "one dense FF layer of the same shape; how the 1920 inputs are made from the image is "
                         "not known to us (if an untrained layer on chip makes them, its cost is missing here); "
                         "the inference figure carries a note we could not read and is not used",
        "includes": "energy per training sample as tabulated by Renner et al.; what it includes is not stated "
                    "there",
        "run": None,
        "figures": [
            {"phase": "training", "quantity": "energy", "value": 0.553, "unit": "mJ",
             "quote": "Energy per Sample (mJ) 0.553",
             "explains": "STDP with traces updated on every time step of a long presentation, and an input "
                         "stage we do not know; neither is an FF pass"},
        ],
    },
]

# For the routing factor: the energy one mesh hop adds to a spike (the larger, north-south figure).
HOP_PJ = {"value": 4.0, "unit": "pJ", "source": DAVIES}


# ----------------------------------------------------------------------------------------
# Published figures
# ----------------------------------------------------------------------------------------
def si(fig: dict) -> float:
    """A published figure in the unit its quantity is compared in (SI_UNIT)."""
    return fig["value"] * TO_SI[fig["unit"]]


def figure(m: dict, quantity: str, phase=None, role=None) -> dict | None:
    for f in m["figures"]:
        if f["quantity"] == quantity and f.get("phase") == phase and f.get("role") == role:
            return f
    return None


def published_seconds(m: dict, phase: str) -> float | None:
    """The published time per sample of a phase: its latency, else 1 / its throughput."""
    lat, thr = figure(m, "latency", phase), figure(m, "throughput", phase)
    return si(lat) if lat else (1.0 / si(thr) if thr else None)


# ----------------------------------------------------------------------------------------
# ffneuro's estimates
# ----------------------------------------------------------------------------------------
def summary(report: dict) -> dict:
    """The parts of an estimate report the calibration uses, per phase."""
    out = {"source": report["source"], "cores": report["memory"]["cores_used"],
           "cores_available": report["memory"]["cores_available"], "fits": report["fits"]}
    for ph in ("training", "inference"):
        r = report[ph]
        out[ph] = {"energy_pj": r["energy_pj_per_sample"], "dynamic_pj": r["dynamic_energy_pj_per_sample"],
                   "static_pj": r["static_energy_pj_per_sample"], "latency_s": r["latency_s"],
                   "samples_per_s": r["samples_per_s"],
                   "spike_route_pj": r["energy_pj_by_kind"].get("spike_route", 0.0),
                   "energy_pj_by_kind": {k: v for k, v in r["energy_pj_by_kind"].items() if v}}
    if "assumptions" in report:
        out["assumptions"] = report["assumptions"]
    return out


def estimates(m: dict, run_dir: Path | None = None) -> dict:
    """ffneuro's estimates of a measurement's network: analytic, spiking and (with a run
    dir) measured."""
    from ffneuro.hw.estimate import estimate_from_layers, estimate_from_run

    sizes, classes = m["layer_sizes"], m["num_classes"]
    out = {"analytic": summary(estimate_from_layers(m["profile"], sizes, num_classes=classes)),
           "spiking": summary(estimate_from_layers(m["profile"], sizes, num_classes=classes, binary_input=True))}
    if run_dir is not None:
        out["measured"] = summary(estimate_from_run(run_dir, m["profile"]))
    return out


def our_value(est: dict, fig: dict) -> float | None:
    """ffneuro's figure for a published one, in the same unit."""
    ph = est[fig["phase"]]
    return {"energy": ph["energy_pj"], "latency": ph["latency_s"], "throughput": ph["samples_per_s"]}[fig["quantity"]]


def ratio(published: float, ours: float | None) -> float | None:
    return None if not ours else published / ours


def rows(m: dict, est: dict) -> list[dict]:
    """One row per compared published figure: the figure, ffneuro's (the measured run's
    where there is one, else the analytic estimate's), the ratio published / ffneuro, and
    the analytic and spiking estimates beside them."""
    main = "measured" if "measured" in est else "analytic"
    out = []
    for fig in m["figures"]:
        if fig["quantity"] not in COMPARED:
            continue
        pub = si(fig)
        row = {"measurement": m["id"], "phase": fig["phase"], "quantity": fig["quantity"],
               "published": {"value": fig["value"], "unit": fig["unit"], "quote": fig["quote"],
                             "si": pub, "si_unit": SI_UNIT[fig["quantity"]]},
               "ffneuro_source": main, "ffneuro": our_value(est[main], fig)}
        row["ratio"] = ratio(pub, row["ffneuro"])
        for kind in ("analytic", "spiking"):
            row[f"ffneuro_{kind}"] = our_value(est[kind], fig)
            row[f"ratio_{kind}"] = ratio(pub, row[f"ffneuro_{kind}"])
        row["explains"] = fig["explains"]
        out.append(row)
    return out


def calibrate(m: dict, run_dir: Path | None = None) -> dict:
    """A measurement's estimates and rows (the core of the script; ``run_dir``: a run of
    its shape trained under its profile, or None for the analytic estimates only)."""
    est = estimates(m, run_dir)
    return {"estimates": est, "rows": rows(m, est)}


# ----------------------------------------------------------------------------------------
# Systematic factors
# ----------------------------------------------------------------------------------------
def factors(measurements: list[dict], results: dict) -> dict:
    """Each candidate explanation of the gaps, quantified on the energy rows."""
    blouw = next(m for m in measurements if m["id"] == "blouw2019")
    idle_mw = si(figure(blouw, "power", role="idle"))
    overhead_mw = si(figure(blouw, "power", role="host_overhead"))
    energy_rows = [r for res in results.values() for r in res["rows"] if r["quantity"] == "energy"]
    by_id = {m["id"]: m for m in measurements}

    static, host, routing, steps = [], [], [], []
    for r in energy_rows:
        m, est = by_id[r["measurement"]], results[r["measurement"]]["estimates"]
        main = est[r["ffneuro_source"]][r["phase"]]
        pub, ours = r["published"]["si"], r["ffneuro"]
        t_pub = published_seconds(m, r["phase"])
        key = {"measurement": r["measurement"], "phase": r["phase"]}
        # Static power: the measured idle power over our latency, and the constant power that
        # would close the gap over the published time per sample.
        static_pj = idle_mw * main["latency_s"] * 1e9            # mW × s = 1e9 pJ
        static.append(key | {"idle_pj_over_our_latency": static_pj, "ratio_with_idle": pub / (ours + static_pj),
                             "published_avg_power_mw": None if t_pub is None else pub / t_pub / 1e9,
                             "power_to_close_gap_mw": None if t_pub is None else (pub - ours) / t_pub / 1e9})
        # Host I/O and management cores: the overhead Blouw et al. name, over their time per inference.
        if r["measurement"] == "blouw2019":
            over_pj = overhead_mw * t_pub * 1e9
            host.append(key | {"overhead_pj": over_pj, "share_of_published": over_pj / pub,
                               "ratio_without_overhead": (pub - over_pj) / ours,
                               "ratio_spiking_without_overhead": (pub - over_pj) / r["ffneuro_spiking"]})
        # Routing: the mesh hops per routed spike it would take to close the gap of the spiking estimate.
        sp = est["spiking"][r["phase"]]
        spikes = sp["spike_route_pj"] / _spike_route_pj(m["profile"])
        gap = pub - sp["energy_pj"]                               # None below: no gap left to close
        routing.append(key | {"spike_route_share_spiking": sp["spike_route_pj"] / sp["energy_pj"],
                              "routed_spikes_per_sample": spikes,
                              "hops_per_spike_to_close_gap": gap / (spikes * HOP_PJ["value"]) if gap > 0 else None})
        # Time steps: binary spikes over the profile's steps against one graded step per pass.
        an = est["analytic"][r["phase"]]
        steps.append(key | {"spiking_over_graded": sp["energy_pj"] / an["energy_pj"],
                            "published_over_graded": pub / an["energy_pj"],
                            "published_over_spiking": pub / sp["energy_pj"]})
    return {"static_power": {"idle_power_mw": idle_mw, "idle_source": "blouw2019", "rows": static},
            "host_io": {"overhead_mw": overhead_mw, "overhead_source": "blouw2019", "rows": host},
            "routing": {"hop_pj": HOP_PJ, "rows": routing},
            "time_steps": {"time_steps": _time_steps("loihi-like"), "rows": steps}}


def _spike_route_pj(profile: str) -> float:
    from ffneuro.hw.profiles import load_profile

    return load_profile(profile).energy.spike_route_pj


def _time_steps(profile: str) -> int:
    from ffneuro.hw.profiles import load_profile

    return int(load_profile(profile).streaming.time_steps)


# ----------------------------------------------------------------------------------------
# The measured run
# ----------------------------------------------------------------------------------------
def run_data(kind: str, n_train: int, n_test: int, mnist_dir: str):
    """A small data set of the published input size: MNIST's central 20×20 pixels (where
    MNIST centres each digit), else the embedded 8×8 digits scaled up to 20×20."""
    import torch

    from ffneuro.data.loaders import load_dataset

    if kind != "mnist-crop20":
        raise ValueError(f"unknown run data {kind!r}")
    if Path(mnist_dir).is_dir():
        ds = load_dataset(f"mnist:{mnist_dir}")
        crop = lambda x: x.view(-1, 28, 28)[:, 4:24, 4:24].reshape(-1, 400).contiguous()  # noqa: E731
        name = "MNIST, central 20x20 crop"
    else:
        ds = load_dataset("digits")
        crop = lambda x: torch.nn.functional.interpolate(  # noqa: E731
            x.view(-1, 1, 8, 8), size=(20, 20), mode="bilinear", align_corners=False).reshape(-1, 400).contiguous()
        name = "embedded digits scaled to 20x20 (MNIST not found)"
    ds = dataclasses.replace(ds, name=name, x_train=crop(ds.x_train[:n_train]), y_train=ds.y_train[:n_train],
                             x_test=crop(ds.x_test[:n_test]), y_test=ds.y_test[:n_test], feature_shape=(1, 20, 20),
                             x_val=None, y_val=None)
    return ds


def train_run(m: dict, out: Path, mnist_dir: str) -> dict:
    """Train the measurement's shape for ``run.epochs`` under its profile into ``out``."""
    import torch

    from ffneuro.config import RunConfig
    from ffneuro.train.loop import train

    spec = m["run"]
    torch.set_num_threads(1)
    data = run_data(spec["data"], spec["n_train"], spec["n_test"], mnist_dir)
    cfg = RunConfig.from_flat(layers=tuple(m["layer_sizes"][1:]), epochs=spec["epochs"], eval_every=0,
                              profile=m["profile"])
    t0 = time.time()
    metrics = train(cfg, out=out, data=data, progress=False, profile=m["profile"])
    return {"data": data.name, "n_train": int(data.x_train.shape[0]), "n_test": int(data.x_test.shape[0]),
            "epochs": spec["epochs"], "test_error": metrics["test_error"], "per_layer_error": metrics["per_layer_error"],
            "wall_s": round(time.time() - t0, 1),
            "nonzero_pixel_fraction": float((data.x_train > 0).float().mean())}


# ----------------------------------------------------------------------------------------
def main() -> None:
    from ffneuro import __version__
    from ffneuro.runs.files import write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "calibration.json")
    ap.add_argument("--mnist", default=os.environ.get("FFNEURO_MNIST_DIR", str(REPO.parent / "shared/data/mnist")))
    ap.add_argument("--no-train", action="store_true", help="analytic estimates only (no measured run)")
    args = ap.parse_args()

    results, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in MEASUREMENTS:
            run_dir = None
            if m["run"] and not args.no_train:
                run_dir = Path(tmp) / m["id"]
                runs[m["id"]] = train_run(m, run_dir, args.mnist)
                print(m["id"], runs[m["id"]], flush=True)
            results[m["id"]] = calibrate(m, run_dir)
    out = {"ffneuro_version": __version__, "command": "python scripts/bench_calibration.py"
           + (" --no-train" if args.no_train else ""),
           "ratio": "published / ffneuro", "measurements": MEASUREMENTS, "runs": runs,
           "estimates": {k: v["estimates"] for k, v in results.items()},
           "rows": [r for v in results.values() for r in v["rows"]],
           "factors": factors(MEASUREMENTS, results)}
    write_json(args.out, out)
    for r in out["rows"]:
        print(f"{r['measurement']:<11} {r['phase']:<9} {r['quantity']:<10} published {r['published']['si']:.4g} "
              f"{r['published']['si_unit']}, ffneuro ({r['ffneuro_source']}) {r['ffneuro']:.4g}, "
              f"ratio {r['ratio']:.3g} (analytic {r['ratio_analytic']:.3g}, spiking {r['ratio_spiking']:.3g})")


if __name__ == "__main__":
    main()
