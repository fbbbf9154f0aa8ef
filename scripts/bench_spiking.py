"""All-spiking FF MLP on real MNIST, and its energy per inference next to a graded 8-bit MLP.

    python scripts/bench_spiking.py --mnist DIR --out bench/spiking.json
    python scripts/bench_spiking.py --goodness-study --out bench/spiking_goodness.json

1. Trains an FF network of LIF units (``--neuron lif``: rate-coded input over --steps T,
   goodness on firing rates, BPTT within each unit unless --spike-learning eligibility)
   on the first --subset training samples for --epochs epochs and reports the test error
   on the first --test-subset test samples (default all 10,000; multi-pass and one-pass,
   per layer and cumulative), with a per-epoch curve written as it goes
   (``<out>.partial.json``).
2. Measures the spike sparsity: the mean firing rate of every layer on 1,000 test samples.
3. Estimates energy per inference on loihi-like from the run's *measured* event counts
   (input spikes × fan-out, neuron updates per step), and the same widths as a graded FF
   MLP (ReLU, trained the same way in float, events measured) on cortex-m7-int8. Both are
   also quantised post-training to their chip (``ffneuro export --profile``) and replayed
   by the integer golden model on the test samples: the accuracy the chip would have.

``--goodness-study`` instead trains small nets on the embedded digits and compares what
the goodness is computed on: firing rates, spike counts (both learning rules), and the
membrane potential (last step, as the snntorch FF tutorial; or the mean over steps) with
θ swept, since a membrane goodness has no natural scale. The membrane variant is built
here only (a unit that remembers its last membrane for ``goodness``), not in ffneuro.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.hw.estimate import estimate_from_run
from ffneuro.runs.files import write_json
from ffneuro.runs.load import load_run
from ffneuro.train.loop import train


@torch.no_grad()
def firing_rates(run_dir: Path, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    _, _, net = load_run(run_dir)
    out = []
    for p in net.stream(net.prepare_input(x), [y], generator=torch.Generator().manual_seed(0)):
        if p.index == 0:
            out.append(float(p.h_in.mean()))      # the input layer's spikes
        out.append(float(p.h_out.mean()))
    return out


def chip_replay(run_dir: Path, profile: str, h5: Path, data: str, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Post-training quantisation to ``profile`` and the golden integer replay's test error."""
    from ffneuro.export import golden
    from ffneuro.export.hdf5 import export_run

    export_run(run_dir, h5, profile=profile, vectors=4, data=data)
    rep = golden.verify(h5, x.numpy(), y.numpy())
    return {"profile": profile, "vectors_exact": rep["ok"], "test_error": rep.get("test_error")}


def energy(run_dir: Path, profile: str, n_train: int) -> dict:
    est = estimate_from_run(run_dir, profile, n_train=n_train)
    return {"inference_pj_per_sample": est["inference"]["energy_pj_per_sample"],
            "training_pj_per_sample": est["training"]["energy_pj_per_sample"], "fits": est["fits"],
            "misfit_reasons": est["memory"]["misfit_reasons"],
            "inference_pj_by_kind": {k: sum(layer["energy_pj_by_kind"][k] for layer in est["inference"]["layers"])
                                     for k in est["inference"]["layers"][0]["energy_pj_by_kind"]}}


def goodness_study(out: Path) -> None:
    from ffneuro import network
    from ffneuro.functional.goodness import goodness
    from ffneuro.functional.lif import lif_step
    from ffneuro.units.lif import FFSpiking

    class MembraneUnit(FFSpiking):
        """Measurement only: goodness on the membrane U' (last step or mean over steps)."""
        mode = "last"

        def forward(self, x):
            lif, mem = self.lif_spec, torch.zeros(x.shape[1], self.out_features)
            cur, spikes, us = torch.nn.functional.linear(x, self.weight, self.bias), [], []
            for t in range(x.shape[0]):
                us.append(lif.beta * mem + cur[t])
                s, mem = lif_step(mem, cur[t], lif.beta, lif.threshold, lif.reset, self.lif.spike_grad)
                spikes.append(s)
            self.membrane = us[-1] if self.mode == "last" else torch.stack(us).mean(dim=0)
            return torch.stack(spikes)

        def goodness(self, s):
            return goodness(self.membrane, self.spec.goodness)

    data = load_dataset("digits")
    base = RunConfig.from_flat(neuron="lif", layers=(200, 200), epochs=10, lr=3e-3, steps=8, entropy_probe=0)
    rows = []

    def run(name: str, cfg: RunConfig) -> None:
        t0 = time.perf_counter()
        m = train(cfg.validate(), data=data, progress=False)
        rows.append({"variant": name, "test_error": m["test_error"], "theta": cfg.units.theta,
                     "train_s": round(time.perf_counter() - t0, 1)})
        write_json(out, {"setup": "digits, 200x200 LIF, T = 8, 10 epochs, Adam 3e-3, rate code, 1 thread",
                         "rows": rows})

    for on in ("rate", "count"):
        for rule in ("bptt", "eligibility"):
            run(f"{on}-{rule}", dataclasses.replace(base, spike_goodness=on, spike_learning=rule))
    original = network.FFSpiking
    network.FFSpiking = MembraneUnit
    try:
        for mode in ("last", "mean"):
            MembraneUnit.mode = mode
            for per_unit in (0.05, 0.25, 1.0, 4.0, 16.0):
                run(f"membrane-{mode}", dataclasses.replace(base, theta=200 * per_unit))
    finally:
        network.FFSpiking = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--layers", default="500,500")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--subset", type=int, default=0, help="train on the first N samples (0: all 60,000)")
    ap.add_argument("--test-subset", type=int, default=0, help="test on the first N samples (0: all 10,000)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--algo", default="ff", help="ff | cff")
    ap.add_argument("--negatives", default="random", help="random | hard")
    ap.add_argument("--spike-learning", default="bptt", help="bptt | eligibility")
    ap.add_argument("--inference-layers", default="", help="1-based layers for multi-pass, e.g. 1,2")
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--no-graded", action="store_true", help="skip the graded 8-bit MLP comparison")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--goodness-study", action="store_true", help="digits: rates vs counts vs membrane")
    ap.add_argument("--out", type=Path, default=Path("bench/spiking.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.goodness_study:
        goodness_study(a.out)
        return
    data = load_dataset(f"mnist:{a.mnist}")
    if a.subset:
        data = dataclasses.replace(data, x_train=data.x_train[:a.subset], y_train=data.y_train[:a.subset])
    if a.test_subset:
        data = dataclasses.replace(data, x_test=data.x_test[:a.test_subset], y_test=data.y_test[:a.test_subset])
    layers = tuple(int(w) for w in a.layers.split(","))
    inference = tuple(int(i) for i in a.inference_layers.split(",")) if a.inference_layers else None
    n_train, n_test = int(data.x_train.shape[0]), int(data.x_test.shape[0])
    result: dict = {"layers": layers, "steps": a.steps, "epochs": a.epochs, "n_train": n_train, "n_test": n_test,
                    "lr": a.lr, "batch": a.batch, "algo": a.algo, "negatives": a.negatives,
                    "spike_learning": a.spike_learning, "inference_layers": inference, "threads": a.threads,
                    "curve": []}

    def on_epoch(record: dict) -> None:
        keep = ("epoch", "train_s", "test_error", "per_layer_error", "cumulative_error")
        result["curve"].append({k: record[k] for k in keep if k in record})
        write_json(a.out.with_suffix(".partial.json"), result)

    x_test, y_test = data.x_test, data.y_test
    with tempfile.TemporaryDirectory() as tmp:
        spk_dir, mlp_dir = Path(tmp) / "spiking", Path(tmp) / "graded"
        cfg = RunConfig.from_flat(data=f"mnist:{a.mnist}", layers=layers, neuron="lif", steps=a.steps, spike_encoding="rate",
                          epochs=a.epochs, lr=a.lr, batch_size=a.batch, algo=a.algo, negatives=a.negatives,
                          spike_learning=a.spike_learning, inference_layers=inference, eval_every=a.eval_every,
                          entropy_probe=0).validate()
        t0 = time.time()
        m = train(cfg, out=spk_dir, data=data, progress=False, count_events=True, on_epoch=on_epoch)
        result["spiking"] = {"test_error": m["test_error"], "per_layer_error": m["per_layer_error"],
                             "cumulative_error": m["cumulative_error"], "wall_s": round(time.time() - t0, 1),
                             "firing_rate": firing_rates(spk_dir, x_test[:1000], y_test[:1000]),
                             "loihi_like": energy(spk_dir, "loihi-like", n_train)}
        write_json(a.out, result)
        result["spiking"]["loihi_like_replay"] = chip_replay(spk_dir, "loihi-like", Path(tmp) / "spk.h5",
                                                             f"mnist:{a.mnist}", x_test, y_test)
        write_json(a.out, result)
        if not a.no_graded:
            cfg = RunConfig.from_flat(data=f"mnist:{a.mnist}", layers=layers, epochs=a.epochs, lr=1e-3, batch_size=a.batch,
                              algo=a.algo, negatives=a.negatives, inference_layers=inference,
                              eval_every=0, entropy_probe=0).validate()
            t0 = time.time()
            m = train(cfg, out=mlp_dir, data=data, progress=False, count_events=True)
            result["graded_8bit"] = {"test_error": m["test_error"], "wall_s": round(time.time() - t0, 1),
                                     "cortex_m7_int8": energy(mlp_dir, "cortex-m7-int8", n_train),
                                     "cortex_m7_int8_replay": chip_replay(mlp_dir, "cortex-m7-int8",
                                                                          Path(tmp) / "mlp.h5", f"mnist:{a.mnist}",
                                                                          x_test, y_test)}
    write_json(a.out, result)
    print(result)


if __name__ == "__main__":
    main()
