"""Golden replay vs ffneuro's own quantised inference on every test sample: MNIST per profile, or one run dir.

    python scripts/bench_golden.py --mnist ../shared/data/mnist --out bench/golden.json
    python scripts/bench_golden.py --run-dir runs/cifar-conv --data imagefolder:cifar10.zip \
        --out bench/golden_conv.json                      # an existing run (e.g. a conv net), its whole test set

Trains one 3×500 FF network on real MNIST (float recipe, a few epochs: the point is the
agreement, not the accuracy) and one on chip (loihi-like, batch 1, a training subset),
exports each to every integer profile (``ffneuro export``: post-training quantisation for
the float run), and compares, on all 10,000 test samples:

- the integer goodness of every layer for every candidate label, and the multi-pass
  prediction, from ffneuro (torch, the simulator's chip datapath) and from the golden
  model (numpy, reading only the HDF5 file);
- the one-pass head's integer logits and prediction.

Writes JSON with, per profile, the agreement (%) of each, the errors and the replay time.

With ``--run-dir`` it trains nothing: it exports that run (``--profile``, default the
run's own), replays the exported file on the whole test set of ``--data`` (default the
run's dataset) in batches of ``--batch`` and compares, per test sample, with ffneuro's
chip inference: every layer's score table (per label, or a competitive net's class-group
goodness; exact float64), the scores, the goodness prediction, the activities of every
layer in the neutral (or the label-free) pass, and the head's integer logits and
prediction. It writes the agreement (%) of each, the replayed errors and the ffneuro and
golden replay times (the activity comparison is timed apart) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ffneuro.export import golden
from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.export.hdf5 import chip_network, export_run
from ffneuro.network import default_inference_layers
from ffneuro.hw.profiles import list_profiles, load_profile
from ffneuro.runs.files import write_json
from ffneuro.evaluate import multipass_scores
from ffneuro.train.loop import train


def compare(run_dir: Path, profile: str, data, folder: Path) -> dict:
    path = folder / f"{run_dir.name}-{profile}.h5"
    export_run(run_dir, path, profile=profile, vectors=8)
    cfg, _, net, quantisation = chip_network(run_dir, profile)
    a0 = net.prepare_input(data.x_test)
    t0 = time.perf_counter()
    table = net.goodness_table(a0)
    ours_mp = multipass_scores(table, default_inference_layers(cfg)).argmax(dim=1).numpy()
    ours_op = net.head_logits(a0).numpy()
    t_ours = time.perf_counter() - t0
    model, bad = golden.read_model(path)
    t0 = time.perf_counter()
    x0 = golden.integer_input(data.x_test.numpy(), model.levels)
    g_table = np.concatenate([model.goodness_table(x0[s:s + 500]) for s in range(0, x0.shape[0], 500)])
    g_mp = model.scores(g_table).argmax(axis=1)
    g_op = np.concatenate([model.head_logits(x0[s:s + 500]) for s in range(0, x0.shape[0], 500)])
    t_golden = time.perf_counter() - t0
    ours_int = np.stack([np.rint(table[:, :, i].numpy() / net.layers[i].goodness_scale()) for i in range(table.shape[2])], 2)
    y = data.y_test.numpy()
    report = golden.verify(path)
    return {
        "quantisation": quantisation, "n_test": int(y.shape[0]), "vectors_ok": report["ok"],
        "goodness_agree_pct": float((ours_int == g_table).all(axis=2).mean() * 100),
        "multi_pass_agree_pct": float((ours_mp == g_mp).mean() * 100),
        "head_logits_agree_pct": float((ours_op == g_op).all(axis=1).mean() * 100),
        "one_pass_agree_pct": float((ours_op.argmax(1) == g_op.argmax(1)).mean() * 100),
        "error_multi_pass": float((g_mp != y).mean() * 100), "error_one_pass": float((g_op.argmax(1) != y).mean() * 100),
        "ffneuro_s": round(t_ours, 1), "golden_s": round(t_golden, 1), "file_bytes": path.stat().st_size,
        "checksum_failures": bad,
    }


def batches(n: int, size: int):
    return (slice(s, s + size) for s in range(0, n, size))


def agree_pct(same: np.ndarray) -> float:
    """Percentage of samples (axis 0) on which every other entry agrees."""
    return float(same.reshape(same.shape[0], -1).all(axis=1).mean() * 100)


@torch.no_grad()
def replay_run(run_dir: Path, data_spec: str | None, profile: str | None, batch: int, folder: Path) -> dict:
    """Export ``run_dir`` and compare the golden replay with ffneuro on every test sample."""
    path = folder / f"{run_dir.name}.h5"
    export_run(run_dir, path, profile=profile, vectors=8, data=data_spec)
    cfg, _, net, quantisation = chip_network(run_dir, profile)
    data = load_dataset(data_spec or cfg.data.name, seed=cfg.loop.seed)
    layers = default_inference_layers(cfg)
    a0 = net.prepare_input(data.x_test)
    n = a0.shape[0]
    t0 = time.perf_counter()
    table = net.goodness_table(a0, batch_size=batch).numpy()
    ours_score = multipass_scores(torch.from_numpy(table), layers).numpy()
    ours_op = net.head_logits(a0, batch_size=batch).numpy().astype(np.int64) if net.head is not None else None
    t_ours = time.perf_counter() - t0

    model, bad = golden.read_model(path)
    t0 = time.perf_counter()
    x0 = golden.integer_input(data.x_test.numpy(), model.levels)
    g_table = np.concatenate([model.goodness_table(x0[s]) for s in batches(n, batch)])
    g_score = model.scores(g_table)
    g_op = np.concatenate([model.head_logits(x0[s]) for s in batches(n, batch)]) if model.head is not None else None
    t_golden = time.perf_counter() - t0

    t0 = time.perf_counter()              # activities of the neutral (competitive: the only) pass
    act_same = np.ones(n, dtype=bool)
    for s in batches(n, batch):
        ours = [p.unit.head_activity(p.h_out).numpy() for p in net.stream(a0[s], None)]
        replay = model.activities(model.encode(x0[s], None))
        for o, g in zip(ours, replay):
            act_same[s] &= (o == g).all(axis=1)
    t_act = time.perf_counter() - t0

    real = np.stack([model.real_table(g_table, i) for i in range(len(model.layers))], axis=2)
    y = data.y_test.numpy()
    out = {
        "run_dir": str(run_dir), "data": data_spec or cfg.data.name, "profile": profile or "as trained",
        "quantisation": quantisation, "competitive": bool(net.competitive),
        "layers": [u.export_tables().kind for u in net.layers], "n_test": int(n), "batch": batch,
        "vectors_ok": golden.verify(path)["ok"], "checksum_failures": bad,
        "table_agree_pct": agree_pct(real == table), "score_agree_pct": agree_pct(g_score == ours_score),
        "multi_pass_agree_pct": float((g_score.argmax(1) == ours_score.argmax(1)).mean() * 100),
        "activity_agree_pct": float(act_same.mean() * 100),
        "error_multi_pass": float((g_score.argmax(1) != y).mean() * 100),
        "ffneuro_s": round(t_ours, 2), "golden_s": round(t_golden, 2),
        "golden_ms_per_sample": round(t_golden / n * 1000, 3), "activity_check_s": round(t_act, 2),
        "file_bytes": path.stat().st_size, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
    }
    if g_op is not None:
        out.update({"head_logits_agree_pct": agree_pct(g_op == ours_op),
                    "one_pass_agree_pct": float((g_op.argmax(1) == ours_op.argmax(1)).mean() * 100),
                    "error_one_pass": float((g_op.argmax(1) != y).mean() * 100)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--chip-subset", type=int, default=10000, help="training samples of the on-chip run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run-dir", type=Path, help="replay this run (e.g. a conv net) instead of training MNIST nets")
    ap.add_argument("--data", help="with --run-dir: the dataset spec whose test set to replay (default: the run's)")
    ap.add_argument("--profile", help="with --run-dir: export to this profile (default: the run's own)")
    ap.add_argument("--batch", type=int, default=250, help="with --run-dir: samples per replay batch")
    ap.add_argument("--out", type=Path, help="JSON output (default bench/golden.json; with --run-dir "
                                             "bench/golden_conv.json)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.run_dir is not None:
        with tempfile.TemporaryDirectory() as tmp:
            result = {"mode": "run-dir", **replay_run(a.run_dir, a.data, a.profile, a.batch, Path(tmp))}
        print(result, flush=True)
        write_json(a.out or Path("bench/golden_conv.json"), result)
        return
    a.out = a.out or Path("bench/golden.json")
    data = load_dataset(f"mnist:{a.mnist}")
    integer = [p for p in list_profiles() if load_profile(p).precision.format != "float"]
    results: dict = {"profiles": integer, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        float_run = tmp / "float"
        cfg = RunConfig.from_flat(data=f"mnist:{a.mnist}", epochs=a.epochs, eval_every=0)
        m = train(cfg, out=float_run, progress=False)
        results["runs"]["float"] = {"train_s": m["wall_s"], "test_error": m["test_error"], "export": {}}
        for p in integer:
            results["runs"]["float"]["export"][p] = compare(float_run, p, data, tmp)
            print(p, results["runs"]["float"]["export"][p], flush=True)
            write_json(a.out, results)
        chip_run = tmp / "chip"
        sub = dataclasses.replace(data, x_train=data.x_train[:a.chip_subset], y_train=data.y_train[:a.chip_subset])
        cfg = RunConfig.from_flat(data=f"mnist:{a.mnist}", epochs=1, eval_every=0)
        m = train(cfg, out=chip_run, progress=False, profile="loihi-like", data=sub)
        results["runs"]["loihi-like on chip"] = {"train_s": m["wall_s"], "test_error": m["test_error"],
                                                 "n_train": a.chip_subset,
                                                 "export": {"loihi-like": compare(chip_run, "loihi-like", data, tmp)}}
        print(results["runs"]["loihi-like on chip"], flush=True)
    write_json(a.out, results)


if __name__ == "__main__":
    main()
