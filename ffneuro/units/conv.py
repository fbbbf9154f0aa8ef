"""The convolutional ReLU unit: graded neurons behind a convolution synapse
(``units/synapse.py``), learning by their own local objective.

``h = bn(pool(relu(conv(n(x)))))``: ``n`` the FF normalisation of the whole input map
(SPEC §1; ``none`` for CwComp's stacks, which normalise outputs instead), an optional
``pool``×``pool`` max-pool and, with ``batch_norm = "output"``, a batch normalisation of
each output channel after pooling (CwComp's order); with ``batch_norm = "input"`` the
batch norm acts on the input channels first, ``h = pool(relu(conv(bn(n(x)))))`` (seed
002's layer: batch norm, conv, ReLU, max-pool). The goodness is that of the unit's output
activity ``h``: Σh² over all positions and channels for the FF losses, or the channel-wise
group goodness for the competitive loss (``units.base.local_objective``).

Batch norm on a chip: at inference a batch-normalised channel is ``a_c · x + b_c`` with
``a_c = γ_c / sqrt(σ²_c + ε)`` and ``b_c = β_c − a_c μ_c`` from the running statistics, a
per-channel scale and bias the output stage applies after pooling. In float training
ffneuro uses the batch statistics (the unit's own activity, never another unit's), as
CwComp. Training on a chip needs those statistics over a batch the chip does not hold,
so under a fixed-point profile a conv unit normalises its input instead (``norm = rms``:
the whole input map as one vector, the integer normalisation of dense units), and
``batch_norm`` is refused.

On a chip (``chip``, once calibrated) the forward is the exact integer datapath: the
integer input map normalised (``int_normalize``), the integer convolution
(``functional.fixed.int_conv2d``) plus integer biases, saturation at the accumulator
width, integer ReLU and max-pool. The update is the chip's fixed-point rule on the
gradient of the real-valued conv at the chip's own activities.

Shapes: x (N, C_in, H, W) → h (N, C_out, H', W'); a flat (N, C_in·H·W) input is read as
maps of ``in_shape``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.functional.fixed import GAIN_FRAC_BITS, activation_format, int_goodness, int_normalize, norm_gain
from ffneuro.functional.goodness import goodness, group_goodness, normalize
from ffneuro.hw.chip import ChipSpec
from ffneuro.hw.events import conv_forward_events, conv_update_events
from ffneuro.units.base import ExportTables, LocalLoss, Resources, StepResult, UnitSpec, format_attrs, local_objective
from ffneuro.units.dense import relu
from ffneuro.units.optim import make_optimizer, set_lr
from ffneuro.units.synapse import ConvSynapse, GradedInput, SynapticUnit

BN_EPS = 1e-4      # CwComp's batch-norm ε
BN_MOMENTUM = 0.1  # torch's default: the running statistics' exponential average during training


class FFConv(GradedInput, SynapticUnit, nn.Module):
    """A convolutional ReLU unit trained by its own local objective (the unit contract of
    units/base.py).

    Example::

        unit = FFConv((3, 32, 32), 20, UnitSpec(loss="cwc", norm="none"), kernel=3, padding=1,
                      batch_norm=True, generator=torch.Generator().manual_seed(0))
        h = unit(x)                                  # (N, 20, 32, 32)
        r = unit.local_step(x, targets=y)            # one local update; r.h feeds the next unit
    """

    def __init__(self, in_shape: tuple[int, int, int], out_channels: int, spec: UnitSpec, *,
                 generator: torch.Generator, kernel: int = 3, stride: int = 1, padding: int = 0,
                 groups: int = 1, pool: int = 1, batch_norm: bool | str = False, chip: ChipSpec | None = None,
                 onchip_lr: float = 2.0 ** -2):
        super().__init__()
        c, h, w = in_shape
        if c % groups:
            raise ValueError(f"groups = {groups} must divide the {c} input channels of a conv unit")
        self.spec = spec
        self.chip = chip
        self.lr = spec.lr
        self.onchip_lr = onchip_lr
        self.pool = pool
        self.in_shape = (c, h, w)
        fan_in = (c // groups) * kernel * kernel
        # PyTorch's default conv initialisation bound 1/sqrt(fan_in), drawn from the unit's stream.
        bound = 1.0 / math.sqrt(fan_in)
        weight = (torch.rand(out_channels, c // groups, kernel, kernel, generator=generator) * 2 - 1) * bound
        self.synapse = ConvSynapse(weight, stride=stride, padding=padding, groups=groups)
        ho, wo = self.synapse.out_size(h), self.synapse.out_size(w)
        if ho < pool or wo < pool:
            raise ValueError(f"a conv unit with kernel {kernel}, stride {stride}, padding {padding} and pool "
                             f"{pool} does not fit input maps of {h}x{w}")
        self.conv_shape = (out_channels, ho, wo)
        self.out_shape = (out_channels, ho // pool, wo // pool)
        self.in_features = c * h * w
        self.out_features = math.prod(self.out_shape)
        if batch_norm not in (False, True, "output", "input"):
            raise ValueError(f"batch_norm = {batch_norm!r}: False, 'output' (True) or 'input'")
        self.bn_at = ("output" if batch_norm is True else batch_norm) or None
        bn_channels = c if self.bn_at == "input" else out_channels
        self.bn = nn.BatchNorm2d(bn_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if self.bn_at else None
        self.register_input_format()
        self.optimizer = make_optimizer(self.parameters(), spec.optimizer, spec.lr, spec.momentum,
                                        spec.weight_decay)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Enter the chip's number formats (as a dense unit): the weight step from the
        initial kernels, the input step from one batch of integer input maps."""
        if self.bn is not None:
            raise ValueError("units.batch_norm has no fixed-point training form (it needs batch statistics): "
                             "under a profile use units.batch_norm = false with units.norm = rms")
        norm_gain(self.in_features, self.spec.norm, 1.0)          # fails early for norm = none
        xf = activation_format(normalize(self.maps(x).float(), self.spec.norm), self.chip)
        self.x_step.fill_(xf.step)
        self.x_signed.fill_(xf.signed)
        self.synapse.calibrate(self.chip, self.bias_fmt)

    @torch.no_grad()
    def chip_forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The chip's integer datapath for integer input maps a (N, C, H, W): x_q (int64,
        the whole map normalised as one vector, ``int_normalize``) and the saturated
        accumulator z = conv(x_q, W_q) + b_q (float64 holding integers), before ReLU and
        pooling."""
        a = self.maps(a)
        xq = int_normalize(a.flatten(1), self.norm_gain(), self.input_fmt()).view(a.shape)
        z = self.synapse.int_current(xq, self.chip) + self.synapse.int_bias(self.out_step).view(1, -1, 1, 1)
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        return xq, z.clamp_(-lim, lim)

    def _pool(self, h: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(h, self.pool) if self.pool > 1 else h

    # -- inference -------------------------------------------------------------------
    def maps(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.dim() == 4 else x.reshape(x.shape[0], *self.in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Activity h (N, C_out, H', W') for input maps x (N, C_in, H, W). On a calibrated
        chip: the integer ReLU output of the accumulator, max-pooled (float64 holding
        integers; its real value is h · out_step)."""
        if self.calibrated:
            return self._pool(self.chip_forward(x)[1].clamp_min(0))
        x = normalize(self.maps(x), self.spec.norm)
        if self.bn_at == "input":
            x = self.bn(x)
        h = self._pool(relu(self.synapse.current(x), self.spec.relu_grad))
        return self.bn(h) if self.bn_at == "output" else h

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """Goodness (N,) of the whole output map (Σh² over channels and positions, or the
        configured kind), in real units; on the chip the exact integer sum × scale."""
        if self.calibrated:
            return int_goodness(h.flatten(1), self.spec.goodness).to(torch.float64) * self.goodness_scale()
        return goodness(h.flatten(1), self.spec.goodness)

    def goodness_scale(self) -> float:
        s = self.out_step
        return {"sumsq": s * s, "meansq": s * s / self.out_features, "sum": s, "neg-sumsq": -s * s}[
            self.spec.goodness]

    def class_goodness(self, h: torch.Tensor, classes: int) -> torch.Tensor:
        """Channel-wise goodness G (N, classes) of the output map in real units."""
        if self.calibrated:
            return group_goodness(h.to(torch.float64), classes) * self.out_step ** 2
        return group_goodness(h, classes)

    def begin_statistics(self) -> bool:
        """Start re-estimating the batch norm's running statistics from scratch, as a
        cumulative average over the batches that follow (True); False without batch norm.
        During training the running statistics trail the weights (an exponential average
        over batches computed with older weights), which at a high learning rate leaves
        inference far off what training saw."""
        if self.bn is None:
            return False
        self.bn.reset_running_stats()
        self.bn.momentum = None
        return True

    def end_statistics(self) -> None:
        if self.bn is not None:
            self.bn.momentum = BN_MOMENTUM

    # -- learning --------------------------------------------------------------------
    def set_lr(self, lr: float, onchip_lr: float | None = None) -> None:
        self.lr = lr
        if onchip_lr is not None:
            self.onchip_lr = onchip_lr
        set_lr(self.optimizer, lr)

    def _activity(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h in real units with a graph to the parameters, the activity to hand on). On the
        chip the values are the exact integer datapath's and the gradient that of the
        real-valued conv at the chip's own inputs (its value replaced, straight through)."""
        if not self.calibrated:
            h = self(x)
            return h, h
        xq, z_int = self.chip_forward(x)
        z_f = self.synapse.current(xq.to(torch.float32) * float(self.x_step))
        z = z_f + ((z_int * self.out_step).to(torch.float32) - z_f).detach()
        return self._pool(relu(z, self.spec.relu_grad)), self._pool(z_int.clamp_min(0))

    def local_step(self, x: torch.Tensor, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   targets: torch.Tensor | None = None) -> StepResult:
        """One local update. With ``targets`` (channel-wise competition) x holds N samples;
        otherwise the B positives then the B negatives. Only this unit's parameters (and
        its batch-norm scale and shift) receive gradient: the input carries no graph. On a
        chip the update is the chip's rule (the synapse's ``chip_update``) at
        onchip_lr / fan-in."""
        h, h_out = self._activity(x.detach())
        loss, g_pos, g_neg = self._objective(h, gamma_pos, gamma_neg, targets)
        loss.backward()
        self.apply_update(generator, x.shape[0] if targets is not None else x.shape[0] // 2)
        return StepResult(h_out.detach(), float(loss.detach()), g_pos.detach(), g_neg.detach())

    def _objective(self, h: torch.Tensor, gamma_pos: torch.Tensor | None, gamma_neg: torch.Tensor | None,
                   targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return local_objective(self.spec, h, lambda a: goodness(a.flatten(1), self.spec.goodness), targets,
                               gamma_pos, gamma_neg)

    def local_loss(self, x: torch.Tensor, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> LocalLoss:
        """The local loss on x as given (its graph kept), without updating: the first half
        of ``local_step`` for chunked local updates (``apply_update`` is the second). Float
        units only: on a chip every unit learns by its own fixed-point rule."""
        if self.calibrated:
            raise ValueError("a unit on a chip learns by its own fixed-point rule: chunked updates need float units")
        h, _ = self._activity(x)
        loss, g_pos, g_neg = self._objective(h, gamma_pos, gamma_neg, targets)
        return LocalLoss(loss, h, g_pos.detach(), g_neg.detach())

    def apply_update(self, generator: torch.Generator | None = None, samples: int = 1) -> None:
        """Apply the gradient in the unit's parameters (its optimiser, or on a chip the
        synapse's ``chip_update`` at onchip_lr / fan-in for the mean over ``samples``), then
        drop it (streaming: only the new weights outlive the step)."""
        if self.calibrated:
            self.synapse.chip_update(self.onchip_lr / self.synapse.fan_in, self.chip, self.bias_fmt(), generator,
                                     weight_decay=self.spec.weight_decay, samples=samples)
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- what the rest of ffneuro asks of a unit -------------------------------------
    @staticmethod
    def default_theta(goodness_kind: str, width: int) -> float:
        """θ by default: as for dense units, from the number of outputs (C·H'·W')."""
        return {"sumsq": float(width), "meansq": 1.0, "sum": float(width), "neg-sumsq": -width / 4.0}[goodness_kind]

    def head_activity(self, h: torch.Tensor) -> torch.Tensor:
        """The activity (N, C·H'·W') the one-pass head reads: the output map, flattened."""
        return h.flatten(1)

    def integer_goodness(self, h: torch.Tensor) -> torch.Tensor:
        """The chip's exact integer goodness (N,) of integer output maps h."""
        return int_goodness(h.flatten(1), self.spec.goodness)

    def forward_events(self, x_in: torch.Tensor, h_out: torch.Tensor) -> dict[str, float]:
        """One forward step: synops per non-zero input in each output position's window
        (``hw.events.conv_forward_events``)."""
        return conv_forward_events(self.maps(x_in), h_out, **self.synapse.geometry())

    def update_events(self, x_in: torch.Tensor, batch: int, update_batch: int) -> dict[str, float]:
        """The local update's events from the step's input maps (``batch`` positives, then
        as many negatives unless the loss is competitive)."""
        x = self.maps(x_in)
        x_neg = x[batch:] if x.shape[0] > batch else None
        return conv_update_events(x[:batch], x_neg, neurons=math.prod(self.conv_shape), batch_size=update_batch,
                                  **self.synapse.geometry())

    def resources(self) -> Resources:
        """Kernels as synapses (shared by every output position); one neuron per conv
        output position and channel (before pooling)."""
        return self.synapse.resources(self.in_shape, self.conv_shape)

    def export_tables(self) -> ExportTables:
        """The integer datapath: kernels, biases in accumulator units, the geometry, the
        input format and the normalisation gain (docs/hdf5-schema.md, kind ``conv-relu``)."""
        wf, xf = self.weight_fmt(), self.input_fmt()
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        c, h, w = self.in_shape
        attrs = {"in_features": self.in_features, "out_features": self.out_features, "in_channels": c,
                 "in_height": h, "in_width": w, **self.synapse.geometry(), "pool": self.pool,
                 **format_attrs("weight", wf), **format_attrs("input", xf),
                 "norm": self.spec.norm, "norm_gain": self.norm_gain(), "norm_gain_frac_bits": GAIN_FRAC_BITS,
                 "accumulator_bits": self.chip.accumulator_bits, "output_scale": self.out_step,
                 "goodness": self.spec.goodness, "goodness_scale": self.goodness_scale()}
        return ExportTables("conv-relu", attrs, {
            "weight": self.synapse.weight_table(self.chip),
            "bias": (self.synapse.int_bias(self.out_step), -lim, lim,
                     "integer biases (out_channels,) in accumulator units (weight_scale * input_scale)")})

    def nir_nodes(self, index: int) -> list:
        raise ValueError("NIR has no ReLU node: export graded units with --format hdf5")
