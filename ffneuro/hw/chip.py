"""What a chip's numerics are, as the units simulate them: a profile reduced to the
numbers the fixed-point datapath and the learning rule need (``ChipSpec``), and the
table of learning rules the simulation implements.

A profile whose learning rule is not simulated is refused here, with the profile, the
key and the rules that are, rather than trained silently as something else. (No torch:
this is read by the estimator and the CLI too.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Chip learning rules the units simulate, by the profile's ``learning.optimizer`` value.
SIMULATED_RULES: dict[str, str] = {
    "sgd": "plain SGD at the learning precision: −lr·∇ in weight LSBs, rounded per the profile, "
           "clipped to ±(2^(learning_bits−1) − 1) LSBs, added with saturation (no optimiser state)",
}


class ChipRuleError(ValueError):
    """A fixed-point profile whose learning rule ffneuro does not simulate (one line)."""


@dataclass(frozen=True)
class ChipSpec:
    weight_bits: int
    weight_signed: bool
    scale_rule: str            # pow2 | per_layer | none
    activation_bits: int
    accumulator_bits: int
    learning_bits: int
    rounding: str              # nearest | stochastic
    lr_power_of_two: bool
    optimizer_state: bool
    max_batch: int
    state_bits: int = 24
    rule: str = "sgd"          # a key of SIMULATED_RULES
    batch_rule: str = "sqrt"   # mean | sqrt | sum: how a multi-sample update scales its rate
    shadow_bits: int = 0       # > weight_bits: updates land on a shadow copy this wide (0: none)

    def batch_lr(self, lr: float, samples: int) -> float:
        """The rate a chip applies to the mean gradient of ``samples`` samples: ``lr``
        (``mean``), lr·√samples (``sqrt``) or lr·samples (``sum``: each sample's update
        at the per-sample rate, accumulated before the one write).

        >>> spec = ChipSpec(8, True, "pow2", 8, 24, 8, "stochastic", True, False, 16, batch_rule="sqrt")
        >>> spec.batch_lr(0.25, 16), spec.batch_lr(0.25, 1)
        (1.0, 0.25)
        """
        return lr * {"mean": 1.0, "sqrt": math.sqrt(samples), "sum": float(samples)}[self.batch_rule]


def with_shadow(spec: ChipSpec, shadow_bits: int) -> ChipSpec:
    """``spec`` learning on a shadow copy of ``shadow_bits`` per weight (0: none), refused
    unless it is wider than the weights and at most 24 bits (the integer tables are
    float32).

    >>> spec = ChipSpec(4, True, "pow2", 8, 24, 4, "stochastic", True, False, 1)
    >>> with_shadow(spec, 8).shadow_bits
    8
    >>> with_shadow(spec, 4)
    Traceback (most recent call last):
    ...
    ValueError: hardware.shadow_bits = 4 must be 0 (no shadow) or wider than the profile's 4-bit weights, at most 24
    """
    if shadow_bits and not spec.weight_bits < shadow_bits <= 24:
        raise ValueError(f"hardware.shadow_bits = {shadow_bits} must be 0 (no shadow) or wider than the profile's "
                         f"{spec.weight_bits}-bit weights, at most 24")
    return replace(spec, shadow_bits=int(shadow_bits))


def run_chip_spec(profile, batch_rule: str = "sqrt", shadow_bits: int = 0) -> ChipSpec | None:
    """The chip a run trains on: the profile's ``chip_spec`` with the run's batch rule and
    learning shadow (``hardware.batch_rule``, ``hardware.shadow_bits``); None in float,
    where a shadow is refused (there is no weight width to shadow)."""
    spec = chip_spec(profile)
    if spec is None:
        if shadow_bits:
            raise ValueError("hardware.shadow_bits needs a fixed-point profile (--profile): a float run has no "
                             "weight width to shadow")
        return None
    return with_shadow(replace(spec, batch_rule=batch_rule), shadow_bits)


def chip_spec(profile) -> ChipSpec | None:
    """The simulation parameters of a profile; None for a float profile (no limits).

    >>> from ffneuro.hw.profiles import load_profile
    >>> chip_spec(load_profile("loihi-like")).rule
    'sgd'
    """
    if profile is None or profile.precision.format == "float":
        return None
    rule = profile.learning.optimizer
    if rule not in SIMULATED_RULES:
        raise ChipRuleError(f"{profile.path or profile.name}: learning.optimizer = {rule!r} is not simulated on a "
                            f"fixed-point chip (simulated: {', '.join(SIMULATED_RULES)})")
    p = profile.precision
    act_bits = p.activation_bits
    if act_bits == 1:                      # binary spikes: graded activity as a rate code over T steps
        act_bits = max(1, int(math.floor(math.log2(profile.streaming.time_steps + 1))))
    return ChipSpec(weight_bits=p.weight_bits, weight_signed=p.weight_signed, scale_rule=p.scale_rule,
                    activation_bits=act_bits, accumulator_bits=p.accumulator_bits,
                    learning_bits=p.learning_bits, rounding=p.rounding,
                    lr_power_of_two=profile.learning.lr_power_of_two,
                    optimizer_state=profile.learning.optimizer_state,
                    max_batch=profile.streaming.max_batch, state_bits=p.state_bits, rule=rule)
