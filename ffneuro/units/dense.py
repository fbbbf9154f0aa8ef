"""The ReLU unit: graded neurons behind a synapse (dense: ``units/synapse.py``), learning
by their own local objective.

``h = relu(W · n(x) + b)`` with ``n`` the normalisation of the input (SPEC §1) and
goodness ``g = goodness(h)``. In float it learns with its own optimiser; on a chip
(``chip``, once calibrated) its forward is the exact integer datapath and its update the
chip's fixed-point rule (functional/fixed.py). It implements the unit contract of
units/base.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.functional import kernels
from ffneuro.functional.encoding import CodedBatch
from ffneuro.functional.fixed import GAIN_FRAC_BITS, activation_format, int_goodness, int_normalize, norm_gain
from ffneuro.functional.goodness import goodness, group_goodness, normalize, norm_factor, peer_norm_loss
from ffneuro.hw.chip import ChipSpec
from ffneuro.hw.events import forward_events, update_events
from ffneuro.units.base import (ExportTables, LocalLoss, Resources, StepResult, UnitSpec, dense_input, format_attrs,
                                local_objective, unit_loss_slopes)
from ffneuro.units.optim import make_optimizer, set_lr
from ffneuro.units.synapse import DenseSynapse, GradedInput, SynapticUnit


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().to(torch.float64).numpy()


# dg/dh = k(width)·h of the squared goodness kinds (real units)
SQUARED_SLOPE = {"sumsq": lambda n: 2.0, "meansq": lambda n: 2.0 / n, "neg-sumsq": lambda n: -2.0}


@dataclass
class ChipActivity:
    """A dense unit's chip activity (``FFDense.chip_activity``): the quantised normalised
    input x_q (float32 holding integers) and the ReLU output h (float64 holding integers);
    for learning also the exact Σh² per sample (int64), the units active in some sample
    and the inputs non-zero in some sample (index tensors)."""
    xq: torch.Tensor
    h: torch.Tensor
    goodness: torch.Tensor | None = None
    active: torch.Tensor | None = None
    nonzero: torch.Tensor | None = None


# A coded batch of at most this many rows is learned from in dense form: the factored
# product reads two slices of W, whose backward writes two zero-filled W-sized gradients
# (at batch 1 that cost more than the product it saves; measured in bench/chip_step.json).
DENSE_LEARN_ROWS = 64

# Up to this many rows the compiled kernel forms a chip unit's product itself (one pass with
# the normalisation and the finish); beyond, BLAS is faster (bench/chip_step.json, batch 16).
KERNEL_PRODUCT_ROWS = 3


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


class FFDense(GradedInput, SynapticUnit, nn.Module):
    """A dense ReLU layer trained by its own local FF objective (the unit contract of
    units/base.py).

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
        self.in_shape, self.out_shape = (in_features,), (out_features,)
        # Init as in loeweX: N(0, 1/sqrt(fan_out)), zero bias.
        w = torch.randn(out_features, in_features, generator=generator) / math.sqrt(out_features)
        self.synapse = DenseSynapse(w)
        self.register_buffer("running_mean", torch.full((out_features,), 0.5))
        self.register_input_format()
        self.optimizer = make_optimizer(self.parameters(), spec.optimizer, spec.lr, spec.momentum,
                                        spec.weight_decay)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Enter the chip's number formats: pick the weight step from the initial weights
        and the input step from one batch of (integer) inputs, then snap weights and bias
        to the grid."""
        norm_gain(self.in_features, self.spec.norm, 1.0)          # fails early for norm = none
        x = dense_input(x)
        xf = activation_format(normalize(x.float(), self.spec.norm), self.chip)
        self.x_step.fill_(xf.step)
        self.x_signed.fill_(xf.signed)
        self.synapse.calibrate(self.chip, self.bias_fmt)

    def int_weight(self) -> torch.Tensor:
        return self.synapse.int_weight(self.chip)

    @torch.no_grad()
    def chip_forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The chip's integer datapath for integer input activities a (R, in_features):
        returns x_q (int64, the quantised normalised input) and the saturated accumulator
        z = W_q·x_q + b_q (float64 holding integers). See onchip.py."""
        xq = int_normalize(a, self.norm_gain(), self.input_fmt())
        z = self.synapse.int_current(xq, self.chip) + self.synapse.int_bias(self.out_step)
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        return xq, z.clamp_(-lim, lim)

    def chip_activity(self, a: torch.Tensor, learn: bool = False) -> ChipActivity:
        """The chip's ReLU activity h = max(0, z) for integer input activities a (R,
        in_features), with what the learning step needs when ``learn``: the same integers
        as ``chip_forward``, by the compiled kernels where the tensors allow (the product
        exact: integers summed in float32 below 2^24, else in float64)."""
        a = a.to(torch.int64)
        if not kernels.usable(a):
            xq, z = self.chip_forward(a)
            h = z.clamp_min_(0)
            if not learn:
                return ChipActivity(xq.to(torch.float32), h)
            return ChipActivity(xq.to(torch.float32), h, int_goodness(h, "sumsq"), h.ne(0).any(dim=0).nonzero().view(-1),
                                xq.ne(0).any(dim=0).nonzero().view(-1))
        c = self.chip_consts()
        w = self.synapse.int_weight(self.chip)
        bias = self.synapse.int_bias(c.out_step).numpy()
        xq = np.empty(a.shape, dtype=np.float32)
        h = np.empty((a.shape[0], self.out_features), dtype=np.float64)
        g = np.empty(a.shape[0], dtype=np.int64)
        active = np.empty(self.out_features, dtype=np.bool_)
        nonzero = np.empty(a.shape[1], dtype=np.bool_)
        args = (c.gain, GAIN_FRAC_BITS, c.in_fmt.qmin, c.in_fmt.qmax)
        if a.shape[0] <= KERNEL_PRODUCT_ROWS:         # one pass: normalisation, product, finish
            status = kernels.dense_forward(a.numpy(), *args, w.numpy(), float(c.w_absmax), bias, float(c.lim), xq, h,
                                           g, active, nonzero)
        else:                                         # the product by BLAS, exact in float32 or float64
            l1 = kernels.dense_input(a.numpy(), *args, xq, nonzero)
            bound = c.w_absmax * l1
            status = kernels.OVERFLOW if l1 < 0 else kernels.INEXACT if bound >= 2 ** 53 else 0
            if status == 0:
                x = torch.from_numpy(xq)
                z = torch.mm(x, w.t()) if bound < 2 ** 24 else torch.mm(x.to(torch.float64), w.to(torch.float64).t())
                status = kernels.dense_finish(z.numpy(), bias, float(c.lim), True, h, g, active)
        if status == kernels.OVERFLOW:
            raise OverflowError(f"activity up to {int(a.abs().max())} too large for exact 64-bit integer "
                                "normalisation and goodness")
        if status == kernels.INEXACT:
            raise OverflowError("accumulator partial sums exceed 2^53: cannot evaluate exactly")
        act = ChipActivity(torch.from_numpy(xq), torch.from_numpy(h))
        if learn:
            act.goodness = torch.from_numpy(g)
            act.active = torch.from_numpy(np.flatnonzero(active))
            act.nonzero = torch.from_numpy(np.flatnonzero(nonzero))
        return act

    # -- inference -------------------------------------------------------------------
    def pre_activation(self, x: torch.Tensor | CodedBatch) -> torch.Tensor:
        """W · n(x) + b in real units (float units only; the chip path is ``chip_forward``)."""
        if isinstance(x, CodedBatch):
            return self._coded_pre_activation(x)
        return self.synapse.current(normalize(dense_input(x), self.spec.norm))

    def _coded_pre_activation(self, x: CodedBatch) -> torch.Tensor:
        """W · n(x) + b for K codes of the same samples, with the data part multiplied once.

        n(x) = x / r with r from the whole encoded vector, so
        W·n(x) = (W_rest · rest + W_code · code) / r: one (B × R) product shared by all K
        codes plus K tiny (B × C) ones. Same value as the dense path up to float rounding.
        """
        k, b, c = x.codes.shape
        shared, per_code = self.synapse.split_current(x.rest, x.codes)     # (B, out), (K, B, out)
        sumsq = x.rest.pow(2).sum(dim=1) + x.codes.pow(2).sum(dim=2)       # (K, B)
        r = norm_factor(sumsq, self.in_features, self.spec.norm)
        return ((shared + per_code) / r.unsqueeze(-1) + self.bias).reshape(k * b, -1)

    def forward(self, x: torch.Tensor | CodedBatch) -> torch.Tensor:
        """Activity h (B, out_features) for input activity x (B, in_features); for a
        CodedBatch of K codes, (K·B, out_features) in code-major order. Under a chip
        profile (once calibrated) h is the integer ReLU output of the accumulator
        (float64 holding integers; its real value is h · out_step)."""
        if self.calibrated:
            return self.chip_activity(dense_input(x)).h
        return relu(self.pre_activation(x), self.spec.relu_grad)

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """Goodness (B,) of this unit's activity ``h`` as returned by ``forward``, in real
        units. On the chip: the exact integer sum (Σh² or Σ|h|) times ``goodness_scale``."""
        if self.calibrated:
            return int_goodness(h, self.spec.goodness).to(torch.float64) * self.goodness_scale()
        return goodness(h, self.spec.goodness)

    def goodness_scale(self) -> float:
        """Real goodness per unit of the integer goodness sum (see ``int_goodness``)."""
        s = self.chip_consts().out_step
        return {"sumsq": s * s, "meansq": s * s / self.out_features, "sum": s, "neg-sumsq": -s * s}[
            self.spec.goodness]

    # -- learning --------------------------------------------------------------------
    def set_lr(self, lr: float, onchip_lr: float | None = None) -> None:
        self.lr = lr
        if onchip_lr is not None:
            self.onchip_lr = onchip_lr
        set_lr(self.optimizer, lr)

    def local_step(self, x: torch.Tensor | CodedBatch, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   targets: torch.Tensor | None = None) -> StepResult:
        """One local update from a batch of positive and negative input activities.

        ``x`` holds the B positives then the B negatives: a (2B, in_features) tensor, or
        for the first unit a CodedBatch whose codes are [positive, negative]. γ (CFF) is a
        detached per-sample constant added to this unit's goodness. With ``targets``
        (channel-wise competition: groups of units per class) x holds B samples only.
        Only this unit's parameters receive gradient: the inputs carry no graph.
        """
        if isinstance(x, CodedBatch):
            b = x.rest.shape[0]
            if self.calibrated or x.codes.shape[0] * b <= DENSE_LEARN_ROWS:
                x = x.dense()
            return self._learn(x, b, gamma_pos, gamma_neg, generator, targets)
        x = dense_input(x.detach())
        b = x.shape[0] if targets is not None else x.shape[0] // 2
        return self._learn(x, b, gamma_pos, gamma_neg, generator, targets)

    def _learn(self, x: torch.Tensor | CodedBatch, b: int, gamma_pos: torch.Tensor | None,
               gamma_neg: torch.Tensor | None, generator: torch.Generator | None,
               targets: torch.Tensor | None = None) -> StepResult:
        if self.calibrated:
            if self.goodness_rule(targets):
                return self._chip_learn_goodness(dense_input(x), b, gamma_pos, gamma_neg, generator)
            return self._chip_learn(dense_input(x), b, gamma_pos, gamma_neg, generator, targets)
        r = self._float_loss(x, b, gamma_pos, gamma_neg, targets)
        r.loss.backward()
        self.apply_update(generator, b)
        return StepResult(r.out.detach(), float(r.loss.detach()), r.g_pos, r.g_neg)

    def local_loss(self, x: torch.Tensor | CodedBatch, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> LocalLoss:
        """The local loss on x as given (its graph kept), without updating: the first half
        of ``local_step`` for chunked local updates (``apply_update`` is the second). Float
        units only: on a chip every unit learns by its own fixed-point rule."""
        if self.calibrated:
            raise ValueError("a unit on a chip learns by its own fixed-point rule: chunked updates need float units")
        if isinstance(x, CodedBatch):
            b = x.rest.shape[0]
            if x.codes.shape[0] * b <= DENSE_LEARN_ROWS:       # as local_step: the same products, bit for bit
                x = x.dense()
        else:
            b = x.shape[0] if targets is not None else x.shape[0] // 2
        return self._float_loss(x, b, gamma_pos, gamma_neg, targets)

    def _float_loss(self, x: torch.Tensor | CodedBatch, b: int, gamma_pos: torch.Tensor | None,
                    gamma_neg: torch.Tensor | None, targets: torch.Tensor | None) -> LocalLoss:
        h = self(x)
        loss, g_pos, g_neg = self._objective(h, b, gamma_pos, gamma_neg, targets)
        return LocalLoss(loss, h, g_pos.detach(), g_neg.detach())

    def apply_update(self, generator: torch.Generator | None = None, samples: int = 1) -> None:
        """Step the unit's optimiser on the gradient in its parameters, then drop the
        gradient (streaming: nothing of the step outlives it but the new weights)."""
        self.optimizer.step()
        for p in (self.weight, self.bias):
            p.grad = None

    def _objective(self, h: torch.Tensor, b: int, gamma_pos: torch.Tensor | None, gamma_neg: torch.Tensor | None,
                   targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, g⁺, g⁻) of the activity h (real units, with its graph), peer
        normalisation included (its running mean advances)."""
        loss, g_pos, g_neg = local_objective(self.spec, h, lambda a: goodness(a, self.spec.goodness), targets,
                                             gamma_pos, gamma_neg)
        if self.spec.peer_norm > 0:
            m = self.spec.peer_momentum
            running = self.running_mean * m + h[:b].mean(dim=0) * (1 - m)
            loss = loss + self.spec.peer_norm * peer_norm_loss(running)
            self.running_mean.copy_(running.detach())
        return loss, g_pos, g_neg

    def goodness_rule(self, targets: torch.Tensor | None = None) -> bool:
        """Whether the chip step learns from its exact integer goodness alone
        (``_chip_learn_goodness``): a squared goodness, no peer normalisation, no weight
        decay, no class groups, no learning shadow. Otherwise ``_chip_learn``."""
        return (self.spec.goodness in SQUARED_SLOPE and self.spec.peer_norm == 0 and self.spec.weight_decay == 0
                and targets is None and not self.chip.shadow_bits)

    def _chip_learn_goodness(self, x: torch.Tensor, b: int, gamma_pos: torch.Tensor | None,
                             gamma_neg: torch.Tensor | None, generator: torch.Generator | None) -> StepResult:
        """The chip's step when the loss reads the activity only through the goodness
        (``goodness_rule``): the exact integer datapath forward and the chip's exact
        integer goodness g (what inference reads too); the loss and dL/dg from g in closed
        form (float64, ``unit_loss_slopes``); dL/dz = dL/dg · k·h elementwise (k = 2,
        2/width or −2 for sumsq, meansq, neg-sumsq; zero where the unit is silent); then
        the synapse's ``chip_learn`` at onchip_lr / fan-in: gradients summed in a defined
        order, the update on the block of active units × non-zero inputs. Every step is
        integer arithmetic or a single rounded float32 operation, so the compiled kernels
        and the tensor code agree bit for bit."""
        act = self.chip_activity(x, learn=True)
        c = self.chip_consts()
        g = act.goodness.numpy() * self.goodness_scale()                  # float64, as ``goodness``
        loss, d_pos, d_neg = unit_loss_slopes(self.spec, g[:b], g[b:], _numpy(gamma_pos), _numpy(gamma_neg))
        # float32 elementwise, each operation rounded once (numpy: a few numbers, no dispatch cost)
        dldg = np.concatenate([d_pos, d_neg]).astype(np.float32)[:, None]
        slope = np.float32(SQUARED_SLOPE[self.spec.goodness](self.out_features))
        dz = dldg * ((act.h.numpy() * c.out_step).astype(np.float32) * slope)
        x_real = act.xq.numpy() * np.float32(c.x_step)
        self.synapse.chip_learn(self.onchip_lr / self.in_features, self.chip, c.bias_fmt, generator,
                                torch.from_numpy(dz), torch.from_numpy(x_real), act.active, act.nonzero, samples=b)
        g = torch.from_numpy(g)
        return StepResult(act.h, loss, g[:b], g[b:])

    def _chip_learn(self, x: torch.Tensor, b: int, gamma_pos: torch.Tensor | None, gamma_neg: torch.Tensor | None,
                    generator: torch.Generator | None, targets: torch.Tensor | None) -> StepResult:
        """The chip's step: the exact integer datapath forward, the gradient of the
        real-valued layer at the chip's own activities (dL/dz from the local objective,
        then dL/dW = dzᵀ·x and dL/db = Σ dz, formed here: the weights carry no graph), and
        the chip's fixed-point update (the synapse's ``chip_update``) at onchip_lr / fan-in.

        Only synapses the update can touch are rounded: rows of units active in this batch
        and columns of non-zero inputs (exact unless peer normalisation or weight decay
        make every gradient entry non-zero, in which case the whole table is updated)."""
        xq, z_int = self.chip_forward(x)
        x_real = xq.to(torch.float32) * float(self.x_step)
        z = (z_int * self.out_step).to(torch.float32).requires_grad_()
        h = relu(z, self.spec.relu_grad)
        loss, g_pos, g_neg = self._objective(h, b, gamma_pos, gamma_neg, targets)
        (dz,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            rows = cols = None
            if self.spec.peer_norm == 0 and self.spec.weight_decay == 0:
                rows = h.ne(0).any(dim=0).nonzero().view(-1)
                cols = x_real.ne(0).any(dim=0).nonzero().view(-1)
            self.synapse.chip_update(self.onchip_lr / self.in_features, self.chip, self.bias_fmt(), generator,
                                     weight_decay=self.spec.weight_decay, rows=rows, cols=cols, samples=b,
                                     grads=(dz.t() @ x_real, dz.sum(dim=0)))
        return StepResult(z_int.clamp_min(0), float(loss.detach()), g_pos.detach(), g_neg.detach())

    # -- what the rest of ffneuro asks of a unit -------------------------------------
    @staticmethod
    def default_theta(goodness_kind: str, width: int) -> float:
        """θ by default: the width (Hinton's logit Σh² − n_units) for ``sumsq`` and ``sum``,
        1 for ``meansq``; ``neg-sumsq`` uses −width/4 (with −width positives sit below the
        threshold from the start and the layer learns far slower)."""
        return {"sumsq": float(width), "meansq": 1.0, "sum": float(width), "neg-sumsq": -width / 4.0}[goodness_kind]

    def head_activity(self, h: torch.Tensor) -> torch.Tensor:
        """The activity (N, width) the one-pass head reads: h itself."""
        return h

    def begin_statistics(self) -> bool:
        """No running statistics to re-estimate."""
        return False

    def end_statistics(self) -> None:
        pass

    def class_goodness(self, h: torch.Tensor, classes: int) -> torch.Tensor:
        """Goodness G (N, classes) of each class's group of units, in real units."""
        if self.calibrated:
            return group_goodness(h.to(torch.float64), classes) * self.out_step ** 2
        return group_goodness(h, classes)

    def integer_goodness(self, h: torch.Tensor) -> torch.Tensor:
        """The chip's exact integer goodness (N,) of integer activities h."""
        return int_goodness(h, self.spec.goodness)

    def forward_events(self, x_in: torch.Tensor | CodedBatch, h_out: torch.Tensor) -> dict[str, float]:
        """One forward step per sample: synops per non-zero graded input (MACs)."""
        return forward_events(dense_input(x_in), h_out, binary_input=False)

    def update_events(self, x_in: torch.Tensor | CodedBatch, batch: int, update_batch: int) -> dict[str, float]:
        """The local update's events from the step's input (the ``batch`` positives then
        negatives), ``update_batch`` samples per applied weight write."""
        x = dense_input(x_in)
        x_neg = x[batch:] if x.shape[0] > batch else torch.zeros_like(x)    # competitive: no negatives
        return update_events(x[:batch], x_neg, self.out_features, update_batch)

    def resources(self) -> Resources:
        return Resources(fan_in=self.synapse.fan_in, fan_out=self.out_features, synapses=self.synapse.synapses,
                         neurons=self.out_features)

    def export_tables(self) -> ExportTables:
        """The integer datapath: weights, biases in accumulator units, the input format and
        the fixed-point normalisation gain (docs/hdf5-schema.md, kind ``dense-relu``)."""
        wf, xf = self.weight_fmt(), self.input_fmt()
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        attrs = {"in_features": self.in_features, "out_features": self.out_features,
                 **format_attrs("weight", wf), **format_attrs("input", xf),
                 "norm": self.spec.norm, "norm_gain": self.norm_gain(), "norm_gain_frac_bits": GAIN_FRAC_BITS,
                 "accumulator_bits": self.chip.accumulator_bits, "output_scale": self.out_step,
                 "goodness": self.spec.goodness, "goodness_scale": self.goodness_scale()}
        b = self.synapse.int_bias(self.out_step)
        return ExportTables("dense-relu", attrs, {
            "weight": self.synapse.weight_table(self.chip),
            "bias": (b, -lim, lim, "integer biases (out_features,) in accumulator units (weight_scale * input_scale)")})

    def nir_nodes(self, index: int) -> list:
        raise ValueError("NIR has no ReLU node: export graded units with --format hdf5")

