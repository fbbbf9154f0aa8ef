"""Export a trained run for chip bring-up: per-layer integer tables in HDF5, with test vectors.

``export_run`` writes everything a chip team needs to reproduce inference bit for bit
from the file alone (schema in docs/hdf5-schema.md, replayed by :mod:`ffneuro.export.golden`):

- ``/`` attributes: format, schema version, ffneuro version, number of layers/classes,
  the default inference mode;
- ``/input``: how data become integers, the data's shape (image maps for conv stacks)
  and where the label goes (overlay, concat, label planes, or none);
- ``/inference``: which layers' scores inference adds, and whether they are the
  channel-wise competitive class-group scores of one label-free pass;
- ``/layers/<i>``: the integer weight table (smallest fitting integer dtype; conv
  kernels (O, C/groups, k, k)), integer biases, every number format (bits, sign, scale,
  power-of-two exponent), the normalisation gain, the accumulator width, the goodness
  scale and, for conv layers, the geometry (input maps, kernel, stride, padding, groups, pool);
- ``/head``: the one-pass head's integer weights and input format;
- ``/vectors`` (``vectors > 0``): real test inputs with, for every label and the neutral
  code (or the one pass of a competitive net), the expected integer activities of every
  layer, the goodness, the class-group sums, the scores and the predicted labels;
- ``/provenance``: config, dataset, seed, the run's metrics and the profile as used.

Every dataset carries a ``sha256`` attribute (its bytes, C order, little-endian), and the
root a ``content_sha256`` over every attribute and every dataset's dtype, shape and
checksum (schema 3, ``golden.content_digest``), so no table, number format or constant
of the datapath can change unnoticed. The
file is written to a temporary name and renamed, so a failure never leaves half a file.
A run trained in float (or under another profile) is quantised to the target profile
first (post-training quantisation, calibrated on training data as on-chip training is).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from ffneuro import __version__, rng
from ffneuro.export.golden import DIGEST_ATTR, SCHEMA, SCHEMA_VERSION, content_digest, sha256
from ffneuro.functional.fixed import GAIN_FRAC_BITS, INPUT_LEVELS
from ffneuro.runs.files import atomic_write_bytes
from ffneuro.units.base import format_attrs

CALIBRATION_SAMPLES = 256
GRADED_KINDS = ("dense-relu", "conv-relu")     # integer activities whose class-group sums the scores use


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


def data_shape(net) -> tuple[int, ...]:
    """One data sample's shape before the label: (C, H, W) for an image stack, else (D,)."""
    if net.data_shape is not None:
        return tuple(net.data_shape)
    return (net.layer_sizes[0] - (net.num_classes if net.encoding.mode == "concat" else 0),)


@torch.no_grad()
def test_vectors(net, x: torch.Tensor, y: torch.Tensor, inference_layers: list[int],
                 exit_threshold: float | None = None) -> dict[str, np.ndarray]:
    """Expected integer activities, goodness, scores and predictions for data x (N, D):
    for every label code and the neutral code, or for the one label-free pass of a
    channel-wise competitive net (then also every layer's integer class-group sums); with
    an ``exit_threshold``, every vector's exit layer and early-exit prediction."""
    from ffneuro.evaluate import early_exit, multipass_scores

    a0 = net.prepare_input(x)
    n, c = a0.shape[0], net.num_classes
    codes = [None] if net.competitive else [*range(c), None]
    acts: list[list[torch.Tensor]] = [[] for _ in net.layers]
    good = torch.empty(n, len(codes), len(net.layers), dtype=torch.int64)
    for k, label in enumerate(codes):
        labels = None if label is None else [torch.full((n,), label, dtype=torch.long)]
        for p in net.stream(a0, labels):
            acts[p.index].append(p.unit.head_activity(p.h_out))     # flat (N, width); spiking: spike counts
            good[:, k, p.index] = p.unit.integer_goodness(p.h_out)
    table = net.goodness_table(a0)
    score = multipass_scores(table, inference_layers)     # what ffneuro's evaluation adds
    out = {"input": as_int(a0.flatten(1)), "label": y.numpy().astype(np.int64),
           "goodness": good.numpy(), "score": score.numpy().astype(np.float64),
           "pred_multi_pass": score.argmax(dim=1).numpy().astype(np.int64)}
    if exit_threshold is not None:
        depth, exit_score = early_exit(table, exit_threshold)
        out["exit_layer"] = depth.numpy().astype(np.int64)
        out["pred_early_exit"] = exit_score.argmax(dim=1).numpy().astype(np.int64)
    for i, per_code in enumerate(acts):
        out[f"activity{i}"] = as_int(torch.stack(per_code, dim=1))
    if net.competitive:
        sq = [a[0].to(torch.int64) ** 2 for a in acts]
        out["class_goodness"] = torch.stack([h.reshape(n, c, -1).sum(dim=2) for h in sq], dim=2).numpy()
    if net.head is not None:
        logits = net.head_logits(a0)
        out["head_logits"] = logits.numpy().astype(np.int64)
        out["pred_one_pass"] = logits.argmax(dim=1).numpy().astype(np.int64)
    return out


def class_goodness_scale(unit, classes: int) -> float:
    """The float64 factor q of a graded unit's class goodness (S / m) · q (S: a group's
    integer Σh², m its size), asked of the unit itself: an activity of ones has S = m in
    every group, so its class goodness is q exactly."""
    ones = torch.ones(1, *unit.out_shape, dtype=torch.float64)
    return float(unit.class_goodness(ones, classes)[0, 0])


VECTOR_DOCS = {
    "input": "integer input a0 = floor(x*levels + 1/2), (N, data_features) in (C, H, W) order, before the label",
    "label": "true label of each vector (N,)",
    "goodness": "integer goodness G of every layer (N, K, L): K = C+1 codes (index C = neutral), or K = 1 "
                "(the label-free pass of a competitive net)",
    "class_goodness": "competitive nets: integer sum of h^2 over each layer's C class groups (N, C, L)",
    "score": "score per candidate label (N, C), float64",
    "pred_multi_pass": "goodness-score prediction (N,)",
    "head_logits": "one-pass integer logits (N, C)",
    "pred_one_pass": "one-pass prediction (N,)",
    "exit_layer": "early exit: the 1-based layer each vector leaves at (N,)",
    "pred_early_exit": "early-exit prediction (N,)",
}


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------
def write_hdf5(path: Path, net, cfg, saved: dict, profile_dict: dict, quantisation: str,
               inference_layers: list[int], vectors: dict[str, np.ndarray] | None, metrics: dict,
               exit_threshold: float | None = None) -> None:
    import h5py

    # Built in memory, then written by the atomic writer: libhdf5 can crash the process when
    # the disk fills under it, while a plain write fails with one OSError.
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        _write(f, net, cfg, saved, profile_dict, quantisation, inference_layers, vectors, metrics, exit_threshold)
        f.attrs[DIGEST_ATTR] = content_digest(f, str(path))      # last: it covers everything written above
    atomic_write_bytes(path, image.getvalue())


def _write(f, net, cfg, saved, profile_dict, quantisation, inference_layers, vectors, metrics,
           exit_threshold) -> None:
    c = net.num_classes
    f.attrs["format"] = SCHEMA
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["ffneuro_version"] = __version__
    f.attrs["num_layers"] = len(net.layers)
    f.attrs["num_classes"] = c
    f.attrs["default_inference"] = "one-pass" if net.head is not None else "multi-pass"

    shape = data_shape(net)
    mode = net.encoding.mode
    g = f.create_group("input")
    g.attrs["data_features"] = math.prod(shape)
    g.attrs["data_shape"] = np.asarray(shape, dtype=np.int64)
    g.attrs["levels"] = INPUT_LEVELS
    g.attrs["rule"] = "a0 = floor(x * levels + 1/2) for data x in [0, 1]"
    g.attrs["label_mode"] = mode
    g.attrs["label_offset"] = math.prod(shape) if mode == "planes" else 0
    g.attrs["label_width"] = 0 if mode == "none" else c
    g.attrs["label_code"] = int(net.encoding.scale)
    g.attrs["neutral_code"] = int(net.encoding.neutral)
    g.attrs["first_layer_features"] = net.layer_sizes[0]
    g.attrs["first_layer_shape"] = np.asarray(net.layers[0].in_shape, dtype=np.int64)
    for k, v in net.input_stage.export_attrs().items():      # a spike encoder's kind and steps
        g.attrs[k] = v

    g = f.create_group("inference")
    g.attrs["multi_pass_layers"] = np.asarray(inference_layers, dtype=np.int32)
    g.attrs["competitive"] = int(net.competitive)
    if net.competitive:
        g.attrs["score"] = ("one label-free pass; sum over multi_pass_layers, in order, of (S / m) * "
                            "class_goodness_scale (float64), S = integer sum of h^2 over each of the C contiguous "
                            "class groups of m activities")
    else:
        g.attrs["score"] = "sum over multi_pass_layers, in order, of goodness_scale * G (float64)"
    g.attrs["tie_break"] = "lowest label"
    if exit_threshold is not None:
        g.attrs["exit_threshold"] = float(exit_threshold)
        g.attrs["exit_rule"] = ("cumulative scores of layers 1..k (the score sum over layers 0..k-1, in order); "
                                "leave at the first k with s1 > s_min and s1 - s2 >= exit_threshold * (s1 - s_min) "
                                "(float64; s1, s2 the two highest, s_min the lowest), else at the last layer; "
                                "prediction = first argmax of those scores")

    layers = f.create_group("layers")
    for i, unit in enumerate(net.layers):
        tables = unit.export_tables()
        g = layers.create_group(str(i))
        g.attrs["kind"] = tables.kind
        for k, v in tables.attrs.items():
            g.attrs[k] = v
        if net.competitive:
            g.attrs["class_goodness_scale"] = class_goodness_scale(unit, c)
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
               data: str | None = None, exit_threshold: float | None = None) -> dict:
    """Write ``out`` (HDF5) for the run in ``run_dir`` on ``profile`` (default: the run's)
    with ``vectors`` test vectors from the run's test set (or ``data``'s); early exit at
    ``exit_threshold`` (default: the run's ``inference.exit_threshold``). Returns a summary."""
    from ffneuro.runs import files as runio
    from ffneuro.data.loaders import load_dataset
    from ffneuro.network import default_inference_layers
    from ffneuro.hw.profiles import load_profile, profile_to_dict

    run_dir = Path(run_dir)
    if vectors < 0:
        raise ExportError(f"--vectors {vectors}: must be >= 0")
    cfg, saved, net, quantisation = chip_network(run_dir, profile)
    if net.competitive and any(u.export_tables().kind not in GRADED_KINDS for u in net.layers):
        raise ExportError("channel-wise competitive scores have an integer form for graded (ReLU) units only")
    prof = load_profile(profile or saved["profile_name"])
    inference_layers = default_inference_layers(cfg)
    if exit_threshold is None:
        exit_threshold = cfg.inference.exit_threshold
    if exit_threshold is not None and exit_threshold < 0:
        raise ExportError(f"--exit-threshold {exit_threshold}: must be >= 0")
    vec = None
    if vectors:
        ds = load_dataset(data or cfg.data.name, seed=cfg.loop.seed)
        if ds.x_test.shape[1] != math.prod(data_shape(net)):
            raise ExportError(f"{data or cfg.data.name}: {ds.x_test.shape[1]} features per sample do not match the run")
        vec = test_vectors(net, ds.x_test[:vectors], ds.y_test[:vectors], inference_layers, exit_threshold)
    metrics_path = run_dir / runio.METRICS
    metrics = runio.read_json(metrics_path) if metrics_path.exists() else {}
    write_hdf5(out, net, cfg, saved, profile_to_dict(prof), quantisation, inference_layers, vec, metrics,
               exit_threshold)
    return {"file": str(out), "profile": prof.name, "quantisation": quantisation, "layers": len(net.layers),
            "exit_threshold": exit_threshold,
            "vectors": 0 if vec is None else int(vec["input"].shape[0]), "bytes": Path(out).stat().st_size}
