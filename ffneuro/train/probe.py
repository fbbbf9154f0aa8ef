"""The entropy probe logged while training: every unit's goodness on a fixed held-out
set (positive and negative pairs), its functional entropy (SPEC §2) and each unit's
fraction of silent neurons.

Functional entropy: with h(x, y, i) = g_i(x, y) ≥ 0, the goodness of unit i (without
CFF's γ: the probe measures what each unit itself computes) and μ uniform over probe
samples × units, ``Ent_μ[h] = Ent_i[E_x h] + E_i[Ent_x h]`` (across-unit + within-unit).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ffneuro.functional.goodness import entropy_decomposition


def probe_indices(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """A subset of ``size`` of n samples (fixed for a run: drawn from its probe stream)."""
    return torch.randperm(n, generator=generator)[:min(size, n)]


class Probe(NamedTuple):
    """What one streamed pass of the probe set yields: goodness (N, L) of every layer for
    the positive and the negative pairs, and each layer's fraction of silent units."""

    g_pos: torch.Tensor
    g_neg: torch.Tensor
    silent: list[float]


def silent_fraction(h: torch.Tensor) -> float:
    """Fraction of a layer's units (the last axis) whose activity is zero on every input
    in ``h`` (N, units) or (T, N, units): dead ReLUs, or LIF neurons that never spike.
    With ``h`` = 0 a squared goodness has zero gradient, so such a unit does not recover
    on its own (peer normalisation's pull on the mean activity is what revives it).

    >>> silent_fraction(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]))
    0.3333333432674408
    """
    active = h.reshape(-1, h.shape[-1]).ne(0).any(dim=0)
    return float((~active).float().mean())


def probe_goodness(net, x: torch.Tensor, y: torch.Tensor, y_neg: torch.Tensor) -> Probe:
    """Goodness (N, L) of every layer for the positive and the negative pairs of a probe
    set, and the silent units of each layer on both, in one streamed pass (the two label
    codes travel together, as in training)."""
    n = x.shape[0]
    with torch.no_grad():
        gs, silent = [], []
        for p in net.stream(x, [y, y_neg]):
            gs.append(p.unit.goodness(p.h_out).float().cpu())
            silent.append(silent_fraction(p.h_out))
    g = torch.stack(gs, dim=1)
    return Probe(g[:n], g[n:], silent)


def entropy_record(g_pos: torch.Tensor, g_neg: torch.Tensor) -> dict[str, dict[str, float]]:
    """The across/within decomposition of the positive, negative and pooled goodness, and
    the mean goodness E_μ[h]. Ent is 1-homogeneous (Ent(c·h) = c·Ent(h)), so runs whose
    goodness has another scale compare on total / mean (= KL(ν‖μ) with ν ∝ h, in nats).
    Goodness kinds that can be negative (neg-sumsq) are shifted by their minimum so that
    h ≥ 0 as the definition requires."""
    out = {}
    for kind, g in (("positive", g_pos), ("negative", g_neg), ("both", torch.cat([g_pos, g_neg]))):
        g = g.double()
        if float(g.min()) < 0:
            g = g - g.min()
        out[kind] = {**entropy_decomposition(g), "mean": float(g.mean())}
    return out


