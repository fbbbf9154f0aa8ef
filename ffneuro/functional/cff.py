"""Collaborative FF (Lorberbom et al., AAAI 2024) as pure functions of unit indices and
thresholds: which units' goodness forms γ_i, and the θ/τ rules of a collaborating unit."""

from __future__ import annotations


def gamma_members(kind: str, i: int, n_units: int) -> list[int]:
    """J(i): the units whose frozen goodness forms γ_i (0-based indices).

    >>> gamma_members("all", 1, 3), gamma_members("earlier", 1, 3), gamma_members("later", 1, 3)
    ([0, 2], [0], [2])
    """
    if kind == "all":
        return [j for j in range(n_units) if j != i]
    if kind == "earlier":
        return list(range(i))
    if kind == "later":
        return list(range(i + 1, n_units))
    raise ValueError(f"unknown gamma {kind!r}")


def collaborative_theta(rule: str, own_theta: float, member_thetas: list[float], temperature: float,
                        theta_given: bool) -> tuple[float, float]:
    """(θ_i, τ_i) of a unit whose goodness is compared together with γ_i.

    ``sum`` (θ not given by the user): θ_i is the sum of the default θs of unit i and of
    γ's members, which keeps σ(g + γ − θ) centred at initialisation. ``own``: the unit's
    θ unchanged (the paper's γ "modifies the value of θ"). ``mean``: the collective's mean
    goodness against the own θ, (g + γ)/k − θ = (g + γ − kθ)/k with k = 1 + |members|,
    i.e. θ k times larger at a k times higher temperature.

    >>> collaborative_theta("sum", 500.0, [500.0, 500.0], 1.0, False)
    (1500.0, 1.0)
    >>> collaborative_theta("mean", 500.0, [500.0, 500.0], 2.0, True)
    (1500.0, 6.0)
    """
    if rule == "sum" and not theta_given:
        return own_theta + sum(member_thetas), temperature
    if rule == "mean":
        k = 1 + len(member_thetas)
        return own_theta * k, temperature * k
    return own_theta, temperature
