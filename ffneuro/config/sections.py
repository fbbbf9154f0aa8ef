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
LOSS_KINDS = ("ff", "symba", "entropy", "cwc")
NORM_KINDS = ("length", "rms", "none")
ALGOS = ("ff", "cff", "bp", "bp-pairwise")   # bp*: backprop baselines (ffneuro/train/baselines.py)
SCHEDULES = ("layer", "network", "alternate", "chunks")
BATCH_NORM_AT = ("output", "input")
GAMMA_KINDS = ("all", "earlier", "later")
CFF_THETAS = ("sum", "own", "mean")
NEURONS = ("relu", "lif")
SPIKE_ENCODINGS = ("rate", "latency", "direct")
SPIKE_GOODNESS = ("rate", "count")
SPIKE_LEARNING = ("bptt", "eligibility")
RESETS = ("zero", "subtract")
SURROGATES = ("fast_sigmoid", "atan")
NEGATIVES = ("random", "hard")
ENCODINGS = ("auto", "overlay", "concat", "planes", "none")
UNIT_KINDS = ("dense", "conv")
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
    name: str = opt("digits", "Dataset: digits (embedded) | mnist:DIR | fashion-mnist:DIR | cifar10:DIR | "
                                "imagefolder:DIR|ZIP | npz:FILE")
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
class LayerSpec:
    """One unit of a stack: its synapse kind and shape. ``dense``: ``size`` neurons, each
    seeing every input. ``conv``: ``size`` output channels of a ``kernel``×``kernel``
    convolution (``stride``, zero ``padding``, ``groups``: channels split into groups that
    see only their own inputs), then an optional ``pool``×``pool`` max-pool (1: none).

    Written in a TOML config as a table (``{kind = "conv", size = 50, kernel = 3,
    padding = 1, pool = 2}``) or on the command line as ``KIND:SIZE`` plus options
    ``kK sS pP gG poolN`` separated by colons (``conv:50:k3:p1:pool2``).

    >>> LayerSpec.parse("conv:80:k3:p1:g10:pool2")
    LayerSpec(kind='conv', size=80, kernel=3, stride=1, padding=1, groups=10, pool=2)
    >>> LayerSpec.parse("conv:80:k3:p1:g10:pool2").text(), LayerSpec.parse("dense:500").text()
    ('conv:80:k3:p1:g10:pool2', 'dense:500')
    """

    kind: str = "dense"
    size: int = 500
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    groups: int = 1
    pool: int = 1

    OPTIONS = (("pool", "pool"), ("k", "kernel"), ("s", "stride"), ("p", "padding"), ("g", "groups"))

    @classmethod
    def parse(cls, text: str) -> "LayerSpec":
        parts = [p.strip() for p in text.strip().split(":")]
        if len(parts) < 2 or parts[0] not in UNIT_KINDS or not parts[1].isdigit():
            raise ConfigError(f"unit {text!r}: expected KIND:SIZE[:option...] with KIND one of "
                              f"{', '.join(UNIT_KINDS)}, e.g. conv:50:k3:p1:pool2 or dense:500")
        values: dict = {"kind": parts[0], "size": int(parts[1])}
        for part in parts[2:]:
            for prefix, name in cls.OPTIONS:
                if part.startswith(prefix) and part[len(prefix):].isdigit():
                    values[name] = int(part[len(prefix):])
                    break
            else:
                raise ConfigError(f"unit {text!r}: unknown option {part!r} (options: kK sS pP gG poolN)")
        return cls(**values)

    @classmethod
    def from_value(cls, value) -> "LayerSpec":
        """From a table (TOML/JSON), a ``KIND:SIZE:...`` string or a LayerSpec."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ConfigError(f"unit {value!r}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(known))})")
            if not all(isinstance(v, int) and not isinstance(v, bool) for k, v in value.items() if k != "kind"):
                raise ConfigError(f"unit {value!r}: every key but kind takes an integer")
            return cls(**value)
        raise ConfigError(f"unit {value!r}: expected a table or a KIND:SIZE string")

    def text(self) -> str:
        if self.kind == "dense":
            return f"dense:{self.size}"
        defaults = LayerSpec()
        out = [self.kind, str(self.size), f"k{self.kernel}"]
        for prefix, name in (("s", "stride"), ("p", "padding"), ("g", "groups"), ("pool", "pool")):
            if getattr(self, name) != getattr(defaults, name):
                out.append(f"{prefix}{getattr(self, name)}")
        return ":".join(out)

    def validate(self, where: str) -> None:
        _require(self.kind in UNIT_KINDS, f"{where}: kind = {self.kind!r} is not allowed "
                                          f"(choose from {', '.join(UNIT_KINDS)})")
        _require(self.size >= 1, f"{where}: size = {self.size} must be >= 1")
        if self.kind == "conv":
            _require(1 <= self.kernel <= 15 and 1 <= self.stride <= self.kernel and 0 <= self.padding < self.kernel,
                     f"{where}: needs 1 <= kernel <= 15, 1 <= stride <= kernel and 0 <= padding < kernel")
            _require(self.groups >= 1 and self.size % self.groups == 0,
                     f"{where}: groups = {self.groups} must divide the {self.size} output channels")
            _require(1 <= self.pool <= 8, f"{where}: pool = {self.pool} must be in 1..8 (1: no pooling)")


@dataclass(frozen=True)
class UnitsConfig:
    """The stack of local plasticity units and the rule each one learns by."""

    SECTION = "units"
    layers: tuple[int, ...] = opt((500, 500, 500), "Widths of a stack of dense units, input to output, "
                                                   "e.g. 500,500,500 (ignored when units.stack is given)")
    stack: tuple[LayerSpec, ...] = opt((), "The units one by one, for stacks with convolutions: e.g. "
                                           "conv:50:k3:p1, conv:50:k3:p1:pool2, dense:500 (see LayerSpec)")
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
    batch_norm: bool = opt(False, "conv: batch-normalise each conv unit's output after pooling (CwComp); "
                                  "on a chip it folds into a per-channel scale and bias")
    batch_norm_at: str = opt("output", "conv, with batch_norm: output (conv, ReLU, pool, then batch norm; "
                                       "CwComp) | input (batch norm, then conv, ReLU, pool; seed 002's layer)",
                             BATCH_NORM_AT)

    def plan(self) -> tuple[LayerSpec, ...]:
        """The units in order: ``stack`` if given, else a dense unit per ``layers`` width."""
        return self.stack or tuple(LayerSpec("dense", w) for w in self.layers)

    @property
    def n_units(self) -> int:
        return len(self.plan())

    def validate(self) -> None:
        _check(self)
        _require(bool(self.layers) and all(w >= 1 for w in self.layers),
                 f"units.layers = {list(self.layers)} must be one or more positive widths")
        for i, spec in enumerate(self.stack):
            spec.validate(f"units.stack[{i + 1}]")
        kinds = [s.kind for s in self.plan()]
        _require("conv" not in kinds[kinds.index("dense"):] if "dense" in kinds else True,
                 "units.stack: conv units must come before dense units (a dense unit flattens the feature map)")
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
    schedule: str = opt("network", "network: every unit on every batch | layer: one unit after the other | "
                                   "alternate: batch t updates chunk t mod K of loop.chunk units | chunks: "
                                   "every unit on every batch, each unit's loss backpropagated inside its chunk of "
                                   "loop.chunk units, the chunks shifting by half a chunk on odd batches (seed "
                                   "002's chunked local updates; float units only)", SCHEDULES)
    chunk: int = opt(1, "alternate, chunks: consecutive units per chunk")
    unit_epochs: tuple[int, ...] = opt((), "Epochs unit i learns for, one per unit (CwComp's interleaved layer "
                                           "training, e.g. 11,16,21,25); empty: every epoch")
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
        _require(self.chunk >= 1, f"loop.chunk = {self.chunk} must be >= 1")
        _require(all(e >= 1 for e in self.unit_epochs), f"loop.unit_epochs = {list(self.unit_epochs)} must be >= 1")


@dataclass(frozen=True)
class InferenceConfig:
    """How a trained network predicts."""

    SECTION = "inference"
    head: bool = opt(True, "Train the one-pass linear softmax head")
    layers: tuple[int, ...] | None = opt(None, "1-based units summed by multi-pass inference, e.g. 2,3 "
                                               "(default: 2..L for FF, all for CFF)")
    exit_threshold: float | None = opt(None, "Early exit: a sample leaves multi-pass inference after the first "
                                             "units 1..k whose leading score beats the runner-up by this fraction "
                                             "of the scores' spread (0..1, e.g. 0.3; none: every unit runs)")

    def validate(self) -> None:
        _check(self)
        _require(self.exit_threshold is None or self.exit_threshold >= 0,
                 f"inference.exit_threshold = {self.exit_threshold} must be >= 0")


@dataclass(frozen=True)
class HardwareConfig:
    """The chip a run is trained on (none: float)."""

    SECTION = "hardware"
    profile: str | None = opt(None, "Hardware profile name or TOML path (see `ffneuro profiles list`)")
    onchip_lr: float = opt(2.0 ** -2, "Plain-SGD learning rate × fan-in of a chip without optimiser state")
    batch_rule: str = opt("sqrt", "How a chip that holds B samples before writing its weights scales the "
                                  "rate of their mean update: mean (×1), sqrt (×√B) or sum (×B, each sample "
                                  "at the per-sample rate, accumulated)", ("mean", "sqrt", "sum"))
    shadow_bits: int = opt(0, "What-if for chips whose weights are too narrow to learn: updates land on a "
                              "shadow copy of every weight this many bits wide (0: none; more than the "
                              "profile's weight_bits, at most 24) and the chip computes with the shadow "
                              "rounded to its weight_bits; the SRAM report counts the wider words")
    simulate_anyway: bool = opt(False, "Train even if the model does not fit the profile's memory")

    def validate(self) -> None:
        _check(self)
        _require(self.onchip_lr > 0, f"hardware.onchip_lr = {self.onchip_lr} must be > 0")
        _require(0 <= self.shadow_bits <= 24, f"hardware.shadow_bits = {self.shadow_bits} must be 0 (none) or "
                                              "a width above the profile's weight_bits, at most 24")


SECTIONS = {cls.SECTION: cls for cls in (DataConfig, UnitsConfig, CFFConfig, OptimConfig, LoopConfig,
                                         InferenceConfig, HardwareConfig)}
