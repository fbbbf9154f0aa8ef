"""Golden replay vs ffneuro's own quantised inference on every MNIST test sample, per profile.

    python scripts/bench_golden.py --mnist ../shared/data/mnist --out bench/golden.json

Trains one 3×500 FF network on real MNIST (float recipe, a few epochs: the point is the
agreement, not the accuracy) and one on chip (loihi-like, batch 1, a training subset),
exports each to every integer profile (``ffneuro export``: post-training quantisation for
the float run), and compares, on all 10,000 test samples:

- the integer goodness of every layer for every candidate label, and the multi-pass
  prediction, from ffneuro (torch, the simulator's chip datapath) and from the golden
  model (numpy, reading only the HDF5 file);
- the one-pass head's integer logits and prediction.

Writes JSON with, per profile, the agreement (%) of each, the errors and the replay time.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--chip-subset", type=int, default=10000, help="training samples of the on-chip run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/golden.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
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
