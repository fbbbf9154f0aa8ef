"""Synapses: the weights a unit's dynamics reads its input current through.

A unit is a synapse (how inputs reach its neurons: dense or convolutional) under
a dynamics (how its neurons respond: ReLU, LIF). The synapse owns the weights and biases,
their chip format (a per-unit weight step, an integer table kept in step with the
weights) and the chip's learning rule applied to them; the dynamics owns everything about
activity (normalisation, thresholds, time steps, goodness). A new synapse kind provides
the same calls and works under every dynamics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.functional import kernels, quant
from ffneuro.functional.fixed import (EXACT_GRAD_ROWS, chip_lr, dense_grads, fixed_update_, int_conv2d, int_matmul,
                                      norm_gain, weight_format)
from ffneuro.functional.quant import FixedPoint
from ffneuro.units.base import Resources


class Synapse(nn.Module):
    """What every synapse kind shares: weights ``W`` and biases ``b`` (one per output
    neuron or channel), the chip format of the weights (a per-unit step ``w_step``; 0 while
    in float), the integer table kept in step with the weights, and the chip's learning
    rule applied to them. A kind provides ``current`` (float), ``int_current`` (exact
    integers), ``synapses`` and ``fan_in``."""

    kind = "synapse"

    def __init__(self, weight: torch.Tensor, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.register_buffer("w_step", torch.tensor(0.0))      # 0: float (not on a chip's grid)

    @property
    def synapses(self) -> int:
        return self.weight.numel()

    def step_key(self) -> tuple[int, int]:
        """Changes whenever ``w_step`` may have (written or replaced): a cache key that
        reads no value."""
        return self.w_step.data_ptr(), self.w_step._version

    @property
    def on_grid(self) -> bool:
        key = self.step_key()
        if getattr(self, "_grid_key", None) != key:
            self._grid, self._grid_key = float(self.w_step) > 0, key
        return self._grid

    def weight_fmt(self, chip) -> FixedPoint:
        """The format the chip computes with (and the export writes)."""
        return FixedPoint(chip.weight_bits, chip.weight_signed, float(self.w_step))

    def learn_fmt(self, chip) -> FixedPoint:
        """The format updates land on: the weight format, or with a shadow
        (``ChipSpec.shadow_bits``) the same range at ``shadow_bits``, its step
        2^(shadow_bits − weight_bits) times finer."""
        if not chip.shadow_bits:
            return self.weight_fmt(chip)
        return FixedPoint(chip.shadow_bits, chip.weight_signed,
                          math.ldexp(float(self.w_step), chip.weight_bits - chip.shadow_bits))

    @torch.no_grad()
    def calibrate(self, chip, bias_fmt) -> None:
        """Pick the weight step from the current weights (one bit of headroom) and snap
        weights and biases (``bias_fmt(w_step)``: the dynamics' bias format) to the grid."""
        self.w_step.fill_(weight_format(self.weight, chip).step)
        self.weight.copy_(self.weight_fmt(chip).fake_quant(self.weight))
        self.bias.copy_(bias_fmt(float(self.w_step)).fake_quant(self.bias))

    def int_weight(self, chip) -> torch.Tensor:
        """The integer weight table (float32 holding integers of at most 24 bits), cached
        until the weights change (the chip update refreshes the entries it touched). With
        a shadow (``chip.shadow_bits``) the weights hold the shadow and the table is the
        shadow rounded to the nearest code of the weight format (ties to even), saturated."""
        shadow = chip.shadow_bits > 0
        key = (self.weight._version, self.weight.data_ptr(), self.step_key(), shadow)
        if getattr(self, "_w_int_key", None) != key:
            w = torch.round(self.weight.detach() / float(self.w_step))
            if shadow:
                fmt = self.weight_fmt(chip)
                w = w.clamp_(fmt.qmin, fmt.qmax)
            self._w_int = w
            self._w_int_key = key
        return self._w_int

    def int_bias(self, step: float) -> torch.Tensor:
        """The biases as integers of ``step`` (float64), cached until the biases change
        (treat as read-only)."""
        key = (self.bias._version, self.bias.data_ptr(), step)
        if getattr(self, "_b_int_key", None) != key:
            self._b_int = torch.round(self.bias.detach().to(torch.float64) / step)
            self._b_int_key = key
        return self._b_int

    @torch.no_grad()
    def chip_update(self, lr: float, chip, bias_fmt: FixedPoint, generator: torch.Generator | None, *,
                    weight_decay: float = 0.0, rows: torch.Tensor | None = None,
                    cols: torch.Tensor | None = None, samples: int = 1,
                    grads: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """The chip's learning rule on the gradients (the mean over ``samples`` samples) the
        dynamics left in ``.grad``, or hands over as ``grads`` (weight, bias): plain SGD at
        the learning precision (``functional.fixed.fixed_update_``), at ``lr`` per sample
        under the chip's batch rule (``ChipSpec.batch_lr``), rounded as the chip can apply
        it, onto the weight format or a learning shadow (``learn_fmt``). ``rows``/``cols``
        name the only entries of a dense table the update can touch (silent units, zero
        inputs); the integer table is kept in step."""
        lr = chip_lr(chip.batch_lr(lr, samples), chip)
        # the integer table kept in step with the weights; a shadow's finer codes are not kept
        w_int = None if chip.shadow_bits else self.int_weight(chip)
        given = grads if grads is not None else (self.weight.grad, self.bias.grad)
        for param, fmt, grad in ((self.weight, self.learn_fmt(chip), given[0]), (self.bias, bias_fmt, given[1])):
            if weight_decay:
                grad = grad + weight_decay * param
            table = param is self.weight
            fixed_update_(param, grad, fmt, lr, chip, generator, rows if table else None,
                          cols if table else None, w_int if table else None)
        if w_int is not None:
            self._w_int_key = (self.weight._version, self.weight.data_ptr(), self.step_key(), False)
        self.weight.grad = self.bias.grad = None

    def weight_table(self, chip, doc: str) -> tuple[torch.Tensor, int, int, str]:
        """The integer weights for the export: (values, qmin, qmax, doc)."""
        fmt = self.weight_fmt(chip)
        return self.int_weight(chip), fmt.qmin, fmt.qmax, doc


class DenseSynapse(Synapse):
    """All-to-all weights ``W`` (out_features, in_features) and biases ``b`` (out_features,):
    the current ``W · x + b``. ``weight`` is the initial table (drawn by the dynamics, whose
    initialisation rule it is)."""

    kind = "dense"

    def __init__(self, weight: torch.Tensor):
        super().__init__(weight, weight.shape[0])
        self.out_features, self.in_features = weight.shape

    @property
    def fan_in(self) -> int:
        return self.in_features

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """``x · Wᵀ + b`` for x (..., in_features)."""
        return F.linear(x, self.weight, self.bias)

    def split_current(self, rest: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of ``W · x`` (no bias) for inputs whose first C entries are K label
        codes of the same samples: the data part once, (B, out), and each code's part,
        (K, B, out)."""
        c = codes.shape[-1]
        return F.linear(rest, self.weight[:, c:]), torch.matmul(codes, self.weight[:, :c].t())

    def int_current(self, xq: torch.Tensor, chip) -> torch.Tensor:
        """``x_q · W_qᵀ`` exactly for integer inputs (float64 holding integers), no bias."""
        return int_matmul(xq, self.int_weight(chip), 2 ** (chip.weight_bits - 1))

    def chip_learn(self, lr: float, chip, bias_fmt: FixedPoint, generator: torch.Generator | None,
                   dz: torch.Tensor, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   samples: int = 1) -> None:
        """The chip's learning rule from the per-sample gradients dz (R, out_features) at
        the accumulators and the real inputs x (R, in_features), both float32: the
        gradients in a defined order (``functional.fixed.dense_grads``), then the update of
        ``chip_update`` (rate, rounding, clipping, saturation) on the (rows × cols) block of
        the weights (``rows``: the units active in some sample, ``cols``: the inputs non-zero
        in some sample; every other gradient entry is exactly zero) and on every bias, the
        weights' rounding call first. At batch 1 one compiled pass
        (``kernels.dense_learn``) where the tensors allow; else the gradients by
        ``dense_grads`` and the update's own kernels or tensor code; the same numbers
        either way. No learning shadow, no weight decay (``chip_update`` has them)."""
        lr = chip_lr(chip.batch_lr(lr, samples), chip)
        w_int = self.int_weight(chip)
        wf = self.weight_fmt(chip)
        weight, bias = self.weight.detach(), self.bias.detach()
        if dz.shape[0] <= EXACT_GRAD_ROWS and kernels.usable(weight, w_int, dz, x, dtype=torch.float32) \
                and bias.is_contiguous():
            b_int = self.int_bias(bias_fmt.step)
            stochastic = chip.rounding == "stochastic"
            key_w = key_b = 0
            if stochastic:       # two rounding calls, as the tensor code's: the block's, then the biases'
                key_w = quant.rounding_key(generator, rows.numel() * cols.numel())
                key_b = quant.rounding_key(generator, bias.numel())
            f32 = np.float32
            kernels.dense_learn(w_int.numpy(), weight.numpy(), bias.numpy(), b_int.numpy(), dz.numpy(), x.numpy(),
                                rows.numpy(), cols.numpy(), np.uint64(key_w), np.uint64(key_b), f32(-lr / wf.step),
                                f32(-lr / bias_fmt.step), f32(2 ** (chip.learning_bits - 1) - 1), f32(wf.qmin),
                                f32(wf.qmax), f32(wf.step), f32(bias_fmt.qmin), f32(bias_fmt.qmax),
                                f32(bias_fmt.step), stochastic)
            # the kernel wrote the integer biases with the biases (as it writes the weight table)
            self._b_int_key = (self.bias._version, self.bias.data_ptr(), bias_fmt.step)
        else:
            gw, gb = dense_grads(dz, x)
            fixed_update_(self.weight, gw, wf, lr, chip, generator, rows, cols, w_int, block=True)
            fixed_update_(self.bias, gb, bias_fmt, lr, chip, generator)
        self._w_int_key = (self.weight._version, self.weight.data_ptr(), self.step_key(), False)

    def weight_table(self, chip, doc: str = "integer weights (out_features, in_features); real value = "
                                            "weight * weight_scale") -> tuple[torch.Tensor, int, int, str]:
        return super().weight_table(chip, doc)


class ConvSynapse(Synapse):
    """Convolution weights ``W`` (out_channels, in_channels / groups, k, k) and biases
    ``b`` (out_channels,): the current ``conv2d(x, W, stride, padding, groups) + b`` for
    feature maps x (N, in_channels, H, W). Each output position reads the k×k window
    of its group's input channels with the same kernel (weight sharing)."""

    kind = "conv"

    def __init__(self, weight: torch.Tensor, *, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__(weight, weight.shape[0])
        self.out_channels, per_group, self.kernel, _ = weight.shape
        self.in_channels = per_group * groups
        self.stride, self.padding, self.groups = stride, padding, groups

    @property
    def fan_in(self) -> int:
        """Inputs per output neuron: its group's input channels × the kernel window."""
        return self.weight[0].numel()

    @property
    def fan_out(self) -> int:
        """Output neurons an input position feeds (interior, stride 1): the output channels
        of its group × the kernel window, divided by stride²."""
        return (self.out_channels // self.groups) * self.kernel * self.kernel // (self.stride * self.stride)

    def out_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    def resources(self, in_shape: tuple[int, int, int], conv_shape: tuple[int, int, int], **dynamics) -> Resources:
        """Kernels as synapses (shared by every output position), one neuron per channel and
        conv position (before pooling), the line buffer of a streaming chip (kernel rows ×
        padded input width × input channels); ``dynamics``: the dynamics' own fields
        (history and time steps)."""
        c, _, w = in_shape
        return Resources(fan_in=self.fan_in, fan_out=self.fan_out, synapses=self.synapses,
                         neurons=math.prod(conv_shape), channels=conv_shape[0], positions=conv_shape[1] * conv_shape[2],
                         line_buffer_inputs=c * self.kernel * (w + 2 * self.padding), **dynamics)

    def geometry(self) -> dict[str, int]:
        """The convolution's shape parameters (the event counters' and the export's keywords)."""
        return {"out_channels": self.out_channels, "kernel": self.kernel, "stride": self.stride,
                "padding": self.padding, "groups": self.groups}

    def current(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)

    def int_current(self, xq: torch.Tensor, chip) -> torch.Tensor:
        """The exact integer convolution of integer maps x_q (N, C, H, W) with W_q, no
        bias (float64 holding integers), by ``functional.fixed.int_conv2d``."""
        return int_conv2d(xq, self.int_weight(chip), 2 ** (chip.weight_bits - 1), self.stride, self.padding,
                          self.groups)

    def weight_table(self, chip, doc: str = "integer kernels (out_channels, in_channels / groups, kernel, "
                                            "kernel); real value = weight * weight_scale"):
        return super().weight_table(chip, doc)


class SynapticUnit:
    """What a unit built on a synapse (``self.synapse``, with ``self.chip``) shows of it:
    its weights, their step, whether they are on the chip's grid and their format."""

    @property
    def weight(self) -> nn.Parameter:
        return self.synapse.weight

    @property
    def bias(self) -> nn.Parameter:
        return self.synapse.bias

    @property
    def w_step(self) -> torch.Tensor:
        return self.synapse.w_step

    @property
    def calibrated(self) -> bool:
        """On a chip, once its formats are chosen (``calibrate``)."""
        return self.chip is not None and self.synapse.on_grid

    def weight_fmt(self) -> FixedPoint:
        return self.synapse.weight_fmt(self.chip)


class GradedInput:
    """The chip formats of a unit whose input is a graded activity it normalises in
    integer form (dense and conv ReLU units): its input format (``x_step``, ``x_signed``
    buffers, set by ``calibrate``), its biases in accumulator units and the output LSB."""

    def register_input_format(self) -> None:
        """The input's fixed-point format under a chip profile (step 0: not yet calibrated, or float)."""
        self.register_buffer("x_step", torch.tensor(0.0))
        self.register_buffer("x_signed", torch.tensor(False))

    def input_fmt(self) -> FixedPoint:
        return FixedPoint(self.chip.activation_bits, bool(self.x_signed), float(self.x_step))

    def chip_consts(self) -> ChipConsts:
        """The unit's chip numbers, kept between steps: read from the step buffers once,
        again only after a buffer is written (``calibrate``, a loaded state) or the profile
        or the on-chip rate changes."""
        key = (self.synapse.step_key(), self.x_step.data_ptr(), self.x_step._version, self.x_signed._version,
               id(self.chip), self.chip)
        cached = getattr(self, "_consts", None)
        if cached is None or cached[0] != key:
            in_fmt = self.input_fmt()
            self._consts = (key, ChipConsts(
                x_step=in_fmt.step, out_step=self.out_step, in_fmt=in_fmt, bias_fmt=self.bias_fmt(),
                gain=self.norm_gain(), lim=2 ** (self.chip.accumulator_bits - 1) - 1,
                w_absmax=2 ** (self.chip.weight_bits - 1)))
        return self._consts[1]

    def bias_fmt(self, w_step: float | None = None) -> FixedPoint:
        """Biases live in accumulator units (w step × x step), at the accumulator width."""
        step = (float(self.w_step) if w_step is None else w_step) * float(self.x_step)
        return FixedPoint(self.chip.accumulator_bits, True, step)

    @property
    def out_step(self) -> float:
        """Real value of one accumulator (and output activity) LSB: w step × x step."""
        return float(self.w_step) * float(self.x_step)

    def norm_gain(self) -> int:
        return norm_gain(self.in_features, self.spec.norm, float(self.x_step))


@dataclass(frozen=True)
class ChipConsts:
    """A graded unit's chip numbers (``GradedInput.chip_consts``): the input LSB and
    format, the output (accumulator) LSB, the bias format, the normalisation gain, the
    accumulator's saturation and the bound on |W_q|."""
    x_step: float
    out_step: float
    in_fmt: FixedPoint
    bias_fmt: FixedPoint
    gain: int
    lim: int
    w_absmax: int


def migrate_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A network state_dict from before units had synapses (``layers.i.weight``) in the
    current layout (``layers.i.synapse.weight``)."""
    import re

    pattern = re.compile(r"^(layers\.\d+)\.(weight|bias|w_step)$")
    return {pattern.sub(r"\1.synapse.\2", k): v for k, v in state.items()}
