"""Compiled kernels for the chip simulation's hot path (numba): the integer normalisation
of a unit's input, the fixed-point update of a block of a weight table, and the event
counts of a dense step, each one loop nest instead of a dozen tensor operations.

They compute exactly what the tensor code computes (that code stays the reference:
``functional/fixed.py``, ``hw/events.py``; tests/functional/test_kernels.py compares the
two bit for bit): the normalisation and the counts are integer arithmetic, and the update
does the same float32 operations in the same order on the same random numbers (drawn by
torch from the unit's generator, as before). ``AVAILABLE`` is False when numba is not
installed, and ``FFNEURO_KERNELS=0`` forces the tensor code.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:                                   # numba is a dependency; without it the tensor path runs
    from numba import njit
except ImportError:                    # pragma: no cover - exercised only where numba is absent
    njit = None

AVAILABLE = njit is not None and os.environ.get("FFNEURO_KERNELS", "1") != "0"

_OVERFLOW = -1


def _normalize_rows(a: np.ndarray, gain: int, frac_bits: int, qmin: int, qmax: int, out: np.ndarray) -> int:
    """``fixed.int_normalize`` of int64 rows a (R, n) into out (R, n); returns 0, or
    _OVERFLOW when an intermediate would not fit 64 bits (the caller raises)."""
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
        return _OVERFLOW
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


def _block_update(table: np.ndarray, param: np.ndarray, grad: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  u: np.ndarray, scale: np.float32, lim: np.float32, qmin: np.float32, qmax: np.float32,
                  step: np.float32, stochastic: bool) -> None:
    """``fixed._updated`` on the (rows × cols) block of a 2-D table, in place: the update
    ``grad · scale`` in weight LSBs, rounded (``floor(x + u)`` with u the block's uniform
    numbers, or half-to-even), clipped to ±lim, added to the code and saturated; the
    parameter entries become code · step. Every operation is float32, as in the tensor code."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(cols.shape[0]):
            c = cols[j]
            lsb = grad[r, c] * scale
            if stochastic:
                q = np.floor(np.float32(u[i, j] + lsb))
            else:
                q = np.round(lsb)
            if q == q:                  # NaN passes through, as in the tensor code (divergence is caught later)
                q = min(max(q, -lim), lim)
                q = np.float32(q + table[r, c])
                q = min(max(q, qmin), qmax)
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


if AVAILABLE:
    normalize_rows = njit(cache=True, nogil=True)(_normalize_rows)
    block_update = njit(cache=True, nogil=True)(_block_update)
    activity_counts = njit(cache=True, nogil=True)(_activity_counts)
    update_counts = njit(cache=True, nogil=True)(_update_counts)
else:                                  # pragma: no cover
    normalize_rows = block_update = activity_counts = update_counts = None


def usable(*tensors, dtype=None) -> bool:
    """Whether the kernels can take these tensors as they are: 2-D, on the CPU,
    contiguous, without a graph (and all of ``dtype`` if given); anything else takes the
    tensor code, which is the reference."""
    return AVAILABLE and all(t.dim() == 2 and t.device.type == "cpu" and t.is_contiguous() and not t.requires_grad
                             and (dtype is None or t.dtype == dtype) for t in tensors)
