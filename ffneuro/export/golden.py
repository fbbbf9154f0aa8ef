"""The golden model: integer-only inference replayed from an exported HDF5 file alone.

This module imports numpy and h5py only: nothing of ffneuro's training code, so it is
an independent re-implementation of the chip datapath that ``ffneuro export`` describes
(docs/hdf5-schema.md). A C or Verilog testbench can follow the same steps:

1. Input: ``a0 = floor(x · levels + ½)`` for data x in [0, 1] (levels = 255), flattened
   in (C, H, W) order for image data. The label (overlay: the first C features; concat:
   C features prepended; planes: C constant input channels appended to the image; none:
   no label) is ``label_code`` for the candidate label and 0 elsewhere, or all
   ``neutral_code``.
2. Each layer, for integer input a (n entries, the whole map for a conv layer):
   ``s = isqrt(Σ a²)``; ``x_q = clamp(floor((2·a·K + s·2^F) / (s·2^(F+1))), qmin, qmax)``
   (round half up of a·K / (2^F·s); zero if s = 0) with K = ``norm_gain``, F =
   ``norm_gain_frac_bits``; ``z = clamp(W·x_q + b, ±(2^(acc−1) − 1))`` (a conv layer:
   the zero-padded, strided, grouped convolution of the x_q maps, plus one bias per output
   channel); ``h = max(z, 0)``, then for a conv layer the pool×pool max-pool. Activities
   are handed on flattened in (C, H, W) order. The layer's goodness is the integer
   ``G = Σ h²`` (``Σ h`` for kind "sum").
3. Scores. Label-encoded nets: for every label c, ``score[c] = Σ_{l in layers}
   goodness_scale_l · G_l`` in float64, added in layer order. Channel-wise competitive
   nets: one label-free pass; each layer's activity splits into C contiguous groups of m
   entries and ``score[c] = Σ_l (S_lc / m_l) · q_l`` in float64 with ``S_lc`` the integer
   Σ h² of group c and q = ``class_goodness_scale``. Prediction = the first label with the
   highest score.
4. Early exit (schema 4, when ``/inference`` has ``exit_threshold`` θ): the cumulative
   scores of layers 1..k (step 3's sum over layers 0..k−1 instead of the multi-pass layers,
   added in layer order); the sample leaves at the first k with ``s1 > s_min`` and
   ``s1 − s2 >= θ · (s1 − s_min)`` in float64 (s1, s2 the highest and second-highest
   score, s_min the lowest), else at the last layer; its
   prediction is the first argmax of the scores it left with, its exit layer k (1-based).
5. One-pass: the neutral input's activities of the head's layers, each normalised as in
   step 2 with the head's gain for that layer's width, concatenated: ``logits = W_h·x_q``
   (saturated at the accumulator width); prediction = first argmax.

Integers are exact: products are formed in float64 only when every partial sum is
provably below 2^53 (else int64), and all other arithmetic is int64.

Reading is defensive (docs/hdf5-schema.md, "Reading a file"): every attribute is checked
for type and range and every dataset for dtype, shape and size before it is used, the
file's structure for consistency, and a schema 3 file's ``content_sha256`` (a SHA-256 of
every attribute and every dataset's dtype, shape and checksum) against its content. Any
problem is one GoldenError naming the file. ``verify`` is ok only when the checksums and
the digest hold and at least one stored vector replays, all of them exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = "ffneuro-chip"
SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)   # 1: dense and LIF layers, overlay/concat labels only; 3: adds content_sha256;
                                   # 4: adds early exit (/inference exit_threshold, its vectors)
DIGEST_ATTR = "content_sha256"  # root attribute: SHA-256 of every attribute and dataset checksum (schema 3)


class GoldenError(ValueError):
    """The file is not a valid ffneuro chip export (one-line message naming the file and
    the problem; line breaks in a message, e.g. from a name read from the file, become spaces)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


# ----------------------------------------------------------------------------------------
# Integer maths
# ----------------------------------------------------------------------------------------
def isqrt(n: np.ndarray) -> np.ndarray:
    """floor(√n) of non-negative int64 values (< 2^62), exactly."""
    s = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    s = np.where(s * s > n, s - 1, s)
    return np.where((s + 1) * (s + 1) <= n, s + 1, s)


def integer_input(x: np.ndarray, levels: int) -> np.ndarray:
    """floor(x · levels + ½) in float64, as int64."""
    return np.floor(np.asarray(x, dtype=np.float64) * levels + 0.5).astype(np.int64)


def int_normalize(a: np.ndarray, gain: int, frac_bits: int, qmin: int, qmax: int) -> np.ndarray:
    """Step 2's normalisation of integer rows a (R, n) → int64 (R, n)."""
    a = a.astype(np.int64)
    amax = int(np.abs(a).max()) if a.size else 0
    if amax * gain >= 2 ** 61 or amax >= 2 ** 31 or amax * amax * a.shape[-1] >= 2 ** 62:
        raise GoldenError(f"activity {amax} too large for exact 64-bit normalisation")
    s = isqrt((a * a).sum(axis=-1, keepdims=True))
    if int(s.max(initial=0)) * 2 ** (frac_bits + 1) >= 2 ** 62:
        raise GoldenError(f"activity {amax} too large for exact 64-bit normalisation with {frac_bits} fraction bits")
    num = 2 * a * gain + s * 2 ** frac_bits
    den = np.maximum(s * 2 ** (frac_bits + 1), 1)
    q = np.where(s > 0, np.floor_divide(num, den), 0)
    return np.clip(q, qmin, qmax)


def int_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x · wᵀ exactly, int64 (float64 BLAS when every partial sum < 2^53, else int64)."""
    bound = float(np.abs(w).max(initial=0)) * float(np.abs(x).sum(axis=-1).max(initial=0))
    if bound < 2 ** 53:
        return (x.astype(np.float64) @ w.astype(np.float64).T).astype(np.int64)
    return x.astype(np.int64) @ w.astype(np.int64).T


def int_conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0, groups: int = 1,
               chunk: int = 2 ** 23) -> np.ndarray:
    """The convolution of integer maps x (N, C, H, W) with integer kernels w (O, C/groups,
    k, k), zero padding, as int64 (N, O, H_o, W_o), H_o = (H + 2·padding − k) // stride + 1:
    ``z[n, o, i, j] = Σ_{c in o's group, di, dj} w[o, c, di, dj] · x_pad[n, c, i·stride + di, j·stride + dj]``.

    im2col: with the maps channels-last, k² strided slices fill one row per output
    position with its window (entries in (di, dj, channel) order, the kernels reordered
    to match), and one product per group and chunk of about ``chunk`` window entries
    gives the sums. A window's entries are distinct entries of its sample, so max|w| ·
    (max over samples of Σ|x|) bounds every partial sum: below 2^53 the products run in
    float64 BLAS (exact), else in int64."""
    n = x.shape[0]
    o, cg, k, _ = w.shape
    bound = float(np.abs(w).max(initial=0)) * float(np.abs(x).reshape(n, -1).sum(axis=1).max(initial=0))
    dt = np.float64 if bound < 2 ** 53 else np.int64
    x = np.pad(x.transpose(0, 2, 3, 1).astype(dt), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    og = o // groups
    out = np.empty((n, ho, wo, o), dtype=np.int64)
    step = max(1, chunk // (ho * wo * k * k * cg))
    for g in range(groups):
        wg = w[g * og:(g + 1) * og].transpose(0, 2, 3, 1).reshape(og, k * k * cg).astype(dt)
        for s in range(0, n, step):
            xs = x[s:s + step, :, :, g * cg:(g + 1) * cg]
            cols = np.empty((xs.shape[0], ho, wo, k, k, cg), dtype=dt)
            for di in range(k):
                for dj in range(k):
                    cols[:, :, :, di, dj] = xs[:, di:di + stride * (ho - 1) + 1:stride,
                                               dj:dj + stride * (wo - 1) + 1:stride]
            out[s:s + step, :, :, g * og:(g + 1) * og] = (cols.reshape(-1, k * k * cg) @ wg.T).reshape(-1, ho, wo, og)
    return out.transpose(0, 3, 1, 2)


def max_pool(h: np.ndarray, pool: int) -> np.ndarray:
    """pool×pool max-pool of maps (N, C, H, W), stride = pool, trailing rows/columns dropped."""
    if pool == 1:
        return h
    n, c, hgt, wid = h.shape
    hp, wp = hgt // pool, wid // pool
    return h[:, :, :hp * pool, :wp * pool].reshape(n, c, hp, pool, wp, pool).max(axis=(3, 5))


def int_goodness(h: np.ndarray, kind: str) -> np.ndarray:
    h = h.astype(np.int64)
    return np.abs(h).sum(axis=-1) if kind == "sum" else (h * h).sum(axis=-1)


def class_sums(h: np.ndarray, classes: int) -> np.ndarray:
    """Channel-wise competition's integer group goodness: activities (N, width), in (C, H, W)
    order, split into ``classes`` contiguous groups; S (N, classes) = Σ h² of each group."""
    n, width = h.shape
    if width % classes:
        raise GoldenError(f"a layer of width {width} does not split into {classes} class groups")
    h = h.astype(np.int64)
    return (h * h).reshape(n, classes, width // classes).sum(axis=2)


def fmt_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


# ----------------------------------------------------------------------------------------
# The model as read from the file
# ----------------------------------------------------------------------------------------
@dataclass
class Layer:
    weight: np.ndarray           # (out, in) integer
    bias: np.ndarray             # (out,) integer, accumulator units
    norm_gain: int
    frac_bits: int
    in_range: tuple[int, int]    # quantised input range (qmin, qmax)
    acc_bits: int
    goodness: str
    goodness_scale: float
    class_scale: float | None = None    # competitive models: q of the class goodness (S / m) · q

    @property
    def width(self) -> int:
        return self.weight.shape[0]

    def accumulate(self, xq: np.ndarray) -> np.ndarray:
        """W·x_q + b (N, out), int64."""
        return int_matmul(xq, self.weight) + self.bias.astype(np.int64)

    def forward(self, a: np.ndarray) -> np.ndarray:
        z = self.accumulate(int_normalize(a, self.norm_gain, self.frac_bits, *self.in_range))
        lim = 2 ** (self.acc_bits - 1) - 1
        return np.maximum(np.clip(z, -lim, lim), 0)


@dataclass(kw_only=True)
class ConvLayer(Layer):
    """A conv ReLU layer: the whole input map normalised as one vector (as a dense layer),
    the integer convolution plus one bias per output channel, saturation, ReLU, max-pool.
    Input and activity are flat, in (C, H, W) order."""

    in_shape: tuple[int, int, int]       # (C, H, W) of the input maps
    stride: int = 1
    padding: int = 0
    groups: int = 1
    pool: int = 1

    @property
    def maps_shape(self) -> tuple[int, int]:
        """(H_o, W_o) of the convolution's output maps, before pooling."""
        k = self.weight.shape[2]
        ho, wo = ((size + 2 * self.padding - k) // self.stride + 1 for size in self.in_shape[1:])
        return ho, wo

    @property
    def out_shape(self) -> tuple[int, int, int]:
        ho, wo = self.maps_shape
        return self.weight.shape[0], ho // self.pool, wo // self.pool

    @property
    def sample_entries(self) -> int:
        """The most entries one sample's replay of this layer holds at once: the padded
        input maps, the convolution's window matrix (im2col) or its output maps."""
        (o, cg, k, _), (c, h, w), (ho, wo) = self.weight.shape, self.in_shape, self.maps_shape
        p = self.padding
        return max(c * (h + 2 * p) * (w + 2 * p), ho * wo * k * k * cg, o * ho * wo)

    @property
    def width(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    def accumulate(self, xq: np.ndarray) -> np.ndarray:
        """conv(x_q, W) + b (N, O, H_o, W_o), int64."""
        z = int_conv2d(xq.reshape(xq.shape[0], *self.in_shape), self.weight, self.stride, self.padding, self.groups)
        return z + self.bias.astype(np.int64).reshape(1, -1, 1, 1)

    def forward(self, a: np.ndarray) -> np.ndarray:
        return max_pool(super().forward(a), self.pool).reshape(a.shape[0], -1)


@dataclass
class LIFLayer:
    """A spiking layer: per step U' = clamp(floor(decay·U / 2^F) + W·s[t] + b), S = U' ≥ threshold,
    U = 0 where S (reset "zero") or U' − threshold (reset "subtract"). Activity = spike counts."""

    weight: np.ndarray
    bias: np.ndarray             # membrane units (weight LSBs)
    threshold: int
    decay: int
    frac_bits: int
    state_limit: int
    reset: str
    goodness: str
    goodness_scale: float

    @property
    def width(self) -> int:
        return self.weight.shape[0]

    def forward(self, s: np.ndarray) -> np.ndarray:
        t, n, _ = s.shape
        cur = int_matmul(s.reshape(t * n, -1), self.weight).reshape(t, n, -1) + self.bias.astype(np.int64)
        u = np.zeros((n, self.weight.shape[0]), dtype=np.int64)
        out = np.empty((t, n, self.weight.shape[0]), dtype=np.int64)
        for k in range(t):
            u = np.clip(np.floor_divide(u * self.decay, 2 ** self.frac_bits) + cur[k], -self.state_limit,
                        self.state_limit)
            spk = u >= self.threshold
            u = np.where(spk, u - self.threshold, u) if self.reset == "subtract" else np.where(spk, 0, u)
            out[k] = spk
        return out


def spike_encode(kind: str, a: np.ndarray, steps: int, levels: int) -> np.ndarray:
    """Integer inputs (N, D) in [0, levels] → spikes (T, N, D): ``rate``: spike at t iff
    floor((t+1)·a/L) > floor(t·a/L); ``latency``: one spike at round_half_up((L − a)(T − 1)/L), a > 0."""
    a = np.clip(a.astype(np.int64), 0, levels)
    t = np.arange(steps, dtype=np.int64).reshape(-1, *([1] * a.ndim))
    if kind == "rate":
        return ((t + 1) * a) // levels - (t * a) // levels
    when = (2 * (levels - a) * (steps - 1) + levels) // (2 * levels)
    return ((t == when) & (a > 0)).astype(np.int64)


@dataclass
class Head:
    weight: np.ndarray           # (C, Σ widths)
    layers: list[int]
    norm_gains: list[int]
    frac_bits: int
    in_range: tuple[int, int]
    acc_bits: int

    def logits(self, acts: list[np.ndarray]) -> np.ndarray:
        xq = np.concatenate([int_normalize(h, k, self.frac_bits, *self.in_range)
                             for h, k in zip(acts, self.norm_gains)], axis=1)
        lim = 2 ** (self.acc_bits - 1) - 1
        return np.clip(int_matmul(xq, self.weight), -lim, lim)


@dataclass
class Model:
    layers: list[Layer]
    num_classes: int
    data_features: int
    levels: int
    label_mode: str
    label_code: int
    neutral_code: int
    multi_pass_layers: list[int]
    head: Head | None
    attrs: dict = field(default_factory=dict)
    spike_encoding: str | None = None      # spiking models: rate | latency
    steps: int = 1
    data_shape: tuple[int, ...] = ()       # one data sample: (D,) or image maps (C, H, W)
    competitive: bool = False              # channel-wise competition: one label-free pass
    exit_threshold: float | None = None    # early exit (schema 4); None: every layer runs
    schema_version: int = SCHEMA_VERSION
    digest_ok: bool | None = None          # content_sha256 matches; None: a file before schema 3 has none

    # -- input ------------------------------------------------------------------------
    def encode(self, a0: np.ndarray, label: int | None) -> np.ndarray:
        """Integer data (N, D) with the label code of ``label`` (None: the neutral code),
        flat; label planes follow the image's channels."""
        n, c = a0.shape[0], self.num_classes
        a0 = a0.astype(np.int64)
        if self.label_mode == "none":
            return a0
        code = np.full((n, c), self.neutral_code, dtype=np.int64)
        if label is not None:
            code[:] = 0
            code[:, label] = self.label_code
        if self.label_mode == "planes":
            pixels = math.prod(self.data_shape[1:])
            return np.concatenate([a0, np.repeat(code, pixels, axis=1)], axis=1)
        if self.label_mode == "concat":
            return np.concatenate([code, a0], axis=1)
        out = a0.copy()
        out[:, :c] = code
        return out

    def activities(self, a: np.ndarray) -> list[np.ndarray]:
        """Each layer's integer activity (N, width): ReLU outputs (conv maps flattened in
        (C, H, W) order), or spike counts."""
        if self.spike_encoding is not None:
            a = spike_encode(self.spike_encoding, a, self.steps, self.levels)
        acts = []
        for layer in self.layers:
            a = layer.forward(a)
            acts.append(a.sum(axis=0) if a.ndim == 3 else a)
        return acts

    # -- inference ----------------------------------------------------------------------
    def goodness_table(self, a0: np.ndarray) -> np.ndarray:
        """The integer score table (N, C, L): every layer's goodness G for every candidate
        label (one pass per label), or for a competitive model every layer's class-group
        sums S from one label-free pass."""
        out = np.empty((a0.shape[0], self.num_classes, len(self.layers)), dtype=np.int64)
        if self.competitive:
            for i, h in enumerate(self.pass_activities(a0, None)):
                out[:, :, i] = class_sums(h, self.num_classes)
            return out
        for c in range(self.num_classes):
            for i, (layer, h) in enumerate(zip(self.layers, self.pass_activities(a0, c))):
                out[:, c, i] = int_goodness(h, layer.goodness)
        return out

    def real_table(self, table: np.ndarray, i: int) -> np.ndarray:
        """Layer i's scores (N, C) float64 from the integer table: goodness_scale · G, or
        for a competitive model the mean of h² over each group in real units, (S / m) · q
        with q = class_goodness_scale (output_scale²)."""
        layer = self.layers[i]
        t = table[:, :, i].astype(np.float64)
        if self.competitive:
            return (t / (layer.width // self.num_classes)) * layer.class_scale
        return t * layer.goodness_scale

    def scores(self, table: np.ndarray) -> np.ndarray:
        """Scores (N, C) float64: the layers' real tables added in layer order."""
        score = self.real_table(table, self.multi_pass_layers[0])
        for i in self.multi_pass_layers[1:]:
            score = score + self.real_table(table, i)
        return score

    def early_exit(self, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exit layers (N,) 1-based and the scores (N, C) each sample left with (step 4)."""
        n_layers = len(self.layers)
        exit_layer = np.full(table.shape[0], n_layers, dtype=np.int64)
        score = np.empty(table.shape[:2], dtype=np.float64)
        still = np.ones(table.shape[0], dtype=bool)
        cum = self.real_table(table, 0)
        for k in range(n_layers):
            if k:
                cum = cum + self.real_table(table, k)
            if k == n_layers - 1:
                leave = still
            else:
                top = np.sort(cum, axis=1)
                s1, s2, spread = top[:, -1], top[:, -2], top[:, -1] - top[:, 0]
                leave = still & (spread > 0) & (s1 - s2 >= self.exit_threshold * spread)
            exit_layer[leave] = k + 1
            score[leave] = cum[leave]
            still &= ~leave
        return exit_layer, score

    def head_logits(self, a0: np.ndarray) -> np.ndarray:
        acts = self.pass_activities(a0, None)
        return self.head.logits([acts[i] for i in self.head.layers])

    # -- memory -------------------------------------------------------------------------
    def sample_entries(self) -> int:
        """The most int64 entries one sample's replay holds at once (a spiking model's over
        all its time steps): the encoded input, a layer's input or output, a conv layer's
        padded maps, windows or pre-pool maps."""
        sizes = [getattr(layer, "sample_entries", 0) for layer in self.layers]
        sizes += [_in_width(layer) for layer in self.layers] + [layer.width for layer in self.layers]
        return max(sizes) * (self.steps if self.spike_encoding is not None else 1)

    def pass_activities(self, a0: np.ndarray, label: int | None) -> list[np.ndarray]:
        """Each layer's activity (N, width) for integer data a0 (N, D) with the label code
        of ``label`` (None: the neutral code), replayed in chunks of rows so that no chunk
        holds more than REPLAY_ENTRIES int64 entries at once."""
        rows = max(1, REPLAY_ENTRIES // self.sample_entries())
        if a0.shape[0] <= rows:
            return self.activities(self.encode(a0, label))
        parts = [self.activities(self.encode(a0[s:s + rows], label)) for s in range(0, a0.shape[0], rows)]
        return [np.concatenate(per_layer) for per_layer in zip(*parts)]


# ----------------------------------------------------------------------------------------
# Reading a file: typed, bounded, one GoldenError for anything wrong
# ----------------------------------------------------------------------------------------
LABEL_MODES = ("overlay", "concat", "planes", "none")
GOODNESS_KINDS = ("sumsq", "meansq", "sum", "neg-sumsq")
SPIKE_ENCODINGS = ("rate", "latency")
RESETS = ("zero", "subtract")
LAYER_KINDS = ("dense-relu", "conv-relu", "lif")
# The reader's limits, checked before anything is allocated (docs/hdf5-schema.md, "Reading").
MAX_LAYERS = 1024
MAX_CLASSES = 2 ** 20
MAX_FEATURES = 2 ** 40           # any width, height, channel count or feature count
MAX_STEPS = 1024                 # spiking time steps
MAX_SAMPLE_ENTRIES = 2 ** 25     # int64 entries one sample's replay may hold (Model.sample_entries)
REPLAY_ENTRIES = 2 ** 24         # rows are replayed in chunks holding at most this many int64 entries
MAX_ATTR_BYTES = 2 ** 20         # one attribute's values (provenance JSON: ~20 KB)
MAX_OBJECTS = 10_000             # groups and datasets in one file
MAX_DEPTH = 8                    # group nesting
READ_MEMORY_BYTES = 2 ** 31      # a reader may grow the address space by this + 4 x the file (Linux)
INT62 = 2 ** 62


def sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes, C order, little-endian."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:200]


def _show(value, limit: int = 60) -> str:
    """A value read from a file, for a one-line message: its repr, shortened."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist() if value.size <= 16 else f"<array {value.shape} {value.dtype}>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _address_space_bytes() -> int | None:
    """The process's virtual memory size (Linux: /proc/self/statm), None where unknown."""
    try:
        import os

        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@contextmanager
def _memory_bound(extra_bytes: int):
    """Cap the process's address space at its present size plus ``extra_bytes`` while an
    untrusted file is read, where the system allows (Linux). A damaged file can make
    libhdf5 itself allocate without end (a corrupt group B-tree); under the cap its
    allocation fails and HDF5 reports an error instead of the kernel killing the process
    (or a neighbour). The previous limit is restored afterwards."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        yield
        return
    used = _address_space_bytes()
    cap = None if used is None else used + extra_bytes
    unlimited = resource.RLIM_INFINITY
    if cap is None or (soft != unlimited and soft <= cap) or (hard != unlimited and hard < cap):
        yield                                           # unknown, or already as tight
        return
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def _refusing(path: Path):
    """The boundary of every public reader: the process may grow by at most
    READ_MEMORY_BYTES plus four times the file's size while it reads, and whatever a
    damaged file makes h5py, HDF5 or numpy raise becomes one GoldenError naming the file,
    so no other exception leaves."""
    try:
        file_bytes = Path(path).stat().st_size if Path(path).is_file() else 0
    except (OSError, ValueError):
        file_bytes = 0
    try:
        with _memory_bound(READ_MEMORY_BYTES + 4 * file_bytes):
            yield
    except GoldenError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file may make h5py raise anything
        raise GoldenError(f"{path}: damaged or unreadable export ({type(e).__name__}: {_first_line(e)})") from None


def _open(path: Path):
    """The file opened read-only by h5py; a missing path, a directory, a special file or a
    file HDF5 cannot open is one GoldenError."""
    import h5py

    path = Path(path)
    try:
        if path.is_dir():
            raise GoldenError(f"{path}: is a directory, not an HDF5 file")
        if not path.is_file():
            raise GoldenError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        if isinstance(e, GoldenError):
            raise
        raise GoldenError(f"{path}: not a readable HDF5 file ({_first_line(e)})") from None


def _link_kind(group, key: str) -> int | None:
    """The link type of member ``key`` (h5py.h5l.TYPE_HARD, …), None if absent; soft and
    external links are not followed."""
    name = key.encode()
    return group.id.links.get_info(name).type if group.id.links.exists(name) else None


def _decoded(value):
    """Bytes as UTF-8 text where they are valid UTF-8; anything else as it is."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _plain_type(tid) -> bool:
    """Whether an HDF5 datatype is one an export's attributes use: an integer, a float, or a
    fixed or variable-length ASCII/UTF-8 string. Anything else (a sequence, enum, compound,
    reference, ...) is refused before it is read: HDF5 can crash reading a damaged file's
    variable-length data through the wrong type."""
    from h5py import h5t

    cls = tid.get_class()
    if cls in (h5t.INTEGER, h5t.FLOAT):
        return True
    return cls == h5t.STRING and tid.get_cset() in (h5t.CSET_ASCII, h5t.CSET_UTF8)


def _names(container, what: str, path: str) -> list[str]:
    """The member or attribute names of an h5py group or attribute manager; a name that is
    not UTF-8 text (h5py gives it as bytes) is refused."""
    names = list(container)
    odd = [n for n in names if not isinstance(n, str)]
    if odd:
        raise GoldenError(f"{path}: {what} named {_show(odd[0])} is not UTF-8 text")
    return names


def _attr_bytes(aid) -> int:
    """The bytes an attribute's values take (HDF5 reports a size of 0 as an error)."""
    try:
        return aid.get_storage_size()
    except RuntimeError:
        shape = aid.shape
        return 0 if shape is None else math.prod(shape) * aid.get_type().get_size()


def _read_attrs(obj, name: str, path: str) -> dict:
    """Every attribute of an h5py object, each refused before it is read when it takes
    more than MAX_ATTR_BYTES, and read as h5py's ``attrs[key]`` reads it (the same steps
    on the attribute already open: a verify reads every attribute, and opening each twice
    doubled its time)."""
    import h5py

    attrs, out = obj.attrs, {}
    for key in _names(attrs, f"attribute of {name}", path):
        aid = attrs.get_id(key)
        if _attr_bytes(aid) > MAX_ATTR_BYTES:
            raise GoldenError(f"{path}: attribute {key!r} of {name} takes {_attr_bytes(aid)} bytes, above "
                              f"the reader's limit of {MAX_ATTR_BYTES}")
        if not _plain_type(aid.get_type()):
            raise GoldenError(f"{path}: attribute {key!r} of {name} is not a number or a string")
        shape, dtype = aid.shape, aid.dtype
        if shape is None:
            out[key] = h5py.Empty(dtype)
            continue
        file_type = h5py.h5t.py_create(dtype)
        if dtype.subdtype is not None:
            dtype, sub_shape = dtype.subdtype
            shape = shape + sub_shape
        value = np.zeros(shape, dtype=dtype)
        aid.read(value, mtype=file_type)
        info = h5py.h5t.check_string_dtype(dtype)
        if info and info.length is None:               # variable-length strings: bytes to str
            value = np.array([b.decode("utf-8", "surrogateescape") for b in value.flat],
                             dtype=dtype).reshape(value.shape)
        out[key] = value[()] if value.ndim == 0 else value
    return out


@dataclass(frozen=True)
class _Node:
    """An open group or dataset under its path in the file (h5py's ``.name`` asks HDF5)."""

    h5: object
    name: str

    def child(self, key: str) -> str:
        return f"{self.name.rstrip('/')}/{key}"


class _Reader:
    """Typed, bounded reads from one open export. Every attribute is checked for type and
    range, and every dataset for dtype, shape and size, *before* it is used or read, so a
    damaged or hostile file gives one GoldenError naming the file and the problem, never
    another exception or a huge allocation. Each object's attributes are read once.
    Datasets whose bytes disagree with their ``sha256`` attribute are collected in ``bad``."""

    def __init__(self, f, path: Path):
        self.root, self.path = _Node(f, "/"), str(path)
        self.file_bytes = Path(path).stat().st_size
        self.bad: list[str] = []
        self._attrs: dict[str, dict] = {}

    def error(self, what: str) -> GoldenError:
        return GoldenError(f"{self.path}: {what}")

    def attrs(self, node: _Node) -> dict:
        """Every attribute of ``node``, read once."""
        if node.name not in self._attrs:
            self._attrs[node.name] = _read_attrs(node.h5, node.name, self.path)
        return self._attrs[node.name]

    def has(self, node: _Node, key: str) -> bool:
        """Whether ``node`` has attribute ``key``."""
        return key in self.attrs(node)

    def has_member(self, node: _Node, key: str) -> bool:
        """Whether group ``node`` has a member (of any kind) named ``key``."""
        return _link_kind(node.h5, key) is not None

    def raw(self, node: _Node, key: str):
        if key not in self.attrs(node):
            raise self.error(f"{node.name} has no attribute {key!r}")
        return self.attrs(node)[key]

    def _wrong(self, node: _Node, key: str, value, expected: str) -> GoldenError:
        return self.error(f"{node.name} attribute {key} = {_show(value)}: expected {expected}")

    def int(self, node: _Node, key: str, lo: int, hi: int) -> int:
        """An integer scalar attribute in [lo, hi]."""
        v = self.raw(node, key)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
            raise self._wrong(node, key, v, f"an integer in [{lo}, {hi}]")
        return int(v)

    def real(self, node: _Node, key: str) -> float:
        """A finite real scalar attribute."""
        v = self.raw(node, key)
        if (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating))
                or not math.isfinite(float(v))):
            raise self._wrong(node, key, v, "a finite number")
        return float(v)

    def text(self, node: _Node, key: str, choices: tuple[str, ...] | None = None) -> str:
        """A string attribute (one of ``choices`` if given)."""
        v = self.raw(node, key)
        s = _decoded(v)
        if not isinstance(s, str) or (choices is not None and s not in choices):
            raise self._wrong(node, key, v, "one of " + ", ".join(choices) if choices else "a string")
        return str(s)

    def ints(self, node: _Node, key: str, lo: int, hi: int, max_len: int) -> list[int]:
        """A one-dimensional integer array attribute of 1…max_len entries in [lo, hi]."""
        v = self.raw(node, key)
        if not (isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu" and 1 <= v.size <= max_len
                and lo <= int(v.min()) and int(v.max()) <= hi):
            raise self._wrong(node, key, v, f"1 to {max_len} integers in [{lo}, {hi}]")
        return [int(t) for t in v]

    def member(self, node: _Node, key: str, group_wanted: bool) -> _Node:
        """Member ``key`` of group ``node``, a hard-linked group (or dataset) as wanted."""
        import h5py

        what, cls = ("group", h5py.Group) if group_wanted else ("dataset", h5py.Dataset)
        kind, name = _link_kind(node.h5, key), node.child(key)
        if kind is None:
            raise self.error(f"missing {what} {name}")
        obj = node.h5[key] if kind == h5py.h5l.TYPE_HARD else None
        if not isinstance(obj, cls):
            raise self.error(f"{name} is not a {what}")
        return _Node(obj, name)

    def dataset(self, node: _Node, key: str, kind: str, shape: tuple[int | None, ...]) -> np.ndarray:
        """Dataset ``key`` of group ``node``: signed integers (``kind`` "int") or float64
        (``"float"``), of ``shape`` (None: any length), no larger than the file (datasets
        are stored uncompressed), read and checked against its ``sha256``."""
        ds = self.member(node, key, group_wanted=False)
        name, dt = ds.name, ds.h5.dtype
        if not (dt.kind == "i" if kind == "int" else (dt.kind == "f" and dt.itemsize == 8)):
            raise self.error(f"dataset {name} has dtype {dt}, expected "
                             f"{'signed integers' if kind == 'int' else 'float64'}")
        got = ds.h5.shape
        if got is None or len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
            want = "(" + ", ".join("N" if w is None else str(w) for w in shape) + ")"
            raise self.error(f"dataset {name} has shape {got}, expected {want}")
        if math.prod(got) * dt.itemsize > self.file_bytes:
            raise self.error(f"dataset {name} of shape {got} claims more bytes than the file holds")
        stored = self.text(ds, "sha256")
        data = ds.h5[()]
        if sha256(data) != stored:
            self.bad.append(name)
        return data

    def in_range(self, data: np.ndarray, lo: int, hi: int, what: str) -> None:
        if data.size and (int(data.min()) < lo or int(data.max()) > hi):
            raise self.error(f"{what} holds values in [{int(data.min())}, {int(data.max())}], outside its "
                             f"declared range [{lo}, {hi}]")


def _read_layer(r: _Reader, g, i: int) -> Layer | LIFLayer:
    """Layer i (group ``g``), every attribute the replay reads checked for type and range,
    the tables for shape and for the range of their declared formats."""
    kind = r.text(g, "kind", LAYER_KINDS)
    n_in, n_out = r.int(g, "in_features", 1, MAX_FEATURES), r.int(g, "out_features", 1, MAX_FEATURES)
    w_range = fmt_range(r.int(g, "weight_bits", 1, 32), bool(r.int(g, "weight_signed", 0, 1)))
    goodness, goodness_scale = r.text(g, "goodness", GOODNESS_KINDS), r.real(g, "goodness_scale")
    if kind == "lif":
        state_bits, frac = r.int(g, "state_bits", 2, 64), r.int(g, "decay_frac_bits", 0, 30)
        if state_bits - 1 + frac > 62:
            raise r.error(f"{g.name}: a {state_bits}-bit membrane with {frac} decay fraction bits is too wide for "
                          "exact 64-bit replay")
        limit = 2 ** (state_bits - 1) - 1
        weight, bias = r.dataset(g, "weight", "int", (n_out, n_in)), r.dataset(g, "bias", "int", (n_out,))
        r.in_range(weight, *w_range, f"{g.name}/weight")
        r.in_range(bias, -limit, limit, f"{g.name}/bias")
        return LIFLayer(weight=weight, bias=bias, threshold=r.int(g, "threshold", -INT62, INT62),
                        decay=r.int(g, "decay", 0, 2 ** frac), frac_bits=frac, state_limit=limit,
                        reset=r.text(g, "reset", RESETS), goodness=goodness, goodness_scale=goodness_scale)
    acc = r.int(g, "accumulator_bits", 2, 64)
    graded = dict(norm_gain=r.int(g, "norm_gain", 0, INT62 - 1), frac_bits=r.int(g, "norm_gain_frac_bits", 0, 30),
                  in_range=fmt_range(r.int(g, "input_bits", 1, 32), bool(r.int(g, "input_signed", 0, 1))),
                  acc_bits=acc, goodness=goodness, goodness_scale=goodness_scale,
                  class_scale=r.real(g, "class_goodness_scale") if r.has(g, "class_goodness_scale") else None)
    if kind == "dense-relu":
        weight, bias = r.dataset(g, "weight", "int", (n_out, n_in)), r.dataset(g, "bias", "int", (n_out,))
        layer = Layer(weight=weight, bias=bias, **graded)
    else:
        c, h, w = (r.int(g, k, 1, MAX_FEATURES) for k in ("in_channels", "in_height", "in_width"))
        o, k = r.int(g, "out_channels", 1, MAX_FEATURES), r.int(g, "kernel", 1, MAX_FEATURES)
        stride, groups, pool = (r.int(g, key, 1, MAX_FEATURES) for key in ("stride", "groups", "pool"))
        padding = r.int(g, "padding", 0, k - 1)
        ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
        if c % groups or o % groups or min(h, w) + 2 * padding < k or min(ho, wo) < pool or n_in != c * h * w:
            raise r.error(f"conv layer {i}: its geometry (channels {c}/{o}, maps {h}x{w}, kernel {k}, padding "
                          f"{padding}, stride {stride}, groups {groups}, pool {pool}, in_features {n_in}) does "
                          "not describe a convolution")
        weight, bias = r.dataset(g, "weight", "int", (o, c // groups, k, k)), r.dataset(g, "bias", "int", (o,))
        layer = ConvLayer(weight=weight, bias=bias, **graded, in_shape=(c, h, w), stride=stride, padding=padding,
                          groups=groups, pool=pool)
        if layer.width != n_out:
            raise r.error(f"conv layer {i}: out_features = {n_out}, but its geometry gives {layer.width}")
    lim = 2 ** (acc - 1) - 1
    r.in_range(weight, *w_range, f"{g.name}/weight")
    r.in_range(bias, -lim, lim, f"{g.name}/bias")
    return layer


def _in_width(layer) -> int:
    """The number of integers a layer reads per sample."""
    return math.prod(layer.in_shape) if isinstance(layer, ConvLayer) else layer.weight.shape[1]


def _read_head(r: _Reader, g, layers: list, classes: int) -> Head:
    n = len(layers)
    idx = r.ints(g, "layers", 0, n - 1, n)
    gains = r.ints(g, "norm_gains", 0, INT62 - 1, n)
    if len(gains) != len(idx):
        raise r.error(f"/head has {len(idx)} layers but {len(gains)} norm_gains")
    w_range = fmt_range(r.int(g, "weight_bits", 1, 32), bool(r.int(g, "weight_signed", 0, 1)))
    weight = r.dataset(g, "weight", "int", (classes, sum(layers[i].width for i in idx)))
    r.in_range(weight, *w_range, "/head/weight")
    return Head(weight=weight, layers=idx, norm_gains=gains, frac_bits=r.int(g, "norm_gain_frac_bits", 0, 30),
                in_range=fmt_range(r.int(g, "input_bits", 1, 32), bool(r.int(g, "input_signed", 0, 1))),
                acc_bits=r.int(g, "accumulator_bits", 2, 64))


def _read_model(r: _Reader) -> Model:
    """The model of an open export, checked for consistency: the layer groups are exactly
    0…num_layers−1, each layer reads what the one before hands on, the first reads the
    encoded input, the head's table spans its layers, and (schema 3) content_sha256 is
    compared with the file's content."""
    f = r.root
    fmt = r.raw(f, "format") if r.has(f, "format") else None
    if not isinstance(fmt, (str, bytes)) or _decoded(fmt) != SCHEMA:
        raise r.error(f"not an ffneuro chip export (no format = {SCHEMA!r} attribute)")
    version = r.int(f, "schema_version", 0, 2 ** 31)
    if version not in READABLE_VERSIONS:
        raise r.error(f"schema version {version} is not supported (this reader: "
                      f"{', '.join(map(str, READABLE_VERSIONS))})")
    digest_ok = None
    if version >= 3 or r.has(f, DIGEST_ATTR):
        digest_ok = r.text(f, DIGEST_ATTR) == content_digest(f.h5, r.path, lambda obj, name: r.attrs(_Node(obj, name)))
    n, classes = r.int(f, "num_layers", 1, MAX_LAYERS), r.int(f, "num_classes", 1, MAX_CLASSES)
    lg = r.member(f, "layers", group_wanted=True)
    names = sorted(_names(lg.h5, "member of /layers", r.path))
    if names != sorted(str(i) for i in range(n)):
        raise r.error(f"/layers holds {_show(names)} but num_layers = {n}: a layer is missing or extra")
    layers = [_read_layer(r, r.member(lg, str(i), group_wanted=True), i) for i in range(n)]
    gi, ginf = r.member(f, "input", group_wanted=True), r.member(f, "inference", group_wanted=True)
    d = r.int(gi, "data_features", 1, MAX_FEATURES)
    shape = tuple(r.ints(gi, "data_shape", 1, MAX_FEATURES, 3)) if r.has(gi, "data_shape") else (d,)
    if len(shape) == 2 or math.prod(shape) != d:
        raise r.error(f"/input data_shape {shape} does not hold data_features = {d}")
    spiking = r.has(gi, "spike_encoding")
    model = Model(layers=layers, num_classes=classes, data_features=d, levels=r.int(gi, "levels", 1, 2 ** 16),
                  label_mode=r.text(gi, "label_mode", LABEL_MODES), label_code=r.int(gi, "label_code", -INT62, INT62),
                  neutral_code=r.int(gi, "neutral_code", -INT62, INT62),
                  multi_pass_layers=r.ints(ginf, "multi_pass_layers", 0, n - 1, n),
                  head=_read_head(r, r.member(f, "head", True), layers, classes) if r.has_member(f, "head") else None,
                  attrs={k: v for k, v in r.attrs(f).items() if k != DIGEST_ATTR},
                  spike_encoding=r.text(gi, "spike_encoding", SPIKE_ENCODINGS) if spiking else None,
                  steps=r.int(gi, "steps", 1, MAX_STEPS) if spiking else 1, data_shape=shape,
                  competitive=bool(r.int(ginf, "competitive", 0, 1)) if r.has(ginf, "competitive") else False,
                  exit_threshold=_exit_threshold(r, ginf), schema_version=version, digest_ok=digest_ok)
    model.attrs = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in model.attrs.items()}
    _check_model(r, model)
    return model


def _exit_threshold(r: _Reader, ginf) -> float | None:
    """``/inference`` ``exit_threshold`` (schema 4): a finite real >= 0, or None without one."""
    if not r.has(ginf, "exit_threshold"):
        return None
    theta = r.real(ginf, "exit_threshold")
    if theta < 0:
        raise r.error(f"/inference exit_threshold = {theta!r} must be a finite number >= 0")
    return theta


def _check_model(r: _Reader, model: Model) -> None:
    """Refuse what the replay cannot do rather than replay it wrongly (or crash)."""
    c, d, layers = model.num_classes, model.data_features, model.layers
    first = {"overlay": d, "concat": c + d, "planes": d + c * math.prod(model.data_shape[1:]), "none": d}
    if model.label_mode == "planes" and len(model.data_shape) != 3:
        raise r.error(f"label planes need image data, but data_shape is {model.data_shape}")
    if model.label_mode == "overlay" and c > d:
        raise r.error(f"an overlaid label of {c} classes needs at least {c} data features, not {d}")
    want = first[model.label_mode]
    gi = r.member(r.root, "input", group_wanted=True)
    if r.has(gi, "first_layer_features") and r.int(gi, "first_layer_features", 1, MAX_FEATURES) != want:
        raise r.error(f"/input first_layer_features disagrees with label_mode {model.label_mode!r} "
                      f"({d} data features, {c} classes: {want})")
    widths = [want] + [layer.width for layer in layers]
    for i, layer in enumerate(layers):
        if _in_width(layer) != widths[i]:
            raise r.error(f"layer {i} reads {_in_width(layer)} integers, but "
                          f"{'the encoded input' if i == 0 else f'layer {i - 1}'} hands on {widths[i]}")
    lif = [isinstance(layer, LIFLayer) for layer in layers]
    if any(lif) != (model.spike_encoding is not None) or any(lif) != all(lif):
        raise r.error("spiking (lif) layers need a spike encoder in /input and no graded layers, and graded "
                      "layers no spike encoder")
    if model.sample_entries() > MAX_SAMPLE_ENTRIES:
        raise r.error(f"one sample's replay would hold {model.sample_entries()} integers at once, above the reader's "
                      f"limit of {MAX_SAMPLE_ENTRIES}")
    if model.competitive:
        if any(getattr(layer, "class_scale", None) is None for layer in layers):
            raise r.error("a competitive model needs every layer's class_goodness_scale (graded layers only)")
        if any(layer.width % c for layer in layers):
            raise r.error(f"a competitive model needs every layer's width divisible by its {c} classes")


def _read_vectors(r: _Reader, model: Model) -> dict[str, np.ndarray] | None:
    """The stored test vectors (None without a /vectors group), each checked for its shape
    against the model before it is read; an unexpected or missing member is refused."""
    if not r.has_member(r.root, "vectors"):
        return None
    g = r.member(r.root, "vectors", group_wanted=True)
    c, n_layers = model.num_classes, len(model.layers)
    k = 1 if model.competitive else c + 1
    a0 = r.dataset(g, "input", "int", (None, model.data_features))
    n = a0.shape[0]
    want = {"label": ("int", (n,)), "goodness": ("int", (n, k, n_layers)), "score": ("float", (n, c)),
            "pred_multi_pass": ("int", (n,)),
            **{f"activity{i}": ("int", (n, k, layer.width)) for i, layer in enumerate(model.layers)}}
    if model.competitive:
        want["class_goodness"] = ("int", (n, c, n_layers))
    if model.head is not None:
        want.update(head_logits=("int", (n, c)), pred_one_pass=("int", (n,)))
    if model.exit_threshold is not None:
        want.update(exit_layer=("int", (n,)), pred_early_exit=("int", (n,)))
    extra = sorted(set(_names(g.h5, "member of /vectors", r.path)) - set(want) - {"input"})
    if extra:
        raise r.error(f"unexpected member /vectors/{_show(extra[0])}")
    return {"input": a0, **{key: r.dataset(g, key, kind, shape) for key, (kind, shape) in want.items()}}


# ----------------------------------------------------------------------------------------
# The content digest (schema 3)
# ----------------------------------------------------------------------------------------
def _canonical(value, where: str):
    """An attribute value as JSON data that keeps its type: ``[dtype, shape, values]`` for
    numbers (integers as integers, floats as the exact ``float.hex()`` text), ``["str", s]``,
    ``["bytes", hex]``; any other kind of attribute is refused."""
    import h5py

    if isinstance(value, str):
        return ["str", str(value)]
    if isinstance(value, bytes):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, h5py.Empty):
        return ["empty", np.dtype(value.dtype).str]
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        flat = a.ravel().tolist()
        if a.dtype.kind in "iub":
            values = [int(t) for t in flat]
        elif a.dtype.kind == "f":
            values = [float(t).hex() for t in flat]
        elif a.dtype.kind in "OSU":
            values = [_canonical(t, where) for t in flat]
        else:
            raise GoldenError(f"{where}: unsupported attribute dtype {a.dtype}")
        return [a.dtype.str, list(a.shape), values]
    raise GoldenError(f"{where}: unsupported attribute type {type(value).__name__}")


def _canonical_attrs(attrs: dict, where: str, skip: str | None = None) -> dict:
    return {k: _canonical(v, f"{where} attribute {k!r}") for k, v in attrs.items() if k != skip}


def canonical_content(f, path: str = "", attrs_of=None) -> str:
    """The canonical text of an open export's content: one entry per group and dataset,
    keyed by its path, with its attributes (the root's ``content_sha256`` excepted) and, for
    a dataset, its dtype and shape (its bytes enter through its ``sha256`` attribute), as
    JSON with sorted keys and no spaces. Only hard links, at most MAX_DEPTH deep and
    MAX_OBJECTS in all, are allowed. ``attrs_of(obj, name)`` reads an object's attributes
    (default: afresh)."""
    import h5py

    attrs_of = attrs_of or (lambda obj, name: _read_attrs(obj, name, path))
    objects: dict[str, dict] = {}
    todo = [("/", f, 0)]
    while todo:
        name, group, depth = todo.pop()
        objects[name] = {"kind": "group", "attrs": _canonical_attrs(attrs_of(group, name), f"{path}: {name}",
                                                                    DIGEST_ATTR if name == "/" else None)}
        for key in _names(group, f"member of {name}", path):
            child = name.rstrip("/") + "/" + key
            if _link_kind(group, key) != h5py.h5l.TYPE_HARD:
                raise GoldenError(f"{path}: {child} is a soft or external link, which an export never holds")
            obj = group[key]
            if isinstance(obj, h5py.Group) and depth < MAX_DEPTH:
                todo.append((child, obj, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                objects[child] = {"kind": "dataset", "dtype": obj.dtype.str,
                                  "attrs": _canonical_attrs(attrs_of(obj, child), f"{path}: {child}"),
                                  "shape": None if obj.shape is None else list(obj.shape)}
            else:
                raise GoldenError(f"{path}: {child} is neither a dataset nor a group within {MAX_DEPTH} levels")
            if len(objects) + len(todo) > MAX_OBJECTS:
                raise GoldenError(f"{path}: more than {MAX_OBJECTS} groups and datasets")
    return json.dumps(objects, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_digest(f, path: str = "", attrs_of=None) -> str:
    """The hex SHA-256 of ``canonical_content(f)``: the ``content_sha256`` a schema 3 export
    stores at its root. A changed, added or removed attribute, group or dataset, a changed
    dtype or shape, or a changed dataset checksum changes it."""
    return hashlib.sha256(canonical_content(f, path, attrs_of).encode("ascii")).hexdigest()


# ----------------------------------------------------------------------------------------
# Checking a file
# ----------------------------------------------------------------------------------------
def read_model(path: Path) -> tuple[Model, list[str]]:
    """The model in ``path`` and the names of datasets whose checksum failed. Anything wrong
    with the file is one GoldenError."""
    path = Path(path)
    with _refusing(path), _open(path) as f:
        r = _Reader(f, path)
        model = _read_model(r)
    return model, r.bad


def read_vectors(path: Path) -> dict[str, np.ndarray] | None:
    """The stored test vectors (None if the file has none), checked for shape; checksums
    are checked by ``verify``."""
    path = Path(path)
    with _refusing(path), _open(path) as f:
        r = _Reader(f, path)
        return _read_vectors(r, _read_model(r))


def _entry(layer, u: int) -> str:
    """Activity entry u of a layer in words (a conv layer's: its channel and position)."""
    if isinstance(layer, ConvLayer):
        _, h, w = layer.out_shape
        return f"unit {u} (channel {u // (h * w)}, y {u // w % h}, x {u % w})"
    return f"unit {u}"


def check_vectors(model: Model, v: dict[str, np.ndarray] | None) -> dict:
    """Replay every stored vector (``v`` as read by ``_read_vectors``); the first mismatch
    (layer, vector, label, index) or none."""
    if v is None:
        return {"vectors": 0, "mismatch": None}
    a0 = v["input"].astype(np.int64)
    n, c = a0.shape[0], model.num_classes
    labels: list[int | None] = [None] if model.competitive else [*range(c), None]
    for k, label in enumerate(labels):
        which = ("the label-free pass" if model.competitive else "neutral") if label is None else f"label {label}"
        for i, (layer, h) in enumerate(zip(model.layers, model.pass_activities(a0, label))):
            expected = v[f"activity{i}"][:, k]
            diff = np.argwhere(h != expected)
            if diff.size:
                s, u = (int(t) for t in diff[0])
                return {"vectors": n, "mismatch": f"layer {i + 1}, vector {s}, {which}, {_entry(layer, u)}: "
                                                  f"expected {int(expected[s, u])}, replay gives {int(h[s, u])}"}
            g, expected = int_goodness(h, layer.goodness), v["goodness"][:, k, i]
            if not np.array_equal(g, expected):
                s = int(np.argwhere(g != expected)[0][0])
                return {"vectors": n, "mismatch": f"goodness of layer {i + 1}, vector {s}, {which}: "
                                                  f"expected {int(expected[s])}, replay gives {int(g[s])}"}
    table = model.goodness_table(a0)
    expected = v["class_goodness"] if model.competitive else v["goodness"][:, :c]
    diff = np.argwhere(table != expected)
    if diff.size:
        s, lab, i = (int(t) for t in diff[0])
        what = "class-group goodness" if model.competitive else "goodness"
        return {"vectors": n, "mismatch": f"{what} of layer {i + 1}, vector {s}, label {lab}: "
                                          f"expected {int(expected[s, lab, i])}, replay gives {int(table[s, lab, i])}"}
    score = model.scores(table)
    if not np.array_equal(score, v["score"]):
        s = int(np.argwhere(score != v["score"])[0][0])
        return {"vectors": n, "mismatch": f"multi-pass score of vector {s} differs"}
    pred = score.argmax(axis=1)
    if not np.array_equal(pred, v["pred_multi_pass"]):
        s = int(np.argwhere(pred != v["pred_multi_pass"])[0][0])
        return {"vectors": n, "mismatch": f"multi-pass prediction of vector {s}: expected "
                                          f"{int(v['pred_multi_pass'][s])}, replay gives {int(pred[s])}"}
    if model.exit_threshold is not None:
        exit_layer, score = model.early_exit(table)
        for key, got in (("exit_layer", exit_layer), ("pred_early_exit", score.argmax(axis=1))):
            if not np.array_equal(got, v[key]):
                s = int(np.argwhere(got != v[key])[0][0])
                what = "exit layer" if key == "exit_layer" else "early-exit prediction"
                return {"vectors": n, "mismatch": f"{what} of vector {s}: expected {int(v[key][s])}, "
                                                  f"replay gives {int(got[s])}"}
    if model.head is not None:
        logits = model.head_logits(a0)
        if not np.array_equal(logits, v["head_logits"]):
            s, lab = (int(t) for t in np.argwhere(logits != v["head_logits"])[0])
            return {"vectors": n, "mismatch": f"head logit of vector {s}, label {lab}: expected "
                                              f"{int(v['head_logits'][s, lab])}, replay gives {int(logits[s, lab])}"}
        pred = logits.argmax(axis=1)
        if not np.array_equal(pred, v["pred_one_pass"]):
            s = int(np.argwhere(pred != v["pred_one_pass"])[0][0])
            return {"vectors": n, "mismatch": f"one-pass prediction of vector {s}: expected "
                                              f"{int(v['pred_one_pass'][s])}, replay gives {int(pred[s])}"}
    return {"vectors": n, "mismatch": None}


def predict(model: Model, a0: np.ndarray, batch: int = 500) -> dict[str, np.ndarray]:
    """Multi-pass (and one-pass, with a head; early exit, with an exit threshold)
    predictions for integer data (N, D)."""
    out: dict[str, list] = {"multi_pass": [], "one_pass": [], "early_exit": []}
    for s in range(0, a0.shape[0], batch):
        chunk = a0[s:s + batch]
        table = model.goodness_table(chunk)
        out["multi_pass"].append(model.scores(table).argmax(axis=1))
        if model.exit_threshold is not None:
            out["early_exit"].append(model.early_exit(table)[1].argmax(axis=1))
        if model.head is not None:
            out["one_pass"].append(model.head_logits(chunk).argmax(axis=1))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def verify_failures(report: dict) -> list[str]:
    """Why a verify report is not ok, one line each, most basic first: a dataset checksum,
    the content digest, a replay mismatch, or no vectors to replay (then only the
    checksums were checked, which proves nothing about the datapath)."""
    out = []
    if report["checksum_failures"]:
        out.append(f"checksum failed for {', '.join(report['checksum_failures'])}")
    if report["digest_ok"] is False:
        out.append(f"{DIGEST_ATTR} does not match: an attribute, a dataset's checksum or the file's structure "
                   "changed after export")
    if report["mismatch"]:
        out.append(f"replay mismatch: {report['mismatch']}")
    if not report["vectors"]:
        out.append("no test vectors: nothing was replayed, only checksums were checked (export with --vectors N)")
    return out


def _coverage_notes(model: Model) -> list[str]:
    if model.digest_ok is None:
        return [f"schema version {model.schema_version} file: its attributes and structure are covered by no "
                f"checksum (only dataset bytes are); re-export for a {DIGEST_ATTR}"]
    return []


def verify(path: Path, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict:
    """Check checksums and the content digest, replay the stored vectors exactly, and (with
    data x in [0, 1] of shape (N, D) and labels y) report the replayed accuracy. ``ok`` is
    true only when every dataset checksum holds, the content digest holds (files before
    schema 3 have none: ``notes`` says so), at least one vector was stored and every stored
    vector replays exactly; otherwise ``reason`` is the first of ``failures``. A file that
    cannot be read or is inconsistent raises one GoldenError."""
    path = Path(path)
    with _refusing(path):
        with _open(path) as f:
            r = _Reader(f, path)
            model = _read_model(r)
            vectors = _read_vectors(r, model)
        report = {"file": str(path), "schema_version": model.schema_version, "layers": len(model.layers),
                  **check_vectors(model, vectors)}
        if x is not None:
            if x.ndim != 2 or x.shape[1] != model.data_features:
                raise GoldenError(f"data has {x.shape[1:]} features per sample, the model expects "
                                  f"{model.data_features}")
            preds = predict(model, integer_input(x, model.levels))
            report["n_data"] = int(x.shape[0])
            report["test_error"] = {k: float((p != y).mean() * 100) for k, p in preds.items()}
    report["checksum_failures"] = sorted(set(r.bad))
    report["digest_ok"] = model.digest_ok
    report["attributes_covered"] = model.digest_ok is not None
    report["notes"] = _coverage_notes(model)
    report["failures"] = verify_failures(report)
    report["reason"] = report["failures"][0] if report["failures"] else None
    report["ok"] = not report["failures"]
    return report


_JSON_PROVENANCE = ("config", "metrics", "profile")     # JSON objects in /provenance


def provenance(path: Path) -> dict:
    """The file's provenance group as plain data (JSON attributes decoded; ``config``,
    ``metrics`` and ``profile`` must be JSON objects)."""
    path = Path(path)
    with _refusing(path), _open(path) as f:
        r = _Reader(f, path)
        if not r.has_member(r.root, "provenance"):
            return {}
        g = r.member(r.root, "provenance", group_wanted=True)
        out = {}
        for k, v in r.attrs(g).items():
            v = v.decode(errors="replace") if isinstance(v, bytes) else v
            v = v.item() if isinstance(v, np.generic) else v
            if isinstance(v, str) and (k in _JSON_PROVENANCE or v[:1] in "{["):
                try:
                    v = json.loads(v)
                except json.JSONDecodeError:
                    pass
            if k in _JSON_PROVENANCE and not isinstance(v, dict):
                raise r.error(f"/provenance attribute {k} is not a JSON object")
            out[k] = v
        return out


def _layer_summary(r: _Reader, g, i: int, layer) -> dict:
    """One row of ``inspect``: a layer's kind, table shape, formats and bytes."""
    kind = r.text(g, "kind", LAYER_KINDS)
    acc_key = "state_bits" if kind == "lif" else "accumulator_bits"
    return {"layer": i + 1, "kind": kind, "shape": list(layer.weight.shape),   # conv: (O, C/groups, k, k)
            "weight_bits": r.int(g, "weight_bits", 1, 32), "weight_dtype": str(layer.weight.dtype),
            "weight_scale": r.real(g, "weight_scale"),
            "weight_exponent": r.int(g, "weight_exponent", -2 ** 16, 2 ** 16) if r.has(g, "weight_exponent") else None,
            "input_bits": r.int(g, "input_bits", 1, 32) if r.has(g, "input_bits") else 1,
            "accumulator_bits": r.int(g, acc_key, 2, 64),
            "bytes": int(layer.weight.nbytes + layer.bias.nbytes)}


def inspect(path: Path) -> dict:
    """A readable summary of an export: layers, bits, bytes, checksum status (every
    dataset's and the content digest), provenance."""
    path = Path(path)
    with _refusing(path):
        with _open(path) as f:
            r = _Reader(f, path)
            model = _read_model(r)
            vectors = _read_vectors(r, model)        # read for their checksums
            lg = r.member(r.root, "layers", group_wanted=True)
            layers = [_layer_summary(r, r.member(lg, str(i), True), i, layer) for i, layer in enumerate(model.layers)]
            head = None
            if model.head is not None:
                w = model.head.weight
                head = {"layers": [i + 1 for i in model.head.layers], "shape": list(w.shape),
                        "weight_bits": r.int(r.member(r.root, "head", True), "weight_bits", 1, 32),
                        "weight_dtype": str(w.dtype),
                        "bytes": int(w.nbytes)}
            version = r.text(r.root, "ffneuro_version") if r.has(r.root, "ffneuro_version") else None
        prov = provenance(path)
    return {"file": str(path), "schema_version": model.schema_version,
            "ffneuro_version": version, "num_classes": model.num_classes,
            "label_mode": model.label_mode, "data_shape": list(model.data_shape), "competitive": model.competitive,
            "multi_pass_layers": [i + 1 for i in model.multi_pass_layers],
            "layers": layers, "head": head, "vectors": 0 if vectors is None else int(vectors["input"].shape[0]),
            "profile": (prov.get("profile") or {}).get("name"), "quantisation": prov.get("quantisation"),
            "dataset": prov.get("dataset"), "test_error_at_training": (prov.get("metrics") or {}).get("test_error"),
            "checksum_failures": sorted(set(r.bad)), "digest_ok": model.digest_ok,
            "attributes_covered": model.digest_ok is not None, "notes": _coverage_notes(model),
            "checksums_ok": not r.bad and model.digest_ok is not False}
