"""The one-pass head: a linear softmax classifier on the units' neutral-pass activities,
itself a local unit (it learns from detached activities; no gradient reaches the stack)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.functional.fixed import activation_format, int_matmul, int_normalize, norm_gain
from ffneuro.functional.goodness import normalize
from ffneuro.functional.quant import FixedPoint, fixed_point_for
from ffneuro.hw.chip import ChipSpec
from ffneuro.units.optim import make_optimizer, set_lr


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
    def _input_consts(self) -> tuple[float, FixedPoint | None, list[int]]:
        """(x step, input format, normalisation gains), read from the buffers once and
        again only after they are written (``calibrate``, a loaded state)."""
        key = (self.x_step.data_ptr(), self.x_step._version, self.x_signed._version, id(self.chip))
        cached = getattr(self, "_consts", None)
        if cached is None or cached[0] != key:
            step = float(self.x_step)
            on_chip = self.chip is not None and step > 0
            self._consts = cached = (key, (step, self.input_fmt() if on_chip else None,
                                           self.norm_gains() if on_chip else []))
        return cached[1]

    @property
    def calibrated(self) -> bool:
        return self.chip is not None and self._input_consts()[0] > 0

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
        _, fmt, gains = self._input_consts()
        return torch.cat([int_normalize(h, k, fmt) for h, k in zip(activities, gains)], dim=1)

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
            return self.int_features(activities).to(torch.float32) * self._input_consts()[0]
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
