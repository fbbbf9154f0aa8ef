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
4. One-pass: the neutral input's activities of the head's layers, each normalised as in
   step 2 with the head's gain for that layer's width, concatenated: ``logits = W_h·x_q``
   (saturated at the accumulator width); prediction = first argmax.

Integers are exact: products are formed in float64 only when every partial sum is
provably below 2^53 (else int64), and all other arithmetic is int64.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = "ffneuro-chip"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)      # version 1: dense and LIF layers, overlay/concat labels only


class GoldenError(ValueError):
    """The file is not a valid ffneuro chip export (one-line message naming the problem)."""


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
    def out_shape(self) -> tuple[int, int, int]:
        k = self.weight.shape[2]
        ho, wo = ((size + 2 * self.padding - k) // self.stride + 1 for size in self.in_shape[1:])
        return self.weight.shape[0], ho // self.pool, wo // self.pool

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
            for i, h in enumerate(self.activities(self.encode(a0, None))):
                out[:, :, i] = class_sums(h, self.num_classes)
            return out
        for c in range(self.num_classes):
            for i, (layer, h) in enumerate(zip(self.layers, self.activities(self.encode(a0, c)))):
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

    def head_logits(self, a0: np.ndarray) -> np.ndarray:
        acts = self.activities(self.encode(a0, None))
        return self.head.logits([acts[i] for i in self.head.layers])


# ----------------------------------------------------------------------------------------
# Reading and checking a file
# ----------------------------------------------------------------------------------------
def sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes, C order, little-endian."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


def _attr(obj, key: str, path: str):
    if key not in obj.attrs:
        raise GoldenError(f"{path}: {obj.name} has no attribute {key!r}")
    v = obj.attrs[key]
    return v.decode() if isinstance(v, bytes) else v


def _dataset(group, key: str, path: str, bad: list[str]) -> np.ndarray:
    if key not in group:
        raise GoldenError(f"{path}: missing dataset {group.name.rstrip('/')}/{key}")
    ds = group[key]
    data = ds[()]
    if "sha256" not in ds.attrs:
        raise GoldenError(f"{path}: dataset {ds.name} has no sha256 attribute")
    if sha256(data) != _attr(ds, "sha256", path):
        bad.append(ds.name)
    return data


def _open(path: Path):
    import h5py

    path = Path(path)
    if not path.exists():
        raise GoldenError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise GoldenError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0]})") from None


def _read_layer(f, i: int, path: str, bad: list[str]) -> Layer | LIFLayer:
    """Layer i of an open file, by its kind."""
    key = f"layers/{i}"
    if key not in f:
        raise GoldenError(f"{path}: missing group /{key}")
    g = f[key]
    a = lambda k: _attr(g, k, path)  # noqa: E731
    kind = str(a("kind"))
    weight, bias = _dataset(g, "weight", path, bad), _dataset(g, "bias", path, bad)
    if kind == "lif":
        return LIFLayer(weight=weight, bias=bias, threshold=int(a("threshold")), decay=int(a("decay")),
                        frac_bits=int(a("decay_frac_bits")), state_limit=2 ** (int(a("state_bits")) - 1) - 1,
                        reset=str(a("reset")), goodness=str(a("goodness")), goodness_scale=float(a("goodness_scale")))
    if kind not in ("dense-relu", "conv-relu"):
        raise GoldenError(f"{path}: layer {i} has kind {kind!r}, which this reader does not know")
    graded = dict(weight=weight, bias=bias, norm_gain=int(a("norm_gain")), frac_bits=int(a("norm_gain_frac_bits")),
                  in_range=fmt_range(int(a("input_bits")), bool(a("input_signed"))),
                  acc_bits=int(a("accumulator_bits")), goodness=str(a("goodness")),
                  goodness_scale=float(a("goodness_scale")),
                  class_scale=float(a("class_goodness_scale")) if "class_goodness_scale" in g.attrs else None)
    if kind == "dense-relu":
        return Layer(**graded)
    layer = ConvLayer(**graded, in_shape=(int(a("in_channels")), int(a("in_height")), int(a("in_width"))),
                      stride=int(a("stride")), padding=int(a("padding")), groups=int(a("groups")), pool=int(a("pool")))
    c, groups, k = layer.in_shape[0], layer.groups, int(a("kernel"))
    o = int(a("out_channels"))
    if (weight.shape != (o, c // groups, k, k) or bias.shape != (o,) or c % groups or o % groups
            or int(a("in_features")) != math.prod(layer.in_shape) or int(a("out_features")) != layer.width):
        raise GoldenError(f"{path}: conv layer {i}: kernels {weight.shape}, biases {bias.shape} and its attributes "
                          "(channels, kernel, groups, features) do not agree")
    return layer


def _check_model(model: Model, path: str) -> None:
    """Refuse what the replay cannot do rather than replay it wrongly."""
    if model.label_mode not in ("overlay", "concat", "planes", "none"):
        raise GoldenError(f"{path}: unknown label_mode {model.label_mode!r}")
    if model.label_mode == "planes" and len(model.data_shape) != 3:
        raise GoldenError(f"{path}: label planes need image data, but data_shape is {model.data_shape}")
    if model.competitive and any(getattr(layer, "class_scale", None) is None for layer in model.layers):
        raise GoldenError(f"{path}: a competitive model needs every layer's class_goodness_scale (graded layers only)")


def read_model(path: Path) -> tuple[Model, list[str]]:
    """The model in ``path`` and the names of datasets whose checksum failed."""
    path = Path(path)
    bad: list[str] = []
    with _open(path) as f:
        try:
            if f.attrs.get("format", b"") not in (SCHEMA, SCHEMA.encode()):
                raise GoldenError(f"{path}: not an ffneuro chip export (no format = {SCHEMA!r} attribute)")
            version = int(_attr(f, "schema_version", str(path)))
            if version not in READABLE_VERSIONS:
                raise GoldenError(f"{path}: schema version {version} is not supported (this reader: "
                                  f"{', '.join(map(str, READABLE_VERSIONS))})")
            layers = [_read_layer(f, i, str(path), bad) for i in range(int(_attr(f, "num_layers", str(path))))]
            head = None
            if "head" in f:
                g = f["head"]
                a = lambda k, g=g: _attr(g, k, str(path))  # noqa: E731
                head = Head(weight=_dataset(g, "weight", str(path), bad),
                            layers=[int(v) for v in a("layers")], norm_gains=[int(v) for v in a("norm_gains")],
                            frac_bits=int(a("norm_gain_frac_bits")),
                            in_range=fmt_range(int(a("input_bits")), bool(a("input_signed"))),
                            acc_bits=int(a("accumulator_bits")))
            gi, ginf = f["input"], f["inference"]
            a = lambda g, k: _attr(g, k, str(path))  # noqa: E731
            data_features = int(a(gi, "data_features"))
            model = Model(layers=layers, num_classes=int(a(f, "num_classes")),
                          data_features=data_features, levels=int(a(gi, "levels")),
                          label_mode=str(a(gi, "label_mode")), label_code=int(a(gi, "label_code")),
                          neutral_code=int(a(gi, "neutral_code")),
                          multi_pass_layers=[int(v) for v in a(ginf, "multi_pass_layers")], head=head,
                          attrs={k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()},
                          spike_encoding=(str(a(gi, "spike_encoding")) if "spike_encoding" in gi.attrs else None),
                          steps=int(gi.attrs.get("steps", 1)),
                          data_shape=tuple(int(v) for v in gi.attrs.get("data_shape", [data_features])),
                          competitive=bool(int(ginf.attrs.get("competitive", 0))))
            _check_model(model, str(path))
        except KeyError as e:
            raise GoldenError(f"{path}: missing {e.args[0] if e.args else 'group'}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, GoldenError):
                raise
            raise GoldenError(f"{path}: malformed export ({str(e).splitlines()[0]})") from None
    return model, bad


def read_vectors(path: Path) -> dict[str, np.ndarray] | None:
    """The stored test vectors (None if the file has none). Checksums are checked by
    ``verify``; this just reads."""
    with _open(Path(path)) as f:
        if "vectors" not in f:
            return None
        return {k: f["vectors"][k][()] for k in f["vectors"]}


def _entry(layer, u: int) -> str:
    """Activity entry u of a layer in words (a conv layer's: its channel and position)."""
    if isinstance(layer, ConvLayer):
        _, h, w = layer.out_shape
        return f"unit {u} (channel {u // (h * w)}, y {u // w % h}, x {u % w})"
    return f"unit {u}"


def check_vectors(model: Model, path: Path, bad: list[str]) -> dict:
    """Replay every stored vector; the first mismatch (layer, vector, label, index) or none."""
    with _open(Path(path)) as f:
        if "vectors" not in f:
            return {"vectors": 0, "mismatch": None}
        g = f["vectors"]
        v = {k: _dataset(g, k, str(path), bad) for k in g}
    a0 = v["input"].astype(np.int64)
    n, c = a0.shape[0], model.num_classes
    labels: list[int | None] = [None] if model.competitive else [*range(c), None]
    for k, label in enumerate(labels):
        which = ("the label-free pass" if model.competitive else "neutral") if label is None else f"label {label}"
        for i, (layer, h) in enumerate(zip(model.layers, model.activities(model.encode(a0, label)))):
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
    if model.head is not None:
        logits = model.head_logits(a0)
        if not np.array_equal(logits, v["head_logits"]):
            s, lab = (int(t) for t in np.argwhere(logits != v["head_logits"])[0])
            return {"vectors": n, "mismatch": f"head logit of vector {s}, label {lab}: expected "
                                              f"{int(v['head_logits'][s, lab])}, replay gives {int(logits[s, lab])}"}
    return {"vectors": n, "mismatch": None}


def predict(model: Model, a0: np.ndarray, batch: int = 500) -> dict[str, np.ndarray]:
    """Multi-pass (and one-pass, with a head) predictions for integer data (N, D)."""
    out: dict[str, list] = {"multi_pass": [], "one_pass": []}
    for s in range(0, a0.shape[0], batch):
        chunk = a0[s:s + batch]
        out["multi_pass"].append(model.scores(model.goodness_table(chunk)).argmax(axis=1))
        if model.head is not None:
            out["one_pass"].append(model.head_logits(chunk).argmax(axis=1))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def verify(path: Path, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict:
    """Check checksums, replay the stored vectors exactly, and (with data x in [0, 1] of
    shape (N, D) and labels y) report the replayed accuracy. ``ok`` is False on any
    checksum failure or mismatch."""
    model, bad = read_model(path)
    report = {"file": str(path), "layers": len(model.layers), **check_vectors(model, path, bad)}
    report["checksum_failures"] = sorted(set(bad))
    if x is not None:
        if x.shape[1] != model.data_features:
            raise GoldenError(f"data has {x.shape[1]} features per sample, the model expects "
                              f"{model.data_features}")
        preds = predict(model, integer_input(x, model.levels))
        report["n_data"] = int(x.shape[0])
        report["test_error"] = {k: float((p != y).mean() * 100) for k, p in preds.items()}
    report["ok"] = not report["checksum_failures"] and report["mismatch"] is None
    return report


def provenance(path: Path) -> dict:
    """The file's provenance group as plain data (JSON attributes decoded)."""
    with _open(Path(path)) as f:
        if "provenance" not in f:
            return {}
        out = {}
        for k, v in f["provenance"].attrs.items():
            v = v.decode() if isinstance(v, bytes) else v
            try:
                out[k] = json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v
            except json.JSONDecodeError:
                out[k] = v
        return out


def inspect(path: Path) -> dict:
    """A readable summary of an export: layers, bits, bytes, checksum status, provenance."""
    model, bad = read_model(path)
    check_vectors_bad: list[str] = []
    with _open(Path(path)) as f:
        layers = []
        for i in range(len(model.layers)):
            g = f[f"layers/{i}"]
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
            shape = (list(g["weight"].shape) if a["kind"] == "conv-relu"     # kernels (O, C/groups, k, k)
                     else [int(a["out_features"]), int(a["in_features"])])
            layers.append({"layer": i + 1, "kind": a["kind"], "shape": shape,
                           "weight_bits": int(a["weight_bits"]), "weight_dtype": str(g["weight"].dtype),
                           "weight_scale": float(a["weight_scale"]),
                           "weight_exponent": int(a["weight_exponent"]) if "weight_exponent" in a else None,
                           "input_bits": int(a.get("input_bits", 1)),
                           "accumulator_bits": int(a.get("accumulator_bits", a.get("state_bits", 0))),
                           "bytes": int(g["weight"].size * g["weight"].dtype.itemsize
                                        + g["bias"].size * g["bias"].dtype.itemsize)})
        head = None
        if "head" in f:
            g = f["head"]
            head = {"layers": [int(v) + 1 for v in g.attrs["layers"]], "shape": list(g["weight"].shape),
                    "weight_bits": int(g.attrs["weight_bits"]), "weight_dtype": str(g["weight"].dtype),
                    "bytes": int(g["weight"].size * g["weight"].dtype.itemsize)}
        n_vectors = int(f["vectors/input"].shape[0]) if "vectors/input" in f else 0
        if "vectors" in f:
            for k in f["vectors"]:
                _dataset(f["vectors"], k, str(path), check_vectors_bad)
    prov = provenance(path)
    return {"file": str(path), "schema_version": int(model.attrs.get("schema_version", 0)),
            "ffneuro_version": model.attrs.get("ffneuro_version"), "num_classes": model.num_classes,
            "label_mode": model.label_mode, "data_shape": list(model.data_shape), "competitive": model.competitive,
            "multi_pass_layers": [i + 1 for i in model.multi_pass_layers],
            "layers": layers, "head": head, "vectors": n_vectors,
            "profile": (prov.get("profile") or {}).get("name"), "quantisation": prov.get("quantisation"),
            "dataset": prov.get("dataset"), "test_error_at_training": (prov.get("metrics") or {}).get("test_error"),
            "checksum_failures": sorted(set(bad + check_vectors_bad)),
            "checksums_ok": not (bad or check_vectors_bad)}
