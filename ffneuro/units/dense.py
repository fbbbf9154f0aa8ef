"""Layer units: each is a self-contained local plasticity unit.

A unit owns its weights, its goodness, its local loss and its optimiser. Its public
surface is two calls: ``forward(x)`` (inference, returns the activity tensor) and
``local_step(x_pos, x_neg, γ⁺, γ⁻)`` (one local update, returns the detached activities
to hand on). Nothing in a unit refers to another unit, so a unit could run as a
pipeline stage in its own process: it needs only its input activities (and, for CFF, a
vector of γ values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.functional.encoding import CodedBatch
from ffneuro.functional.goodness import goodness, layer_loss, normalize, norm_factor, peer_norm_loss
from ffneuro.functional.fixed import (ChipSpec, activation_format, chip_lr, fixed_update_, int_matmul, int_normalize,
                            norm_gain, weight_format)
from ffneuro.units.optim import make_optimizer, set_lr
from ffneuro.functional.quant import FixedPoint, fixed_point_for


class _ReLUFullGrad(torch.autograd.Function):
    """ReLU forward, identity backward (straight-through), as in loeweX's FF code: units
    that are off still receive gradient, so a layer does not lose units early on. With a
    goodness built from h (Σh², Σ|h|) dL/dh is already 0 where h = 0, so the two ReLUs
    then give the same update (measured: identical MNIST curves); they differ once peer
    normalisation adds a gradient to silent units."""

    @staticmethod
    def forward(ctx, z):  # noqa: D401
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        return grad


def relu(z: torch.Tensor, grad: str) -> torch.Tensor:
    return _ReLUFullGrad.apply(z) if grad == "full" else F.relu(z)


@dataclass(frozen=True)
class UnitSpec:
    """What a layer unit needs to know to learn on its own."""

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


@dataclass
class StepResult:
    h: torch.Tensor          # detached activities (B positives then B negatives), handed on
    loss: float              # the unit's local loss (FF/SymBa/entropy + peer term)
    g_pos: torch.Tensor      # detached goodness (without γ)
    g_neg: torch.Tensor


class FFDense(nn.Module):
    """A dense ReLU layer trained by its own local FF objective.

    ``h = relu(W · n(x) + b)`` with ``n`` the normalisation of the input (SPEC §1);
    goodness ``g = goodness(h)``. Shapes: x (B, in_features) → h (B, out_features).

    Example::

        unit = FFDense(784, 500, UnitSpec(theta=500.0), generator=torch.Generator().manual_seed(0))
        h = unit(x)                                   # inference
        r = unit.local_step(torch.cat([xp, xn]))      # one local update; r.h feeds the next unit
    """

    def __init__(self, in_features: int, out_features: int, spec: UnitSpec, *,
                 generator: torch.Generator, chip: ChipSpec | None = None, onchip_lr: float = 2.0 ** -2):
        super().__init__()
        self.spec = spec
        self.chip = chip
        self.lr = spec.lr
        self.onchip_lr = onchip_lr
        self.in_features = in_features
        self.out_features = out_features
        # Init as in loeweX: N(0, 1/sqrt(fan_out)), zero bias.
        w = torch.randn(out_features, in_features, generator=generator) / math.sqrt(out_features)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer("running_mean", torch.full((out_features,), 0.5))
        # Fixed-point formats under a chip profile (0 = not yet calibrated / float).
        self.register_buffer("w_step", torch.tensor(0.0))
        self.register_buffer("x_step", torch.tensor(0.0))
        self.register_buffer("x_signed", torch.tensor(False))
        self.optimizer = make_optimizer(self.parameters(), spec.optimizer, spec.lr, spec.momentum,
                                        spec.weight_decay)

    # -- fixed point -----------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        return self.chip is not None and float(self.w_step) > 0

    def weight_fmt(self) -> FixedPoint:
        return FixedPoint(self.chip.weight_bits, self.chip.weight_signed, float(self.w_step))

    def input_fmt(self) -> FixedPoint:
        return FixedPoint(self.chip.activation_bits, bool(self.x_signed), float(self.x_step))

    def bias_fmt(self) -> FixedPoint:
        return FixedPoint(self.chip.accumulator_bits, True, self.out_step)

    @property
    def out_step(self) -> float:
        """Real value of one accumulator (and output activity) LSB: w step × x step."""
        return float(self.w_step) * float(self.x_step)

    def norm_gain(self) -> int:
        return norm_gain(self.in_features, self.spec.norm, float(self.x_step))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Enter the chip's number formats: pick the weight step from the initial weights
        and the input step from one batch of (integer) inputs, then snap weights and bias
        to the grid."""
        norm_gain(self.in_features, self.spec.norm, 1.0)          # fails early for norm = none
        xf = activation_format(normalize(x.float(), self.spec.norm), self.chip)
        self.x_step.fill_(xf.step)
        self.x_signed.fill_(xf.signed)
        self.w_step.fill_(weight_format(self.weight, self.chip).step)
        self.weight.copy_(self.weight_fmt().fake_quant(self.weight))
        self.bias.copy_(self.bias_fmt().fake_quant(self.bias))

    def int_weight(self) -> torch.Tensor:
        """The integer weight table (float32 holding integers of at most 24 bits), cached
        until the weights change (the chip update refreshes the entries it touched)."""
        key = (self.weight._version, self.weight.data_ptr(), float(self.w_step))
        if getattr(self, "_w_int_key", None) != key:
            self._w_int = torch.round(self.weight.detach() / float(self.w_step))
            self._w_int_key = key
        return self._w_int

    @torch.no_grad()
    def chip_forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The chip's integer datapath for integer input activities a (R, in_features):
        returns x_q (int64, the quantised normalised input) and the saturated accumulator
        z = W_q·x_q + b_q (float64 holding integers). See onchip.py."""
        xq = int_normalize(a, self.norm_gain(), self.input_fmt())
        b_int = torch.round(self.bias.detach().to(torch.float64) / self.out_step)
        z = int_matmul(xq, self.int_weight(), 2 ** (self.chip.weight_bits - 1)) + b_int
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        return xq, z.clamp_(-lim, lim)

    # -- inference -------------------------------------------------------------------
    def pre_activation(self, x: torch.Tensor | CodedBatch) -> torch.Tensor:
        """W · n(x) + b in real units (float units only; the chip path is ``chip_forward``)."""
        if isinstance(x, CodedBatch):
            return self._coded_pre_activation(x)
        return F.linear(normalize(x, self.spec.norm), self.weight, self.bias)

    def _coded_pre_activation(self, x: CodedBatch) -> torch.Tensor:
        """W · n(x) + b for K codes of the same samples, with the data part multiplied once.

        n(x) = x / r with r from the whole encoded vector, so
        W·n(x) = (W_rest · rest + W_code · code) / r: one (B × R) product shared by all K
        codes plus K tiny (B × C) ones. Same value as the dense path up to float rounding.
        """
        k, b, c = x.codes.shape
        shared = F.linear(x.rest, self.weight[:, c:])                      # (B, out)
        per_code = torch.matmul(x.codes, self.weight[:, :c].t())           # (K, B, out)
        sumsq = x.rest.pow(2).sum(dim=1) + x.codes.pow(2).sum(dim=2)       # (K, B)
        r = norm_factor(sumsq, self.in_features, self.spec.norm)
        return ((shared + per_code) / r.unsqueeze(-1) + self.bias).reshape(k * b, -1)

    def forward(self, x: torch.Tensor | CodedBatch) -> torch.Tensor:
        """Activity h (B, out_features) for input activity x (B, in_features); for a
        CodedBatch of K codes, (K·B, out_features) in code-major order. Under a chip
        profile (once calibrated) h is the integer ReLU output of the accumulator
        (float64 holding integers; its real value is h · out_step)."""
        if self.calibrated:
            return self.chip_forward(dense_input(x))[1].clamp_min(0)
        return relu(self.pre_activation(x), self.spec.relu_grad)

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """Goodness (B,) of this unit's activity ``h`` as returned by ``forward``, in real
        units. On the chip: the exact integer sum (Σh² or Σ|h|) times ``goodness_scale``."""
        if self.calibrated:
            return int_goodness(h, self.spec.goodness).to(torch.float64) * self.goodness_scale()
        return goodness(h, self.spec.goodness)

    def goodness_scale(self) -> float:
        """Real goodness per unit of the integer goodness sum (see ``int_goodness``)."""
        s = self.out_step
        return {"sumsq": s * s, "meansq": s * s / self.out_features, "sum": s, "neg-sumsq": -s * s}[
            self.spec.goodness]

    # -- learning --------------------------------------------------------------------
    def set_lr(self, lr: float, onchip_lr: float | None = None) -> None:
        self.lr = lr
        if onchip_lr is not None:
            self.onchip_lr = onchip_lr
        set_lr(self.optimizer, lr)

    def local_step(self, x: torch.Tensor | CodedBatch, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> StepResult:
        """One local update from a batch of positive and negative input activities.

        ``x`` holds the B positives then the B negatives: a (2B, in_features) tensor, or
        for the first unit a CodedBatch whose codes are [positive, negative]. γ (CFF) is a
        detached per-sample constant added to this unit's goodness. Only this unit's
        parameters receive gradient: the inputs carry no graph.
        """
        if isinstance(x, CodedBatch):
            b = x.rest.shape[0]
            if self.calibrated:
                x = x.dense()
            return self._learn(x, b, gamma_pos, gamma_neg, generator)
        return self._learn(x.detach(), x.shape[0] // 2, gamma_pos, gamma_neg, generator)

    def _activity(self, x: torch.Tensor | CodedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h in real units with a graph to the parameters, the input in real units, the
        activity to hand on). In float these are h, x, h. On the chip the values are the
        exact integer datapath's; the gradient is that of the real-valued layer."""
        if not self.calibrated:
            h = self(x)
            return h, dense_input(x), h
        xq, z_int = self.chip_forward(x)
        x_real = xq.to(torch.float32) * float(self.x_step)
        z = _ExactLinear.apply(x_real, self.weight, self.bias, (z_int * self.out_step).to(torch.float32))
        return relu(z, self.spec.relu_grad), x_real, z_int.clamp_min(0)

    def _learn(self, x: torch.Tensor | CodedBatch, b: int, gamma_pos: torch.Tensor | None,
               gamma_neg: torch.Tensor | None, generator: torch.Generator | None) -> StepResult:
        h, x_real, h_out = self._activity(x)
        g = goodness(h, self.spec.goodness)
        g_pos, g_neg = g[:b], g[b:]
        loss = unit_loss(self.spec, g_pos, g_neg, gamma_pos, gamma_neg)
        if self.spec.peer_norm > 0:
            m = self.spec.peer_momentum
            running = self.running_mean * m + h[:b].mean(dim=0) * (1 - m)
            loss = loss + self.spec.peer_norm * peer_norm_loss(running)
            self.running_mean.copy_(running.detach())
        loss.backward()
        if self.calibrated:
            self._chip_update(generator, x_real, h)
        else:
            self.optimizer.step()
        for p in (self.weight, self.bias):
            p.grad = None        # streaming: nothing of this step outlives it but the new weights
        return StepResult(h_out.detach(), float(loss.detach()), g_pos.detach(), g_neg.detach())


    @torch.no_grad()
    def _chip_update(self, generator: torch.Generator | None, x: torch.Tensor, h: torch.Tensor) -> None:
        """The chip's learning rule: plain SGD at the learning precision (see onchip.py).

        Only synapses the update can touch are rounded: rows of units active in this batch
        and columns of non-zero inputs (exact unless peer normalisation or weight decay
        make every gradient entry non-zero, in which case the whole table is updated)."""
        lr = chip_lr(self.onchip_lr / self.in_features, self.chip)
        rows = cols = None
        if self.spec.peer_norm == 0 and self.spec.weight_decay == 0:
            rows = h.ne(0).any(dim=0).nonzero().view(-1)
            cols = x.ne(0).any(dim=0).nonzero().view(-1)
        w_int = self.int_weight()          # kept in step with the weights: no re-rounding next forward
        for param, fmt in ((self.weight, self.weight_fmt()), (self.bias, self.bias_fmt())):
            grad = param.grad
            if self.spec.weight_decay:
                grad = grad + self.spec.weight_decay * param
            two_d = param.dim() == 2
            fixed_update_(param, grad, fmt, lr, self.chip, generator, rows if two_d else None,
                          cols if two_d else None, w_int if two_d else None)
        self._w_int_key = (self.weight._version, self.weight.data_ptr(), float(self.w_step))


class _ExactLinear(torch.autograd.Function):
    """A linear layer whose forward value is given (the chip's exact integer result in
    real units) and whose backward is that of ``x · Wᵀ + b``: the gradient of the
    real-valued layer at the chip's own activities."""

    @staticmethod
    def forward(ctx, x, weight, bias, z):  # noqa: D401
        ctx.save_for_backward(x)
        return z.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return None, grad.t() @ x, grad.sum(dim=0), None


def dense_input(x: torch.Tensor | CodedBatch) -> torch.Tensor:
    return x.dense() if isinstance(x, CodedBatch) else x


def int_goodness(h: torch.Tensor, kind: str) -> torch.Tensor:
    """The chip's exact integer goodness sum (B,) int64 of integer activities h (B, n):
    Σh² for the squared kinds (sumsq, meansq, neg-sumsq), Σ|h| for ``sum``."""
    h = h.to(torch.int64)
    if kind == "sum":
        return h.abs().sum(dim=1)
    hmax = int(h.abs().max()) if h.numel() else 0
    if hmax * hmax * max(h.shape[1], 1) >= 2 ** 63:
        raise OverflowError(f"activity {hmax} too large for an exact 64-bit goodness")
    return (h * h).sum(dim=1)


class LinearHead(nn.Module):
    """One-pass inference head: a linear softmax classifier on the normalised activities
    of the chosen layers for the neutral-label input (SPEC §1). It is its own unit: it
    learns from detached activities, so no gradient reaches the FF layers.

    Under a chip profile (once calibrated) its inputs are each layer's activity through
    the chip's integer normalisation, and inference uses integer logits
    ``W_q · x_q`` with the weights quantised to the profile's weight format (nearest,
    the profile's scale rule, from max|W|): the head is trained in float on the chip's
    quantised features, then read out in integers.
    """

    def __init__(self, widths: list[int], num_classes: int, *, norm: str, lr: float,
                 optimizer: str, momentum: float, weight_decay: float, chip: ChipSpec | None = None):
        super().__init__()
        self.norm = norm
        self.widths = list(widths)
        self.chip = chip
        self.weight = nn.Parameter(torch.zeros(num_classes, sum(widths)))
        self.register_buffer("x_step", torch.tensor(0.0))
        self.register_buffer("x_signed", torch.tensor(False))
        self.optimizer = make_optimizer(self.parameters(), optimizer, lr, momentum, weight_decay)

    # -- fixed point -----------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        return self.chip is not None and float(self.x_step) > 0

    def input_fmt(self) -> FixedPoint:
        return FixedPoint(self.chip.activation_bits, bool(self.x_signed), float(self.x_step))

    def weight_fmt(self) -> FixedPoint:
        return fixed_point_for(self.weight, self.chip.weight_bits, self.chip.weight_signed, self.chip.scale_rule)

    def norm_gains(self) -> list[int]:
        return [norm_gain(w, self.norm, float(self.x_step)) for w in self.widths]

    @torch.no_grad()
    def calibrate(self, activities: list[torch.Tensor]) -> None:
        xf = activation_format(self.features(activities), self.chip)
        self.x_step.fill_(xf.step)
        self.x_signed.fill_(xf.signed)

    def int_features(self, activities: list[torch.Tensor]) -> torch.Tensor:
        """The chip's quantised head input (B, Σ widths), int64."""
        fmt = self.input_fmt()
        return torch.cat([int_normalize(h, k, fmt) for h, k in zip(activities, self.norm_gains())], dim=1)

    @torch.no_grad()
    def int_logits(self, activities: list[torch.Tensor]) -> torch.Tensor:
        """Integer logits (B, C) (float64 holding integers), saturated at the accumulator."""
        fmt = self.weight_fmt()
        z = int_matmul(self.int_features(activities), fmt.to_int(self.weight).to(torch.float32),
                       max(-fmt.qmin, fmt.qmax))
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        return z.clamp_(-lim, lim)

    # -- float -----------------------------------------------------------------------
    def features(self, activities: list[torch.Tensor]) -> torch.Tensor:
        if self.calibrated:
            return self.int_features(activities).to(torch.float32) * float(self.x_step)
        return torch.cat([normalize(h.float(), self.norm) for h in activities], dim=1)

    def forward(self, activities: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B, C) from a list of layer activities, each (B, width)."""
        return F.linear(self.features(activities), self.weight)

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizer, lr)

    def local_step(self, activities: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One cross-entropy update; returns the pre-update logits (detached) and the loss."""
        logits = self([h.detach() for h in activities])
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        self.weight.grad = None
        return logits.detach(), float(loss.detach())
