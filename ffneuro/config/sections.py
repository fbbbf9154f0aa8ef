"""The run configuration, one frozen dataclass per section (no torch import).

A run is described by seven sections: ``data`` (what is learned), ``units`` (the local
plasticity units and their rule), ``cff`` (collaborative FF's γ), ``optim`` (optimisers
and learning-rate schedules), ``loop`` (the trainer: algorithm, schedule, epochs, batch,
seed, negatives), ``inference`` (the one-pass head and the multi-pass layers) and
``hardware`` (the chip profile and its learning rate). Every field carries its help text
and, where it has them, its allowed values in ``metadata``: the command line's
``--set`` help and the README's option table are generated from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

GOODNESS_KINDS = ("sumsq", "meansq", "sum", "neg-sumsq")
LOSS_KINDS = ("ff", "symba", "entropy")
NORM_KINDS = ("length", "rms", "none")
ALGOS = ("ff", "cff", "bp", "bp-pairwise")   # bp*: backprop baselines (ffneuro/train/baselines.py)
SCHEDULES = ("layer", "network")
GAMMA_KINDS = ("all", "earlier", "later")
CFF_THETAS = ("sum", "own", "mean")
NEURONS = ("relu", "lif")
SPIKE_ENCODINGS = ("rate", "latency", "direct")
SPIKE_GOODNESS = ("rate", "count")
SPIKE_LEARNING = ("bptt", "eligibility")
RESETS = ("zero", "subtract")
SURROGATES = ("fast_sigmoid", "atan")
NEGATIVES = ("random", "hard")
ENCODINGS = ("auto", "overlay", "concat")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "linear-decay", "multistep")
RELU_GRADS = ("full", "standard")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A config value outside what ffneuro supports (one-line message)."""


def opt(default, help: str, choices: tuple[str, ...] | None = None):
    """A config field with its help text (and allowed values)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def _check(section) -> None:
    """Generic checks every section gets: allowed values and finite numbers."""
    name = type(section).SECTION
    for f in fields(section):
        value = getattr(section, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name}.{f.name} = {value!r} is not allowed (choose from {', '.join(choices)})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}.{f.name} = {value} must be a finite number")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """What is learned and how the input is prepared."""

    SECTION = "data"
    name: str = opt("digits", "Dataset: digits (embedded) | mnist:DIR | fashion-mnist:DIR | cifar10:DIR | npz:FILE")
    label_encoding: str = opt("auto", "How the label enters the input: overlay on the first C features, "
                                      "concat (prepend C), auto (overlay if those features are constant)", ENCODINGS)
    label_scale: float | None = opt(None, "One-hot value of the label code (default: the data maximum)")
    standardize: bool = opt(False, "Subtract the train mean and divide by its std (off keeps raw non-negative "
                                   "inputs, which a chip needs)")
    augment_shift: int = opt(0, "Image data: translate each training sample by up to N pixels per axis "
                                "(Hinton's jitter; 0: off)")
    val_fraction: float = opt(0.0, "Fraction of the training set held out for validation (0: none)")

    def validate(self) -> None:
        _check(self)
        _require(0 <= self.augment_shift <= 8, f"data.augment_shift = {self.augment_shift} must be in 0..8 pixels")
        _require(0.0 <= self.val_fraction < 1.0, f"data.val_fraction = {self.val_fraction} must be in [0, 1)")
        _require(self.label_scale is None or self.label_scale > 0,
                 f"data.label_scale = {self.label_scale} must be > 0 (or unset: the data maximum)")


@dataclass(frozen=True)
class UnitsConfig:
    """The stack of local plasticity units and the rule each one learns by."""

    SECTION = "units"
    layers: tuple[int, ...] = opt((500, 500, 500), "Widths of the units, input to output, e.g. 500,500,500")
    neuron: str = opt("relu", "Dynamics of every unit: relu (graded) | lif (spiking leaky integrate-and-fire)",
                      NEURONS)
    norm: str = opt("rms", "Normalisation of each unit's input", NORM_KINDS)
    relu_grad: str = opt("full", "ReLU gradient: full (straight-through) | standard", RELU_GRADS)
    goodness: str = opt("sumsq", "Goodness of a unit's activity", GOODNESS_KINDS)
    loss: str = opt("ff", "Local loss: ff (softplus against θ) | symba (α) | entropy", LOSS_KINDS)
    theta: float | None = opt(None, "FF threshold θ (default: from the goodness kind and the unit's width)")
    alpha: float = opt(4.0, "SymBa α")
    temperature: float = opt(1.0, "Logit temperature τ: the FF loss is σ((g + γ − θ)/τ), SymBa α(g⁺ − g⁻)/τ")
    peer_norm: float = opt(0.0, "Peer normalisation weight (Hinton: 0.03)")
    peer_momentum: float = opt(0.9, "Momentum of the running mean activity used by peer normalisation")
    steps: int = opt(8, "lif: time steps T per sample")
    spike_encoding: str = opt("rate", "lif: spike encoder of the data path", SPIKE_ENCODINGS)
    beta: float = opt(0.9, "lif: membrane decay per step")
    spike_threshold: float = opt(1.0, "lif: firing threshold")
    reset: str = opt("zero", "lif: reset after a spike (zero: NIR's LIF)", RESETS)
    surrogate: str = opt("fast_sigmoid", "lif: surrogate gradient of the spike", SURROGATES)
    spike_learning: str = opt("bptt", "lif: bptt (through the unit's own T steps) | eligibility (online "
                                      "traces, memory independent of T)", SPIKE_LEARNING)
    spike_goodness: str = opt("rate", "lif: goodness on firing rates or spike counts", SPIKE_GOODNESS)

    def validate(self) -> None:
        _check(self)
        _require(bool(self.layers) and all(w >= 1 for w in self.layers),
                 f"units.layers = {list(self.layers)} must be one or more positive widths")
        _require(0 < self.temperature, f"units.temperature = {self.temperature} must be a finite number > 0")
        _require(self.alpha > 0, f"units.alpha = {self.alpha} must be > 0")
        _require(self.peer_norm >= 0, f"units.peer_norm = {self.peer_norm} must be >= 0")
        _require(0 <= self.peer_momentum < 1, f"units.peer_momentum = {self.peer_momentum} must be in [0, 1)")
        _require(self.steps >= 1 and 0.0 <= self.beta <= 1.0 and self.spike_threshold > 0,
                 "lif needs units.steps >= 1, 0 <= units.beta <= 1 and units.spike_threshold > 0")
        _require(not (self.loss == "entropy" and self.goodness == "neg-sumsq"),
                 "units.loss = 'entropy' needs non-negative goodness (sumsq, meansq or sum)")


@dataclass(frozen=True)
class CFFConfig:
    """Collaborative FF (algo cff): γ_i, the other units' goodness from a frozen copy."""

    SECTION = "cff"
    gamma: str = opt("all", "Which other units' goodness enters γ", GAMMA_KINDS)
    theta: str = opt("sum", "θ_i: sum (θs of i and of γ's members) | own | mean (collective mean against "
                            "the own θ)", CFF_THETAS)

    def validate(self) -> None:
        _check(self)


@dataclass(frozen=True)
class OptimConfig:
    """Each unit's own optimiser and the learning-rate schedule."""

    SECTION = "optim"
    optimizer: str = opt("adam", "adam | sgd (with momentum)", OPTIMIZERS)
    lr: float = opt(1e-3, "Learning rate of the units")
    head_lr: float = opt(1e-3, "Learning rate of the one-pass head")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(0.0, "Weight decay")
    lr_schedule: str = opt("linear-decay", "Schedule of the rate over a stage's epochs", LR_SCHEDULES)
    milestones: tuple[int, ...] = opt((), "multistep: epochs where the rate is multiplied by lr_gamma")
    lr_gamma: float = opt(0.1, "multistep: factor at each milestone")

    def validate(self) -> None:
        _check(self)
        _require(self.lr > 0 and self.head_lr > 0, "optim.lr and optim.head_lr must be > 0")
        _require(0 <= self.momentum < 1, f"optim.momentum = {self.momentum} must be in [0, 1)")
        _require(self.weight_decay >= 0, f"optim.weight_decay = {self.weight_decay} must be >= 0")
        _require(self.lr_gamma > 0, f"optim.lr_gamma = {self.lr_gamma} must be > 0")
        _require(all(m >= 0 for m in self.milestones) and list(self.milestones) == sorted(self.milestones),
                 f"optim.milestones = {list(self.milestones)} must be increasing epochs >= 0")


@dataclass(frozen=True)
class LoopConfig:
    """The trainer: which algorithm, in what order, for how long."""

    SECTION = "loop"
    algo: str = opt("ff", "ff | cff (collaborative) | bp | bp-pairwise (backprop baselines)", ALGOS)
    schedule: str = opt("network", "network: every unit on every batch | layer: one unit after the other",
                        SCHEDULES)
    epochs: int = opt(20, "Epochs (per unit under the layer schedule)")
    batch_size: int = opt(32, "Mini-batch size (capped by a profile's streaming limit)")
    seed: int = opt(0, "Random seed: every random stream of the run derives from it")
    negatives: str = opt("random", "Negative labels: random wrong label | hard (from the head's scores)",
                         NEGATIVES)
    eval_every: int = opt(1, "Evaluate the test set every N epochs (0: only at the end)")
    entropy_probe: int = opt(1000, "Held-out samples whose functional entropy is logged each epoch (0: off)")

    def validate(self) -> None:
        _check(self)
        _require(self.epochs >= 1 and self.batch_size >= 1, "loop.epochs and loop.batch_size must be >= 1")
        _require(self.entropy_probe >= 0, "loop.entropy_probe must be >= 0 (0 turns the entropy log off)")
        _require(self.eval_every >= 0, "loop.eval_every must be >= 0")


@dataclass(frozen=True)
class InferenceConfig:
    """How a trained network predicts."""

    SECTION = "inference"
    head: bool = opt(True, "Train the one-pass linear softmax head")
    layers: tuple[int, ...] | None = opt(None, "1-based units summed by multi-pass inference, e.g. 2,3 "
                                               "(default: 2..L for FF, all for CFF)")

    def validate(self) -> None:
        _check(self)


@dataclass(frozen=True)
class HardwareConfig:
    """The chip a run is trained on (none: float)."""

    SECTION = "hardware"
    profile: str | None = opt(None, "Hardware profile name or TOML path (see `ffneuro profiles list`)")
    onchip_lr: float = opt(2.0 ** -2, "Plain-SGD learning rate × fan-in of a chip without optimiser state")
    simulate_anyway: bool = opt(False, "Train even if the model does not fit the profile's memory")

    def validate(self) -> None:
        _check(self)
        _require(self.onchip_lr > 0, f"hardware.onchip_lr = {self.onchip_lr} must be > 0")


SECTIONS = {cls.SECTION: cls for cls in (DataConfig, UnitsConfig, CFFConfig, OptimConfig, LoopConfig,
                                         InferenceConfig, HardwareConfig)}
