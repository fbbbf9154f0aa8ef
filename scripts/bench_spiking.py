"""All-spiking FF MLP on real MNIST, and its energy per inference next to a graded 8-bit MLP.

    python scripts/bench_spiking.py --mnist ../shared/data/mnist --out bench/spiking.json

1. Trains an FF network of LIF units (``--neuron lif``: rate-coded input over --steps T,
   goodness on firing rates, BPTT within each unit) on the first --subset training
   samples for --epochs epochs and reports the test error on all 10,000 test samples
   (multi-pass and one-pass), with a per-epoch curve (written as it goes).
2. Measures the spike sparsity: the mean firing rate of every layer on 1,000 test samples.
3. Estimates energy per inference on loihi-like from the run's *measured* event counts
   (input spikes × fan-out, neuron updates per step), and the same widths as a graded
   FF MLP (ReLU, trained the same way, events measured) on cortex-m7-int8.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from ffneuro.config import TrainConfig
from ffneuro.data import load_dataset
from ffneuro.estimate import estimate_from_run
from ffneuro.runio import write_json
from ffneuro.trainer import load_run, train


@torch.no_grad()
def firing_rates(run_dir: Path, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    _, _, net = load_run(run_dir)
    h = net.to_spikes(net.encoding.encode(net.prepare_input(x), y), torch.Generator().manual_seed(0))
    out = [float(h.mean())]                       # the input layer's spikes
    for layer in net.layers:
        h = layer(h)
        out.append(float(h.mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--layers", default="500,500")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--subset", type=int, default=0, help="train on the first N samples (0: all 60,000)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/spiking.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load_dataset(f"mnist:{a.mnist}")
    if a.subset:
        data = dataclasses.replace(data, x_train=data.x_train[:a.subset], y_train=data.y_train[:a.subset])
    layers = tuple(int(w) for w in a.layers.split(","))
    result: dict = {"layers": layers, "steps": a.steps, "epochs": a.epochs, "n_train": int(data.x_train.shape[0]),
                    "lr": a.lr, "batch": a.batch, "threads": a.threads, "curve": []}

    def on_epoch(record: dict) -> None:
        result["curve"].append({k: record[k] for k in ("epoch", "train_s", "test_error") if k in record})
        write_json(a.out.with_suffix(".partial.json"), result)

    with tempfile.TemporaryDirectory() as tmp:
        spk_dir, mlp_dir = Path(tmp) / "spiking", Path(tmp) / "graded"
        cfg = TrainConfig(data="mnist", layers=layers, neuron="lif", steps=a.steps, spike_encoding="rate",
                          epochs=a.epochs, lr=a.lr, batch_size=a.batch, entropy_probe=0).validate()
        t0 = time.time()
        m = train(cfg, out=spk_dir, data=data, progress=False, count_events=True, on_epoch=on_epoch)
        result["spiking"] = {"test_error": m["test_error"], "per_layer_error": m["per_layer_error"],
                             "wall_s": round(time.time() - t0, 1),
                             "firing_rate": firing_rates(spk_dir, data.x_test[:1000], data.y_test[:1000])}
        est = estimate_from_run(spk_dir, "loihi-like", n_train=int(data.x_train.shape[0]))
        result["spiking"]["loihi_like"] = {"inference_pj_per_sample": est["inference"]["energy_pj_per_sample"],
                                           "training_pj_per_sample": est["training"]["energy_pj_per_sample"],
                                           "fits": est["fits"]}
        write_json(a.out, result)
        cfg = TrainConfig(data="mnist", layers=layers, epochs=a.epochs, batch_size=a.batch, entropy_probe=0).validate()
        t0 = time.time()
        m = train(cfg, out=mlp_dir, data=data, progress=False, count_events=True)
        est = estimate_from_run(mlp_dir, "cortex-m7-int8", n_train=int(data.x_train.shape[0]))
        result["graded_8bit"] = {"test_error": m["test_error"], "wall_s": round(time.time() - t0, 1),
                                 "cortex_m7_int8": {"inference_pj_per_sample": est["inference"]["energy_pj_per_sample"],
                                                    "training_pj_per_sample": est["training"]["energy_pj_per_sample"],
                                                    "fits": est["fits"]}}
    write_json(a.out, result)
    print(result)


if __name__ == "__main__":
    main()
