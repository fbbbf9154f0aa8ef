"""NeuroBench interchange: a trained ffneuro network under NeuroBench's own harness, and
ffneuro's NeuroBench-named figures of a run dir and of a count pass.

**The mirror** (:class:`NeuroBenchNet`). NeuroBench's hooks look for ``nn.Linear`` /
``nn.Conv*`` layers (synaptic operations, connection sparsity) and activation modules
(``nn.ReLU``, snntorch neurons: activation sparsity, membrane updates) in the model it is
given. ffneuro's units keep their weights in a synapse and compute their activity in
their dynamics, so the mirror presents each unit as such modules: its synapse as an
``nn.Linear`` or ``nn.Conv2d`` holding the unit's own trained ``Parameter`` objects (not
copies), its neurons as an ``nn.ReLU`` (graded units; after the max-pool, with which it
commutes, then the unit's batch norm) or as the unit's own snntorch ``Leaky`` (spiking
units), stepped T times with the input currents of all T steps computed at once as the
unit does. The label encoding, the input stage (spike encoder), the goodness and the
head's feature normalisation are ffneuro's own calls; the passes go through
``FFNetwork.stream`` with the mirror traversing each unit. Before it is handed to
NeuroBench the mirror is checked against the units' own forward on a few samples (a unit
it does not reproduce, e.g. a ``reset = "subtract"`` LIF unit, is refused in one line).
Float networks only: a run trained under a fixed-point profile computes in integers,
which float modules do not reproduce (its golden model does, ``ffneuro export``).

**One sample** is one test sample's inference as the trainer counts it
(``train.loop.count_inference``): one-pass = one neutral pass and the head, multi-pass =
C label passes. The mirror's prediction is the run's (head argmax, or the argmax of the
goodness summed over the inference layers), so NeuroBench's ``ClassificationAccuracy``
is ffneuro's test accuracy.

**ffneuro's side** never calls ``neurobench``: :func:`count_figures` streams the same
samples through the network with ffneuro's own counters (``Unit.forward_events``,
``head_events``; ``Dense`` = the same counters on an all-ones input), and
:func:`run_figures` reads a run dir's ``events.json`` and checkpoint (the ``"neurobench"``
entry of ``ffneuro estimate --run``). ``neurobench`` itself is imported only by
:func:`run_benchmark`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro import rng
from ffneuro.evaluate import multipass_scores
from ffneuro.functional.encoding import CodedBatch
from ffneuro.functional.goodness import normalize
from ffneuro.hw import neurobench as nbf
from ffneuro.hw.events import EventLedger, head_events
from ffneuro.network import FFNetwork, Passage, head_layers
from ffneuro.runs import files as runio
from ffneuro.train.step import event_counter

INSTALL = "pip install 'ffneuro[neurobench]'"
CHECK_SAMPLES = 16          # samples the mirror is checked on against the units' own forward


class NeuroBenchError(ValueError):
    """neurobench missing, or a network the mirror cannot present."""


# ----------------------------------------------------------------------------------------
# Passes
# ----------------------------------------------------------------------------------------
def inference_passages(net: FFNetwork, x: torch.Tensor, through=None) -> Iterator[tuple[int, Passage]]:
    """(pass, passage) of one inference of prepared data ``x`` as the trainer counts it:
    with a head one neutral pass (pass 0), else one pass per label c = 0 … C−1, all
    drawing a random encoder's spikes from one inference generator. ``through``: as in
    ``FFNetwork.stream``."""
    gen = rng.inference_generator()
    if net.head is not None:
        for p in net.stream(x, None, generator=gen, through=through):
            yield 0, p
        return
    for c in range(net.num_classes):
        labels = [torch.full((x.shape[0],), c, dtype=torch.long)]
        for p in net.stream(x, labels, generator=gen, through=through):
            yield c, p


def _dense(h: torch.Tensor | CodedBatch) -> torch.Tensor:
    return h.dense() if isinstance(h, CodedBatch) else h


# ----------------------------------------------------------------------------------------
# ffneuro's figures
# ----------------------------------------------------------------------------------------
def inference_tensors(state: dict[str, torch.Tensor], n_units: int) -> tuple[list, list]:
    """(weights, other tensors) of the inference model in a state dict: each unit's synapse
    weights and the head's (weights); the synapse biases, batch-norm parameters and
    statistics and snntorch neuron constants (others)."""
    weights = [state[f"layers.{i}.synapse.weight"] for i in range(n_units)]
    weights += [state["head.weight"]] if "head.weight" in state else []
    parts = tuple(f"layers.{i}.{part}." for i in range(n_units) for part in ("bn", "lif"))
    others = [state[f"layers.{i}.synapse.bias"] for i in range(n_units)]
    others += [v for k, v in state.items() if k.startswith(parts)]
    return weights, others


@torch.no_grad()
def count_figures(net: FFNetwork, x: torch.Tensor, batch_size: int = 1000) -> dict[str, Any]:
    """ffneuro's NeuroBench-named figures of ``net`` on prepared data ``x``, from its own
    counters: the inference events as the trainer counts them (synops per non-zero
    input), ``Dense`` as the same counters on an all-ones input, the non-zero outputs of
    every unit, and the weights of its state dict. ``batch_size``: samples per pass; a
    random (rate) spike encoder draws from a fresh inference generator per batch, as the
    mirror does per loader batch, so give both the same batches to see the same spikes."""
    ledger = EventLedger()
    count = event_counter(ledger, "infer", net, head=net.head is not None)
    dense = nonzero = total = 0.0
    for s in range(0, x.shape[0], batch_size):
        xb = x[s:s + batch_size]
        for _, p in inference_passages(net, xb):
            count(p)
            ones = p.unit.forward_events(torch.ones_like(_dense(p.h_in)), p.h_out)
            dense += ones["synop_dense"] + ones["synop_sparse"]
            if net.head is not None and p.index in net.head_idx:
                dense += head_events(torch.ones_like(p.unit.head_activity(p.h_out)), net.num_classes)["synop_dense"]
            nonzero += float(torch.count_nonzero(p.h_out))
            total += float(p.h_out.numel())
        ledger.add_samples("infer", xb.shape[0])
    n = max(1, x.shape[0])
    infer = ledger.per_sample("infer")
    weights, others = inference_tensors(net.state_dict(), len(net.layers))
    return nbf.figures(infer, dense=dense / n, spiking=[c["spike_route"] > 0 for c in infer],
                       activity=(nonzero / n, total / n), weights=nbf.weight_figures(weights, others),
                       source=f"ffneuro count pass over {x.shape[0]} samples")


def run_figures(run_dir: str | Path, config: dict, infer: list[dict[str, float]]) -> dict[str, Any]:
    """The ``"neurobench"`` entry of an estimate of a run dir: synaptic operations and
    membrane updates from ``events.json``'s inference counts ``infer`` (per sample),
    ``Dense`` from the units' fan-in (``config.json``'s resources) and the head, weights
    from the checkpoint when there is one, activation sparsity where the counts define it
    (spiking units without pooling). ``config``: the run's config.json."""
    from ffneuro.units.synapse import migrate_state

    sizes = [int(s) for s in config["layer_sizes"]]
    n_units = len(sizes) - 1
    res = config.get("resources")
    fan_in = [int(r["fan_in"]) for r in res] if res else sizes[:-1]
    neurons = [int(r["neurons"]) for r in res] if res else sizes[1:]
    notes = []
    state = None
    if (Path(run_dir) / runio.CHECKPOINT).is_file():
        tensors, _ = runio.load_checkpoint(Path(run_dir) / runio.CHECKPOINT)
        state = migrate_state({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        has_head = "head.weight" in state
    else:
        has_head = bool(config.get("config", {}).get("inference", {}).get("head", False))
        notes.append("no checkpoint: Footprint and ConnectionSparsity need the weights")
    head_dense = 0.0
    if has_head:
        idx = head_layers(n_units, competitive=config.get("label_encoding") == "none")
        head_dense = float(int(config["num_classes"]) * sum(sizes[i + 1] for i in idx))
    if any(f * n != a * b for f, n, a, b in zip(fan_in, neurons, sizes[:-1], sizes[1:])):
        notes.append("Dense counts every conv neuron's full fan-in, zero padding included (an upper bound; "
                     "`ffneuro neurobench` counts it exactly)")
    activity = nbf.spike_activity(infer, sizes[1:], neurons)
    if activity is None:
        notes.append("ActivationSparsity: this events.json predates the output counts; `ffneuro neurobench "
                     "RUN_DIR` counts it")
    weights = nbf.weight_figures(*inference_tensors(state, n_units)) if state is not None else None
    return nbf.figures(infer, dense=nbf.dense_from_counts(infer, fan_in, head_dense),
                       spiking=[c.get("spike_route", 0.0) > 0 for c in infer], activity=activity,
                       weights=weights, source="events.json (the run's inference counts)", notes=notes)


# ----------------------------------------------------------------------------------------
# The mirror
# ----------------------------------------------------------------------------------------
class UnitMirror(nn.Module):
    """One unit as NeuroBench's hooks see it: ``connection`` (``nn.Linear`` or
    ``nn.Conv2d`` holding the unit's trained weight and bias Parameters) and ``neuron``
    (``nn.ReLU``, or the unit's own snntorch neuron), with the unit's pooling and batch
    norm. ``forward`` maps the unit's input activity to its output activity."""

    def __init__(self, unit):
        super().__init__()
        syn = unit.synapse
        if syn.kind == "dense":
            conn = nn.Linear(syn.in_features, syn.out_features, device="meta")
        elif syn.kind == "conv":
            conn = nn.Conv2d(syn.in_channels, syn.out_channels, syn.kernel, syn.stride, syn.padding,
                             groups=syn.groups, device="meta")
        else:
            raise NeuroBenchError(f"a {syn.kind!r} synapse has no NeuroBench layer (Linear or Conv2d)")
        conn.weight, conn.bias = syn.weight, syn.bias
        self.connection = conn
        lif = getattr(unit, "lif", None)            # a spiking unit's snntorch neuron
        self.neuron = nn.ReLU() if lif is None else lif
        self.timed = lif is not None                 # activities (T, N, ...)
        self.norm = "none" if self.timed else unit.spec.norm
        self.pool = int(getattr(unit, "pool", 1))
        self.bn = getattr(unit, "bn", None)
        self.bn_at = getattr(unit, "bn_at", None)   # "output" (after pooling) or "input" (before the conv)
        self.in_shape = tuple(unit.in_shape)
        self.conv_shape = tuple(getattr(unit, "conv_shape", unit.out_shape))

    def _pool(self, h: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(h, self.pool) if self.pool > 1 else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.timed:
            return self._steps(x)
        x = normalize(x.reshape(x.shape[0], *self.in_shape), self.norm)
        if self.bn_at == "input":
            x = self.bn(x)
        h = self.neuron(self._pool(self.connection(x)))
        return self.bn(h) if self.bn_at == "output" else h

    def _steps(self, x: torch.Tensor) -> torch.Tensor:
        t, n = x.shape[:2]
        cur = self.connection(x.reshape(t * n, *self.in_shape)).view(t, n, *self.conv_shape)
        mem = torch.zeros(n, *self.conv_shape, dtype=x.dtype)
        out = []
        for step in range(t):
            spk, mem = self.neuron(cur[step], mem)
            out.append(spk)
        s = torch.stack(out)
        if self.pool == 1:
            return s
        pooled = self._pool(s.reshape(t * n, *self.conv_shape))
        return pooled.view(t, n, *pooled.shape[1:])


class NeuroBenchNet(nn.Module):
    """A trained float FFNetwork as torch modules NeuroBench can hook: raw test features
    (B, D) in, predicted labels (B,) out. ``inference_layers`` (0-based): the units whose
    goodness multi-pass inference sums. The FFNetwork itself is not a child module, so
    NeuroBench sees the mirror's modules only (each once)."""

    def __init__(self, net: FFNetwork, inference_layers: list[int]):
        super().__init__()
        if any(u.calibrated for u in net.layers):
            raise NeuroBenchError("a run trained under a fixed-point profile computes in integers, which "
                                  "NeuroBench's float modules do not reproduce (its golden model does)")
        self.units = nn.ModuleList(UnitMirror(u) for u in net.layers)
        self.head = None
        if net.head is not None:
            self.head = nn.Linear(net.head.weight.shape[1], net.head.weight.shape[0], bias=False, device="meta")
            self.head.weight = net.head.weight
        self._ff = (net,)                        # held outside the module tree
        self.inference_layers = list(inference_layers)

    def _through(self, i: int, unit, h_in) -> torch.Tensor:
        return self.units[i](_dense(h_in))

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        net = self._ff[0]
        x = net.prepare_input(data)
        b, c = x.shape[0], net.num_classes
        if self.head is not None:
            acts = [p.unit.head_activity(p.h_out) for _, p in inference_passages(net, x, self._through)
                    if p.index in net.head_idx]
            return self.head(net.head.features(acts)).argmax(dim=1)
        table = torch.zeros(b, c, len(self.units))
        for k, p in inference_passages(net, x, self._through):
            if net.competitive:
                if k == 0:
                    table[:, :, p.index] = p.unit.class_goodness(p.h_out, c)
            else:
                table[:, k, p.index] = p.unit.goodness(p.h_out)
        return multipass_scores(table, self.inference_layers).argmax(dim=1)

    @torch.no_grad()
    def check(self, data: torch.Tensor) -> None:
        """Refuse (one line) if the mirror's activities differ from the units' own forward
        on ``data`` (raw features)."""
        net = self._ff[0]
        x = net.prepare_input(data)
        own = [(p.index, p.h_out) for _, p in inference_passages(net, x)]
        mirrored = [p.h_out for _, p in inference_passages(net, x, self._through)]
        for (i, a), b in zip(own, mirrored):
            if a.shape != b.shape or not torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5):
                raise NeuroBenchError(f"unit {i + 1}: NeuroBench's modules (Linear/Conv2d, ReLU, snntorch "
                                      "Leaky) do not reproduce its forward (e.g. a LIF reset other than 'zero')")


# ----------------------------------------------------------------------------------------
# NeuroBench's harness
# ----------------------------------------------------------------------------------------
def neurobench_modules():
    """The parts of neurobench the harness uses, or a one-line error naming the extra."""
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics import static, workload
        from neurobench.models import TorchModel
    except ImportError as e:
        what = "is not installed" if (e.name or "").split(".")[0] == "neurobench" else f"needs {e.name or e}"
        raise NeuroBenchError(f"NeuroBench {what}: {INSTALL}") from None
    return Benchmark, TorchModel, static, workload


def benchmark(net: FFNetwork, inference_layers: list[int], data: torch.Tensor, labels: torch.Tensor, *,
              batch_size: int = 250) -> dict[str, Any]:
    """NeuroBench's own ``Benchmark`` on raw test features ``data`` and ``labels``: its
    static metrics (Footprint, ConnectionSparsity) and workload metrics
    (ClassificationAccuracy, ActivationSparsity, SynapticOperations, and for spiking
    networks MembraneUpdates and NeuronOperations), as NeuroBench returns them."""
    import snntorch as snn
    from torch.utils.data import DataLoader, TensorDataset

    Benchmark, TorchModel, static, workload = neurobench_modules()
    mirror = NeuroBenchNet(net, inference_layers)
    mirror.check(data[:CHECK_SAMPLES])
    model = TorchModel(mirror)
    model.add_activation_module(snn.SpikingNeuron)
    spiking = any(m.timed for m in mirror.units)
    workloads = [workload.ClassificationAccuracy, workload.ActivationSparsity, workload.SynapticOperations]
    workloads += [workload.MembraneUpdates, workload.NeuronOperations] if spiking else []
    loader = DataLoader(TensorDataset(data, labels), batch_size=batch_size, shuffle=False)
    bench = Benchmark(model, loader, [], [], [[static.Footprint, static.ConnectionSparsity], workloads])
    try:
        with torch.no_grad():
            results = bench.run(quiet=True)
    finally:
        bench.workload_metric_manager.cleanup_hooks(model)
    failed = [k for k, v in results.items() if v is None]
    if failed:
        raise NeuroBenchError(f"NeuroBench could not compute {', '.join(failed)} for this network")
    return results


def ratios(ffneuro: dict[str, Any], neurobench: dict[str, Any]) -> dict[str, float | None]:
    """ffneuro's figure / NeuroBench's for every name both give (None where either is
    None or NeuroBench's is 0)."""
    def flat(d):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out |= {f"{k}.{kk}": vv for kk, vv in v.items()}
            elif k in (*nbf.NAMES, "ClassificationAccuracy"):
                out[k] = v
        return out

    ours, theirs = flat(ffneuro), flat(neurobench)
    return {k: (None if ours[k] is None or theirs[k] in (None, 0) else float(ours[k]) / float(theirs[k]))
            for k in ours if k in theirs}


def run_benchmark(run_dir: str | Path, data: str | None = None, samples: int | None = None,
                  batch_size: int = 250) -> dict[str, Any]:
    """`ffneuro neurobench`: NeuroBench's harness on a run dir's network and test set (or
    ``data``'s), beside ffneuro's own figures of the same samples and their ratios.
    ``samples``: the first N test samples (default: as many as the run's ``events.json``
    counted, so ffneuro's estimate covers the same ones; all without it)."""
    from ffneuro.data.loaders import load_dataset
    from ffneuro.evaluate import evaluate
    from ffneuro.network import default_inference_layers
    from ffneuro.runs.load import load_run

    neurobench_modules()                         # fail before any work if it is missing
    run_dir = Path(run_dir)
    cfg, saved, net = load_run(run_dir)
    ds = load_dataset(data or cfg.data.name, seed=cfg.loop.seed)
    expected = (math.prod(saved["feature_shape"]) if "feature_shape" in saved else
                net.layers[0].in_features - (net.num_classes if net.encoding.mode == "concat" else 0))
    if math.prod(ds.x_test.shape[1:]) != expected:
        raise NeuroBenchError(f"{data or cfg.data.name}: {math.prod(ds.x_test.shape[1:])} features per sample, but "
                              f"the run was trained on samples of {expected}")
    if samples is None and (run_dir / "events.json").is_file():
        samples = int(runio.read_json(run_dir / "events.json")["samples"].get("infer", 0)) or None
    if samples is not None and samples < 1:
        raise NeuroBenchError(f"--samples {samples}: give at least 1")
    x, y = ds.x_test[:samples], ds.y_test[:samples]
    layers = default_inference_layers(cfg)
    theirs = benchmark(net, layers, x, y, batch_size=batch_size)
    xp = net.prepare_input(x)
    ours = count_figures(net, xp, batch_size=batch_size)
    errors = evaluate(net, xp, y, layers)["test_error"]
    ours["ClassificationAccuracy"] = 1.0 - errors["one_pass" if net.head is not None else "multi_pass"] / 100.0
    return {"run_dir": str(run_dir), "dataset": ds.name, "n_test": int(x.shape[0]),
            "inference": "one-pass" if net.head is not None else "multi-pass",
            "neurobench": theirs, "ffneuro": ours, "ratio_ffneuro_to_neurobench": ratios(ours, theirs)}


def format_benchmark(r: dict[str, Any]) -> str:
    """The text of `ffneuro neurobench`: one row per metric, NeuroBench's figure,
    ffneuro's and their ratio."""
    rows = [["metric", "NeuroBench", "ffneuro", "ratio"]]
    theirs, ours, ratio = r["neurobench"], r["ffneuro"], r["ratio_ffneuro_to_neurobench"]

    def cell(v):
        return "n/a" if v is None else f"{v:.6g}"

    for name in ("ClassificationAccuracy", *nbf.NAMES):
        t = theirs.get(name, None)
        o = ours.get(name)
        if isinstance(t, dict) or isinstance(o, dict):
            for k in (t or o):
                rows.append([f"{name}.{k}", cell((t or {}).get(k)), cell((o or {}).get(k)),
                             cell(ratio.get(f"{name}.{k}"))])
        elif t is not None or o is not None:
            rows.append([name, cell(t), cell(o), cell(ratio.get(name))])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"NeuroBench on {r['run_dir']}: {r['dataset']}, {r['n_test']} test samples, {r['inference']} "
             f"inference (per sample = {nbf.SAMPLE})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
