"""The compiled chip kernels (functional/kernels.py) against the tensor code they
replace, which stays the reference: same integers, same float32 weights, same random
numbers consumed, bit for bit."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.functional import kernels, quant
from ffneuro.functional.fixed import fixed_update_, int_normalize
from ffneuro.functional.quant import FixedPoint
from ffneuro.hw.chip import chip_spec
from ffneuro.hw.profiles import load_profile
from ffneuro.rng import Streams
from ffneuro.train.loop import build_network
from ffneuro.train.step import train_step

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed (or FFNEURO_KERNELS=0)")


@pytest.fixture
def reference(monkeypatch):
    """Calls made inside ``with reference():`` take the tensor code."""
    class _Switch:
        def __enter__(self):
            monkeypatch.setattr(kernels, "AVAILABLE", False)

        def __exit__(self, *exc):
            monkeypatch.setattr(kernels, "AVAILABLE", True)
    return _Switch


@pytest.mark.parametrize("key", [0, 7, 2 ** 63 - 1])
def test_kernel_rounding_numbers_are_the_tensor_codes(key):
    want = quant.splitmix_uniforms(key, 1000)
    got = [float(kernels.uniform(np.uint64(key), k)) for k in (0, 1, 2, 500, 999)]
    assert got == [float(want[k]) for k in (0, 1, 2, 500, 999)]
    out = np.empty(1000, np.float32)
    kernels.fill_uniforms(np.uint64(key), out)
    assert out.tobytes() == want.tobytes()


def test_normalize_hand_computed():
    # s = isqrt(9 + 16) = 5; x_q = round_half_up(a · K / (2^16 · 5)) with K = 2^16 · 2
    fmt = FixedPoint(8, False, 1.0)
    q = int_normalize(torch.tensor([[3, 4], [0, 0]], dtype=torch.int64), 2 ** 17, fmt)
    assert q.tolist() == [[1, 2], [0, 0]]          # 6/5 = 1.2 → 1, 8/5 = 1.6 → 2; a zero row stays zero


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_normalize_matches_the_tensor_code(reference, signed, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-3000 if signed else 0, 3000, (7, 301), generator=g, dtype=torch.int64)
    a[2] = 0                                                       # a silent row
    a[3, 1:] = 0                                                   # one active input
    a[a.abs() < 1500] = 0                                          # sparse, as after ReLU
    fmt = FixedPoint(8, signed, 2.0 ** -5)
    gain = 1 + int(torch.randint(1, 2 ** 22, (1,), generator=g))
    with reference():
        want = int_normalize(a, gain, fmt)
    got = int_normalize(a, gain, fmt)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    assert int(want.min()) >= fmt.qmin and int(want.max()) <= fmt.qmax and bool(want.ne(0).any())


def test_normalize_refuses_overflow_like_the_tensor_code(reference):
    a = torch.tensor([[2 ** 31, 1]], dtype=torch.int64)
    fmt = FixedPoint(8, False, 1.0)
    with pytest.raises(OverflowError), reference():
        int_normalize(a, 1, fmt)
    with pytest.raises(OverflowError):
        int_normalize(a, 1, fmt)


def _spec(profile: str, **changes):
    return dataclasses.replace(chip_spec(load_profile(profile)), **changes)


@pytest.mark.parametrize("profile,changes", [
    ("loihi-like", {}), ("cmos-45nm", {}), ("cmos-45nm", {"rounding": "nearest"}),
    ("cortex-m7-int8", {"learning_bits": 3}), ("spinnaker2-like", {"lr_power_of_two": False})])
@pytest.mark.parametrize("block", [True, False])
def test_update_matches_the_tensor_code(reference, profile, changes, block):
    spec = _spec(profile, **changes)
    g = torch.Generator().manual_seed(1)
    fmt = FixedPoint(spec.weight_bits, spec.weight_signed, 2.0 ** -6)
    table0 = torch.randint(fmt.qmin, fmt.qmax + 1, (40, 30), generator=g).to(torch.float32)
    grad = torch.randn(40, 30, generator=g) * 0.1      # ~2 LSB at this rate and step
    rows = torch.tensor([0, 3, 4, 17, 39]) if block else None
    cols = torch.tensor([1, 2, 29]) if block else None
    if block:                                  # the entries outside the block are exactly zero
        mask = torch.zeros_like(grad)
        mask[rows.view(-1, 1), cols] = 1
        grad = grad * mask
    out = []
    for ref in (True, False):
        table = table0.clone()
        param = table * fmt.step
        gen = torch.Generator().manual_seed(7)
        if ref:
            with reference():
                fixed_update_(param, grad, fmt, 0.3, spec, gen, rows, cols, table)
        else:
            fixed_update_(param, grad, fmt, 0.3, spec, gen, rows, cols, table)
        out.append((table, param, gen.get_state()))
    (t_ref, p_ref, s_ref), (t, p, s) = out
    assert torch.equal(t, t_ref) and torch.equal(p, p_ref) and torch.equal(s, s_ref)
    assert not torch.equal(t, table0)                                # the update did something
    assert torch.equal(p, t * fmt.step)                              # weights stay on the grid
    if block:
        untouched = torch.ones_like(t, dtype=torch.bool)
        untouched[rows.view(-1, 1), cols] = False
        assert torch.equal(t[untouched], table0[untouched])


def _train_digest(profile: str, batch: int, steps: int) -> str:
    data = load_dataset("digits")
    cfg = RunConfig.from_flat(data="digits", layers=(60, 60), batch_size=batch)
    streams = Streams(0, 2)
    net = build_network(cfg, data, streams, chip_spec(load_profile(profile)))
    x, y = net.prepare_input(data.x_train), data.y_train
    net.calibrate(x[:256], y[:256])
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch) % x.shape[0]
        train_step(net, cfg, x[idx], y[idx], [0, 1], streams, None, batch)
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("profile,batch", [("loihi-like", 1), ("cmos-45nm", 16)])
def test_training_is_bit_identical_to_the_tensor_code(reference, profile, batch):
    with reference():
        want = _train_digest(profile, batch, 40)
    assert _train_digest(profile, batch, 40) == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_event_counts_match_the_tensor_code(reference, dtype, chunk):
    from ffneuro.hw.events import forward_events, update_events
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(10, 37, generator=g) < 0.3).to(dtype) * torch.randint(1, 9, (10, 37), generator=g).to(dtype)
    x[4] = 0                                                      # a row without input
    h = torch.relu(torch.randn(10, 21, generator=g)).to(dtype)
    with reference():
        want = (forward_events(x, h, binary_input=False), update_events(x[:5], x[5:], 21, chunk))
    got = (forward_events(x, h, binary_input=False), update_events(x[:5], x[5:], 21, chunk))
    assert got == want
    nnz = int(x.ne(0).sum())
    assert got[0]["synop_dense"] == nnz * 21 and got[0]["neuron_update_active"] == 9 * 21   # by hand


def _chip_unit(profile: str, changes: dict, width: int = 40, seed: int = 0, spec=None, inputs: int = 30):
    """A calibrated dense ReLU unit on a chip, with a batch of integer inputs."""
    from ffneuro.functional.fixed import integer_input
    from ffneuro.units.base import UnitSpec
    from ffneuro.units.dense import FFDense
    chip = _spec(profile, **changes)
    g = torch.Generator().manual_seed(seed)
    unit = FFDense(inputs, width, spec or UnitSpec(theta=float(width)), generator=g, chip=chip)
    x = integer_input((torch.rand(64, inputs, generator=g) < 0.6) * torch.rand(64, inputs, generator=g))
    unit.calibrate(x)
    return unit, x


@pytest.mark.parametrize("profile,changes", [
    ("loihi-like", {}), ("cmos-45nm", {"rounding": "nearest"}), ("cortex-m7-int8", {"scale_rule": "per_layer"}),
    ("spinnaker2-like", {"lr_power_of_two": False})])
@pytest.mark.parametrize("samples", [1, 16])
def test_dense_chip_step_matches_the_tensor_code(reference, profile, changes, samples):
    """``FFDense._chip_learn_goodness`` through the kernels and through the tensor code:
    the same activities, goodness, weights, integer tables, biases and generator state."""
    out = []
    for ref in (True, False):
        unit, x = _chip_unit(profile, changes)
        gen = torch.Generator().manual_seed(5)
        results = []
        for s in range(6):                      # consecutive steps: the cached integer tables must stay in step
            batch = x[s * 2 * samples % 64:][: 2 * samples]
            if ref:
                with reference():
                    r = unit.local_step(batch, generator=gen)
            else:
                r = unit.local_step(batch, generator=gen)
            results.append((r.h, r.g_pos, r.g_neg, r.loss))
        state = {k: v.clone() for k, v in unit.state_dict().items()}
        out.append((results, state, unit.synapse.int_weight(unit.chip).clone(),
                    unit.synapse.int_bias(unit.chip_consts().out_step).clone(), gen.get_state()))
    (res_ref, st_ref, w_ref, b_ref, gen_ref), (res, st, w, b, gen) = out
    for (h0, p0, n0, l0), (h1, p1, n1, l1) in zip(res_ref, res):
        assert torch.equal(h0, h1) and torch.equal(p0, p1) and torch.equal(n0, n1) and l0 == l1
    assert st.keys() == st_ref.keys() and all(torch.equal(st[k], st_ref[k]) for k in st)
    assert torch.equal(w, w_ref) and torch.equal(b, b_ref) and torch.equal(gen, gen_ref)
    unit, _ = _chip_unit(profile, changes)
    assert not torch.equal(unit.weight, st["synapse.weight"])            # the steps learned something
    # the tables the kernels kept in step are the weights' and biases' own codes
    c = unit.chip_consts()
    assert torch.equal(w, torch.round(st["synapse.weight"] / float(st["synapse.w_step"])))
    assert torch.equal(b, torch.round(st["synapse.bias"].double() / c.out_step))


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 64])
def test_chip_activity_by_kernel_or_blas_is_the_tensor_codes(reference, rows):
    """Up to KERNEL_PRODUCT_ROWS rows the kernel forms the product itself, beyond BLAS does:
    both give the tensor code's integers, goodness and masks."""
    from ffneuro.units.dense import KERNEL_PRODUCT_ROWS
    unit, x = _chip_unit("loihi-like", {})
    x = x[:rows]
    with reference():
        want = unit.chip_activity(x, learn=True)
    got = unit.chip_activity(x, learn=True)
    assert torch.equal(got.xq, want.xq) and torch.equal(got.h, want.h) and torch.equal(got.goodness, want.goodness)
    assert torch.equal(got.active, want.active) and torch.equal(got.nonzero, want.nonzero)
    assert got.active.numel() > 0 and KERNEL_PRODUCT_ROWS == 3


@pytest.mark.parametrize("rows", [2, 64])
def test_chip_activity_takes_float64_when_float32_is_not_exact(reference, rows):
    """With the accumulator bound past 2^24 the product runs in float64, still exactly
    (in the kernel for a few rows, by BLAS for many)."""
    unit, x = _chip_unit("loihi-like", {"weight_bits": 16, "accumulator_bits": 40}, inputs=300)
    x = x[:rows]
    with torch.no_grad():
        unit.synapse.int_weight(unit.chip).fill_(2 ** 15 - 1)           # every partial sum large
    with reference():
        want = unit.chip_activity(x, learn=True)
    got = unit.chip_activity(x, learn=True)
    assert torch.equal(got.h, want.h) and torch.equal(got.goodness, want.goodness)
    assert torch.equal(got.active, want.active) and torch.equal(got.nonzero, want.nonzero)
    assert float(want.h.max()) >= 2 ** 24                                 # the case the float32 product would round


def test_goodness_rule_learns_what_the_graph_rule_learns():
    """The closed-form step (exact goodness, dL/dz = dL/dg·2h) against the graph step
    (float32 goodness, autograd) from the same state, rounding to nearest: the same update
    but for entries whose update sits on a rounding boundary."""
    tables = []
    for rule in ("goodness", "graph"):
        unit, x = _chip_unit("cmos-45nm", {"rounding": "nearest"}, width=60)
        unit.onchip_lr = 2.0 ** 4                      # updates of several LSBs
        before = unit.synapse.int_weight(unit.chip).clone()
        if rule == "goodness":
            unit._chip_learn_goodness(x[:32], 16, None, None, None)
        else:
            unit._chip_learn(x[:32], 16, None, None, None, None)
        tables.append(unit.synapse.int_weight(unit.chip) - before)
    a, b = tables
    assert int(a.abs().sum()) > 1000                                      # a real update
    assert int((a - b).abs().max()) <= 1 and float((a != b).float().mean()) < 0.01
