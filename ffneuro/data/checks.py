"""The rules every loader applies to what it reads: :class:`DataError`, the caps, and the
checks of sizes, features, labels and scaling that the on-disk formats share.

Caps (module constants; a header may claim anything, so sizes are checked before a
loader allocates an array):

- ``MAX_CLASSES = 1000``: a dataset has at most this many classes.
- ``MAX_VALUES = 2**30``: one split (train or test) holds at most this many values: feature
  values (4 GiB as float32), or labels. IDX dims, an npz array's shape and an image
  folder's image count times its pixels are checked against it before anything is read.
- ``MAX_DEFLATE_RATIO = 1032``: deflate (gzip, zip) never expands data more than 1032-fold,
  so a compressed file whose header claims more than that many bytes per stored byte is
  refused unread.

Labels (:func:`label_array`, :func:`class_count`): integers (a float array holding whole
numbers counts), 1-D, at least one. Where the classes come from the labels (npz), they must
be dense: the training labels are exactly 0..C-1, every one of them present, with
2 <= C <= ``MAX_CLASSES``, and every test label is one of them. Formats with a fixed class
count (MNIST and CIFAR-10: 10) check each label against it instead; an image folder's
classes are its class folders (2 to ``MAX_CLASSES``, each holding images in both splits).

Features (:func:`check_feature_header`, :func:`flatten_features`): an ``(N, ...)`` integer
or floating-point array with N >= 1 samples and at least one feature per sample, all
values finite and within float32's range (checked before the conversion). Scaling (:func:`feature_scale`):
uint8 features are 8-bit pixels and are divided by 255; every other integer or float dtype
is taken as stored; a split stored as uint8 next to a split stored otherwise is refused,
so both splits always go through one rule.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MAX_CLASSES",
    "MAX_DEFLATE_RATIO",
    "MAX_VALUES",
    "DataError",
    "check_compressed_size",
    "check_feature_header",
    "check_label_header",
    "check_values",
    "class_count",
    "feature_scale",
    "flatten_features",
    "label_array",
]

MAX_CLASSES = 1000
MAX_VALUES = 2**30
MAX_DEFLATE_RATIO = 1032

PIXEL_SCALE = 255.0  # uint8 features are divided by this


class DataError(ValueError):
    """Bad dataset input; a one-line message naming the file and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------- sizes


def check_values(where: str, what: str, count: int, error: type[DataError] = DataError) -> None:
    """Refuse ``count`` values of one split (``what`` says what they are) above ``MAX_VALUES``,
    raising ``error`` (a :class:`DataError`, or a subclass a loader raises)."""
    if count > MAX_VALUES:
        raise error(
            f"{where}: {what} make {count:,} values, more than the {MAX_VALUES:,} one split may hold (MAX_VALUES)"
        )


def check_compressed_size(where: str, claimed: int, stored: int) -> None:
    """Refuse a deflate stream of ``stored`` bytes said to expand to ``claimed`` bytes when
    deflate cannot do that (more than ``MAX_DEFLATE_RATIO`` bytes per stored byte)."""
    if claimed > MAX_DEFLATE_RATIO * max(stored, 1):
        raise DataError(
            f"{where}: claims {claimed:,} bytes but its {stored:,} compressed bytes can hold at most "
            f"{MAX_DEFLATE_RATIO * max(stored, 1):,} (deflate expands at most {MAX_DEFLATE_RATIO}-fold)"
        )


# --------------------------------------------------------------------------- features


def check_feature_header(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a feature array by its shape and dtype alone (before its data is read): it must
    be ``(N, ...)`` with N >= 1 and >= 1 feature a sample, of integer or floating-point dtype,
    and hold at most ``MAX_VALUES`` values."""
    if len(shape) < 2 or shape[0] == 0:
        raise DataError(f"{where}: {key} has shape {shape}, expected (N, ...) with N >= 1 samples and features")
    if math.prod(shape[1:]) == 0:
        raise DataError(f"{where}: {key} has shape {shape}: zero features per sample")
    if dtype.kind not in "iuf":
        raise DataError(f"{where}: {key} has dtype {dtype}, expected integer or floating point")
    check_values(where, f"{key} of shape {shape}", math.prod(shape))


def feature_scale(where: str, train: np.dtype, test: np.dtype) -> float | None:
    """The one divisor of both splits' features: 255 for uint8 (8-bit pixels), None (as
    stored) for every other integer or float dtype. Refuses splits that would be scaled
    differently (one uint8, the other not)."""
    scaled = (train == np.uint8, test == np.uint8)
    if scaled[0] != scaled[1]:
        raise DataError(
            f"{where}: x_train is {train} but x_test is {test}; uint8 features are scaled by 1/255 and others "
            f"are not, so both splits must be uint8 or neither"
        )
    return PIXEL_SCALE if scaled[0] else None


def flatten_features(where: str, key: str, x: np.ndarray, scale: float | None) -> np.ndarray:
    """``(N, ...)`` -> float32 ``(N, D)``, divided by ``scale`` if given; refuses NaN, infinite
    values and values beyond float32's range (checked before the conversion)."""
    if x.dtype.kind == "f":
        _check_finite(where, key, x)
    out = x.reshape(x.shape[0], -1).astype(np.float32)
    if scale is not None:
        out /= np.float32(scale)
    return out


def _check_finite(where: str, key: str, x: np.ndarray) -> None:
    """Refuse NaN, inf and values float32 cannot hold; min and max see them all (NaN
    propagates), so nothing as large as ``x`` is allocated."""
    low, high = x.min(), x.max()
    for value in (low, high):
        if not np.isfinite(value):
            bad = "NaN" if np.isnan(low) or np.isnan(high) else str(value.item())
            raise DataError(f"{where}: {key} holds {bad} (features must be finite numbers)")
    limit = float(np.finfo(np.float32).max)
    if float(high) > limit or float(low) < -limit:
        value = high if float(high) > limit else low
        raise DataError(f"{where}: {key} holds {value.item()!s}, beyond float32's range (+-{limit:.4g})")


# --------------------------------------------------------------------------- labels


def check_label_header(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a label array by its shape and dtype alone: a non-empty 1-D integer (or float)
    vector of at most ``MAX_VALUES`` labels."""
    if len(shape) != 1 or shape[0] == 0:
        raise DataError(f"{where}: {key} has shape {shape}, expected a non-empty 1-D label vector")
    if dtype.kind not in "iuf":
        raise DataError(f"{where}: {key} has dtype {dtype}, expected integer labels")
    check_values(where, f"{key} of shape {shape}", shape[0])


def label_array(where: str, key: str, y: np.ndarray) -> np.ndarray:
    """``y`` checked to hold whole, non-negative labels (floats must hold whole numbers); returned
    unchanged (not yet cast: a huge float would not survive the cast to int64)."""
    check_label_header(where, key, y.shape, y.dtype)
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
        raise DataError(f"{where}: {key} holds non-integer label {bad!s} (labels must be whole numbers)")
    low = y.min()
    if low < 0:
        raise DataError(f"{where}: {key} holds negative label {_number(low)} (classes must be 0..C-1)")
    return y


def class_count(where: str, y_train: np.ndarray, y_test: np.ndarray, keys: tuple[str, str] = ("y_train", "y_test")) -> int:
    """The class count C of labels checked by :func:`label_array`, under the dense rule: the
    training labels are exactly 0..C-1 (each present), 2 <= C <= ``MAX_CLASSES``, and every
    test label is one of them. Sorts the labels once; allocates nothing larger than them."""
    classes = np.unique(y_train)
    count, top = len(classes), classes[-1]
    rule = f"classes must be 0..C-1, each present in {keys[0]}, 2 <= C <= {MAX_CLASSES}"
    if count > MAX_CLASSES:
        raise DataError(f"{where}: {keys[0]} holds {count} distinct labels, more than {MAX_CLASSES} ({rule})")
    if top != count - 1:
        missing = int(np.flatnonzero(classes != np.arange(count))[0])
        raise DataError(
            f"{where}: {keys[0]} holds label {_number(top)} but only {count} distinct labels "
            f"(label {missing} never occurs; {rule})"
        )
    if count < 2:
        raise DataError(f"{where}: {keys[0]} holds 1 class (label 0), need at least 2 ({rule})")
    if y_test.max() >= count:
        raise DataError(
            f"{where}: {keys[1]} holds label {_number(y_test.max())} but {keys[0]} only labels 0..{count - 1} "
            f"(every test label must occur in training)"
        )
    return count


def _number(value) -> str:
    """A label for a message: ``50000`` rather than ``np.float64(50000.0)``."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return str(value)
