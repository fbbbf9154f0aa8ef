"""Building a stack of units from the run config: the one place that maps the configured
synapse and dynamics to a unit class (dense ReLU → ``FFDense``, conv ReLU → ``FFConv``,
LIF behind either synapse → ``FFSpiking``) and the stack's input stage (graded units take the
encoded input as it is; spiking units a spike encoder)."""

from __future__ import annotations

import math

import torch

from ffneuro.config.sections import CFFConfig, ConfigError, LayerSpec, OptimConfig, UnitsConfig
from ffneuro.functional.cff import collaborative_theta, gamma_members
from ffneuro.units.base import PassThrough, Resources, UnitSpec
from ffneuro.units.conv import FFConv
from ffneuro.units.dense import FFDense
from ffneuro.units.lif import ConvGeometry, FFSpiking, LIFSpec, SpikeEncoder


def unit_shapes(plan: tuple[LayerSpec, ...], in_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The activity shape of one sample before and after every unit: ``[in_shape, out_1, …]``
    (a conv unit's (C, H', W'), a dense unit's (width,)).

    >>> unit_shapes((LayerSpec("conv", 8, kernel=3, padding=1, pool=2), LayerSpec("dense", 10)), (3, 32, 32))
    [(3, 32, 32), (8, 16, 16), (10,)]
    """
    shapes = [tuple(in_shape)]
    for i, spec in enumerate(plan):
        if spec.kind == "conv":
            if len(shapes[-1]) != 3:
                raise ConfigError(f"units.stack[{i + 1}]: a conv unit needs image input (channels, height, width), "
                                  f"not samples of shape {shapes[-1]}")
            c, h, w = shapes[-1]
            ho, wo = ((s + 2 * spec.padding - spec.kernel) // spec.stride + 1 for s in (h, w))
            if ho < spec.pool or wo < spec.pool:
                raise ConfigError(f"units.stack[{i + 1}] ({spec.text()}) does not fit input maps of {h}x{w}")
            if c % spec.groups:
                raise ConfigError(f"units.stack[{i + 1}]: groups = {spec.groups} must divide its {c} input channels")
            shapes.append((spec.size, ho // spec.pool, wo // spec.pool))
        else:
            shapes.append((spec.size,))
    return shapes


def widths(units: UnitsConfig, in_shape: tuple[int, ...]) -> list[int]:
    """Outputs per sample of every unit (a conv unit's C·H'·W')."""
    return [math.prod(s) for s in unit_shapes(units.plan(), in_shape)[1:]]


def default_theta(units: UnitsConfig, spec: LayerSpec, width: int) -> float:
    """θ of a unit of ``width`` outputs when the config does not give one (the unit kind's rule)."""
    if units.neuron == "lif":
        return FFSpiking.default_theta(units.goodness, width, units.steps, units.spike_goodness)
    if spec.kind == "conv":
        return FFConv.default_theta(units.goodness, width)
    return FFDense.default_theta(units.goodness, width)


def unit_spec(units: UnitsConfig, optim: OptimConfig, cff: CFFConfig | None, i: int,
              in_shape: tuple[int, ...] = (784,), classes: int = 10) -> UnitSpec:
    """The local learning rule of unit i. With CFF (``cff`` given) θ and τ follow the
    collaboration rule (``functional.cff.collaborative_theta``)."""
    plan = units.plan()
    outs = widths(units, in_shape)
    own = units.theta if units.theta is not None else default_theta(units, plan[i], outs[i])
    theta, tau = own, units.temperature
    if cff is not None:
        members = gamma_members(cff.gamma, i, len(plan))
        theta, tau = collaborative_theta(cff.theta, own, [default_theta(units, plan[j], outs[j]) for j in members],
                                         units.temperature, units.theta is not None)
    return UnitSpec(norm=units.norm, goodness=units.goodness, loss=units.loss, theta=theta, alpha=units.alpha,
                    peer_norm=units.peer_norm, peer_momentum=units.peer_momentum, relu_grad=units.relu_grad,
                    optimizer=optim.optimizer, lr=optim.lr, momentum=optim.momentum,
                    weight_decay=optim.weight_decay, temperature=tau, classes=classes)


def lif_spec(units: UnitsConfig) -> LIFSpec:
    return LIFSpec(units.beta, units.spike_threshold, units.reset, units.surrogate, units.spike_learning,
                   units.spike_goodness)


def check_competition(units: UnitsConfig, in_shape: tuple[int, ...], classes: int) -> None:
    """The competitive loss splits every unit's channels (a dense unit's neurons) into one
    group per class."""
    if units.loss != "cwc":
        return
    for i, shape in enumerate(unit_shapes(units.plan(), in_shape)[1:]):
        if shape[0] % classes:
            raise ConfigError(f"units.loss = 'cwc': unit {i + 1} has {shape[0]} channels, which do not split into "
                              f"{classes} equal class groups")


def build_units(units: UnitsConfig, optim: OptimConfig, cff: CFFConfig | None, in_shape: tuple[int, ...] | int, *,
                generators: list[torch.Generator], chip=None, onchip_lr: float = 2.0 ** -2, classes: int = 10):
    """(the units, the input stage) of a stack on inputs of ``in_shape`` (one encoded
    sample: (features,) or (channels, H, W)); unit i draws its initial weights from
    ``generators[i]``."""
    in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    plan = units.plan()
    shapes = unit_shapes(plan, in_shape)
    check_competition(units, in_shape, classes)
    if units.neuron == "lif" and any(s.kind == "conv" for s in plan):
        if units.spike_learning != "bptt":
            raise ConfigError("spiking conv units learn by bptt only (units.spike_learning = bptt): the "
                              "eligibility traces are per synapse of a dense unit")
        if units.batch_norm:
            raise ConfigError("units.batch_norm normalises graded conv outputs: spiking conv units have none")
    if chip is not None and units.batch_norm:
        raise ConfigError("units.batch_norm has no fixed-point training form (it needs batch statistics): under a "
                          "profile set units.batch_norm = false and units.norm = rms")
    if units.batch_norm and not any(s.kind == "conv" for s in plan):
        raise ConfigError("units.batch_norm normalises conv units' outputs: the stack has no conv unit")

    def spec(i: int) -> UnitSpec:
        return unit_spec(units, optim, cff, i, in_shape, classes)

    stack = []
    for i, layer in enumerate(plan):
        n_in = math.prod(shapes[i])
        if layer.kind == "conv" and units.neuron == "lif":
            geometry = ConvGeometry(shapes[i], kernel=layer.kernel, stride=layer.stride, padding=layer.padding,
                                    groups=layer.groups, pool=layer.pool)
            unit = FFSpiking(n_in, layer.size, spec(i), lif_spec(units), generator=generators[i], chip=chip,
                             steps=units.steps, onchip_lr=onchip_lr,
                             binary_input=not (i == 0 and units.spike_encoding == "direct"), conv=geometry)
        elif layer.kind == "conv":
            unit = FFConv(shapes[i], layer.size, spec(i), generator=generators[i], kernel=layer.kernel,
                          stride=layer.stride, padding=layer.padding, groups=layer.groups, pool=layer.pool,
                          batch_norm=units.batch_norm and units.batch_norm_at, chip=chip, onchip_lr=onchip_lr)
        elif units.neuron == "lif":
            unit = FFSpiking(n_in, layer.size, spec(i), lif_spec(units), generator=generators[i], chip=chip,
                             steps=units.steps,
                             onchip_lr=onchip_lr, binary_input=not (i == 0 and units.spike_encoding == "direct"))
        else:
            unit = FFDense(n_in, layer.size, spec(i), generator=generators[i], chip=chip, onchip_lr=onchip_lr)
        stack.append(unit)
    if units.neuron == "lif":
        return stack, SpikeEncoder(units.spike_encoding, units.steps, chip)
    return stack, PassThrough()


def stack_resources(units: UnitsConfig, in_shape: tuple[int, ...] | int) -> list[Resources]:
    """The resources of a configured stack without building its weights (for estimates
    of run dirs)."""
    gens = [torch.Generator().manual_seed(0) for _ in units.plan()]
    stack, _ = build_units(units, OptimConfig(), None, in_shape, generators=gens)
    return [u.resources() for u in stack]
