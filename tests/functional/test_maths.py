"""Hand-checked values for the pure maths: goodness, losses, normalisation, entropy."""

import math

import pytest
import torch

from ffneuro.functional.goodness import (entropy_decomposition, entropy_loss, ff_loss, functional_entropy, goodness,
                              layer_loss, normalize, peer_norm_loss, symba_loss)
from ffneuro.train.schedules import lr_factor

H = torch.tensor([[1.0, 2.0], [0.0, 3.0]])


@pytest.mark.parametrize("kind,expected", [
    ("sumsq", [5.0, 9.0]), ("meansq", [2.5, 4.5]), ("sum", [3.0, 3.0]), ("neg-sumsq", [-5.0, -9.0])])
def test_goodness_hand_values(kind, expected):
    assert goodness(H, kind).tolist() == expected


def test_goodness_unknown_kind():
    with pytest.raises(ValueError, match="unknown goodness"):
        goodness(H, "cube")


def test_ff_loss_hand_value():
    # softplus(θ − g⁺) + softplus(g⁻ − θ) with g⁺=3, g⁻=1, θ=2 → 2·log(1 + e^−1)
    got = ff_loss(torch.tensor([3.0]), torch.tensor([1.0]), 2.0)
    assert got.item() == pytest.approx(2 * math.log1p(math.exp(-1)), abs=1e-6)


def test_symba_loss_hand_value():
    got = symba_loss(torch.tensor([3.0]), torch.tensor([1.0]), 4.0)
    assert got.item() == pytest.approx(math.log1p(math.exp(-8)), rel=1e-5)


def test_entropy_loss_hand_value_and_scale_free():
    gp, gn = torch.tensor([3.0]), torch.tensor([1.0])
    assert entropy_loss(gp, gn).item() == pytest.approx(-math.log(3 / 4), abs=1e-6)
    assert entropy_loss(10 * gp, 10 * gn).item() == pytest.approx(entropy_loss(gp, gn).item(), abs=1e-6)


def test_layer_loss_dispatch_and_gamma_shift():
    gp, gn = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])
    assert layer_loss("ff", gp, gn, theta=2.0, alpha=4.0).item() == pytest.approx(ff_loss(gp, gn, 2.0).mean().item())
    # adding γ to both and θ by the same amount leaves the FF loss unchanged
    shifted = layer_loss("ff", gp + 5, gn + 5, theta=7.0, alpha=4.0)
    assert shifted.item() == pytest.approx(ff_loss(gp, gn, 2.0).mean().item(), abs=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        layer_loss("hinge", gp, gn, theta=1.0, alpha=1.0)


def test_normalize():
    x = torch.tensor([[3.0, 4.0]])
    assert normalize(x, "length")[0].tolist() == pytest.approx([0.6, 0.8], abs=1e-6)
    rms = math.sqrt((9 + 16) / 2)
    assert normalize(x, "rms")[0].tolist() == pytest.approx([3 / rms, 4 / rms], abs=1e-6)
    assert torch.equal(normalize(x, "none"), x)


def test_peer_norm_loss():
    m = torch.tensor([1.0, 3.0])   # layer mean 2 → mean of (1, 1) = 1
    assert peer_norm_loss(m).item() == pytest.approx(1.0)


def test_functional_entropy_hand_value():
    h = torch.tensor([1.0, 3.0])
    expected = (3 * math.log(3)) / 2 - 2 * math.log(2)
    assert functional_entropy(h).item() == pytest.approx(expected, abs=1e-6)
    assert functional_entropy(torch.full((5,), 2.0)).item() == pytest.approx(0.0, abs=1e-7)


def test_entropy_decomposition_chain_rule():
    g = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 5.0])
    d = entropy_decomposition(g)
    assert d["total"] == pytest.approx(d["across"] + d["within"], rel=1e-5)
    assert d["across"] > 0 and d["within"] > 0


def test_lr_schedules():
    assert [lr_factor(e, 4, "linear-decay") for e in range(4)] == [1.0, 1.0, 1.0, 0.5]
    assert [lr_factor(e, 5, "multistep", (2, 4), 0.1) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert lr_factor(3, 10, "constant") == 1.0
