"""The unit contract: what every local plasticity unit owns and what the rest of ffneuro
may ask of it.

A unit owns its weights (through a synapse, units/synapse.py: dense or conv; the dynamics
— ReLU, LIF — reads its current through it), its goodness, its local loss, its update
rule (float optimiser, or the chip's fixed-point rule: ``chip``, a ``hw.chip.ChipSpec``),
its event counting, its resource descriptor and its export. Nothing outside ``ffneuro.units`` asks what kind a unit is:
the network streams activities through ``forward``/``local_step`` (or, for chunked local
updates, ``local_loss`` then ``apply_update`` once the chunk's loss has been
backpropagated), the trainer counts
with ``forward_events``/``update_events``, the estimator maps ``resources()``, the
exporter writes ``export_tables()`` and ``nir_nodes()``; under channel-wise competition the
predictor reads ``class_goodness`` (the goodness of each class's group of channels).

Activity layout is the unit's business too: a graded unit's activity is (N, width), a
spiking unit's (T, N, width). Callers never index activities; they hand them back to the
unit (``goodness``, ``head_activity``, ``update_events``) or on to the next unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ffneuro.functional.encoding import CodedBatch
from ffneuro.functional.goodness import competitive_loss, competitive_split, group_goodness, layer_loss, loss_slopes


@dataclass(frozen=True)
class UnitSpec:
    """The local learning rule of one unit (the unit's share of the run config)."""

    norm: str = "rms"
    goodness: str = "sumsq"
    loss: str = "ff"
    theta: float = 0.0
    alpha: float = 4.0
    peer_norm: float = 0.0
    peer_momentum: float = 0.9
    relu_grad: str = "full"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    temperature: float = 1.0     # τ: the loss compares (g + γ − θ)/τ (FF) or α(g⁺ − g⁻)/τ (SymBa)
    classes: int = 10            # J: class groups of the channel-wise competitive loss (cwc)


def unit_loss(spec: UnitSpec, g_pos: torch.Tensor, g_neg: torch.Tensor, gamma_pos: torch.Tensor | None = None,
              gamma_neg: torch.Tensor | None = None) -> torch.Tensor:
    """A unit's local loss: its goodness plus CFF's detached γ (a per-sample constant),
    with goodness and θ measured in units of the temperature τ, into the chosen loss.

    FF: ``softplus((θ − g⁺ − γ⁺)/τ) + softplus((g⁻ + γ⁻ − θ)/τ)``. τ = 1 is Hinton's logit
    Σh² − θ; a larger τ is a softer sigmoid (the entropy loss is scale-free: τ does nothing).
    Inference (argmax of summed goodness) does not depend on τ."""
    sp = g_pos if gamma_pos is None else g_pos + gamma_pos.detach()
    sn = g_neg if gamma_neg is None else g_neg + gamma_neg.detach()
    tau = spec.temperature
    return layer_loss(spec.loss, sp / tau, sn / tau, theta=spec.theta / tau, alpha=spec.alpha)


def unit_loss_slopes(spec: UnitSpec, g_pos: np.ndarray, g_neg: np.ndarray, gamma_pos: np.ndarray | None = None,
                     gamma_neg: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """``unit_loss`` and its derivatives with respect to g⁺ and g⁻ in closed form, float64
    (``functional.goodness.loss_slopes``): (loss, dL/dg⁺ (B,), dL/dg⁻ (B,))."""
    tau = spec.temperature
    sp = g_pos if gamma_pos is None else g_pos + gamma_pos
    sn = g_neg if gamma_neg is None else g_neg + gamma_neg
    loss, d_pos, d_neg = loss_slopes(spec.loss, sp / tau, sn / tau, theta=spec.theta / tau, alpha=spec.alpha)
    return loss, d_pos / tau, d_neg / tau


def local_objective(spec: UnitSpec, h: torch.Tensor, goodness_fn, targets: torch.Tensor | None,
                    gamma_pos: torch.Tensor | None = None,
                    gamma_neg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, g⁺, g⁻) of a unit's per-sample activity ``h`` (N, channels, ...).

    With ``targets`` (the channel-wise competitive loss, ``cwc``): ``h`` holds N positives
    only; G = ``group_goodness(h, J)``, the loss ``competitive_loss(G, y, τ)`` and g⁺/g⁻ the
    true group's and the others' mean (detached, for the logs). Otherwise ``h`` holds the
    N/2 positives then the N/2 negatives and ``goodness_fn(h)`` enters ``unit_loss``."""
    if targets is not None:
        g = group_goodness(h, spec.classes)
        g_pos, g_neg = competitive_split(g.detach(), targets)
        return competitive_loss(g, targets, spec.temperature), g_pos, g_neg
    g = goodness_fn(h)
    b = g.shape[0] // 2
    g_pos, g_neg = g[:b], g[b:]
    return unit_loss(spec, g_pos, g_neg, gamma_pos, gamma_neg), g_pos, g_neg


@dataclass
class LocalLoss:
    """A unit's local loss on its input, before any update (``local_loss``): the loss and
    the activity it handed on (``out``), both with their graph to the unit's parameters
    and to the input as given, so that a chunk (``loop.schedule = chunks``) can
    backpropagate from a later unit's loss through this one."""
    loss: torch.Tensor
    out: torch.Tensor
    g_pos: torch.Tensor      # detached goodness (without γ)
    g_neg: torch.Tensor


@dataclass
class StepResult:
    h: torch.Tensor          # detached activities (B positives then B negatives), handed on
    loss: float              # the unit's local loss (FF/SymBa/entropy + peer term)
    g_pos: torch.Tensor      # detached goodness (without γ)
    g_neg: torch.Tensor


@dataclass(frozen=True)
class Resources:
    """What a unit occupies on a chip, for the SRAM and core mapping.

    ``synapses``: stored weights; ``neurons``: output units; ``fan_in``/``fan_out``: inputs
    per output unit and outputs per input line; ``state_words``: per-neuron state words
    (membrane, activation); ``history_steps``: time steps of state its learning rule keeps
    per sample until the update (0: none, e.g. online rules); ``time_steps``: forward steps
    per sample (1 for graded units). Weight sharing (conv): ``channels`` output channels
    whose ``positions`` neurons each share one kernel of ``fan_in`` weights (0: no
    sharing), and ``line_buffer_inputs``, the inputs a streaming chip must hold to produce
    one output row (kernel rows × input width × input channels).
    """

    fan_in: int
    fan_out: int
    synapses: int
    neurons: int
    state_words: int = 1
    history_steps: int = 0
    time_steps: int = 1
    channels: int = 0
    positions: int = 1
    line_buffer_inputs: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ExportTables:
    """A unit's chip form for the HDF5 export: its ``kind`` (the golden replay's name for
    its datapath), scalar attributes, and integer tables ``name → (values, lo, hi, doc)``
    (values hold integers within [lo, hi]). The schema is docs/hdf5-schema.md."""

    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, tuple[torch.Tensor, int, int, str]] = field(default_factory=dict)


@runtime_checkable
class Unit(Protocol):
    """The contract of a local plasticity unit (see the module docstring)."""

    in_features: int
    out_features: int
    in_shape: tuple[int, ...]     # one sample's input activity: (features,) or (channels, H, W)
    out_shape: tuple[int, ...]

    def forward(self, x: torch.Tensor | CodedBatch) -> torch.Tensor: ...
    def goodness(self, h: torch.Tensor) -> torch.Tensor: ...
    def local_step(self, x: torch.Tensor | CodedBatch, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   targets: torch.Tensor | None = None) -> StepResult: ...
    def local_loss(self, x: torch.Tensor | CodedBatch, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> LocalLoss: ...
    def apply_update(self, generator: torch.Generator | None = None, samples: int = 1) -> None: ...
    @property
    def calibrated(self) -> bool: ...
    def calibrate(self, x: torch.Tensor) -> None: ...
    def set_lr(self, lr: float, onchip_lr: float | None = None) -> None: ...
    def head_activity(self, h: torch.Tensor) -> torch.Tensor: ...
    def class_goodness(self, h: torch.Tensor, classes: int) -> torch.Tensor: ...
    def begin_statistics(self) -> bool: ...
    def end_statistics(self) -> None: ...
    def integer_goodness(self, h: torch.Tensor) -> torch.Tensor: ...
    def forward_events(self, x_in: torch.Tensor | CodedBatch, h_out: torch.Tensor) -> dict[str, float]: ...
    def update_events(self, x_in: torch.Tensor | CodedBatch, batch: int, update_batch: int) -> dict[str, float]: ...
    def resources(self) -> Resources: ...
    def export_tables(self) -> ExportTables: ...
    def nir_nodes(self, index: int) -> list[tuple[str, Any]]: ...


class PassThrough:
    """The input stage of graded units: the encoded input as it is (factored codes kept)."""

    def __call__(self, x: torch.Tensor | CodedBatch, generator: torch.Generator | None = None):
        return x

    def export_attrs(self) -> dict[str, Any]:
        return {}


def dense_input(x: torch.Tensor | CodedBatch) -> torch.Tensor:
    """A batch of inputs as a (N, features) matrix (factored codes expanded, feature maps
    flattened)."""
    x = x.dense() if isinstance(x, CodedBatch) else x
    return x.flatten(1) if x.dim() > 2 else x


def format_attrs(prefix: str, fmt) -> dict[str, Any]:
    """A fixed-point format (``functional.quant.FixedPoint``) as export attributes:
    ``<prefix>_bits``, ``_signed`` (0/1, a plain integer for C readers), ``_scale`` and, when
    the scale is a power of two, ``_exponent``."""
    out: dict[str, Any] = {f"{prefix}_bits": fmt.bits, f"{prefix}_signed": int(fmt.signed),
                           f"{prefix}_scale": fmt.step}
    mantissa, exp = math.frexp(fmt.step)
    if mantissa == 0.5:
        out[f"{prefix}_exponent"] = exp - 1
    return out
