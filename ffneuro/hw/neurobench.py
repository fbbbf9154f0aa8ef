"""ffneuro's figures under NeuroBench's metric names, from ffneuro's own counts.

NeuroBench (Yik et al., Nature Communications 2025; the ``neurobench`` package) names a
set of metrics that many neuromorphic papers report. This module computes ffneuro's
figure for each name from ffneuro's event counts (:mod:`ffneuro.hw.events`) and stored
weights; it never imports ``neurobench``. Running NeuroBench's own code on the same
network and data is :mod:`ffneuro.hw.neurobench_run`, and the test compares the two.

**One sample** is one test sample's whole inference in the run's mode, as the trainer
counts it (``train.loop.count_inference``): one-pass = one neutral-label pass (× T steps)
plus the linear head; multi-pass = C label passes (× T steps), no head. Every per-sample
figure below covers all of them.

=======================  ============================================================
``Footprint``            bytes of the inference model's weights, biases and head
                         weights as stored (float32: 4 bytes each)
``ConnectionSparsity``   zero weights / all weights of the synapses (and the head)
``ActivationSparsity``   1 − non-zero outputs / all outputs of the units, over every
                         pass, time step and sample (a unit's output: its activity as
                         the next unit receives it, after pooling)
``SynapticOperations``   per sample: ``Effective_MACs`` = Σ ``synop_dense`` (graded
                         inputs), ``Effective_ACs`` = Σ ``synop_sparse`` (spikes),
                         ``Dense`` = the synops if every input were non-zero
``MembraneUpdates``      per sample, spiking units only: Σ ``neuron_update`` (every
                         neuron, every step)
``NeuronOperations``     not defined by ffneuro (a neuron update is one event of the
                         profile, not a count of arithmetic operations): None
=======================  ============================================================

Units: :data:`UNITS`. The names are NeuroBench's own (so a consumer can match them with
NeuroBench's results), not ffneuro's ``<quantity>_<unit>`` form; the units are stated
beside them in every report.
"""

from __future__ import annotations

from typing import Any, Sequence

NAMES: tuple[str, ...] = ("Footprint", "ConnectionSparsity", "ActivationSparsity", "SynapticOperations",
                          "MembraneUpdates", "NeuronOperations")
UNITS: dict[str, str] = {
    "Footprint": "bytes",
    "ConnectionSparsity": "fraction of weights that are zero",
    "ActivationSparsity": "fraction of unit outputs that are zero",
    "SynapticOperations": "operations per inference sample",
    "MembraneUpdates": "membrane updates per inference sample",
    "NeuronOperations": "not defined by ffneuro",
}
SAMPLE = "one test sample's inference in the run's mode: one-pass = 1 neutral pass + head, multi-pass = C passes"


def synaptic_operations(infer: Sequence[dict[str, float]], dense: float) -> dict[str, float]:
    """NeuroBench's ``SynapticOperations`` from per-sample inference counts per layer
    (``EventLedger.per_sample("infer")``) and the ``dense`` synops per sample.

    >>> synaptic_operations([{"synop_dense": 6.0, "synop_sparse": 0.0}, {"synop_dense": 0.0, "synop_sparse": 2.0}], 20.0)
    {'Effective_MACs': 6.0, 'Effective_ACs': 2.0, 'Dense': 20.0}
    """
    return {"Effective_MACs": float(sum(c.get("synop_dense", 0.0) for c in infer)),
            "Effective_ACs": float(sum(c.get("synop_sparse", 0.0) for c in infer)),
            "Dense": float(dense)}


def dense_from_counts(infer: Sequence[dict[str, float]], fan_in: Sequence[int], head_dense: float = 0.0) -> float:
    """Dense synops per sample from the counts: every neuron update reads all ``fan_in``
    inputs of its neuron, plus the head's ``head_dense`` (C × its input width, one-pass).

    Exact for dense synapses. A conv neuron at the border of a zero-padded map reads fewer
    real inputs than its fan-in, so for padded conv units this is an upper bound (the count
    pass of :mod:`ffneuro.hw.neurobench_run` counts them exactly).

    >>> dense_from_counts([{"neuron_update": 3.0}, {"neuron_update": 2.0}], [4, 3], head_dense=10.0)
    28.0
    """
    return float(sum(c.get("neuron_update", 0.0) * f for c, f in zip(infer, fan_in))) + float(head_dense)


def membrane_updates(infer: Sequence[dict[str, float]], spiking: Sequence[bool]) -> float | None:
    """Σ ``neuron_update`` per sample over the spiking layers; None if there are none (NeuroBench
    counts membranes of spiking neurons only)."""
    if not any(spiking):
        return None
    return float(sum(c.get("neuron_update", 0.0) for c, s in zip(infer, spiking) if s))


def sparsity(zero_or_nonzero: float, total: float, *, nonzero: bool) -> float | None:
    """The fraction of zeros among ``total`` entries, given the zeros or (``nonzero``) the
    non-zeros; None if there is nothing.

    >>> sparsity(1, 4, nonzero=True), sparsity(1, 4, nonzero=False), sparsity(0, 0, nonzero=True)
    (0.75, 0.25, None)
    """
    if total <= 0:
        return None
    zeros = total - zero_or_nonzero if nonzero else zero_or_nonzero
    return float(zeros) / float(total)


def spike_activity(infer: Sequence[dict[str, float]], widths: Sequence[int],
                   neurons: Sequence[int]) -> tuple[float, float] | None:
    """(non-zero outputs, all outputs) per sample where the counts define them: every layer
    counted its outputs (``output_nonzero``, ``output_entries``: as the next unit receives
    them, after pooling, every time step), or, in counts made before those existed, every
    layer routes spikes (``spike_route``: its non-zero outputs) and has as many outputs as
    neurons (no pooling). Otherwise None."""
    if infer and all(c.get("output_entries", 0.0) > 0 for c in infer):
        return (float(sum(c["output_nonzero"] for c in infer)), float(sum(c["output_entries"] for c in infer)))
    if not infer or any(c.get("spike_route", 0.0) <= 0 for c in infer) or list(widths) != list(neurons):
        return None
    return (float(sum(c["spike_route"] for c in infer)), float(sum(c["neuron_update"] for c in infer)))


def weight_figures(weights: Sequence[Any], others: Sequence[Any] = ()) -> dict[str, float]:
    """``Footprint`` (bytes of ``weights`` and ``others``, e.g. biases, as stored) and
    ``ConnectionSparsity`` (zero entries of ``weights``). Tensors: anything with
    ``numel()``, ``element_size()`` and ``==``."""
    n = sum(int(w.numel()) for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    size = sum(int(t.numel()) * int(t.element_size()) for t in (*weights, *others))
    return {"Footprint": float(size), "ConnectionSparsity": sparsity(zeros, n, nonzero=False)}


def figures(infer: Sequence[dict[str, float]], *, dense: float, spiking: Sequence[bool],
            activity: tuple[float, float] | None = None, weights: dict[str, float] | None = None,
            source: str, notes: Sequence[str] = ()) -> dict[str, Any]:
    """The ``"neurobench"`` entry of an estimate: every name of :data:`NAMES` (None where
    ffneuro's counts do not define it), their :data:`UNITS`, what one sample is, where
    the figures come from (``source``) and ``notes`` on what is missing or approximate.
    ``activity``: (non-zero, all) unit outputs per sample; ``weights``: from
    :func:`weight_figures`."""
    weights = weights or {}
    return {
        "Footprint": weights.get("Footprint"),
        "ConnectionSparsity": weights.get("ConnectionSparsity"),
        "ActivationSparsity": None if activity is None else sparsity(*activity, nonzero=True),
        "SynapticOperations": synaptic_operations(infer, dense),
        "MembraneUpdates": membrane_updates(infer, spiking),
        "NeuronOperations": None,
        "units": dict(UNITS),
        "sample": SAMPLE,
        "source": source,
        "notes": list(notes),
    }


def analytic_figures(layer_sizes: Sequence[int], infer: Sequence[dict[str, float]], *,
                     activity: float | Sequence[float], inference: str, num_classes: int,
                     binary: bool) -> dict[str, Any]:
    """The ``"neurobench"`` entry of an analytic estimate (assumed activities, no weights):
    synaptic operations and membrane updates from the analytic counts ``infer``,
    ``ActivationSparsity`` = 1 − Σ a_l·n_l / Σ n_l from the assumed per-layer output
    activities (one float for all layers, or one per layer), and the ``Footprint`` of
    float32 weights, biases and, one-pass, the head's weights (it reads layers 2..L, as
    ``analytic_events`` counts it). ``ConnectionSparsity`` needs weights: None.

    >>> nb = analytic_figures([4, 2, 2], [{"synop_dense": 4.0, "neuron_update": 2.0}, {"synop_dense": 2.0,
    ...     "neuron_update": 2.0}], activity=0.5, inference="one-pass", num_classes=3, binary=False)
    >>> nb["ActivationSparsity"], nb["Footprint"], nb["SynapticOperations"]["Dense"]
    (0.5, 88.0, 18.0)
    """
    sizes = [int(s) for s in layer_sizes]
    outs = sizes[1:]
    acts = [float(activity)] * len(outs) if isinstance(activity, (int, float)) else [float(a) for a in activity]
    head = num_classes * sum(outs[1:]) if inference == "one-pass" else 0
    params = sum(a * b + b for a, b in zip(sizes[:-1], outs)) + head
    nonzero = sum(a * n for a, n in zip(acts, outs))
    out = figures(infer, dense=dense_from_counts(infer, sizes[:-1], head), spiking=[binary] * len(outs),
                  activity=(nonzero, float(sum(outs))), source="analytic",
                  notes=["ActivationSparsity and the effective synops follow the assumed activities",
                         "ConnectionSparsity needs trained weights: not defined analytically"])
    out["Footprint"] = float(4 * params)
    return out


def format_lines(nb: dict[str, Any]) -> list[str]:
    """The text report's lines for a ``"neurobench"`` entry."""
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    ops = nb["SynapticOperations"]
    lines = [f"NeuroBench metrics ({nb['source']}; per sample = {nb['sample']})",
             f"  SynapticOperations  Effective_MACs {ops['Effective_MACs']:.6g}, Effective_ACs "
             f"{ops['Effective_ACs']:.6g}, Dense {ops['Dense']:.6g}",
             f"  ActivationSparsity  {num(nb['ActivationSparsity'], '.4f')}   ConnectionSparsity "
             f"{num(nb['ConnectionSparsity'], '.4f')}   Footprint {num(nb['Footprint'], '.6g')} bytes   "
             f"MembraneUpdates {num(nb['MembraneUpdates'], '.6g')}"]
    lines += [f"  note: {n}" for n in nb.get("notes", [])]
    return lines
