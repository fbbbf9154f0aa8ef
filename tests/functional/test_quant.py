"""Fixed-point formats and rounding against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffneuro.functional.quant import (FixedPoint, fixed_point_for, pow2_step, splitmix_uniforms, stochastic_round,
                                      uniforms)


# --- pow2_step ------------------------------------------------------------------------------

@pytest.mark.parametrize("max_abs, bits, signed, expected", [
    (0.3, 8, True, 2.0 ** -8),          # 0.3 / 2**-8 = 76.8 <= 127; 0.3 / 2**-9 = 153.6 > 127
    (1.0, 8, True, 2.0 ** -6),          # 64 <= 127, 128 > 127
    (1.0, 8, False, 2.0 ** -7),         # unsigned: 128 <= 255, 256 > 255
    (127 * 2.0 ** -8, 8, True, 2.0 ** -8),   # exactly qmax * step fits
    (128 * 2.0 ** -8, 8, True, 2.0 ** -7),   # one LSB more does not (the -128 code is not used)
    (255.0, 8, False, 1.0),             # exactly qmax in integer units
    (256.0, 8, False, 2.0),
    (3.0, 2, True, 4.0),                # 2-bit signed: qmax = 1 -> 3 / 4 = 0.75 <= 1, 3 / 2 = 1.5 > 1
    (1000.0, 16, True, 2.0 ** -5),      # 1000 / 2**-5 = 32000 <= 32767; 64000 > 32767
])
def test_pow2_step_hand_computed(max_abs, bits, signed, expected):
    assert pow2_step(max_abs, bits, signed) == expected


def test_pow2_step_just_above_boundary_moves_up():
    fits = 127 * 2.0 ** -8
    assert pow2_step(fits, 8, True) == 2.0 ** -8
    assert pow2_step(fits * (1 + 1e-12), 8, True) == 2.0 ** -7


def test_pow2_step_zero_and_bad_input():
    assert pow2_step(0.0, 8, True) == 1.0
    with pytest.raises(ValueError):
        pow2_step(-1.0, 8, True)
    with pytest.raises(ValueError):
        pow2_step(float("nan"), 8, True)
    with pytest.raises(ValueError):
        pow2_step(1.0, 1, True)          # 1-bit signed has no positive code


# --- FixedPoint -----------------------------------------------------------------------------

def test_fixed_point_ranges_and_exponent():
    fp = FixedPoint(8, True, 2.0 ** -8)
    assert (fp.qmin, fp.qmax, fp.exponent) == (-128, 127, -8)
    fu = FixedPoint(4, False, 0.1)
    assert (fu.qmin, fu.qmax, fu.exponent) == (0, 15, None)
    assert FixedPoint(1, False, 1.0).qmax == 1
    with pytest.raises(ValueError):
        FixedPoint(0, True, 1.0)
    with pytest.raises(ValueError):
        FixedPoint(8, True, 0.0)


def test_to_int_nearest_and_saturation():
    fp = FixedPoint(8, True, 0.5)
    x = torch.tensor([0.0, 0.2, 0.3, 0.25, -0.25, 1.24, 63.5, 64.0, 1000.0, -64.0, -64.5, -1e9])
    q = fp.to_int(x)
    assert q.dtype == torch.int32
    # 0.25/0.5 = 0.5 -> 1 (half up); -0.5 -> 0; 1.24/0.5 = 2.48 -> 2; 127 and beyond saturate
    assert q.tolist() == [0, 0, 1, 1, 0, 2, 127, 127, 127, -128, -128, -128]
    assert fp.to_int(torch.tensor([float("inf"), float("-inf")])).tolist() == [127, -128]
    with pytest.raises(ValueError):
        fp.to_int(torch.tensor([float("nan")]))


def test_to_int_unsigned_clamps_negative_to_zero():
    fp = FixedPoint(4, False, 1.0)
    assert fp.to_int(torch.tensor([-3.0, 2.6, 20.0])).tolist() == [0, 3, 15]


def test_round_trip_on_grid():
    fp = FixedPoint(8, True, 2.0 ** -8)
    codes = torch.arange(-128, 128, dtype=torch.int32)
    x = fp.to_float(codes)
    assert torch.equal(fp.to_int(x), codes)
    assert torch.equal(fp.to_float(fp.to_int(x)), x)
    assert torch.equal(fp.fake_quant(x), x)
    # stochastic rounding leaves grid values untouched too
    assert torch.equal(fp.to_int(x, "stochastic", torch.Generator().manual_seed(0)), codes)


def test_fake_quant_values_and_dtype():
    fp = FixedPoint(8, True, 2.0 ** -8)
    x = torch.tensor([0.3, -0.3], dtype=torch.float32)
    y = fp.fake_quant(x)
    assert y.dtype == torch.float32
    assert y.tolist() == [77 / 256, -77 / 256]      # 76.8 -> 77, -76.8 -> -77


def test_wide_formats_use_int64():
    fp = FixedPoint(40, True, 1.0)
    assert fp.int_dtype == torch.int64
    assert fp.to_int(torch.tensor([2.0 ** 35], dtype=torch.float64)).item() == 2 ** 35


def test_bad_rounding_name():
    with pytest.raises(ValueError):
        FixedPoint(8, True, 1.0).to_int(torch.zeros(1), rounding="floor")


# --- stochastic rounding --------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.3, -1.7])
def test_stochastic_round_unbiased(value):
    g = torch.Generator().manual_seed(1234)
    r = stochastic_round(torch.full((100_000,), value, dtype=torch.float64), g)
    lo = torch.floor(torch.tensor(value)).item()
    assert set(r.unique().tolist()) <= {lo, lo + 1}
    assert abs(r.mean().item() - value) < 0.005


def test_stochastic_round_deterministic_with_seed():
    x = torch.linspace(-3, 3, 1000)
    a = stochastic_round(x, torch.Generator().manual_seed(7))
    b = stochastic_round(x, torch.Generator().manual_seed(7))
    c = stochastic_round(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def _splitmix64(state: int, n: int) -> list[int]:
    """SplitMix64 written out from its definition (Python integers, masked to 64 bits)."""
    out, mask = [], 2 ** 64 - 1
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize("key", [0, 1, 2 ** 62 + 12345, 2 ** 63 - 1])
def test_rounding_numbers_are_splitmix64s_top_bits(key):
    z = _splitmix64(key, 64)
    assert z[0] != z[1]
    assert splitmix_uniforms(key, 64).tolist() == [(v >> 40) / 2 ** 24 for v in z]
    assert splitmix_uniforms(key, 64, torch.float64).tolist() == [(v >> 11) / 2 ** 53 for v in z]
    assert splitmix_uniforms(key, 64).dtype == np.float32


def test_a_rounding_call_takes_one_draw_from_its_generator():
    g, twin = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    key = int(torch.empty((), dtype=torch.int64).random_(generator=twin))
    u = uniforms((3, 4), g, torch.float32, torch.device("cpu"))
    assert torch.equal(g.get_state(), twin.get_state())
    assert u.shape == (3, 4) and u.dtype == torch.float32
    assert u.view(-1).tolist() == splitmix_uniforms(key, 12).tolist()
    uniforms((0,), g, torch.float32, torch.device("cpu"))        # an empty call still takes its key
    torch.empty((), dtype=torch.int64).random_(generator=twin)
    assert torch.equal(g.get_state(), twin.get_state())


def test_rounding_numbers_are_uniform_and_independent_across_calls():
    g = torch.Generator().manual_seed(0)
    u = torch.cat([uniforms((5000,), g, torch.float64, torch.device("cpu")) for _ in range(20)])
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert float(((counts - 10_000) ** 2 / 10_000).sum()) < 27.9          # χ², 9 dof, p = 0.001
    a, b = u[:-1] - 0.5, u[1:] - 0.5
    assert abs(float((a * b).mean()) * 12) < 0.02                       # lag-1 correlation
    first = [uniforms((4,), torch.Generator().manual_seed(s), torch.float32, torch.device("cpu")) for s in (1, 2)]
    assert not torch.equal(first[0], first[1])


def test_stochastic_to_int_unbiased_in_lsb_units():
    fp = FixedPoint(8, True, 2.0 ** -4)
    x = torch.full((100_000,), 0.3 * 2.0 ** -4)          # 0.3 LSB
    q = fp.to_int(x, "stochastic", torch.Generator().manual_seed(3))
    assert abs(q.double().mean().item() - 0.3) < 0.005


# --- fixed_point_for ------------------------------------------------------------------------

def test_fixed_point_for_rules():
    x = torch.tensor([0.1, -0.3, 0.2])
    assert fixed_point_for(x, 8, True, "pow2") == FixedPoint(8, True, 2.0 ** -8)
    per_layer = fixed_point_for(x, 8, True, "per_layer")
    assert per_layer.step == pytest.approx(0.3 / 127, rel=1e-7)
    assert per_layer.to_int(torch.tensor([-0.3])).item() == -127
    assert fixed_point_for(x, 8, True, "none") == FixedPoint(8, True, 1.0)
    assert fixed_point_for(torch.zeros(3), 8, True, "pow2").step == 1.0
    assert fixed_point_for(torch.zeros(3), 8, True, "per_layer").step == 1.0
    with pytest.raises(ValueError):
        fixed_point_for(x, 8, True, "log")


@pytest.mark.parametrize("c,o,k,size,groups", [(3, 50, 3, 32, 1), (50, 50, 3, 32, 1), (50, 50, 4, 16, 1),
                                               (20, 80, 3, 16, 10), (80, 240, 3, 16, 1)])
def test_int_conv2d_is_exact_on_the_float32_route(c, o, k, size, groups):
    """The float32 route of int_conv2d (taken below the 2^24 bound) equals float64 exactly
    on the shapes of the shipped conv presets, at the largest values the bound allows."""
    from ffneuro.functional.fixed import int_conv2d
    g = torch.Generator().manual_seed(c * o + k)
    fan_in = c // groups * k * k
    x_max = (2 ** 24 - 1) // (127 * fan_in)
    x = torch.randint(0, min(x_max, 255) + 1, (4, c, size, size), generator=g).float()
    w = torch.randint(-127, 128, (o, c // groups, k, k), generator=g).float()
    exact = torch.nn.functional.conv2d(x.double(), w.double(), None, 1, 1, 1, groups)
    assert torch.equal(int_conv2d(x, w, 128, 1, 1, groups), exact)
