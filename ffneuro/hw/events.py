"""Counting the hardware events of Forward-Forward training and inference.

This module only *counts*; it never holds an energy number. Energy is
``Σ count × energy-per-event`` and lives in :mod:`ffneuro.hw.energy`, with the
per-event energies taken from a hardware profile (Accelergy keeps its action
counts and its energy reference table apart in the same way).

Event kinds (:data:`EVENT_KINDS`), per layer, for a dense layer ``h = act(W x + b)``
with ``x`` of shape ``(B, fan_in)`` and ``h`` of shape ``(B, fan_out)``:

==================  ==========================================================
``synop_dense``     multiply-accumulate of a *graded* non-zero input into one
                    synapse (NeuroBench's "MAC")
``synop_sparse``    accumulate-only of a *binary/spike* input into one synapse
                    (NeuroBench's "AC"); a spike carries no value to multiply
``neuron_update``   one unit's state update (bias, activation / membrane step,
                    including the read and write of its own state)
``weight_read``     one synaptic weight read; every synop reads its weight
``weight_write``    one synaptic weight written back by the learning rule
``learning_update`` one per-sample gradient contribution ``δ_j · x_i`` into a synapse
``state_access``    one read or one write of a state word used by learning: a
                    pre/post activity (trace) read, or an optimizer slot (momentum,
                    Adam moment) of a written weight, read and written back
``goodness_op``     one square-and-accumulate of ``Σ h²`` (the goodness, which is
                    also the length that normalises the input of the next layer)
``spike_route``     one spike sent from a unit towards the next layer's cores
==================  ==========================================================

Counting rules (the same in :func:`forward_events`, :func:`update_events`,
:func:`head_events` and :func:`analytic_events`; the tests check that they agree):

* **Only non-zero inputs cost synops.** ``synops = nnz(x) × fan_out``: an event-driven
  core skips a zero input (a ReLU zero or a silent spike line). A dense processor that
  does not skip zeros is modelled by counting with ``input_activity = 1``.
* ``weight_read = synops``; ``neuron_update = B × fan_out`` per forward step, of which
  ``neuron_update_active`` = (samples with at least one non-zero input) × fan_out (an
  auxiliary count, *not* an event kind). This follows the profile convention: a unit is
  *active* in a step in which it received input, *idle* otherwise (leak only); in a
  dense layer every unit receives input unless the whole input row is zero. The
  estimator charges the active energy for these and the idle energy for the rest.
* ``goodness_op = B × fan_out`` per forward step, in every mode: one-pass inference does
  not need the goodness itself, but it needs the same ``Σ h²`` to length-normalise the
  input of the next layer.
* ``spike_route = nnz(h)`` for binary/spiking outputs, else 0.
* Learning (once per sample, on the pass inputs, *not* per time step):
  ``learning_update = (nnz(x⁺) + nnz(x⁻)) × fan_out`` (a zero input gets a zero
  gradient; ReLU zeros in ``h`` would prune more, which we do not take credit for);
  ``weight_write = |columns non-zero anywhere in the applied batch| × fan_out`` once per
  applied update; ``state_access = Σ_pass (nnz(x) + B × fan_out)`` reads of the pre
  activities and post terms ``+ 2 × optimizer_slots × weight_write`` (each slot of a
  written weight is read and written back). Bias updates are not counted. Spiking units
  (input spike trains) count by their learning rule, per step where the rule works per
  step: :func:`spike_update_events`.
* One-pass inference adds the linear head: layer ``l >= 2`` (1-based) adds
  ``nnz(h_l) × num_classes`` dense MACs and weight reads (:func:`head_events`).

A spiking layer (spike trains ``(T, B, units)``) counts with :func:`spike_forward_events`
(the rules above per step, the goodness once per sample) and :func:`spike_update_events`.

How a trainer records a run (layer ``l`` 0-based, ``x`` its input after label overlay /
normalisation, ``h`` its output, per batch of ``B`` samples)::

    ledger.add("train", l, forward_events(x_pos, h_pos, binary_input=spiking))  # each step
    ledger.add("train", l, forward_events(x_neg, h_neg, binary_input=spiking))  # each step
    ledger.add("train", l, update_events(x_pos, x_neg, h_pos.shape[1], profile.streaming.max_batch,
                                         optimizer_slots=slots))                 # once
    ledger.add_samples("train", B)                                               # once per batch
    # inference: forward_events per pass (C passes, or 1 + head_events(h, C) for l >= 1)
    write_json(run_dir / "events.json", ledger.to_dict())

Shapes: all counting functions take ``(B, units)`` tensors and return
``dict[str, float]`` of *totals* for the call; :class:`EventLedger` turns totals into
per-sample figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

EVENT_KINDS: tuple[str, ...] = (
    "synop_dense",
    "synop_sparse",
    "neuron_update",
    "weight_read",
    "weight_write",
    "learning_update",
    "state_access",
    "goodness_op",
    "spike_route",
)
# Auxiliary counts that refine an event kind (not kinds of their own, no energy field).
# ``output_nonzero`` / ``output_entries``: a unit's outputs as the next unit receives them
# (after pooling; per time step for spiking units), for NeuroBench's ActivationSparsity.
AUX_COUNTS: tuple[str, ...] = ("neuron_update_active", "output_nonzero", "output_entries")
COUNT_KEYS: tuple[str, ...] = EVENT_KINDS + AUX_COUNTS
_COUNT_KEY_SET = frozenset(COUNT_KEYS)

PHASES: tuple[str, ...] = ("train", "infer")
INFERENCE_MODES: tuple[str, ...] = ("multi-pass", "one-pass")


class EventsError(ValueError):
    """Bad input to an event-counting function or a malformed events file."""


def zero_counts() -> dict[str, float]:
    """A fresh count dict with every key of :data:`COUNT_KEYS` at 0."""
    return {k: 0.0 for k in COUNT_KEYS}


def _nnz(x: torch.Tensor) -> float:
    import torch
    return float(torch.count_nonzero(x))


def _activity_counts(x: torch.Tensor, h: torch.Tensor) -> tuple[float, float, float]:
    """(non-zero entries of x, rows of x with a non-zero entry, non-zero entries of h),
    by the compiled kernel where it applies (functional/kernels.py), else in torch."""
    import torch

    from ffneuro.functional import kernels
    if kernels.usable(x, h):
        return tuple(float(v) for v in kernels.activity_counts(x.numpy(), h.numpy()))
    return _nnz(x), float(torch.count_nonzero(x.ne(0).any(dim=1))), _nnz(h)


def _update_counts(x_pos: torch.Tensor, x_neg: torch.Tensor, chunk: int) -> tuple[float, float]:
    """(nnz(x_pos) + nnz(x_neg), Σ over consecutive chunks of ``chunk`` rows of the
    columns non-zero in some row of the chunk, in either)."""
    import torch

    from ffneuro.functional import kernels
    if kernels.usable(x_pos, x_neg, dtype=x_pos.dtype):
        return tuple(float(v) for v in kernels.update_counts(x_pos.numpy(), x_neg.numpy(), chunk))
    rows, fan_in = x_pos.shape
    touched = (x_pos != 0) | (x_neg != 0)
    n_chunks = -(-rows // chunk)
    pad = n_chunks * chunk - rows
    if pad:
        touched = torch.cat([touched, touched.new_zeros(pad, fan_in)], dim=0)
    return _nnz(x_pos) + _nnz(x_neg), float(touched.view(n_chunks, chunk, fan_in).any(dim=1).sum())


def _check_2d(name: str, x: torch.Tensor) -> None:
    if x.dim() != 2:
        raise EventsError(f"{name}: expected a (batch, units) tensor, got shape {tuple(x.shape)}")


def forward_events(
    x_in: torch.Tensor,
    h_out: torch.Tensor,
    *,
    binary_input: bool,
    binary_output: bool | None = None,
) -> dict[str, float]:
    """Events of one forward step of one dense layer over a batch.

    ``x_in``: ``(B, fan_in)`` the layer's input (after normalisation; zeros stay zeros);
    ``h_out``: ``(B, fan_out)`` its output. ``binary_input`` selects ``synop_sparse``
    (spike input, accumulate only) over ``synop_dense`` (graded input, MAC).
    ``binary_output`` (default: same as ``binary_input``, i.e. a spiking layer) makes
    non-zero outputs count as ``spike_route``.

    Rules: ``synops = weight_read = nnz(x_in) × fan_out``;
    ``neuron_update = goodness_op = B × fan_out``; ``neuron_update_active = (rows of
    x_in with a non-zero) × fan_out`` (units that received input);
    ``spike_route = nnz(h_out)`` if the output is binary else 0. Call once per pass and
    per time step.

    >>> import torch
    >>> forward_events(torch.tensor([[1.0, 0.0, 2.0]]), torch.zeros(1, 2), binary_input=False)["synop_dense"]
    4.0
    """
    _check_2d("x_in", x_in)
    _check_2d("h_out", h_out)
    if x_in.shape[0] != h_out.shape[0]:
        raise EventsError(
            f"x_in/h_out: batch sizes differ ({x_in.shape[0]} vs {h_out.shape[0]})"
        )
    if binary_output is None:
        binary_output = binary_input
    batch, fan_out = h_out.shape
    nnz_in, rows_with_input, nonzero = _activity_counts(x_in, h_out)
    synops = nnz_in * fan_out
    counts = zero_counts()
    counts["synop_sparse" if binary_input else "synop_dense"] = synops
    counts["weight_read"] = synops
    counts["neuron_update"] = float(batch * fan_out)
    counts["neuron_update_active"] = rows_with_input * fan_out
    counts["goodness_op"] = float(batch * fan_out)
    counts["spike_route"] = nonzero if binary_output else 0.0
    counts["output_nonzero"], counts["output_entries"] = nonzero, float(h_out.numel())
    return counts


def spike_forward_events(s_in: torch.Tensor, s_out: torch.Tensor, *, binary_input: bool = True) -> dict[str, float]:
    """Events of one spiking layer over T steps: ``s_in`` (T, B, fan_in) input spikes (or
    currents, ``binary_input=False``), ``s_out`` (T, B, fan_out) output spikes.

    :func:`forward_events` applied to every step (synops per input spike, a neuron update
    per unit and step, a route per output spike), except ``goodness_op = B × fan_out``
    once per sample: the goodness (and the head's normalisation) reads the spike counts
    after the T steps, and spikes into the next layer are not normalised.

    >>> import torch
    >>> spike_forward_events(torch.ones(4, 1, 2), torch.zeros(4, 1, 3))["goodness_op"]
    3.0
    """
    if s_in.dim() != 3 or s_out.dim() != 3 or s_in.shape[:2] != s_out.shape[:2]:
        raise EventsError(f"s_in/s_out: expected (T, batch, units) spike trains with the same T and batch, got "
                          f"{tuple(s_in.shape)} and {tuple(s_out.shape)}")
    counts = forward_events(s_in.reshape(-1, s_in.shape[-1]), s_out.reshape(-1, s_out.shape[-1]),
                            binary_input=binary_input, binary_output=True)
    counts["goodness_op"] = float(s_out.shape[1] * s_out.shape[2])
    return counts


def update_events(
    x_pos: torch.Tensor,
    x_neg: torch.Tensor,
    fan_out: int,
    batch_size: int,
    *,
    optimizer_slots: int = 0,
) -> dict[str, float]:
    """Events of the local FF weight update of one layer.

    ``x_pos``, ``x_neg``: ``(B, fan_in)`` the layer's inputs in the positive and negative
    pass of the same ``B`` samples. ``batch_size``: samples per *applied* update on the
    chip (e.g. the profile's ``streaming.max_batch``); the ``B`` rows are cut into
    consecutive chunks of ``batch_size`` and each chunk writes the weights once, so a
    chip that updates after every sample (``batch_size=1``) writes more often than the
    PyTorch batch suggests. ``optimizer_slots``: per-weight optimizer state words
    (0 for SGD, 1 momentum, 2 Adam).

    Rules: ``learning_update = (nnz(x_pos) + nnz(x_neg)) × fan_out``;
    ``weight_write = Σ_chunks |{i : x_pos[b, i] ≠ 0 or x_neg[b, i] ≠ 0 for some b in
    chunk}| × fan_out``; ``state_access = nnz(x_pos) + nnz(x_neg) + 2·B·fan_out
    + 2·optimizer_slots × weight_write``. Every other kind is 0.
    """
    _check_2d("x_pos", x_pos)
    _check_2d("x_neg", x_neg)
    if x_pos.shape != x_neg.shape:
        raise EventsError(
            f"x_pos/x_neg: shapes differ ({tuple(x_pos.shape)} vs {tuple(x_neg.shape)})"
        )
    if batch_size < 1 or fan_out < 1:
        raise EventsError(f"update_events: batch_size and fan_out must be >= 1, got {batch_size}, {fan_out}")
    rows, fan_in = x_pos.shape
    nnz_in, columns = _update_counts(x_pos, x_neg, batch_size)
    counts = zero_counts()
    counts["learning_update"] = nnz_in * fan_out
    counts["weight_write"] = columns * fan_out
    counts["state_access"] = nnz_in + 2.0 * rows * fan_out + 2.0 * optimizer_slots * columns * fan_out
    return counts


def _window_inputs(x: torch.Tensor, kernel: int, stride: int, padding: int, groups: int) -> torch.Tensor:
    """(B, groups, H', W'): the non-zero inputs each output position's window sees in each
    group (float64 counts, exact)."""
    import torch
    nz = x.ne(0).to(torch.float64)
    ones = torch.ones(groups, x.shape[1] // groups, kernel, kernel, dtype=torch.float64)
    return torch.nn.functional.conv2d(nz, ones, None, stride, padding, 1, groups)


def conv_forward_events(x_in: torch.Tensor, h_out: torch.Tensor, *, out_channels: int, kernel: int, stride: int = 1,
                        padding: int = 0, groups: int = 1, binary_input: bool = False,
                        binary_output: bool | None = None) -> dict[str, float]:
    """Events of one forward step of a conv unit over a batch: ``x_in`` (B, C, H, W) its
    input maps, ``h_out`` its output maps after pooling (B, C_out, H'', W'').

    A neuron is one output channel at one conv position (before pooling). Rules:
    ``synops = weight_read = Σ_positions Σ_groups (non-zero inputs in the position's k×k
    window of the group) × (C_out / groups)`` (only non-zero inputs cost, as for dense
    units; every synop reads its kernel weight: an event-driven core keeps no kernel in
    registers between input events); ``neuron_update = B × C_out × H' × W'`` (every conv
    position's neurons, before pooling), of which ``neuron_update_active`` saw a non-zero
    input; ``goodness_op = nnz-independent B × C_out × H'' × W''`` (the pooled outputs);
    ``spike_route = nnz(h_out)`` for binary outputs.

    >>> import torch
    >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 1] = 2.0
    >>> conv_forward_events(x, torch.zeros(1, 4, 3, 3), out_channels=4, kernel=3, padding=1)["synop_dense"]
    36.0
    """
    if x_in.dim() != 4 or h_out.dim() != 4 or x_in.shape[0] != h_out.shape[0]:
        raise EventsError(f"x_in/h_out: expected (batch, channels, H, W) maps of one batch, got "
                          f"{tuple(x_in.shape)} and {tuple(h_out.shape)}")
    if binary_output is None:
        binary_output = binary_input
    window = _window_inputs(x_in, kernel, stride, padding, groups)
    per_group = out_channels // groups
    synops = float(window.sum()) * per_group
    counts = zero_counts()
    counts["synop_sparse" if binary_input else "synop_dense"] = synops
    counts["weight_read"] = synops
    counts["neuron_update"] = float(window.shape[0] * window.shape[2] * window.shape[3] * out_channels)
    counts["neuron_update_active"] = float(window.gt(0).sum()) * per_group
    counts["goodness_op"] = float(h_out[0].numel() * h_out.shape[0])
    nonzero = _nnz(h_out)
    counts["spike_route"] = nonzero if binary_output else 0.0
    counts["output_nonzero"], counts["output_entries"] = nonzero, float(h_out.numel())
    return counts


def conv_update_events(x_pos: torch.Tensor, x_neg: torch.Tensor | None, *, out_channels: int, kernel: int,
                       stride: int = 1, padding: int = 0, groups: int = 1, neurons: int, batch_size: int,
                       optimizer_slots: int = 0) -> dict[str, float]:
    """Events of a conv unit's local update from its input maps in the positive pass
    (and the negative pass; None under channel-wise competition, which has none).

    Rules, the dense rules with weight sharing: ``learning_update`` = the synops of the
    passes (each product δ·x that enters a kernel gradient); ``weight_write`` per applied
    update (chunks of ``batch_size`` samples) = the kernel entries whose input channel was
    non-zero somewhere in the chunk: ``|{(o, i, ky, kx)}| = Σ_chunks nnz-channels ×
    (C_out / groups) × k²``; ``state_access = nnz(x) + 2·B·neurons + 2·optimizer_slots ×
    weight_write`` (``neurons``: per sample, C_out × H' × W').
    """
    import torch
    passes = [x_pos] if x_neg is None else [x_pos, x_neg]
    rows = x_pos.shape[0]
    per_group = out_channels // groups
    learning = sum(float(_window_inputs(x, kernel, stride, padding, groups).sum()) for x in passes) * per_group
    touched = torch.stack([x.ne(0).flatten(2).any(dim=2) for x in passes]).any(dim=0)        # (B, C_in)
    n_chunks = -(-rows // batch_size)
    pad = n_chunks * batch_size - rows
    if pad:
        touched = torch.cat([touched, touched.new_zeros(pad, touched.shape[1])])
    channels = float(touched.view(n_chunks, batch_size, -1).any(dim=1).sum())
    writes = channels * per_group * kernel * kernel
    nnz_in = sum(_nnz(x) for x in passes)
    counts = zero_counts()
    counts["learning_update"] = learning
    counts["weight_write"] = writes
    counts["state_access"] = nnz_in + float(len(passes) * rows * neurons) + 2.0 * optimizer_slots * writes
    return counts


def spike_update_events(
    x_pos: torch.Tensor,
    x_neg: torch.Tensor,
    fan_out: int,
    batch_size: int,
    *,
    rule: str,
    optimizer_slots: int = 0,
) -> dict[str, float]:
    """Events of a spiking unit's local update; ``x_pos``, ``x_neg``: its input spike
    trains ``(T, B, fan_in)`` in the positive and negative pass.

    Weight writes and optimizer slots are those of :func:`update_events` on the spike
    counts (one write per synapse with an input spike in the applied batch). Let
    ``spikes = nnz(x_pos) + nnz(x_neg)`` over all steps and ``steps = T``:

    * ``rule = "bptt"`` (the unit backpropagates through its own T steps): one product
      ``δ_j[t]·x_i[t]`` per input spike and output unit, ``learning_update = spikes ×
      fan_out``; the T-step history (input spikes, each unit's membrane) is written in the
      forward and read back: ``state_access = 2·(spikes + 2·B·T·fan_out)``.
    * ``rule = "eligibility"`` (online traces, ``FFSpiking._eligibility_step``): one
      product ``δ_j·ψ̄_j·ε̄_i`` per synapse whose input spiked at all, ``learning_update =
      (nnz(Σ_t x_pos) + nnz(Σ_t x_neg)) × fan_out``; the upkeep counted event-driven
      (ε̄_i grows by a known weight at each input spike, since ε decays geometrically
      between spikes): ``state_access = 2·spikes + 2·2B·T·fan_out`` (read and write of a
      trace per input spike, of ψ̄_j per unit and step) plus the reads at the update,
      ``nnz(counts) + 2·B·fan_out``.

    Both add ``2·optimizer_slots × weight_write`` to ``state_access``. Every other kind is 0.
    """
    if x_pos.dim() != 3 or x_pos.shape != x_neg.shape:
        raise EventsError(f"x_pos/x_neg: expected two (T, batch, units) spike trains of one shape, got "
                          f"{tuple(x_pos.shape)} and {tuple(x_neg.shape)}")
    if rule not in ("bptt", "eligibility"):
        raise EventsError(f"spike_update_events: unknown rule {rule!r} (allowed: bptt, eligibility)")
    steps, rows = x_pos.shape[0], x_pos.shape[1]
    c_pos, c_neg = x_pos.sum(dim=0), x_neg.sum(dim=0)
    counts = update_events(c_pos, c_neg, fan_out, batch_size, optimizer_slots=optimizer_slots)
    spikes = _nnz(x_pos) + _nnz(x_neg)
    slots_access = 2.0 * optimizer_slots * counts["weight_write"]
    if rule == "bptt":
        counts["learning_update"] = spikes * fan_out
        counts["state_access"] = 2.0 * (spikes + 2.0 * rows * steps * fan_out) + slots_access
    else:
        counts["state_access"] += 2.0 * spikes + 4.0 * rows * steps * fan_out
    return counts


def head_events(h: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Events of one layer's share of the one-pass linear head.

    The head reads the normalised activities of layers 2..L (graded values), so layer
    ``l``'s share is ``synop_dense = weight_read = nnz(h_l) × num_classes``; add it to
    layer ``l``'s inference counts. The C output logits and the argmax are not counted.
    """
    _check_2d("h", h)
    counts = zero_counts()
    counts["synop_dense"] = _nnz(h) * num_classes
    counts["weight_read"] = counts["synop_dense"]
    return counts


def add_counts(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Key-wise sum of two count dicts (missing keys count as 0)."""
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in dict.fromkeys([*a, *b])}


@dataclass
class EventLedger:
    """Accumulates event counts per (phase, layer, kind) and samples per phase.

    The trainer adds the totals returned by the counting functions, and the number of
    samples they covered; :meth:`per_sample` divides. ``phase`` is ``"train"`` or
    ``"infer"``; a training sample covers its positive pass, negative pass and update.

    >>> led = EventLedger(); led.add("train", 0, {"synop_dense": 8.0}); led.add_samples("train", 2)
    >>> led.per_sample("train")[0]["synop_dense"]
    4.0
    """

    counts: dict[tuple[str, int, str], float] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PHASES})

    def add(self, phase: str, layer: int, counts: dict[str, float]) -> None:
        _check_phase(phase)
        if layer < 0:
            raise EventsError(f"EventLedger.add: layer index must be >= 0, got {layer}")
        unknown = counts.keys() - _COUNT_KEY_SET
        if unknown:
            raise EventsError(f"EventLedger.add: unknown event kind {sorted(unknown)[0]!r}")
        layer = int(layer)
        table = self.counts
        for kind, n in counts.items():
            key = (phase, layer, kind)
            table[key] = table.get(key, 0.0) + float(n)

    def add_samples(self, phase: str, n: int) -> None:
        _check_phase(phase)
        self.samples[phase] = self.samples.get(phase, 0) + int(n)

    @property
    def num_layers(self) -> int:
        """Layers seen in any phase (so train and infer lists line up)."""
        return 1 + max((layer for _, layer, _ in self.counts), default=-1)

    def totals(self, phase: str) -> list[dict[str, float]]:
        """Total counts per layer for ``phase`` (every key of :data:`COUNT_KEYS`)."""
        _check_phase(phase)
        out = [zero_counts() for _ in range(self.num_layers)]
        for (p, layer, kind), n in self.counts.items():
            if p == phase:
                out[layer][kind] += n
        return out

    def per_sample(self, phase: str) -> list[dict[str, float]]:
        """Counts per sample per layer; all zeros if no sample was recorded."""
        n = self.samples.get(phase, 0)
        totals = self.totals(phase)
        if n == 0:
            return totals
        return [{k: v / n for k, v in layer.items()} for layer in totals]

    def to_dict(self) -> dict:
        """JSON-able form: ``{"version", "samples": {phase: n}, "counts": {phase: [per-layer dict]}}``."""
        return {
            "version": 1,
            "samples": {p: int(self.samples.get(p, 0)) for p in PHASES},
            "counts": {p: self.totals(p) for p in PHASES},
        }

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "events") -> "EventLedger":
        """Inverse of :meth:`to_dict`; ``source`` names the file in error messages."""
        try:
            samples = {p: int(d["samples"].get(p, 0)) for p in PHASES}
            per_phase = d["counts"]
            ledger = cls(samples=samples)
            for phase in PHASES:
                for layer, counts in enumerate(per_phase.get(phase, [])):
                    ledger.add(phase, layer, {k: float(v) for k, v in counts.items()})
        except EventsError as exc:
            raise EventsError(f"{source}: {exc}") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise EventsError(f"{source}: not an EventLedger dict ({type(exc).__name__}: {exc})") from None
        return ledger


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise EventsError(f"unknown phase {phase!r} (allowed: {', '.join(PHASES)})")


def _per_layer(value: float | Sequence[float], n_layers: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        values = [float(value)] * n_layers
    else:
        values = [float(v) for v in value]
    if len(values) != n_layers:
        raise EventsError(f"{name}: expected {n_layers} values (one per layer), got {len(values)}")
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise EventsError(f"{name}: activities must lie in [0, 1], got {values}")
    return values


def analytic_events(
    layer_sizes: Sequence[int],
    *,
    activity: float | Sequence[float],
    input_activity: float,
    num_classes: int,
    inference: str,
    binary_input: bool = False,
    time_steps: int = 1,
    batch_size: int = 1,
    optimizer_slots: int = 0,
) -> dict[str, list[dict[str, float]]]:
    """Per-sample event counts of an FF MLP from assumed activities, no tensors needed.

    ``layer_sizes = [D_in, h1, ..., hL]``; ``activity``: fraction of non-zero units of
    each hidden layer (one float for all, or L floats); ``input_activity``: fraction of
    non-zero raw input features (label overlay included). ``binary_input=True`` models a
    spiking net: every layer's input and output is binary. ``time_steps``: forward
    steps per pass (``activity`` is then the per-step firing fraction). ``batch_size`` and
    ``optimizer_slots`` as in :func:`update_events`.

    Same rules as the tensor counters, with ``nnz = activity × units``. With
    ``a = input activity of layer l`` (n_in → n_out) and ``a' = its output activity``,
    one forward step costs ``a·n_in·n_out`` synops/weight reads, ``n_out`` neuron updates
    (all active if ``a > 0``: every sample is assumed to have some non-zero input, all
    idle if ``a = 0``) and goodness ops, ``a'·n_out`` spike routes if binary (and
    ``a'·n_out`` of ``n_out`` non-zero outputs).

    * ``train``: 2 passes × ``time_steps`` forward steps, plus once per sample
      ``learning_update = 2·a·n_in·n_out``, ``state_access = 2·(a·n_in + n_out) +
      2·slots·weight_write`` and ``weight_write = n_in·(1 − (1 − a)^(2·batch_size))·n_out /
      batch_size``: the expected number of distinct non-zero input columns in an applied
      batch if units fire independently (exact for ``a`` in {0, 1}; for 0 < a < 1 it is an
      expectation, since correlated inputs write fewer columns).
    * ``infer``: ``"multi-pass"`` = ``num_classes`` passes × ``time_steps``;
      ``"one-pass"`` = 1 pass × ``time_steps`` plus, for layers 2..L, the linear head:
      ``a'·n_out·num_classes`` dense synops and weight reads (see :func:`head_events`).

    Returns ``{"train": [per-layer dict], "infer": [per-layer dict]}``.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise EventsError(f"layer_sizes: need at least [D_in, h1] of positive ints, got {list(layer_sizes)}")
    if inference not in INFERENCE_MODES:
        raise EventsError(f"inference: unknown mode {inference!r} (allowed: {', '.join(INFERENCE_MODES)})")
    if num_classes < 1 or time_steps < 1 or batch_size < 1 or optimizer_slots < 0:
        raise EventsError(
            "analytic_events: num_classes, time_steps, batch_size must be >= 1 and optimizer_slots >= 0"
        )
    n_layers = len(sizes) - 1
    out_act = _per_layer(activity, n_layers, "activity")
    in_act = [_per_layer(input_activity, 1, "input_activity")[0], *out_act[:-1]]
    infer_passes = num_classes if inference == "multi-pass" else 1

    train, infer = [], []
    for layer in range(n_layers):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        a, a_out = in_act[layer], out_act[layer]
        step = zero_counts()  # one forward step of one pass, one sample
        step["synop_sparse" if binary_input else "synop_dense"] = a * n_in * n_out
        step["weight_read"] = a * n_in * n_out
        step["neuron_update"] = float(n_out)
        step["neuron_update_active"] = float(n_out) if a > 0 else 0.0
        step["goodness_op"] = float(n_out)
        step["spike_route"] = a_out * n_out if binary_input else 0.0
        step["output_nonzero"], step["output_entries"] = a_out * n_out, float(n_out)

        written = n_in * (1.0 - (1.0 - a) ** (2 * batch_size)) * n_out / batch_size
        tr = {k: 2 * time_steps * v for k, v in step.items()}
        tr["learning_update"] = 2 * a * n_in * n_out
        tr["weight_write"] = written
        tr["state_access"] = 2 * (a * n_in + n_out) + 2 * optimizer_slots * written
        train.append(tr)

        inf = {k: infer_passes * time_steps * v for k, v in step.items()}
        if inference == "one-pass" and layer >= 1:
            head = a_out * n_out * num_classes
            inf["synop_dense"] += head
            inf["weight_read"] += head
        infer.append(inf)
    return {"train": train, "infer": infer}
