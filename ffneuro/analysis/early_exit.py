"""Early-exit inference of a trained run: test error against energy per inference as the
exit threshold moves (``ffneuro eval RUN --exit-threshold 0,0.05,…``).

The network is the run's own, or the run quantised to another fixed-point ``profile``
exactly as ``ffneuro export`` quantises it (so the golden replay of that export gives the
same exits). One goodness table of the test set serves every threshold: each threshold's
exits, error and depths come from it (``evaluate.early_exit``). Energy is priced from
counted events, not assumed: the first ``event_samples`` test samples are streamed through
the units up to their own exit depth, every label pass, and the counts go through the
profile's energy and time tables (``hw.energy.estimate``). The full multi-pass inference
(every unit, the run's inference layers) and, with a head, one-pass inference are counted
the same way as the reference points.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ffneuro.evaluate import early_exit, early_exit_summary, errors_from_goodness
from ffneuro.hw.energy import estimate
from ffneuro.hw.events import EventLedger, zero_counts
from ffneuro.hw.mapping import optimizer_slots
from ffneuro.network import default_inference_layers
from ffneuro.train.loop import count_early_exit, count_inference, memory_args

EVENT_SAMPLES = 1000     # test samples whose inference events are counted per threshold


def _network(run_dir: Path, profile: str | None):
    """(cfg, saved, net, quantisation): the run's network, or quantised to ``profile``."""
    from ffneuro.runs.load import load_run

    if profile is None:
        cfg, saved, net = load_run(run_dir)
        return cfg, saved, net, "as trained"
    from ffneuro.export.hdf5 import chip_network

    return chip_network(run_dir, profile)


def _priced(net, prof, ledger: EventLedger) -> dict | None:
    """Inference energy and latency per sample of the counted events under ``prof``."""
    if prof is None:
        return None
    n = net.layer_sizes
    infer = ledger.per_sample("infer")
    infer += [zero_counts() for _ in range(len(n) - 1 - len(infer))]     # units no sample reached
    report = estimate(prof, layer_sizes=n, events={"train": [zero_counts() for _ in n[1:]], "infer": infer},
                      num_classes=net.num_classes, source="measured", optimizer_slots=optimizer_slots(prof),
                      **memory_args(net))["inference"]
    return {"energy_pj_per_sample": report["energy_pj_per_sample"], "latency_s": report.get("latency_s")}


def exit_curve(run_dir: Path, thresholds: list[float], *, profile: str | None = None, data: str | None = None,
               split: str = "test", event_samples: int = EVENT_SAMPLES) -> dict:
    """Error (%), mean exit depth, exit fractions and (under a profile) inference energy
    per sample for every threshold, beside full multi-pass and one-pass inference, on the
    test set or (``split="val"``) on the run's validation split, where a threshold should
    be chosen."""
    from ffneuro.data.loaders import load_dataset
    from ffneuro.hw.profiles import load_profile

    if any(t < 0 for t in thresholds):
        raise ValueError(f"--exit-threshold {min(thresholds)}: thresholds must be >= 0")
    run_dir = Path(run_dir)
    cfg, saved, net, quantisation = _network(run_dir, profile)
    name = profile or saved.get("profile_name")
    prof = load_profile(name) if name else None
    if split not in ("test", "val"):
        raise ValueError(f"--split {split!r}: choose test or val")
    if split == "val" and not cfg.data.val_fraction:
        raise ValueError(f"{run_dir}: the run holds out no validation split (train with --val-fraction)")
    ds = load_dataset(data or cfg.data.name, seed=cfg.loop.seed,
                      val_fraction=cfg.data.val_fraction if split == "val" else 0.0)
    x, y = net.prepare_input(ds.x_val if split == "val" else ds.x_test), (ds.y_val if split == "val" else ds.y_test)
    with torch.no_grad():
        table = net.goodness_table(x)
    xs = x[:event_samples]
    reference = []
    if net.head is not None:
        ledger = EventLedger()
        count_inference(net, xs, ledger)     # with a head: the neutral pass and the head
        with torch.no_grad():
            pred = net.head_logits(x).argmax(dim=1)
        reference.append({"mode": "one-pass", "error": float((pred != y).float().mean() * 100),
                          "mean_depth": float(len(net.layers)), **(_priced(net, prof, ledger) or {})})
    full = EventLedger()
    count_early_exit(net, xs, torch.full((xs.shape[0],), len(net.layers), dtype=torch.long), full)
    layers = default_inference_layers(cfg)
    reference.append({"mode": "multi-pass", "error": errors_from_goodness(table, y, layers),
                      "inference_layers": [i + 1 for i in layers], "mean_depth": float(len(net.layers)),
                      **(_priced(net, prof, full) or {})})
    points = []
    for theta in thresholds:
        ledger = EventLedger()
        count_early_exit(net, xs, early_exit(table[:event_samples], theta)[0], ledger)
        points.append({**early_exit_summary(table, y, theta), **(_priced(net, prof, ledger) or {})})
    return {"run_dir": str(run_dir), "dataset": ds.name, "split": split, "n_test": int(x.shape[0]),
            "event_samples": int(xs.shape[0]), "profile": prof.name if prof is not None else None,
            "quantisation": quantisation, "layers": len(net.layers), "reference": reference, "points": points}


def format_curve(r: dict) -> str:
    """The curve as a table: one row per reference mode and threshold."""
    priced = (f"inference energy on {r['profile']} ({r['quantisation']}) counted on {r['event_samples']}"
              if r["profile"] else "no profile: energy not priced")
    lines = [f"{r['run_dir']} on {r['dataset']}: {r['n_test']} {r['split']} samples; {priced}",
             f"  {'inference':<20}{'error %':>8}{'mean depth':>12}{'nJ/sample':>11}   leaving after unit "
             + " ".join(str(i + 1) for i in range(r["layers"]))]
    for row in r["reference"]:
        lines.append(f"  {row['mode']:<20}{row['error']:>8.2f}{row['mean_depth']:>12.2f}{_nj(row):>11}")
    for p in r["points"]:
        exits = " ".join(f"{f * 100:.0f}%" for f in p["exit_fraction"])
        lines.append(f"  {'early exit θ=' + format(p['threshold'], 'g'):<20}{p['error']:>8.2f}"
                     f"{p['mean_depth']:>12.2f}{_nj(p):>11}   {exits}")
    return "\n".join(lines)


def _nj(row: dict) -> str:
    e = row.get("energy_pj_per_sample")
    return "-" if e is None else f"{e / 1e3:.1f}"
