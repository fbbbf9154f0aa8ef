"""The closed-form loss derivatives (``loss_slopes``, ``unit_loss_slopes``) against
autograd on the tensor losses they stand for."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ffneuro.units.base import UnitSpec, unit_loss, unit_loss_slopes


@pytest.mark.parametrize("loss", ["ff", "symba", "entropy"])
@pytest.mark.parametrize("gamma", [False, True])
@pytest.mark.parametrize("tau", [1.0, 7.5])
def test_slopes_match_autograd(loss, gamma, tau):
    rng = np.random.default_rng(0)
    spec = dataclasses.replace(UnitSpec(theta=40.0, alpha=0.3, temperature=tau), loss=loss)
    g_pos, g_neg = rng.uniform(0, 90, 9), rng.uniform(0, 90, 9)
    g_neg[3] = 0.0                                          # a silent sample (entropy: log clamps)
    gp, gn = (rng.uniform(0, 30, 9), rng.uniform(0, 30, 9)) if gamma else (None, None)
    loss_value, d_pos, d_neg = unit_loss_slopes(spec, g_pos, g_neg, gp, gn)
    tp, tn = torch.tensor(g_pos, requires_grad=True), torch.tensor(g_neg, requires_grad=True)
    want = unit_loss(spec, tp, tn, None if gp is None else torch.tensor(gp), None if gn is None else torch.tensor(gn))
    want.backward()
    assert loss_value == pytest.approx(float(want.detach()), rel=1e-12)
    np.testing.assert_allclose(d_pos, tp.grad.numpy(), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(d_neg, tn.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_slopes_are_stable_far_from_the_threshold():
    spec = UnitSpec(theta=0.0)
    loss, d_pos, d_neg = unit_loss_slopes(spec, np.array([1e4, -1e4]), np.array([-1e4, 1e4]))
    assert np.isfinite(loss) and np.all(np.isfinite(d_pos)) and np.all(np.isfinite(d_neg))
    assert d_pos.tolist() == [-0.0, -0.5] and d_neg.tolist() == [0.0, 0.5]   # σ saturates at 0 and 1, over B = 2
    assert loss == pytest.approx(1e4)                                          # the wrong sample's softplus, / 2 · 2
