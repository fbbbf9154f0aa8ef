"""Fixed-point formats and rounding, as pure functions on tensors.

A fixed-point number is an integer ``q`` in ``[qmin, qmax]`` times a step (the value of one
LSB): ``x ≈ q · step``. Signed formats use two's complement: ``[-2**(b-1), 2**(b-1) - 1]``;
unsigned ``[0, 2**b - 1]``. Conversions saturate (clamp) instead of wrapping, as the
accumulators of neuromorphic chips do.

Rounding:

- ``"nearest"``: round half up, ``floor(y + 0.5)`` — what hardware does by adding half an LSB
  before truncating (so 0.5 → 1, -0.5 → 0, 2.5 → 3).
- ``"stochastic"``: ``floor(y + u)``, ``u ~ U[0, 1)`` — unbiased (E[round(y)] = y), which keeps
  weight updates smaller than one LSB alive on average. Deterministic given a seeded generator.

The random numbers of stochastic rounding come from a counter-based generator, as a chip's
hardware PRNG would supply them: each rounding call takes one 63-bit key from the unit's
torch generator, and its k-th number (row-major order of the entries rounded) is SplitMix64's
output function of ``key + (k + 1)·γ`` (Steele, Lea & Flood, OOPSLA 2014), its top 24 bits
(float32) or 53 bits (float64) scaled to [0, 1). Any entry's number is a function of (key, k)
alone, so the compiled kernels (``functional/kernels.py``) make them on the fly instead of
reading a stored array, and a rounding call costs one draw from the torch generator.

Arithmetic is done in float64, so conversions are exact for formats up to 53 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ROUNDINGS = ("nearest", "stochastic")
SCALE_RULES = ("pow2", "per_layer", "none")


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def pow2_step(max_abs: float, bits: int, signed: bool) -> float:
    """Smallest power-of-two step ``2**e`` with ``max_abs / 2**e <= qmax``.

    ``qmax`` is ``2**(bits-1) - 1`` (signed) or ``2**bits - 1`` (unsigned), so ``max_abs`` is
    representable without saturation (the extra negative code of two's complement is not
    relied on). Example: 0.3 in 8-bit signed → 2**-8 (0.3 / 2**-8 = 76.8 <= 127, while
    0.3 / 2**-9 = 153.6 > 127). ``max_abs == 0`` returns 1.0 (every step represents 0).
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits = {bits} is out of range (allowed 1..64)")
    if not math.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"max_abs = {max_abs} must be a finite number >= 0")
    _, qmax = _int_range(bits, signed)
    if qmax < 1:
        raise ValueError("a 1-bit signed format has no positive value: use bits >= 2 or signed = False")
    if max_abs == 0:
        return 1.0
    exp = math.ceil(math.log2(max_abs / qmax))
    # log2 may be off by one ulp near exact powers of two: settle the boundary exactly
    # (scaling by 2**e is exact in binary floating point).
    while math.ldexp(max_abs, -exp) > qmax:
        exp += 1
    while math.ldexp(max_abs, -(exp - 1)) <= qmax:
        exp -= 1
    return math.ldexp(1.0, exp)


SPLITMIX_GAMMA = 0x9E3779B97F4A7C15          # SplitMix64's Weyl increment and output multipliers
SPLITMIX_M1 = 0xBF58476D1CE4E5B9
SPLITMIX_M2 = 0x94D049BB133111EB


def rounding_key(generator: torch.Generator | None, count: int) -> int:
    """The key of one rounding call that will use ``count`` random numbers: one draw from
    ``generator`` (the default generator if None), in [0, 2^63). Every rounding call of the
    chip simulation takes its key here."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.empty((), dtype=torch.int64, device=device).random_(generator=generator))


def splitmix_uniforms(key: int, count: int, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """The ``count`` numbers u ~ U[0, 1) of the rounding call with ``key`` (see the module
    docstring): float64 multiples of 2^-53 for ``dtype`` float64, else float32 multiples
    of 2^-24.

    >>> splitmix_uniforms(0, 3).tolist()      # SplitMix64 from seed 0: 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, ...
    [0.8833107948303223, 0.4315279722213745, 0.02643376588821411]
    """
    z = np.uint64(key) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(SPLITMIX_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX_M2)
    z ^= z >> np.uint64(31)
    if dtype == torch.float64:
        return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def uniforms(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
             device: torch.device) -> torch.Tensor:
    """The uniform numbers u ~ U[0, 1) that stochastic rounding adds, for entries of
    ``shape`` in row-major order: one rounding call (``rounding_key``, then
    ``splitmix_uniforms``), on ``device``."""
    count = math.prod(shape)
    u = splitmix_uniforms(rounding_key(generator, count), count, dtype)
    return torch.from_numpy(u).reshape(shape).to(device=device, dtype=dtype)


def stochastic_round(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``floor(x + u)``, ``u ~ U[0, 1)`` elementwise: unbiased rounding to integers (same dtype as x)."""
    if not x.is_floating_point():
        return x.clone()
    return uniforms(x.shape, generator, x.dtype, x.device).add_(x).floor_()


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point format: ``bits`` (1..64), ``signed``, and ``step`` (value of one LSB, > 0)."""

    bits: int
    signed: bool
    step: float

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 64:
            raise ValueError(f"bits = {self.bits!r} is out of range (allowed 1..64)")
        if self.bits == 64 and not self.signed:
            raise ValueError("unsigned 64-bit is not supported (int64 tensors); use 63 bits or signed")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step = {self.step!r} must be a finite number > 0")

    @property
    def qmin(self) -> int:
        return _int_range(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return _int_range(self.bits, self.signed)[1]

    @property
    def exponent(self) -> int | None:
        """``log2(step)`` if the step is a power of two, else None."""
        mantissa, exp = math.frexp(self.step)
        return exp - 1 if mantissa == 0.5 else None

    @property
    def int_dtype(self) -> torch.dtype:
        """int32 when the range fits, else int64."""
        return torch.int32 if self.qmin >= -(2 ** 31) and self.qmax <= 2 ** 31 - 1 else torch.int64

    def to_int(self, x: torch.Tensor, rounding: str = "nearest",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Integer codes of ``x`` (int32, or int64 for wide formats), rounded and saturated."""
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding = {rounding!r} is not allowed (allowed: {', '.join(ROUNDINGS)})")
        y = x.detach().to(torch.float64) / self.step
        if torch.isnan(y).any():
            raise ValueError("cannot quantise NaN")
        if rounding == "nearest":
            q = torch.floor(y + 0.5)
        else:
            q = stochastic_round(y, generator)
        return q.clamp(self.qmin, self.qmax).to(self.int_dtype)

    def to_float(self, q: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Values ``q · step`` of integer codes (as ``dtype``)."""
        return (q.to(torch.float64) * self.step).to(dtype)

    def fake_quant(self, x: torch.Tensor, rounding: str = "nearest",
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` snapped to the grid (same dtype as x; no gradient flows through)."""
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return self.to_float(self.to_int(x, rounding, generator), dtype)


def fixed_point_for(x: torch.Tensor, bits: int, signed: bool, scale_rule: str) -> FixedPoint:
    """Choose the format of a tensor from its largest magnitude.

    ``"pow2"``: ``pow2_step(max|x|)`` (a shift in hardware). ``"per_layer"``: ``max|x| / qmax``
    exactly (a real-valued scale, e.g. folded into the threshold). ``"none"``: step 1.0 (x is
    already in integer units). An all-zero tensor gets step 1.0.
    """
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule = {scale_rule!r} is not allowed (allowed: {', '.join(SCALE_RULES)})")
    if scale_rule == "none":
        return FixedPoint(bits, signed, 1.0)
    max_abs = float(x.detach().abs().max()) if x.numel() else 0.0
    if scale_rule == "pow2":
        return FixedPoint(bits, signed, pow2_step(max_abs, bits, signed))
    _, qmax = _int_range(bits, signed)
    if qmax < 1:
        raise ValueError("a 1-bit signed format has no positive value: use bits >= 2 or signed = False")
    if not math.isfinite(max_abs):
        raise ValueError(f"max|x| = {max_abs} must be finite")
    return FixedPoint(bits, signed, max_abs / qmax if max_abs > 0 else 1.0)
