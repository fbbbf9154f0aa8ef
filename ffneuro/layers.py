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

from ffneuro.encoding import CodedBatch
from ffneuro.goodness import goodness, layer_loss, normalize, norm_factor, peer_norm_loss
from ffneuro.onchip import (ChipSpec, accumulator_limit, activation_format, chip_lr, fixed_update_,
                            weight_format)
from ffneuro.optim import make_optimizer, set_lr
from ffneuro.quant import FixedPoint


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
        return FixedPoint(self.chip.accumulator_bits, True, float(self.w_step) * float(self.x_step))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Enter the chip's number formats: pick the weight step from the initial weights
        and the input step from one batch of inputs, then snap weights and bias to the grid."""
        xf = activation_format(normalize(x, self.spec.norm), self.chip)
        self.x_step.fill_(xf.step)
        self.x_signed.fill_(xf.signed)
        self.w_step.fill_(weight_format(self.weight, self.chip).step)
        self.weight.copy_(self.weight_fmt().fake_quant(self.weight))
        self.bias.copy_(self.bias_fmt().fake_quant(self.bias))

    # -- inference -------------------------------------------------------------------
    def pre_activation(self, x: torch.Tensor | CodedBatch) -> torch.Tensor:
        if isinstance(x, CodedBatch):
            if not self.calibrated:
                return self._coded_pre_activation(x)
            x = x.dense()
        xn = normalize(x, self.spec.norm)
        if not self.calibrated:
            return F.linear(xn, self.weight, self.bias)
        z = F.linear(self.input_fmt().fake_quant(xn), self.weight, self.bias)
        lim = accumulator_limit(float(self.w_step), float(self.x_step), self.chip)
        return z.clamp(-lim, lim)

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
        CodedBatch of K codes, (K·B, out_features) in code-major order."""
        return relu(self.pre_activation(x), self.spec.relu_grad)

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        return goodness(h, self.spec.goodness)

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
            if self.calibrated:          # the chip path needs the dense input twice: build it once
                x = x.dense()
            return self._learn(x, b, gamma_pos, gamma_neg, generator)
        return self._learn(x.detach(), x.shape[0] // 2, gamma_pos, gamma_neg, generator)

    def _learn(self, x: torch.Tensor | CodedBatch, b: int, gamma_pos: torch.Tensor | None,
               gamma_neg: torch.Tensor | None, generator: torch.Generator | None) -> StepResult:
        h = self(x)
        g = self.goodness(h)
        g_pos, g_neg = g[:b], g[b:]
        sp = g_pos if gamma_pos is None else g_pos + gamma_pos.detach()
        sn = g_neg if gamma_neg is None else g_neg + gamma_neg.detach()
        loss = layer_loss(self.spec.loss, sp, sn, theta=self.spec.theta, alpha=self.spec.alpha)
        if self.spec.peer_norm > 0:
            m = self.spec.peer_momentum
            running = self.running_mean * m + h[:b].mean(dim=0) * (1 - m)
            loss = loss + self.spec.peer_norm * peer_norm_loss(running)
            self.running_mean.copy_(running.detach())
        loss.backward()
        if self.calibrated:
            self._chip_update(generator, x, h)
        else:
            self.optimizer.step()
        for p in (self.weight, self.bias):
            p.grad = None        # streaming: nothing of this step outlives it but the new weights
        h = h.detach()
        return StepResult(h, float(loss.detach()), g_pos.detach(), g_neg.detach())


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
        for param, fmt in ((self.weight, self.weight_fmt()), (self.bias, self.bias_fmt())):
            grad = param.grad
            if self.spec.weight_decay:
                grad = grad + self.spec.weight_decay * param
            fixed_update_(param, grad, fmt, lr, self.chip, generator,
                          rows if param.dim() == 2 else None, cols if param.dim() == 2 else None)


class LinearHead(nn.Module):
    """One-pass inference head: a linear softmax classifier on the normalised activities
    of the chosen layers for the neutral-label input (SPEC §1). It is its own unit: it
    learns from detached activities, so no gradient reaches the FF layers.
    """

    def __init__(self, in_features: int, num_classes: int, *, norm: str, lr: float,
                 optimizer: str, momentum: float, weight_decay: float):
        super().__init__()
        self.norm = norm
        self.weight = nn.Parameter(torch.zeros(num_classes, in_features))
        self.optimizer = make_optimizer(self.parameters(), optimizer, lr, momentum, weight_decay)

    def features(self, activities: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([normalize(h, self.norm) for h in activities], dim=1)

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
