"""Spiking maths as pure functions: the spike encoders of the data path and the LIF
neuron step with its surrogate slopes (SPEC §4). A spike train is a tensor
``(T, N, features)`` of 0/1 values: T time steps, N samples.

Encoders (data x in [0, 1], (N, D) → (T, N, D)): ``rate`` (Bernoulli spikes with
probability x at every step, seeded), ``latency`` (one spike per non-zero input at step
round((1 − x)(T − 1))), ``direct`` (the value itself at every step, a constant current).
"""

from __future__ import annotations

import math

import torch

from ffneuro.config.sections import SPIKE_ENCODINGS, SPIKE_GOODNESS


# ----------------------------------------------------------------------------------------
# Encoders (the data path, not the layer)
# ----------------------------------------------------------------------------------------
def rate_encode(x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli spikes: P(spike at any step) = clamp(x, 0, 1). (N, D) → (T, N, D)."""
    u = torch.rand((steps, *x.shape), generator=generator).to(x.device)
    return (u < x.clamp(0, 1)).to(x.dtype)


def latency_encode(x: torch.Tensor, steps: int) -> torch.Tensor:
    """One spike per input with x > 0, at step round((1 − x)(T − 1)): brighter is earlier."""
    t = torch.round((1 - x.clamp(0, 1)) * (steps - 1)).long()
    out = torch.zeros((steps, *x.shape), dtype=x.dtype, device=x.device)
    out.scatter_(0, t.unsqueeze(0), (x > 0).to(x.dtype).unsqueeze(0))
    return out


def direct_encode(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The input as a constant current at every step."""
    return x.unsqueeze(0).expand(steps, *x.shape).contiguous()


def encode(kind: str, x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "rate":
        return rate_encode(x, steps, generator)
    if kind == "latency":
        return latency_encode(x, steps)
    if kind == "direct":
        return direct_encode(x, steps)
    raise ValueError(f"unknown spike encoding {kind!r} (allowed: {', '.join(SPIKE_ENCODINGS)})")


def rates(s: torch.Tensor) -> torch.Tensor:
    """Firing rates (N, units) of a spike train (T, N, units)."""
    return s.mean(dim=0)


def spike_activity(s: torch.Tensor, on: str) -> torch.Tensor:
    """What a spiking layer's goodness is computed on, (N, units): firing rates mean_t S
    (``on = "rate"``) or spike counts Σ_t S (``"count"``) of a spike train (T, N, units).

    >>> spike_activity(torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]]), "count").tolist()
    [[2.0, 1.0]]
    """
    if on == "rate":
        return rates(s)
    if on == "count":
        return s.sum(dim=0)
    raise ValueError(f"unknown spike goodness {on!r} (allowed: {', '.join(SPIKE_GOODNESS)})")


# ----------------------------------------------------------------------------------------
# The neuron, as pure functions
# ----------------------------------------------------------------------------------------
FAST_SIGMOID_SLOPE = 25.0  # slope k of the fast-sigmoid surrogate ψ(v) = 1 / (1 + k|v|)² (snntorch's default)
ATAN_ALPHA = 2.0           # α of snntorch's arctan surrogate ψ(v) = (α/2) / (1 + (π α v / 2)²)


def heaviside(v: torch.Tensor) -> torch.Tensor:
    """The spike nonlinearity H(v) = 1 if v > 0 else 0 (snntorch's convention), no gradient."""
    return (v > 0).to(v.dtype)


def lif_step(mem: torch.Tensor, current: torch.Tensor, beta: float, threshold: float, reset: str,
             spike_fn=heaviside) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: state U[t−1] and input current I[t] (N, units) → (S[t], U[t])::

        U'[t] = β · U[t−1] + I[t]
        S[t]  = spike_fn(U'[t] − θ)                      (H, or a surrogate with a gradient)
        U[t]  = U'[t] · (1 − S[t])   (reset "zero")  |  U'[t] − S[t] · θ   (reset "subtract")

    For ``reset = "zero"`` this is exactly snntorch's ``Leaky(reset_delay=False)`` (tested).
    For ``"subtract"`` snntorch differs when U[t] stays ≥ θ after the subtraction (an input
    above θ per step): its next step subtracts θ once more before deciding to spike, so it
    fires less than this equation; ffneuro uses this equation (the one its integer LIF and
    the golden model implement).

    >>> lif_step(torch.tensor([0.5]), torch.tensor([0.7]), 0.8, 1.0, "subtract")
    (tensor([1.]), tensor([0.1000]))
    """
    u = beta * mem + current
    spk = spike_fn(u - threshold)
    return spk, (u - spk * threshold) if reset == "subtract" else u * (1 - spk)


def surrogate_slope(v: torch.Tensor, kind: str) -> torch.Tensor:
    """ψ(v) = dS/dU' of the surrogate at v = U' − θ, as snntorch's backward computes it."""
    if kind == "fast_sigmoid":
        return 1.0 / (1.0 + FAST_SIGMOID_SLOPE * v.abs()) ** 2
    if kind == "atan":
        return (ATAN_ALPHA / 2) / (1 + (math.pi / 2 * ATAN_ALPHA * v) ** 2)
    raise ValueError(f"unknown surrogate {kind!r}")


