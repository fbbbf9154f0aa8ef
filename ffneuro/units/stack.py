"""Building a stack of units from the run config: the one place that maps the configured
dynamics to a unit class (ReLU → ``FFDense``, LIF → ``FFSpiking``) and the stack's input
stage (graded units take the encoded input as it is; spiking units a spike encoder)."""

from __future__ import annotations

import torch

from ffneuro.config.sections import CFFConfig, OptimConfig, UnitsConfig
from ffneuro.functional.cff import collaborative_theta, gamma_members
from ffneuro.units.base import PassThrough, Resources, UnitSpec
from ffneuro.units.dense import FFDense
from ffneuro.units.lif import FFSpiking, LIFSpec, SpikeEncoder


def default_theta(units: UnitsConfig, width: int) -> float:
    """θ of a unit of ``width`` when the config does not give one (the unit kind's rule)."""
    if units.neuron == "lif":
        return FFSpiking.default_theta(units.goodness, width, units.steps, units.spike_goodness)
    return FFDense.default_theta(units.goodness, width)


def unit_spec(units: UnitsConfig, optim: OptimConfig, cff: CFFConfig | None, i: int) -> UnitSpec:
    """The local learning rule of unit i. With CFF (``cff`` given) θ and τ follow the
    collaboration rule (``functional.cff.collaborative_theta``)."""
    widths = units.layers
    own = units.theta if units.theta is not None else default_theta(units, widths[i])
    theta, tau = own, units.temperature
    if cff is not None:
        members = gamma_members(cff.gamma, i, len(widths))
        theta, tau = collaborative_theta(cff.theta, own, [default_theta(units, widths[j]) for j in members],
                                         units.temperature, units.theta is not None)
    return UnitSpec(norm=units.norm, goodness=units.goodness, loss=units.loss, theta=theta, alpha=units.alpha,
                    peer_norm=units.peer_norm, peer_momentum=units.peer_momentum, relu_grad=units.relu_grad,
                    optimizer=optim.optimizer, lr=optim.lr, momentum=optim.momentum,
                    weight_decay=optim.weight_decay, temperature=tau)


def build_units(units: UnitsConfig, optim: OptimConfig, cff: CFFConfig | None, in_features: int, *,
                generators: list[torch.Generator], chip=None, onchip_lr: float = 2.0 ** -2):
    """(the units, the input stage) of a stack on ``in_features`` encoded inputs; unit i
    draws its initial weights from ``generators[i]``."""
    widths = [in_features, *units.layers]
    if units.neuron == "lif":
        lif = LIFSpec(units.beta, units.spike_threshold, units.reset, units.surrogate, units.spike_learning,
                      units.spike_goodness)
        stack = [FFSpiking(widths[i], widths[i + 1], unit_spec(units, optim, cff, i), lif, generator=generators[i],
                           chip=chip, steps=units.steps, onchip_lr=onchip_lr,
                           binary_input=not (i == 0 and units.spike_encoding == "direct"))
                 for i in range(len(units.layers))]
        return stack, SpikeEncoder(units.spike_encoding, units.steps, chip)
    stack = [FFDense(widths[i], widths[i + 1], unit_spec(units, optim, cff, i), generator=generators[i], chip=chip,
                     onchip_lr=onchip_lr) for i in range(len(units.layers))]
    return stack, PassThrough()


def stack_resources(units: UnitsConfig, in_features: int) -> list[Resources]:
    """The resources of a configured stack without building its weights (for estimates
    of run dirs)."""
    gens = [torch.Generator().manual_seed(0) for _ in units.layers]
    stack, _ = build_units(units, OptimConfig(), None, in_features, generators=gens)
    return [u.resources() for u in stack]
