"""Compiled kernels for the chip simulation's hot path (numba): the integer normalisation
of a unit's input, the fixed-point update of a block of a weight table, the event
counts of a dense step, and a dense unit's chip step (its input, its accumulator and
goodness, its gradients and update), each one loop nest instead of a dozen tensor
operations.

They compute exactly what the tensor code computes (that code stays the reference:
``functional/fixed.py``, ``hw/events.py``; tests/functional/test_kernels.py compares the
two bit for bit): the normalisation and the counts are integer arithmetic, and the update
does the same float32 operations in the same order on the same random numbers (the
counter-based rounding numbers of ``functional/quant.py``, made here from the call's key).
``AVAILABLE`` is False when numba is not installed, and ``FFNEURO_KERNELS=0`` forces the
tensor code.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ffneuro.functional.quant import SPLITMIX_GAMMA, SPLITMIX_M1, SPLITMIX_M2

try:                                   # numba is a dependency; without it the tensor path runs
    from numba import njit
except ImportError:                    # pragma: no cover - exercised only where numba is absent
    njit = None

AVAILABLE = njit is not None and os.environ.get("FFNEURO_KERNELS", "1") != "0"

OVERFLOW = -1   # status codes of the kernels that check their arithmetic
INEXACT = -2


def _normalize_rows(a: np.ndarray, gain: int, frac_bits: int, qmin: int, qmax: int, out: np.ndarray) -> int:
    """``fixed.int_normalize`` of int64 rows a (R, n) into out (R, n); returns 0, or
    OVERFLOW when an intermediate would not fit 64 bits (the caller raises)."""
    rows, n = a.shape
    amax = 0
    for r in range(rows):
        for j in range(n):
            v = a[r, j]
            if v < 0:
                v = -v
            if v > amax:
                amax = v
    # the tensor code's bounds, tested without overflowing: amax·gain < 2^61, amax < 2^31,
    # amax²·n < 2^62
    if amax >= 2 ** 31 or (amax > 0 and gain >= (2 ** 61 + amax - 1) // amax) \
            or amax * amax >= (2 ** 62 + n - 1) // max(n, 1):
        return OVERFLOW
    half = np.int64(1) << frac_bits
    for r in range(rows):
        ss = np.int64(0)
        for j in range(n):
            ss += a[r, j] * a[r, j]
        s = np.int64(math.floor(math.sqrt(float(ss))))
        if s * s > ss:
            s -= 1
        if (s + 1) * (s + 1) <= ss:
            s += 1
        if s == 0:
            for j in range(n):
                out[r, j] = min(max(0, qmin), qmax)
            continue
        den = s * (half * 2)
        for j in range(n):
            q = (2 * a[r, j] * gain + s * half) // den
            out[r, j] = min(max(q, qmin), qmax)
    return 0


def _uniform(key: np.uint64, k: int) -> np.float32:
    """``quant.splitmix_uniforms(key, ·)[k]``: the k-th float32 random number of the
    rounding call with ``key``, made on the fly."""
    z = key + np.uint64(k + 1) * np.uint64(SPLITMIX_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX_M2)
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(2.0 ** -24)


def _fill_uniforms(key: np.uint64, out: np.ndarray) -> None:
    """``out[k] = uniform(key, k)``: a rounding call's numbers materialised (float32, 1-D)."""
    for k in range(out.shape[0]):
        out[k] = uniform(key, k)


def _new_code(lsb: np.float32, u: np.float32, code: np.float32, lim: np.float32, qmin: np.float32,
              qmax: np.float32, stochastic: bool) -> np.float32:
    """``fixed._updated`` for one entry: the update ``lsb`` (weight LSBs) rounded
    (``floor(lsb + u)``, or half-to-even), clipped to ±lim, added to ``code`` and
    saturated; float32 throughout, as the tensor code. NaN passes through, as in the tensor
    code (divergence is caught later)."""
    q = np.floor(np.float32(u + lsb)) if stochastic else np.round(lsb)
    if q == q:
        q = min(max(q, -lim), lim)
        q = np.float32(q + code)
        q = min(max(q, qmin), qmax)
    return q


def _block_update(table: np.ndarray, param: np.ndarray, grad: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  key: np.uint64, scale: np.float32, lim: np.float32, qmin: np.float32, qmax: np.float32,
                  step: np.float32, stochastic: bool) -> None:
    """``fixed._updated`` on the (rows × cols) block of a 2-D table, in place: the update
    ``grad · scale`` in weight LSBs, rounded (``floor(x + u)`` with u the block's numbers
    of the rounding call ``key``, row-major, or half-to-even), clipped to ±lim, added to
    the code and saturated; the parameter entries become code · step. Every operation is
    float32, as in the tensor code."""
    nc = cols.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(nc):
            c = cols[j]
            q = new_code(grad[r, c] * scale, uniform(key, i * nc + j) if stochastic else np.float32(0.0),
                         table[r, c], lim, qmin, qmax, stochastic)
            table[r, c] = q
            param[r, c] = np.float32(q * step)


def _activity_counts(x: np.ndarray, h: np.ndarray) -> tuple[int, int, int]:
    """(non-zero entries of x, rows of x with any non-zero entry, non-zero entries of h)."""
    nnz_in = rows_in = 0
    for r in range(x.shape[0]):
        k = 0
        for j in range(x.shape[1]):
            if x[r, j] != 0:
                k += 1
        nnz_in += k
        if k > 0:
            rows_in += 1
    nnz_out = 0
    for r in range(h.shape[0]):
        for j in range(h.shape[1]):
            if h[r, j] != 0:
                nnz_out += 1
    return nnz_in, rows_in, nnz_out


def _update_counts(x_pos: np.ndarray, x_neg: np.ndarray, chunk: int) -> tuple[int, int]:
    """(non-zero entries of x_pos and x_neg, Σ over consecutive chunks of ``chunk`` rows of
    the columns non-zero in some row of the chunk, in either)."""
    rows, n = x_pos.shape
    nnz = 0
    for r in range(rows):
        for j in range(n):
            if x_pos[r, j] != 0:
                nnz += 1
            if x_neg[r, j] != 0:
                nnz += 1
    columns = 0
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        for j in range(n):
            for r in range(start, stop):
                if x_pos[r, j] != 0 or x_neg[r, j] != 0:
                    columns += 1
                    break
    return nnz, columns


def _dense_input(a: np.ndarray, gain: int, frac_bits: int, qmin: int, qmax: int, out: np.ndarray,
                 col_any: np.ndarray) -> float:
    """``_normalize_rows`` into a float32 ``out`` (the integers a float32 product takes),
    marking in ``col_any`` the columns non-zero in some row; returns the largest row sum of
    |x_q| (the exactness bound of the product), or -1.0 on overflow."""
    if normalize_rows(a, gain, frac_bits, qmin, qmax, out) != 0:
        return -1.0
    rows, n = out.shape
    l1 = 0.0
    for j in range(n):
        col_any[j] = False
    for r in range(rows):
        s = 0.0
        for j in range(n):
            v = out[r, j]
            if v != 0:
                col_any[j] = True
                s += abs(v)
        if s > l1:
            l1 = s
    return l1


def _dense_finish(z: np.ndarray, bias: np.ndarray, lim: float, relu: bool, h: np.ndarray, g: np.ndarray,
                  row_any: np.ndarray) -> int:
    """The accumulator of a dense unit from its exact product z (R, out): h = clamp(z + b,
    ±lim), then max(h, 0) with ``relu``; g the exact integer Σh² per row (int64) and
    ``row_any`` the units non-zero in some row. Returns 0, or OVERFLOW if Σh² would not
    fit 63 bits."""
    rows, n = h.shape
    for i in range(n):
        row_any[i] = False
    for r in range(rows):
        ss = np.int64(0)
        for i in range(n):
            v = np.float64(z[r, i]) + bias[i]
            v = min(max(v, -lim), lim)
            if relu and v < 0:
                v = 0.0
            h[r, i] = v
            if v != 0:
                row_any[i] = True
                iv = np.int64(v)
                if iv > 3037000499 or iv < -3037000499 or ss > np.int64(9223372036854775807) - iv * iv:
                    return OVERFLOW
                ss += iv * iv
        g[r] = ss
    return 0


def _int_product(xq: np.ndarray, w: np.ndarray, single: bool, z: np.ndarray) -> None:
    """z = xq · wᵀ for float32 arrays holding integers: exact (so the summation order is
    free) when every partial sum stays below 2^24 with ``single`` (float32 sums), below
    2^53 otherwise (float64 sums); the caller checks the bound (``_dense_forward``). Each
    row of w is read once for all rows of xq."""
    rows, n = xq.shape
    for i in range(w.shape[0]):
        wi = w[i]
        for r in range(rows):
            x = xq[r]
            if single:
                acc32 = np.float32(0.0)
                for j in range(n):
                    acc32 += x[j] * wi[j]
                z[r, i] = acc32
            else:
                acc = 0.0
                for j in range(n):
                    acc += np.float64(x[j]) * np.float64(wi[j])
                z[r, i] = acc


def _dense_forward(a: np.ndarray, gain: int, frac_bits: int, qmin: int, qmax: int, w: np.ndarray,
                   w_absmax: float, bias: np.ndarray, lim: float, xq: np.ndarray, h: np.ndarray, g: np.ndarray,
                   row_any: np.ndarray, col_any: np.ndarray) -> int:
    """A dense ReLU unit's whole chip forward for integer input activities a (R, n): the
    integer normalisation into xq (``_dense_input``), the exact accumulator W_q·x_q
    (``_int_product``), then bias, saturation, ReLU and the exact goodness
    (``_dense_finish``) into h, g and the masks. Returns 0, or OVERFLOW (normalisation or
    goodness beyond 64 bits), or INEXACT (a partial sum could reach 2^53)."""
    l1 = dense_input(a, gain, frac_bits, qmin, qmax, xq, col_any)
    if l1 < 0:
        return OVERFLOW
    if w_absmax * l1 >= 2.0 ** 53:
        return INEXACT
    int_product(xq, w, w_absmax * l1 < 2.0 ** 24, h)
    return dense_finish(h, bias, lim, True, h, g, row_any)      # in place: each entry read, then written


def _dense_learn(table: np.ndarray, weight: np.ndarray, bias: np.ndarray, bias_codes: np.ndarray, dz: np.ndarray,
                 x: np.ndarray, rows: np.ndarray, cols: np.ndarray, key_w: np.uint64, key_b: np.uint64,
                 w_scale: np.float32, b_scale: np.float32, lim: np.float32, w_qmin: np.float32, w_qmax: np.float32,
                 w_step: np.float32, b_qmin: np.float32, b_qmax: np.float32, b_step: np.float32,
                 stochastic: bool) -> None:
    """``fixed.dense_grads`` and ``fixed.fixed_update_`` of a dense table (its (rows × cols)
    block) and of its biases in one pass, for at most ``fixed.EXACT_GRAD_ROWS`` samples:
    each gradient entry Σ_r dz[r, i]·x[r, j] (biases Σ_r dz[r, i]) exact in float64 and
    rounded once to float32, then each code's update (``_new_code``) on the same random
    numbers as the tensor code (the rounding calls ``key_w`` for the block, row-major, and
    ``key_b`` for the biases). ``bias_codes`` (float64) receives the biases' new integer codes."""
    samples = dz.shape[0]
    nc = cols.shape[0]
    xc = np.empty((samples, nc), np.float64)         # the block's columns of x, gathered once
    for r in range(samples):
        for b in range(nc):
            xc[r, b] = x[r, cols[b]]
    d = np.empty(samples, np.float64)
    for a in range(rows.shape[0]):
        i = rows[a]
        for r in range(samples):
            d[r] = dz[r, i]
        for b in range(nc):
            acc = 0.0
            for r in range(samples):
                acc += d[r] * xc[r, b]
            j = cols[b]
            q = new_code(np.float32(np.float32(acc) * w_scale), uniform(key_w, a * nc + b) if stochastic
                         else np.float32(0.0), table[i, j], lim, w_qmin, w_qmax, stochastic)
            table[i, j] = q
            weight[i, j] = np.float32(q * w_step)
    for i in range(bias.shape[0]):
        acc = 0.0
        for r in range(samples):
            acc += np.float64(dz[r, i])
        q = new_code(np.float32(np.float32(acc) * b_scale), uniform(key_b, i) if stochastic else np.float32(0.0),
                     np.round(np.float32(bias[i] / b_step)), lim, b_qmin, b_qmax, stochastic)
        bias[i] = np.float32(q * b_step)
        bias_codes[i] = q


if AVAILABLE:
    uniform = njit(cache=True, nogil=True, inline="always")(_uniform)
    new_code = njit(cache=True, nogil=True, inline="always")(_new_code)
    fill_uniforms = njit(cache=True, nogil=True)(_fill_uniforms)
    normalize_rows = njit(cache=True, nogil=True)(_normalize_rows)
    block_update = njit(cache=True, nogil=True)(_block_update)
    activity_counts = njit(cache=True, nogil=True)(_activity_counts)
    update_counts = njit(cache=True, nogil=True)(_update_counts)
    dense_input = njit(cache=True, nogil=True)(_dense_input)
    dense_finish = njit(cache=True, nogil=True)(_dense_finish)
    dense_learn = njit(cache=True, nogil=True)(_dense_learn)
    # exact integer sums: reassociation and contraction cannot change them
    int_product = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})(_int_product)
    dense_forward = njit(cache=True, nogil=True)(_dense_forward)
else:                                  # pragma: no cover
    uniform = new_code = fill_uniforms = normalize_rows = block_update = activity_counts = update_counts = None
    dense_input = dense_finish = dense_learn = int_product = dense_forward = None


def usable(*tensors, dtype=None) -> bool:
    """Whether the kernels can take these tensors as they are: 2-D, on the CPU,
    contiguous, without a graph (and all of ``dtype`` if given); anything else takes the
    tensor code, which is the reference."""
    if not AVAILABLE:
        return False
    for t in tensors:
        if t.dim() != 2 or t.device.type != "cpu" or t.requires_grad or not t.is_contiguous() \
                or (dtype is not None and t.dtype != dtype):
            return False
    return True
