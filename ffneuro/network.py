"""The FF network: an ordered list of layer units, a one-pass head, and the input encoding.

The network object only *composes* units; it holds no learning logic of its own. The
trainer streams data through it; inference helpers here return plain tensors.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn

from ffneuro.config import RunConfig
from ffneuro.functional.encoding import LabelEncoding
from ffneuro.units.dense import FFDense, LinearHead, UnitSpec
from ffneuro.functional.fixed import INPUT_LEVELS, int_spike_encode, integer_input, round_half_up_div
from ffneuro.units.lif import FFSpiking, LIFSpec, encode

SPIKE_THETA = 0.05        # default θ of a spiking layer per unit (tuned on the digits)
INFERENCE_SEED = 12345    # spike encoding at inference is random (rate code): a fixed seed keeps it reproducible


def unit_spec(cfg: RunConfig, width: int) -> UnitSpec:
    """The local learning rule of one layer, derived from the run config.

    θ defaults to the layer width (Hinton's logit Σh² − n_units) for ``sumsq``, to 1 for
    ``meansq`` and to the width for ``sum``; ``neg-sumsq`` uses −width/4 (measured on the
    digits: with −width, positives sit below the threshold from the start and the layer
    learns far slower). For CFF (``cff_theta = "sum"``, the default) θ_i is the sum of the
    default θs of unit i and of the units in J(i), which keeps σ(g + γ − θ) centred at
    initialisation; ``own`` keeps the layer's own θ (a literal reading of the paper: γ
    "modifies the value of θ"). Measured on MNIST, 3×500, γ = all, network schedule,
    150 epochs: sum 3.27 %, own ≈ 3.9 % (a 10k-sample, 15-epoch run had favoured own).
    """
    base = {"sumsq": float(width), "meansq": 1.0, "sum": float(width), "neg-sumsq": -width / 4.0}
    if cfg.units.neuron == "lif":     # goodness of firing rates r in [0, 1]: Σr² ≤ width
        base = {"sumsq": width * SPIKE_THETA, "meansq": SPIKE_THETA, "sum": width * SPIKE_THETA,
                "neg-sumsq": -width * SPIKE_THETA / 4.0}
        if cfg.units.spike_goodness == "count":     # counts c = T·r: the same θ in count units
            base = {k: v * (cfg.units.steps if k == "sum" else cfg.units.steps ** 2) for k, v in base.items()}
    theta = cfg.units.theta if cfg.units.theta is not None else base[cfg.units.goodness]
    return UnitSpec(norm=cfg.units.norm, goodness=cfg.units.goodness, loss=cfg.units.loss, theta=theta, alpha=cfg.units.alpha,
                    peer_norm=cfg.units.peer_norm, peer_momentum=cfg.units.peer_momentum, relu_grad=cfg.units.relu_grad,
                    optimizer=cfg.optim.optimizer, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                    weight_decay=cfg.optim.weight_decay, temperature=cfg.units.temperature)


def gamma_members(kind: str, i: int, n_layers: int) -> list[int]:
    """J(i): the layers whose frozen goodness forms γ_i (0-based indices)."""
    if kind == "all":
        return [j for j in range(n_layers) if j != i]
    if kind == "earlier":
        return list(range(i))
    if kind == "later":
        return list(range(i + 1, n_layers))
    raise ValueError(f"unknown gamma {kind!r}")


def head_layers(n_layers: int) -> list[int]:
    """Layers feeding the one-pass head: 2..L (0-based 1..L−1), or the only layer."""
    return list(range(1, n_layers)) if n_layers > 1 else [0]


def default_inference_layers(cfg: RunConfig) -> list[int]:
    """0-based layers summed by multi-pass inference: the config's, else all for CFF and
    2..L for FF (Hinton skips the first hidden layer)."""
    n = len(cfg.units.layers)
    if cfg.inference.layers is not None:
        return [i - 1 for i in cfg.inference.layers]
    if cfg.loop.algo == "cff" or n == 1:
        return list(range(n))
    return list(range(1, n))


class FFNetwork(nn.Module):
    """Units + head + encoding. ``data_mean``/``data_std`` standardise raw features.

    Under a chip profile (``chip``) the network's input is integer: data in [0, 1] become
    floor(x · INPUT_LEVELS + ½), the label code floor(scale · INPUT_LEVELS + ½) and the
    neutral code that divided by C, rounded half up (see ``prepare_input``)."""

    def __init__(self, cfg: RunConfig, data_features: int, num_classes: int, encoding_mode: str,
                 data_mean: float, data_std: float, *, generator: torch.Generator, chip=None,
                 label_scale: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.chip = chip
        self.label_scale = label_scale      # in data units (the chip's integer code is derived)
        if chip is not None:
            if cfg.data.standardize:
                raise ValueError("--standardize is not available under a fixed-point profile: "
                                 "the chip receives integer inputs (floor(x * 255 + 1/2))")
            code = int(math.floor(label_scale * INPUT_LEVELS + 0.5))
            self.encoding = LabelEncoding(encoding_mode, num_classes, float(code),
                                          float(round_half_up_div(code, num_classes)))
        else:
            self.encoding = LabelEncoding(encoding_mode, num_classes, label_scale)
        widths = [self.encoding.input_features(data_features), *cfg.units.layers]
        self.layer_sizes = widths
        self.spiking = cfg.units.neuron == "lif"
        self.steps, self.spike_encoding = cfg.units.steps, cfg.units.spike_encoding
        if self.spiking:
            lif = LIFSpec(cfg.units.beta, cfg.units.spike_threshold, cfg.units.reset, cfg.units.surrogate, cfg.units.spike_learning,
                          cfg.units.spike_goodness)
            units = [FFSpiking(widths[i], widths[i + 1], self._spec(cfg, i, widths[i + 1]), lif, generator=generator,
                               chip=chip, steps=cfg.units.steps, onchip_lr=cfg.hardware.onchip_lr)
                     for i in range(len(cfg.units.layers))]
        else:
            units = [FFDense(widths[i], widths[i + 1], self._spec(cfg, i, widths[i + 1]), generator=generator,
                             chip=chip, onchip_lr=cfg.hardware.onchip_lr) for i in range(len(cfg.units.layers))]
        self.layers = nn.ModuleList(units)
        self.head_idx = head_layers(len(cfg.units.layers))
        self.head = None
        if cfg.inference.head:
            self.head = LinearHead([cfg.units.layers[i] for i in self.head_idx], num_classes, norm=cfg.units.norm,
                                   lr=cfg.optim.head_lr, optimizer=cfg.optim.optimizer, momentum=cfg.optim.momentum,
                                   weight_decay=cfg.optim.weight_decay * 10, chip=chip)
        self.register_buffer("data_mean", torch.tensor(float(data_mean)))
        self.register_buffer("data_std", torch.tensor(float(data_std)))

    @staticmethod
    def _spec(cfg: RunConfig, i: int, width: int) -> UnitSpec:
        spec = unit_spec(cfg, width)
        members = [i, *gamma_members(cfg.cff.gamma, i, len(cfg.units.layers))]
        if cfg.loop.algo == "cff" and cfg.units.theta is None and cfg.cff.theta == "sum":
            # θ_i rescaled to the sum of the default θs of unit i and of the units in J(i).
            theta = sum(unit_spec(cfg, cfg.units.layers[j]).theta for j in members)
            spec = dataclasses.replace(spec, theta=theta)
        if cfg.loop.algo == "cff" and cfg.cff.theta == "mean":
            # the collective's mean goodness against the unit's own θ: (g + γ)/k − θ = (g + γ − kθ)/k,
            # i.e. θ k times the own θ at a k times higher temperature (k = |members|)
            k = len(members)
            spec = dataclasses.replace(spec, theta=spec.theta * k, temperature=spec.temperature * k)
        return spec

    # -- data path ---------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Data (N, D) as the first unit sees it (before the label): standardised in float
        (identity unless --standardize), integerised on a chip."""
        if self.chip is not None:
            return integer_input(x)
        return (x - self.data_mean) / self.data_std

    @torch.no_grad()
    def goodness_table(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Multi-pass scores: goodness (N, C, L) of every layer for every candidate label.

        ``x`` is standardised data (N, D). All C label codes of a mini-batch go through
        the network together; the first unit multiplies the shared data part only once.
        """
        n, c = x.shape[0], self.num_classes
        out = torch.empty(n, c, len(self.layers), dtype=torch.float64 if self.chip is not None else torch.float32)
        labels = [torch.full((1,), k, dtype=torch.long, device=x.device) for k in range(c)]
        gen = torch.Generator().manual_seed(INFERENCE_SEED)
        for s in range(0, n, batch_size):
            xb = x[s:s + batch_size]
            b = xb.shape[0]
            h = self.encoding.coded(xb, [y.expand(b) for y in labels])      # rows: code-major
            if self.spiking:
                h = self.to_spikes(h.dense(), gen)
            for i, layer in enumerate(self.layers):
                h = layer(h)
                out[s:s + b, :, i] = layer.goodness(h).view(c, b).t().cpu()
        return out

    def to_spikes(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The spike encoder of the data path: encoded input (N, D) → (T, N, D). On a chip
        the input is integer and the encoder deterministic (``onchip.int_spike_encode``)."""
        if self.chip is not None:
            return int_spike_encode(self.spike_encoding, x, self.steps)
        return encode(self.spike_encoding, x, self.steps, generator)

    @torch.no_grad()
    def neutral_activities(self, x: torch.Tensor, on_layer=None,
                           generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Activities of the head's layers for the neutral-label input (streamed: only the
        head's inputs are kept, not every layer's; spike counts for spiking layers).
        ``on_layer(i, h_in, h_out)`` is called after each unit (the trainer counts events
        with it). ``generator`` drives a random spike encoder (default: a fixed seed)."""
        h = self.encoding.encode_neutral(x)
        if self.spiking:
            h = self.to_spikes(h, generator or torch.Generator().manual_seed(INFERENCE_SEED))
        kept = []
        for i, layer in enumerate(self.layers):
            out = layer(h)
            if on_layer is not None:
                on_layer(i, h, out)
            if i in self.head_idx:
                kept.append(out.sum(dim=0) if self.spiking else out)
            h = out
        return kept

    @torch.no_grad()
    def head_logits(self, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
        """One-pass logits (N, C); on a calibrated chip, the head's integer logits."""
        assert self.head is not None
        run = self.head.int_logits if self.head.calibrated else self.head
        return torch.cat([run(self.neutral_activities(x[s:s + batch_size]))
                          for s in range(0, x.shape[0], batch_size)])
