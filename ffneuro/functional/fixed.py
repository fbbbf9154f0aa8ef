"""Simulated on-chip learning: what a layer unit does differently under a fixed-point profile.

A chip stores each layer's weights as integers with a per-layer scale, feeds quantised
activities into an accumulator of limited width, and applies each learning update at
its learning precision with its rounding. ``hw.chip`` reduces a profile to a ``ChipSpec``
(just the numbers the simulation needs); this module holds the pure functions that
apply those limits to tensors. The layer unit calls them; the trainer never does.

Modelling choices (docs/architecture.md, docs/hdf5-schema.md):
- weights: ``weight_bits`` integers × a per-layer step. With ``scale_rule = pow2`` the
  step is a power of two (an exponent, as Loihi's weight exponent), chosen once at
  initialisation so the initial weights use at most half the range (one bit of headroom
  for learning); ``per_layer`` uses max|w|·2 / qmax exactly; the step then stays fixed.
- activities: each layer's normalised input is quantised to ``activation_bits`` with a
  power-of-two step calibrated once on the first training batch (unsigned if that batch
  had no negative value, as after ReLU and for raw pixels). On a chip whose neurons
  only emit binary spikes (``activation_bits = 1``) a graded activity is a rate code:
  k spikes out of the profile's ``time_steps`` T, i.e. floor(log2(T + 1)) bits.
- accumulator: pre-activations saturate at ±(2^(accumulator_bits−1) − 1) steps of (w step × x step).
- bias: an integer in accumulator units (w step × x step), like int8 inference kernels.
- updates: plain SGD (``optimizer_state = false``: no momentum, no Adam moments exist on
  the chip) at ``onchip_lr / fan_in`` per layer. With RMS-normalised inputs Σx² = fan_in,
  so a sample moves each pre-activation by the same amount whatever the layer's width
  (the normalised-LMS rule; measured: a fixed rate of 2^-10 learned the 74-input digits
  but diverged in MNIST's 784-input layers at batch 1). The update −lr·∇ is expressed in weight LSBs,
  rounded (nearest or stochastic, from the profile) and clipped to
  ±(2^(learning_bits−1) − 1) LSBs, then added with saturation. With ``lr_power_of_two``
  the learning rate is rounded to a power of two (a shift).
- gradients: a dense ReLU unit whose loss reads its activity only through a squared
  goodness learns from the chip's exact integer goodness (dL/dg in closed form, then
  dL/dz = dL/dg · k·h); at batch 1 its weight gradients are formed exactly in float64 and
  rounded once (``dense_grads``), so the compiled step reproduces the update bit for bit on
  any machine; other units take autograd's gradient at the chip's own activities.
- inference is integer-exact (what ``ffneuro export`` writes and ``ffneuro verify``
  replays): the network input is integerised once (``a0 = floor(x·INPUT_LEVELS + ½)``,
  the label code and the neutral code are integers too); each unit normalises its
  integer input with an integer square root and a fixed-point gain (``int_normalize``),
  accumulates ``W_q · x_q + b_q`` exactly, saturates at the accumulator width and hands
  on the integer ReLU output. Its goodness is the integer Σh² times (w step · x step)².
  Training uses the same forward values; only the gradient is taken in real units.
- speed: only the entries an update touches are rounded. A dense layer's gradient is
  zero in every row whose unit was silent and every column whose input was zero, and
  stochastic rounding maps an exact zero to zero, so skipping them changes no value.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ffneuro.functional import kernels, quant
from ffneuro.functional.quant import FixedPoint, pow2_step, stochastic_round
from ffneuro.hw.chip import ChipSpec

EXACT_GRAD_ROWS = 2       # up to this many rows, dense_grads is exact in float64 (two products: no order)
INPUT_LEVELS = 255        # network input integerised to floor(x · 255 + ½): 8-bit pixels, exactly
GAIN_FRAC_BITS = 16       # fractional bits of the fixed-point normalisation gain
DECAY_FRAC_BITS = 12      # fractional bits of a LIF layer's fixed-point decay β


def chip_lr(lr: float, spec: ChipSpec) -> float:
    """The learning rate the chip can apply: rounded to the nearest power of two if it
    can only shift."""
    return 2.0 ** round(math.log2(lr)) if spec.lr_power_of_two else lr


def weight_format(w: torch.Tensor, spec: ChipSpec) -> FixedPoint:
    """Per-layer weight format with one bit of headroom over the initial weights."""
    qmax = 2 ** (spec.weight_bits - 1) - 1 if spec.weight_signed else 2 ** spec.weight_bits - 1
    max_abs = float(w.abs().max()) * 2.0
    if spec.scale_rule == "pow2":
        step = pow2_step(max_abs, spec.weight_bits, spec.weight_signed)
    elif spec.scale_rule == "per_layer":
        step = max_abs / qmax if max_abs > 0 else 1.0
    else:
        step = 1.0
    return FixedPoint(spec.weight_bits, spec.weight_signed, step)


def activation_format(x: torch.Tensor, spec: ChipSpec) -> FixedPoint:
    """Power-of-two activity format calibrated on one batch of normalised inputs."""
    signed = bool((x < 0).any())
    if signed and spec.activation_bits < 2:
        raise ValueError("the profile has 1-bit (spike) activations, which cannot carry negative inputs: "
                         "train without data.standardize so inputs stay non-negative")
    return FixedPoint(spec.activation_bits, signed, pow2_step(float(x.abs().max()), spec.activation_bits, signed))


@torch.no_grad()
def fixed_update_(param: torch.Tensor, grad: torch.Tensor, fmt: FixedPoint, lr: float, spec: ChipSpec,
                  generator: torch.Generator | None, rows: torch.Tensor | None = None,
                  cols: torch.Tensor | None = None, int_table: torch.Tensor | None = None,
                  block: bool | None = None) -> None:
    """Apply −lr·grad, in place, to a parameter that lives on ``fmt``'s grid.

    The update is computed in weight LSBs, rounded per the profile, clipped to the
    learning precision, and added to the integer weight with saturation. ``rows``/``cols``
    (index tensors) name the only entries of a 2-D ``grad`` that can be non-zero (silent
    units, zero inputs); the others are exactly zero and round to zero, so they are skipped.
    ``int_table`` (same shape as param), if given, receives the new integer codes of the
    entries written. ``block``: update only the (rows × cols) block (True), or decide by its
    size (None: the whole table once the block covers three quarters of it; the choice
    sets how many random numbers are drawn).
    """
    if block is None:
        block = rows is not None and cols is not None and rows.numel() * cols.numel() < 0.75 * grad.numel()
    if int_table is not None and kernels.usable(param.detach(), grad, int_table, dtype=torch.float32):
        if not block:
            rows, cols = torch.arange(grad.shape[0]), torch.arange(grad.shape[1])
        stochastic = spec.rounding == "stochastic"
        key = quant.rounding_key(generator, rows.numel() * cols.numel()) if stochastic else 0
        lim = 2 ** (spec.learning_bits - 1) - 1
        f32 = np.float32
        kernels.block_update(int_table.numpy(), param.detach().numpy(), grad.detach().numpy(), rows.numpy(),
                             cols.numpy(), np.uint64(key), f32(-lr / fmt.step), f32(lim), f32(fmt.qmin),
                             f32(fmt.qmax), f32(fmt.step), stochastic)
        return
    if block:
        # The (rows × cols) block, gathered and written back a whole row at a time:
        # index_select/index_copy_ are plain copies, far cheaper than a 2-D fancy index.
        table = int_table if int_table is not None else torch.round(param / fmt.step)
        block_rows = table.index_select(0, rows)
        codes = block_rows.index_select(1, cols)
        q = _updated(codes, grad.index_select(0, rows).index_select(1, cols), fmt, lr, spec, generator)
        block_rows.index_copy_(1, cols, q.to(block_rows.dtype))
        param.index_copy_(0, rows, block_rows.to(param.dtype) * fmt.step)
        if int_table is not None:
            int_table.index_copy_(0, rows, block_rows)
    else:
        codes = int_table if int_table is not None else torch.round(param / fmt.step)
        q = _updated(codes, grad, fmt, lr, spec, generator)
        torch.mul(q, fmt.step, out=param)
        if int_table is not None:
            int_table.copy_(q)


def dense_grads(dz: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of a dense layer's weights and biases from the per-sample gradients
    dz (R, out) at its accumulators and its inputs x (R, in), both float32: dL/dW[i, j] =
    Σ_r dz[r, i]·x[r, j] and dL/db[i] = Σ_r dz[r, i].

    For R ≤ 2 rows (a batch-1 step: one positive, one negative) each entry is the sum of
    at most two products, formed exactly in float64 and rounded once to float32: a value
    that depends on no summation order, so the compiled chip step (``kernels.dense_learn``)
    reproduces it bit for bit on any machine. For more rows, float32 BLAS (its order is
    the library's; the compiled step calls the same product).

    >>> gw, gb = dense_grads(torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0, 0.0], [0.5, 1.0]]))
    >>> gw.tolist(), gb.tolist()
    ([[4.0, 2.0]], [3.0])
    """
    if dz.shape[0] > EXACT_GRAD_ROWS:
        return torch.mm(dz.t(), x), dz.sum(dim=0)
    d, xd = dz.to(torch.float64), x.to(torch.float64)
    gw = torch.zeros(dz.shape[1], x.shape[1], dtype=torch.float64)
    for r in range(dz.shape[0]):
        gw.add_(torch.outer(d[r], xd[r]))
    return gw.to(torch.float32), d.sum(dim=0).to(torch.float32)


def _updated(codes: torch.Tensor, grad: torch.Tensor, fmt: FixedPoint, lr: float, spec: ChipSpec,
             generator: torch.Generator | None) -> torch.Tensor:
    """New integer codes (float tensor holding integers) from the current ``codes``."""
    lsb = grad * (-lr / fmt.step)
    lsb = stochastic_round(lsb, generator) if spec.rounding == "stochastic" else torch.round(lsb)
    lim = 2 ** (spec.learning_bits - 1) - 1
    return lsb.clamp_(-lim, lim).add_(codes).clamp_(fmt.qmin, fmt.qmax)


# ----------------------------------------------------------------------------------------
# Integer-exact inference (the golden model in ffneuro/export/golden.py re-implements these in numpy)
# ----------------------------------------------------------------------------------------
def check_chip_input(x: torch.Tensor) -> None:
    """Refuse data a chip's input cannot take: values outside [0, 1] (or not finite) would
    saturate or wrap when turned into its INPUT_LEVELS sensor levels.

    >>> check_chip_input(torch.tensor([[0.0, 1.0]]))
    >>> check_chip_input(torch.tensor([[0.5, 1e30]]))
    Traceback (most recent call last):
    ...
    ValueError: a chip profile takes input values in [0, 1] (its 256 sensor levels); this data holds values from 0.5 to 1e+30 (rescale it, e.g. divide by its maximum)
    """
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if not (0.0 <= lo and hi <= 1.0):          # also false for NaN
        raise ValueError(f"a chip profile takes input values in [0, 1] (its {INPUT_LEVELS + 1} sensor levels); "
                         f"this data holds values from {lo:.6g} to {hi:.6g} (rescale it, e.g. divide by its maximum)")


def integer_input(x: torch.Tensor) -> torch.Tensor:
    """The chip's integer view of a data sample in [0, 1]: floor(x · INPUT_LEVELS + ½),
    computed in float64 (same dtype as x back; exact, the values are small integers)."""
    return torch.floor(x.to(torch.float64) * INPUT_LEVELS + 0.5).to(x.dtype)


def round_half_up_div(num: int, den: int) -> int:
    """floor(num / den + ½) for integers, den > 0."""
    return (2 * num + den) // (2 * den)


def norm_gain(width: int, norm: str, x_step: float) -> int:
    """The fixed-point gain K (GAIN_FRAC_BITS fractional bits) of a unit's normalisation:
    x_q = round(a · K / (2^F · isqrt(Σa²))). K = √width / x_step for RMS, 1 / x_step for
    length normalisation, rounded half up."""
    if norm == "rms":
        k = math.sqrt(width) / x_step
    elif norm == "length":
        k = 1.0 / x_step
    else:
        raise ValueError(f"a fixed-point profile needs units.norm = rms or length (got {norm!r}): "
                         "the chip normalises each layer's input in integer form")
    return int(math.floor(k * 2 ** GAIN_FRAC_BITS + 0.5))


def isqrt(n: torch.Tensor) -> torch.Tensor:
    """floor(√n) of a non-negative int64 tensor (n < 2^62), exactly."""
    s = torch.sqrt(n.to(torch.float64)).floor().to(torch.int64)
    s = torch.where(s * s > n, s - 1, s)            # float64 sqrt is off by at most one here
    s = torch.where((s + 1) * (s + 1) <= n, s + 1, s)
    return s


def int_normalize(a: torch.Tensor, gain: int, fmt: FixedPoint) -> torch.Tensor:
    """Integer normalisation of integer activities a (R, n) (any dtype holding integers).

    x_q = clamp(floor((2·a·K + s·2^F) / (s·2^(F+1))), qmin, qmax) with s = isqrt(Σ_j a_j²)
    per row, i.e. round-half-up of a·K / (2^F·s); a zero row gives zeros. Returns int64.
    """
    a = a.to(torch.int64)
    if kernels.usable(a):
        out = torch.empty_like(a)
        if kernels.normalize_rows(a.numpy(), gain, GAIN_FRAC_BITS, fmt.qmin, fmt.qmax, out.numpy()) != 0:
            raise OverflowError(f"activity {int(a.abs().max())} too large for exact 64-bit integer normalisation")
        return out
    amax = int(a.abs().max()) if a.numel() else 0
    if amax * gain >= 2 ** 61 or amax >= 2 ** 31 or amax * amax * a.shape[-1] >= 2 ** 62:
        raise OverflowError(f"activity {amax} too large for exact 64-bit integer normalisation")
    s = isqrt((a * a).sum(dim=-1, keepdim=True))
    den = s * 2 ** (GAIN_FRAC_BITS + 1)
    q = torch.div(2 * a * gain + s * 2 ** GAIN_FRAC_BITS, den.clamp_min(1), rounding_mode="floor")
    q = torch.where(s > 0, q, torch.zeros_like(q))
    return q.clamp_(fmt.qmin, fmt.qmax)


def int_matmul(xq: torch.Tensor, w_int: torch.Tensor, w_absmax: int) -> torch.Tensor:
    """x_q · W_qᵀ exactly (float64 result holding integers); ``w_absmax`` bounds |W_q|.
    Uses a float32 product when every partial sum is provably below 2^24
    (w_absmax · max row Σ|x| < 2^24), else float64."""
    bound = w_absmax * float(xq.abs().sum(dim=-1).max()) if xq.numel() else 0.0
    if bound < 2 ** 24:
        return torch.matmul(xq.to(torch.float32), w_int.to(torch.float32).t()).to(torch.float64)
    if bound >= 2 ** 53:
        raise OverflowError("accumulator partial sums exceed 2^53: cannot evaluate exactly")
    return torch.matmul(xq.to(torch.float64), w_int.to(torch.float64).t())


def int_conv2d(xq: torch.Tensor, w_int: torch.Tensor, w_absmax: int, stride: int = 1, padding: int = 0,
               groups: int = 1) -> torch.Tensor:
    """The convolution of integer maps x_q (N, C, H, W) with integer kernels W_q (O, C/g, k, k),
    exactly (float64 result holding integers); ``w_absmax`` bounds |W_q|. Zero padding.

    Every output is a sum of fan-in = C/g·k² products. When max|x| · max|W| · fan-in < 2^24
    every partial sum, in any order, is an integer float32 holds exactly, so a float32
    convolution is exact as long as it multiplies and adds (a direct or im2col
    convolution; tests/functional check it against float64 on the shapes ffneuro uses);
    otherwise float64 (exact below 2^53)."""
    fan_in = w_int[0].numel()
    x_max = float(xq.abs().max()) if xq.numel() else 0.0
    bound = min(float(w_absmax), float(w_int.abs().max()) if w_int.numel() else 0.0) * x_max * fan_in
    if bound >= 2 ** 53:
        raise OverflowError("accumulator partial sums exceed 2^53: cannot evaluate exactly")
    dtype = torch.float32 if bound < 2 ** 24 else torch.float64
    return torch.nn.functional.conv2d(xq.to(dtype), w_int.to(dtype), None, stride, padding, 1,
                                      groups).to(torch.float64)


def int_spike_encode(kind: str, a: torch.Tensor, steps: int) -> torch.Tensor:
    """The chip's deterministic spike encoders of integer inputs a (N, D) in [0, INPUT_LEVELS]
    → (T, N, D) spikes. ``rate``: a regular train, spike at step t iff
    floor((t+1)·a/L) > floor(t·a/L) (floor(T·a/L) spikes, evenly spaced: the chip's version
    of the Bernoulli code used in training); ``latency``: one spike at step
    round_half_up((L − a)(T − 1) / L) for a > 0."""
    a = a.to(torch.int64).clamp(0, INPUT_LEVELS)
    t = torch.arange(steps, dtype=torch.int64).view(-1, *([1] * a.dim()))
    if kind == "rate":
        return (((t + 1) * a) // INPUT_LEVELS - (t * a) // INPUT_LEVELS).to(torch.float32)
    if kind == "latency":
        when = (2 * (INPUT_LEVELS - a) * (steps - 1) + INPUT_LEVELS) // (2 * INPUT_LEVELS)
        return ((t == when) & (a > 0)).to(torch.float32)
    raise ValueError(f"spike encoding {kind!r} has no chip form (a chip takes rate or latency spikes)")
def int_goodness(h: torch.Tensor, kind: str) -> torch.Tensor:
    """The chip's exact integer goodness sum (B,) int64 of integer activities h (B, n):
    Σh² for the squared kinds (sumsq, meansq, neg-sumsq), Σ|h| for ``sum``."""
    h = h.to(torch.int64)
    if kind == "sum":
        return h.abs().sum(dim=1)
    hmax = int(h.abs().max()) if h.numel() else 0
    if hmax * hmax * max(h.shape[1], 1) >= 2 ** 63:
        raise OverflowError(f"activity {hmax} too large for an exact 64-bit goodness")
    return (h * h).sum(dim=1)


