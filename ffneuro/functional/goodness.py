"""The maths of Forward-Forward: goodness, local losses, normalisation, entropy.

Every function here is pure (tensors in, tensors out) so it can be hand-checked in
tests and reused by the trainer, the analysis code and the golden integer model.
Shapes: ``h`` is ``(batch, units)`` (``normalize`` and the group goodness also take
feature maps ``(batch, channels, H, W)``); goodness and per-sample losses are ``(batch,)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ffneuro.config.sections import GOODNESS_KINDS, LOSS_KINDS, NORM_KINDS  # noqa: F401  (the allowed kinds)

_EPS = 1e-8


def normalize(h: torch.Tensor, kind: str = "length", eps: float = _EPS) -> torch.Tensor:
    """Remove the previous layer's goodness before handing activity on (SPEC §1).

    ``length``: ``h / (‖h‖₂ + ε)``; ``rms``: ``h / (sqrt(mean h²) + ε)``; ``none``: identity.
    The RMS form keeps activities O(1) whatever the width, which matters once they
    are quantised to a few bits.
    """
    if kind == "none":
        return h
    dims = tuple(range(1, h.dim()))
    return h / norm_factor(h.pow(2).sum(dim=dims, keepdim=True), h[0].numel(), kind, eps)


def norm_factor(sumsq: torch.Tensor, width: int, kind: str = "length", eps: float = _EPS) -> torch.Tensor:
    """The divisor ``normalize`` uses, from a vector's sum of squares and width."""
    if kind == "length":
        return sumsq.sqrt() + eps
    if kind == "rms":
        return (sumsq / width).sqrt() + eps
    if kind == "none":
        return torch.ones_like(sumsq)
    raise ValueError(f"unknown normalisation {kind!r} (allowed: {', '.join(NORM_KINDS)})")


def goodness(h: torch.Tensor, kind: str = "sumsq") -> torch.Tensor:
    """Per-sample goodness of a layer's activity.

    ``sumsq``: Σ h² (Hinton); ``meansq``: mean h² (same up to θ's scale);
    ``sum``: Σ |h| (unsquared); ``neg-sumsq``: −Σ h², the *negated* form where
    positives should have LOW activity. The sign convention is folded into the value,
    so "higher goodness = more positive" holds for every kind and the losses and
    inference never need to know which kind was used.
    """
    if kind == "sumsq":
        return h.pow(2).sum(dim=1)
    if kind == "meansq":
        return h.pow(2).mean(dim=1)
    if kind == "sum":
        return h.abs().sum(dim=1)
    if kind == "neg-sumsq":
        return -h.pow(2).sum(dim=1)
    raise ValueError(f"unknown goodness {kind!r} (allowed: {', '.join(GOODNESS_KINDS)})")


def ff_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, theta: float) -> torch.Tensor:
    """Hinton's FF loss, per sample: ``softplus(θ − g⁺) + softplus(g⁻ − θ)``.

    This is −log σ(g⁺ − θ) − log(1 − σ(g⁻ − θ)). For CFF pass ``g + γ`` (γ detached).
    """
    return F.softplus(theta - g_pos) + F.softplus(g_neg - theta)


def symba_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, alpha: float) -> torch.Tensor:
    """SymBa loss, per sample: ``softplus(−α (g⁺ − g⁻))`` — no threshold (SPEC §3)."""
    return F.softplus(-alpha * (g_pos - g_neg))


def entropy_loss(g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
    """Functional-entropy objective (SPEC §2, §5.2 of Lorberbom et al.), per sample.

    The paper leaves open how positives and negatives enter. ffneuro's formulation:
    for each input x, take the two-point space {(x, y⁺), (x, y⁻)} with μ uniform and
    the non-negative function h = (g⁺, g⁻) (goodness plus CFF's detached γ). With
    ν = hμ / E_μ[h] the goodness-weighted distribution, Ent_μ(h) = E_μ[h] · KL(ν‖μ),
    and KL(ν‖μ) = log 2 − H(ν) is largest (log 2) when all of ν's mass sits on one
    point. We want it on the positive point, so we minimise the cross-entropy of ν
    against that target: ``−log ν(x, y⁺) = −log(g⁺ / (g⁺ + g⁻))``. Its minimum is the
    entropy maximum on the correct branch; it has no sigmoid and no θ, and it is
    scale-free (multiplying all goodness by c changes nothing), so the weights do not
    grow without bound as they would maximising the 1-homogeneous Ent directly.
    Requires non-negative goodness (``sumsq``, ``meansq``, ``sum``).
    """
    lp = torch.log(g_pos.clamp_min(_EPS))
    ln = torch.log(g_neg.clamp_min(_EPS))
    return F.softplus(ln - lp)


def layer_loss(
    kind: str,
    g_pos: torch.Tensor,
    g_neg: torch.Tensor,
    *,
    theta: float,
    alpha: float,
) -> torch.Tensor:
    """Mean local loss of one layer given (possibly γ-shifted) goodness."""
    if kind == "ff":
        per_sample = ff_loss(g_pos, g_neg, theta)
    elif kind == "symba":
        per_sample = symba_loss(g_pos, g_neg, alpha)
    elif kind == "entropy":
        per_sample = entropy_loss(g_pos, g_neg)
    else:
        raise ValueError(f"unknown loss {kind!r} (allowed: {', '.join(LOSS_KINDS)})")
    return per_sample.mean()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def loss_slopes(kind: str, g_pos: np.ndarray, g_neg: np.ndarray, *, theta: float,
                alpha: float) -> tuple[float, np.ndarray, np.ndarray]:
    """``layer_loss`` and its derivatives in closed form, in float64 (numpy): (mean loss,
    dL/dg⁺ (B,), dL/dg⁻ (B,)). For a unit whose loss reads its activity only through its
    goodness, this replaces a graph and a backward pass over a handful of numbers.

    >>> loss, dp, dn = loss_slopes("ff", np.array([0.0]), np.array([0.0]), theta=0.0, alpha=4.0)
    >>> round(loss, 6), dp.tolist(), dn.tolist()       # 2·log 2, −σ(0), σ(0)
    (1.386294, [-0.5], [0.5])
    """
    b = g_pos.shape[0]
    if kind == "ff":
        per_sample = _softplus(theta - g_pos) + _softplus(g_neg - theta)
        d_pos, d_neg = -_sigmoid(theta - g_pos), _sigmoid(g_neg - theta)
    elif kind == "symba":
        m = -alpha * (g_pos - g_neg)
        per_sample = _softplus(m)
        d_pos = -alpha * _sigmoid(m)
        d_neg = -d_pos
    elif kind == "entropy":
        pos_on, neg_on = g_pos > _EPS, g_neg > _EPS
        lp, ln = np.log(np.maximum(g_pos, _EPS)), np.log(np.maximum(g_neg, _EPS))
        per_sample = _softplus(ln - lp)
        s = _sigmoid(ln - lp)
        d_pos = np.where(pos_on, -s / np.where(pos_on, g_pos, 1.0), 0.0)
        d_neg = np.where(neg_on, s / np.where(neg_on, g_neg, 1.0), 0.0)
    else:
        raise ValueError(f"unknown loss {kind!r} (allowed: {', '.join(LOSS_KINDS)})")
    return float(per_sample.mean()), d_pos / b, d_neg / b


def group_goodness(h: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel-wise goodness (seed 002 eq. 2): the channels (dim 1) of ``h`` split into
    ``groups`` contiguous groups of S = channels / groups, and
    ``G[n, j] = mean over group j's channels and all positions of h²``. For dense
    activity (N, width) the "channels" are the units. Returns (N, groups).

    >>> group_goodness(torch.tensor([[1., 3., 2., 0.]]), 2)
    tensor([[5., 2.]])
    """
    n, c = h.shape[0], h.shape[1]
    if c % groups:
        raise ValueError(f"{c} channels do not split into {groups} equal groups")
    return h.reshape(n, groups, -1).pow(2).mean(dim=2)


def competitive_loss(g: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Channel-wise competitive loss (seed 002 eq. 3, CwComp's CwC): the mean over the
    batch of ``−log softmax(G_n / τ)[y_n]``, i.e. the cross-entropy of the class groups'
    goodness against the true class. No negative data and no threshold.

    >>> round(float(competitive_loss(torch.tensor([[0., 0.]]), torch.tensor([1]))), 4)  # log 2
    0.6931
    """
    return F.cross_entropy(g / temperature, y)


def competitive_split(g: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g_pos, g_neg) of channel-wise goodness G (N, J): ``g_pos = G · Zᵀ`` (the true
    class's group) and ``g_neg`` the mean of the other groups (``G · (1 − Z)ᵀ / (J − 1)``).

    >>> competitive_split(torch.tensor([[4., 1., 3.]]), torch.tensor([0]))
    (tensor([4.]), tensor([2.]))
    """
    pos = g.gather(1, y.view(-1, 1)).view(-1)
    neg = (g.sum(dim=1) - pos) / max(g.shape[1] - 1, 1)
    return pos, neg


def peer_norm_loss(running_mean: torch.Tensor) -> torch.Tensor:
    """Hinton's peer normalisation: push each unit's mean activity to the layer mean.

    ``running_mean`` is the (units,) exponential moving average of each unit's mean
    positive activity; the loss is mean_j (mean_k m_k − m_j)².
    """
    return (running_mean.mean() - running_mean).pow(2).mean()


def functional_entropy(h: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``Ent_μ(h) = E[h log h] − E[h] log E[h]`` for h ≥ 0 under uniform μ (SPEC §2).

    Zero iff h is constant, ≥ 0 otherwise (Jensen). ``0 log 0 = 0``.
    """
    h = h.clamp_min(0)
    hlogh = torch.where(h > 0, h * torch.log(h.clamp_min(1e-30)), torch.zeros_like(h))
    if dim is None:
        m = h.mean()
        return hlogh.mean() - torch.where(m > 0, m * torch.log(m.clamp_min(1e-30)), m * 0)
    m = h.mean(dim=dim)
    mlogm = torch.where(m > 0, m * torch.log(m.clamp_min(1e-30)), torch.zeros_like(m))
    return hlogh.mean(dim=dim) - mlogm


def entropy_decomposition(g: torch.Tensor) -> dict[str, float]:
    """Split Ent over (sample, layer) into across-layer and within-layer parts.

    ``g`` is (samples, layers) of non-negative goodness; μ uniform over both. Returns
    ``total = across + within`` where across = Ent_i[E_x g(x, i)] and
    within = E_i[Ent_x g(·, i)] (the chain rule of functional entropy).
    """
    total = functional_entropy(g)
    across = functional_entropy(g.mean(dim=0))
    within = functional_entropy(g, dim=0).mean()
    return {"total": float(total), "across": float(across), "within": float(within)}
