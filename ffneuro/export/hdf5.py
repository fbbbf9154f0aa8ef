"""Export a trained run for chip bring-up: per-layer integer tables in HDF5, with test vectors.

``export_run`` writes everything a chip team needs to reproduce inference bit for bit
from the file alone (schema in docs/hdf5-schema.md, replayed by :mod:`ffneuro.export.golden`):

- ``/`` attributes: format, schema version, ffneuro version, number of layers/classes,
  the default inference mode;
- ``/input``: how data become integers and where the label goes;
- ``/inference``: which layers' goodness multi-pass inference adds;
- ``/layers/<i>``: the integer weight table (smallest fitting integer dtype), integer
  biases, every number format (bits, sign, scale, power-of-two exponent), the
  normalisation gain, the accumulator width and the goodness scale;
- ``/head``: the one-pass head's integer weights and input format;
- ``/vectors`` (``vectors > 0``): real test inputs with, for every label and the neutral
  code, the expected integer activities of every layer, the goodness, the scores and
  the predicted labels;
- ``/provenance``: config, dataset, seed, the run's metrics and the profile as used.

Every dataset carries a ``sha256`` attribute (its bytes, C order, little-endian). The
file is written to a temporary name and renamed, so a failure never leaves half a file.
A run trained in float (or under another profile) is quantised to the target profile
first (post-training quantisation, calibrated on training data as on-chip training is).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ffneuro import __version__, rng
from ffneuro.export.golden import SCHEMA, SCHEMA_VERSION, sha256
from ffneuro.functional.fixed import GAIN_FRAC_BITS, INPUT_LEVELS
from ffneuro.runs.files import atomic_output
from ffneuro.units.base import format_attrs

CALIBRATION_SAMPLES = 256


class ExportError(ValueError):
    """An export that cannot be made (one-line message)."""


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The narrowest signed integer dtype holding [lo, hi] (int8 … int64)."""
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise ExportError(f"integer range [{lo}, {hi}] does not fit in 64 bits")


def as_int(t: torch.Tensor, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """A tensor holding integers as the smallest integer numpy array (range: given or actual)."""
    a = t.detach().cpu().to(torch.float64).numpy()
    if a.size and not np.array_equal(a, np.round(a)):
        raise ExportError("internal error: a chip tensor holds non-integer values")
    lo = int(a.min(initial=0)) if lo is None else lo
    hi = int(a.max(initial=0)) if hi is None else hi
    return a.astype(smallest_int_dtype(lo, hi))


def _put(group, name: str, array: np.ndarray, doc: str):
    ds = group.create_dataset(name, data=array)
    ds.attrs["sha256"] = sha256(array)
    ds.attrs["doc"] = doc
    return ds


# ----------------------------------------------------------------------------------------
# Building the quantised network
# ----------------------------------------------------------------------------------------
def chip_network(run_dir: Path, profile: str | None):
    """(cfg, saved, net, quantisation) with ``net`` on the target profile's integer grid."""
    from ffneuro.data.loaders import load_dataset
    from ffneuro.runs.load import load_run

    saved_profile = _saved_profile(run_dir)
    target = profile or saved_profile
    if target is None:
        raise ExportError(f"{run_dir}: the run was trained in float: give --profile NAME (an integer "
                          "profile, see `ffneuro profiles list`) to quantise it for export")
    cfg, saved, net = load_run(run_dir, profile=target)
    if net.chip is None:
        raise ExportError(f"profile {target!r} is floating point: export needs a fixed-point profile")
    if all(layer.calibrated for layer in net.layers):
        return cfg, saved, net, "trained on chip"
    data = load_dataset(cfg.data.name, seed=cfg.loop.seed)
    x = net.prepare_input(data.x_train)
    idx = torch.randperm(x.shape[0], generator=rng.generator(cfg.loop.seed, "calibration"))[:CALIBRATION_SAMPLES]
    net.calibrate(x[idx], data.y_train[idx])
    return cfg, saved, net, "post-training"


def _saved_profile(run_dir: Path) -> str | None:
    from ffneuro.runs import files as runio

    return runio.read_json(Path(run_dir) / runio.CONFIG).get("profile_name")


@torch.no_grad()
def test_vectors(net, x: torch.Tensor, y: torch.Tensor, inference_layers: list[int]) -> dict[str, np.ndarray]:
    """Expected integer activities, goodness, scores and predictions for data x (N, D)."""
    from ffneuro.evaluate import multipass_scores

    a0 = net.prepare_input(x)
    n, c = a0.shape[0], net.num_classes
    acts: list[list[torch.Tensor]] = [[] for _ in net.layers]
    good = torch.empty(n, c + 1, len(net.layers), dtype=torch.int64)
    table = torch.empty(n, c, len(net.layers), dtype=torch.float64)     # real goodness: the multi-pass scores
    for k in range(c + 1):              # every label code, then the neutral code
        labels = [torch.full((n,), k, dtype=torch.long)] if k < c else None
        for p in net.stream(a0, labels):
            act = p.unit.head_activity(p.h_out)                 # spiking units: spike counts
            acts[p.index].append(act)
            good[:, k, p.index] = p.unit.integer_goodness(p.h_out)
            if k < c:
                table[:, k, p.index] = p.unit.goodness(p.h_out)
    score = multipass_scores(table, inference_layers)
    out = {"input": as_int(a0), "label": y.numpy().astype(np.int64),
           "goodness": good.numpy(), "score": score.numpy().astype(np.float64),
           "pred_multi_pass": score.argmax(dim=1).numpy().astype(np.int64)}
    for i, per_code in enumerate(acts):
        out[f"activity{i}"] = as_int(torch.stack(per_code, dim=1))
    if net.head is not None:
        logits = net.head_logits(a0)
        out["head_logits"] = logits.numpy().astype(np.int64)
        out["pred_one_pass"] = logits.argmax(dim=1).numpy().astype(np.int64)
    return out


VECTOR_DOCS = {
    "input": "integer input a0 = floor(x*levels + 1/2), (N, data_features), before the label",
    "label": "true label of each vector (N,)",
    "goodness": "integer goodness G of every layer (N, C+1, L); index C = neutral code",
    "score": "multi-pass score per candidate label (N, C), float64",
    "pred_multi_pass": "multi-pass prediction (N,)",
    "head_logits": "one-pass integer logits (N, C)",
    "pred_one_pass": "one-pass prediction (N,)",
}


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------
def write_hdf5(path: Path, net, cfg, saved: dict, profile_dict: dict, quantisation: str,
               inference_layers: list[int], vectors: dict[str, np.ndarray] | None, metrics: dict) -> None:
    import h5py

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        _write(f, net, cfg, saved, profile_dict, quantisation, inference_layers, vectors, metrics)


def _write(f, net, cfg, saved, profile_dict, quantisation, inference_layers, vectors, metrics) -> None:
    c = net.num_classes
    f.attrs["format"] = SCHEMA
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["ffneuro_version"] = __version__
    f.attrs["num_layers"] = len(net.layers)
    f.attrs["num_classes"] = c
    f.attrs["default_inference"] = "one-pass" if net.head is not None else "multi-pass"

    g = f.create_group("input")
    g.attrs["data_features"] = net.layer_sizes[0] - (c if net.encoding.mode == "concat" else 0)
    g.attrs["levels"] = INPUT_LEVELS
    g.attrs["rule"] = "a0 = floor(x * levels + 1/2) for data x in [0, 1]"
    g.attrs["label_mode"] = net.encoding.mode
    g.attrs["label_offset"] = 0
    g.attrs["label_width"] = c
    g.attrs["label_code"] = int(net.encoding.scale)
    g.attrs["neutral_code"] = int(net.encoding.neutral)
    g.attrs["first_layer_features"] = net.layer_sizes[0]
    for k, v in net.input_stage.export_attrs().items():      # a spike encoder's kind and steps
        g.attrs[k] = v

    g = f.create_group("inference")
    g.attrs["multi_pass_layers"] = np.asarray(inference_layers, dtype=np.int32)
    g.attrs["score"] = "sum over multi_pass_layers, in order, of goodness_scale * G (float64)"
    g.attrs["tie_break"] = "lowest label"

    layers = f.create_group("layers")
    for i, unit in enumerate(net.layers):
        tables = unit.export_tables()
        g = layers.create_group(str(i))
        g.attrs["kind"] = tables.kind
        for k, v in tables.attrs.items():
            g.attrs[k] = v
        for name, (values, lo, hi, doc) in tables.tables.items():
            _put(g, name, as_int(values, lo, hi), doc)

    if net.head is not None:
        head = net.head
        g = f.create_group("head")
        # head inputs: ReLU outputs, or spike counts of spiking layers
        wf, xf = head.weight_fmt(), head.input_fmt()
        g.attrs["layers"] = np.asarray(net.head_idx, dtype=np.int32)
        for k, v in {**format_attrs("weight", wf), **format_attrs("input", xf)}.items():
            g.attrs[k] = v
        g.attrs["norm"] = head.norm
        g.attrs["norm_gains"] = np.asarray(head.norm_gains(), dtype=np.int64)
        g.attrs["norm_gain_frac_bits"] = GAIN_FRAC_BITS
        g.attrs["accumulator_bits"] = head.chip.accumulator_bits
        _put(g, "weight", as_int(wf.to_int(head.weight), wf.qmin, wf.qmax),
             "integer head weights (num_classes, sum of the head layers' widths)")

    if vectors is not None:
        g = f.create_group("vectors")
        for k, v in vectors.items():
            _put(g, k, v, VECTOR_DOCS.get(k, "expected integer activities of layer "
                                             f"{k[len('activity'):]} (N, C+1, width); index C = neutral"))

    g = f.create_group("provenance")
    g.attrs["config"] = json.dumps(cfg.to_dict())
    g.attrs["dataset"] = saved.get("dataset", "")
    g.attrs["source"] = saved.get("source", "")
    g.attrs["seed"] = cfg.loop.seed
    g.attrs["quantisation"] = quantisation
    g.attrs["metrics"] = json.dumps({k: v for k, v in metrics.items() if k not in ("history", "estimate")})
    g.attrs["profile"] = json.dumps(profile_dict)


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------
def export_run(run_dir: Path, out: Path, *, profile: str | None = None, vectors: int = 8,
               data: str | None = None) -> dict:
    """Write ``out`` (HDF5) for the run in ``run_dir`` on ``profile`` (default: the run's)
    with ``vectors`` test vectors from the run's test set (or ``data``'s). Returns a summary."""
    from ffneuro.runs import files as runio
    from ffneuro.data.loaders import load_dataset
    from ffneuro.network import default_inference_layers
    from ffneuro.hw.profiles import load_profile, profile_to_dict

    run_dir = Path(run_dir)
    if vectors < 0:
        raise ExportError(f"--vectors {vectors}: must be >= 0")
    cfg, saved, net, quantisation = chip_network(run_dir, profile)
    prof = load_profile(profile or saved["profile_name"])
    inference_layers = default_inference_layers(cfg)
    vec = None
    if vectors:
        ds = load_dataset(data or cfg.data.name, seed=cfg.loop.seed)
        if ds.x_test.shape[1] != net.layer_sizes[0] - (net.num_classes if net.encoding.mode == "concat" else 0):
            raise ExportError(f"{data or cfg.data.name}: {ds.x_test.shape[1]} features per sample do not match the run")
        vec = test_vectors(net, ds.x_test[:vectors], ds.y_test[:vectors], inference_layers)
    metrics_path = run_dir / runio.METRICS
    metrics = runio.read_json(metrics_path) if metrics_path.exists() else {}
    write_hdf5(out, net, cfg, saved, profile_to_dict(prof), quantisation, inference_layers, vec, metrics)
    return {"file": str(out), "profile": prof.name, "quantisation": quantisation, "layers": len(net.layers),
            "vectors": 0 if vec is None else int(vec["input"].shape[0]), "bytes": Path(out).stat().st_size}
