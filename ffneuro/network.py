"""The FF network: an input encoding, an input stage, an ordered stack of units and a
one-pass head — and ``stream``, the one place data flows through the units.

The network only *composes* units; it holds no learning logic and never asks what kind a
unit is. Training, evaluation, the analysis probes and the export all go through
``stream``: it encodes the input with one or more label codes (or the neutral code),
passes it through the stack's input stage, and hands each unit's activity to the next,
letting the caller decide how each unit is traversed (a plain forward, a local update,
a calibration) and see every unit's input and output as they pass.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn as nn

from ffneuro import rng
from ffneuro.config import RunConfig
from ffneuro.functional.encoding import CodedBatch, LabelEncoding, choose_encoding
from ffneuro.functional.fixed import INPUT_LEVELS, check_chip_input, integer_input, round_half_up_div
from ffneuro.units.base import Resources, Unit
from ffneuro.units.head import LinearHead
from ffneuro.units.stack import build_units


class Passage(NamedTuple):
    """One unit traversed by ``FFNetwork.stream``: its index, the unit, its input and its output."""

    index: int
    unit: Unit
    h_in: torch.Tensor | CodedBatch
    h_out: torch.Tensor


Through = Callable[[int, Unit, "torch.Tensor | CodedBatch"], torch.Tensor]


def head_layers(n_layers: int, competitive: bool = False) -> list[int]:
    """Units feeding the one-pass head: 2..L (0-based 1..L−1), or the only unit; under
    channel-wise competition the last two (seed 002's inference from the last layers)."""
    if competitive:
        return list(range(max(0, n_layers - 2), n_layers))
    return list(range(1, n_layers)) if n_layers > 1 else [0]


def default_inference_layers(cfg: RunConfig) -> list[int]:
    """0-based units summed by multi-pass inference: the config's, else all for CFF,
    the last two under channel-wise competition, and 2..L for FF (Hinton skips the first
    hidden layer)."""
    n = cfg.units.n_units
    if cfg.inference.layers is not None:
        return [i - 1 for i in cfg.inference.layers]
    if cfg.units.loss == "cwc":
        return head_layers(n, competitive=True)
    if cfg.loop.algo == "cff" or n == 1:
        return list(range(n))
    return list(range(1, n))


def sample_shape(feature_shape: tuple[int, ...], images: bool) -> tuple[int, ...]:
    """One data sample as the first unit reads it: (D,) flat, or (C, H, W) maps for a stack
    that starts with a conv unit (greyscale (H, W) gets one channel)."""
    if not images:
        return (math.prod(feature_shape),)
    if len(feature_shape) == 2:
        return (1, *feature_shape)
    if len(feature_shape) != 3:
        raise ValueError(f"a conv unit needs image data (H, W) or (C, H, W), not samples of shape {feature_shape}")
    return tuple(feature_shape)


def resolve_encoding(cfg: RunConfig, x_train: torch.Tensor, num_classes: int) -> str:
    """The label encoding a run uses: ``none`` for the competitive loss, ``planes`` for an
    image stack, else ``choose_encoding`` (overlay if the first C features are constant)."""
    mode = cfg.data.label_encoding
    if cfg.units.loss == "cwc":
        return "none"
    if mode == "auto" and cfg.units.plan()[0].kind == "conv":
        return "planes"
    return choose_encoding(mode, x_train, num_classes)


def competitive(encoding: LabelEncoding) -> bool:
    """Channel-wise competition: the label enters the units' loss, not the input."""
    return encoding.mode == "none"


def label_encoding(mode: str, num_classes: int, label_scale: float, chip) -> LabelEncoding:
    """The label code in data units, or on a chip the integer code floor(scale·L + ½) and
    the neutral code that divided by C, rounded half up."""
    if chip is None:
        return LabelEncoding(mode, num_classes, label_scale)
    code = int(math.floor(label_scale * INPUT_LEVELS + 0.5))
    return LabelEncoding(mode, num_classes, float(code), float(round_half_up_div(code, num_classes)))


class FFNetwork(nn.Module):
    """Units + head + encoding. ``data_mean``/``data_std`` standardise raw features.

    Under a chip profile (``chip``) the network's input is integer: data in [0, 1] become
    floor(x · INPUT_LEVELS + ½) (see ``prepare_input``)."""

    def __init__(self, units: list[Unit], input_stage, encoding: LabelEncoding, *, num_classes: int,
                 head: LinearHead | None = None, data_mean: float = 0.0, data_std: float = 1.0, chip=None,
                 label_scale: float = 1.0, data_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.data_shape = tuple(data_shape) if data_shape is not None else None   # one prepared sample
        self.chip = chip
        self.label_scale = label_scale      # in data units (the chip's integer code is derived)
        self.encoding = encoding
        self.input_stage = input_stage
        self.layers = nn.ModuleList(units)
        self.competitive = competitive(encoding)
        self.head_idx = head_layers(len(units), self.competitive)
        self.head = head
        self.register_buffer("data_mean", torch.tensor(float(data_mean)))
        self.register_buffer("data_std", torch.tensor(float(data_std)))

    @classmethod
    def from_config(cls, cfg: RunConfig, data_features: int | tuple[int, ...], num_classes: int,
                    encoding_mode: str, data_mean: float = 0.0, data_std: float = 1.0, *,
                    generators: list[torch.Generator] | torch.Generator, chip=None,
                    label_scale: float = 1.0) -> "FFNetwork":
        """The network a run config describes for data samples of ``data_features`` (a
        count, or the per-sample shape); unit i is initialised from ``generators[i]`` (or
        all units, in order, from one generator)."""
        if isinstance(generators, torch.Generator):
            generators = [generators] * cfg.units.n_units
        shape = (data_features,) if isinstance(data_features, int) else tuple(data_features)
        data_shape = sample_shape(shape, cfg.units.plan()[0].kind == "conv")
        if chip is not None and cfg.data.standardize:
            raise ValueError("data.standardize is not available under a fixed-point profile: "
                             "the chip receives integer inputs (floor(x * 255 + 1/2))")
        encoding = label_encoding(encoding_mode, num_classes, label_scale, chip)
        cff = cfg.cff if cfg.loop.algo == "cff" else None
        units, stage = build_units(cfg.units, cfg.optim, cff, encoding.input_shape(data_shape),
                                   generators=generators, chip=chip, onchip_lr=cfg.hardware.onchip_lr,
                                   classes=num_classes)
        head = None
        if cfg.inference.head:
            o = cfg.optim
            head = LinearHead([units[i].out_features for i in head_layers(len(units), competitive(encoding))],
                              num_classes, norm=cfg.units.norm, lr=o.head_lr, optimizer=o.optimizer, momentum=o.momentum,
                              weight_decay=o.weight_decay * 10, chip=chip)
        return cls(units, stage, encoding, num_classes=num_classes, head=head, data_mean=data_mean,
                   data_std=data_std, chip=chip, label_scale=label_scale, data_shape=data_shape)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.layers[0].in_features, *(u.out_features for u in self.layers)]

    def resources(self) -> list[Resources]:
        return [u.resources() for u in self.layers]

    def trainable_parameters(self) -> dict[str, int]:
        """Trainable parameters per unit (``unit1`` …) and of the ``head``, and their ``total``."""
        out = {f"unit{i + 1}": sum(p.numel() for p in u.parameters() if p.requires_grad)
               for i, u in enumerate(self.layers)}
        if self.head is not None:
            out["head"] = sum(p.numel() for p in self.head.parameters() if p.requires_grad)
        out["total"] = sum(out.values())
        return out

    # -- data path ---------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Data (N, D) as the first unit sees it (before the label): standardised in float
        (identity unless data.standardize), integerised on a chip, as maps (N, C, H, W)
        for a stack that starts with a conv unit. A chip takes data in [0, 1] only (its
        sensor levels): other values are refused, not wrapped."""
        if self.chip is not None:
            check_chip_input(x)
        x = integer_input(x) if self.chip is not None else (x - self.data_mean) / self.data_std
        if self.data_shape is not None and len(self.data_shape) > 1:
            return x.reshape(x.shape[0], *self.data_shape)
        return x

    def stream(self, x: torch.Tensor, labels: list[torch.Tensor] | None = None, *,
               generator: torch.Generator | None = None, through: Through | None = None,
               upto: int | None = None) -> Iterator[Passage]:
        """Stream prepared data x (N, D) through the units, one unit at a time.

        ``labels``: K label tensors (N,): the K codes of the same samples travel together,
        code-major (rows k·N + n), factored for the first unit; None: the neutral code.
        ``generator``: a random input stage (a rate-coded spike encoder) draws from it
        (default: the fixed inference stream). ``through(i, unit, h_in)`` computes unit i's
        output (default: ``unit(h_in)``); ``upto``: stop after this many units. Yields a
        ``Passage`` per unit; nothing is kept after the caller moves on.
        """
        h = self.encoding.encode_neutral(x) if labels is None else self.encoding.coded(x, labels)
        h = self.input_stage(h, generator if generator is not None else rng.inference_generator())
        for i, unit in enumerate(self.layers[:upto] if upto is not None else self.layers):
            out = through(i, unit, h) if through is not None else unit(h)
            yield Passage(i, unit, h, out)
            h = out

    @torch.no_grad()
    def goodness_table(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Multi-pass scores: goodness (N, C, L) of every unit for every candidate label.

        All C label codes of a mini-batch go through the network together; the first unit
        multiplies the shared data part only once. Under channel-wise competition the
        scores come from one label-free pass: unit l's group goodness G (seed 002 eq. 2).
        """
        n, c = x.shape[0], self.num_classes
        out = torch.empty(n, c, len(self.layers), dtype=torch.float64 if self.chip is not None else torch.float32)
        labels = [torch.full((1,), k, dtype=torch.long, device=x.device) for k in range(c)]
        gen = rng.inference_generator()
        if self.competitive:         # one pass: every unit's class groups are the candidates
            for s in range(0, n, batch_size):
                xb = x[s:s + batch_size]
                for p in self.stream(xb, None, generator=gen):
                    out[s:s + xb.shape[0], :, p.index] = p.unit.class_goodness(p.h_out, c).cpu()
            return out
        for s in range(0, n, batch_size):
            xb = x[s:s + batch_size]
            b = xb.shape[0]
            for p in self.stream(xb, [y.expand(b) for y in labels], generator=gen):
                out[s:s + b, :, p.index] = p.unit.goodness(p.h_out).view(c, b).t().cpu()
        return out

    @torch.no_grad()
    def neutral_activities(self, x: torch.Tensor, on_unit: Callable[[Passage], None] | None = None,
                           generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Head activities (N, width) of the head's units for the neutral-label input
        (streamed: only the head's inputs are kept). ``on_unit(passage)`` sees every unit."""
        kept = []
        for p in self.stream(x, None, generator=generator):
            if on_unit is not None:
                on_unit(p)
            if p.index in self.head_idx:
                kept.append(p.unit.head_activity(p.h_out))
        return kept

    @torch.no_grad()
    def head_logits(self, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
        """One-pass logits (N, C); on a calibrated chip, the head's integer logits."""
        assert self.head is not None
        run = self.head.int_logits if self.head.calibrated else self.head
        return torch.cat([run(self.neutral_activities(x[s:s + batch_size]))
                          for s in range(0, x.shape[0], batch_size)])

    @torch.no_grad()
    def refresh_statistics(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None,
                           batch_size: int = 256) -> bool:
        """Re-estimate the running statistics of units that keep them (batch norm) from
        data x (the rows ``idx``, default all): a cumulative average over batches streamed
        in training mode without gradient, the label code that training uses (positives;
        none under channel-wise competition). Returns whether any unit keeps statistics
        (without any, nothing is read)."""
        units = [u for u in self.layers if u.begin_statistics()]
        if not units:
            return False
        if idx is not None:
            x, y = x[idx], y[idx]
        was_training = self.training
        self.train()
        for s in range(0, x.shape[0], batch_size):
            labels = None if self.competitive else [y[s:s + batch_size]]
            for _ in self.stream(x[s:s + batch_size], labels):
                pass
        for u in units:
            u.end_statistics()
        self.train(was_training)
        return True

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Enter the chip's number formats, unit by unit, on one batch of positive data."""
        def calibrate_then_forward(i: int, unit: Unit, h):
            unit.calibrate(h)
            return unit(h)

        for _ in self.stream(x, [y], generator=generator, through=calibrate_then_forward):
            pass
        if self.head is not None:
            self.head.calibrate(self.neutral_activities(x))
