"""Datasets for ffneuro: one small loader per on-disk format, behind ``load_dataset``.

Every loader returns a :class:`Dataset` whose ``x_*`` tensors are float32 of shape
``(N, D)`` (samples flattened; ``feature_shape`` keeps the original per-sample shape)
and whose ``y_*`` tensors are int64 of shape ``(N,)`` with values in ``[0, num_classes)``.

Accepted specs (``load_dataset(spec)``):

=======================  ==========================================================
``digits``               scikit-learn's bundled 8x8 digits (the default; no download)
``mnist:DIR``            MNIST IDX files (optionally ``.gz``) in DIR, DIR/raw or DIR/MNIST/raw
``fashion-mnist:DIR``    Fashion-MNIST IDX files in DIR, DIR/raw or DIR/FashionMNIST/raw
``cifar10:DIR``          CIFAR-10 binary batches in DIR or DIR/cifar-10-batches-bin
``npz:FILE``             an .npz archive with x_train, y_train, x_test, y_test
``imagefolder:DIR|ZIP``  PNG/JPEG images as train/CLASS/* and test/CLASS/* in DIR or a
                         .zip (decoded once, then cached; see :mod:`ffneuro.data.imagefolder`)
=======================  ==========================================================

Bad input raises :class:`DataError` (a ``ValueError``) with a one-line message that
names the file and the problem. Nothing here unpickles: .npz files are opened with
``allow_pickle=False`` and CIFAR-10 is read from its binary (not its pickle) release.

Example::

    >>> ds = load_dataset("digits", val_fraction=0.1, seed=0)
    >>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape, ds.feature_shape
    (torch.Size([1293, 64]), torch.Size([144, 64]), torch.Size([360, 64]), (8, 8))
"""

from __future__ import annotations

import dataclasses
import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ffneuro.data.imagefolder import ImageFolderError, read_imagefolder

__all__ = [
    "DEFAULT_DATASET",
    "DataError",
    "Dataset",
    "load_cifar10_bin",
    "load_dataset",
    "load_digits",
    "load_idx",
    "load_npz",
    "read_imagefolder",
]

DEFAULT_DATASET = "digits"

SPEC_FORMS = "digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, npz:FILE, imagefolder:DIR|ZIP"

# Fixed split of the 8x8 digits: independent of the user's seed, so every run sees the
# same 360 test images. np.random.RandomState is numpy's frozen legacy stream, so the
# split does not change across numpy versions.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim
IDX_NUM_CLASSES = 10

CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_DIRNAME = "cifar-10-batches-bin"

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """Bad dataset input; a one-line message naming the file and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class Dataset:
    """A train/test (optionally validation) split, samples flattened to ``(N, D)``.

    ``x_*``: float32 ``(N, D)``, image data scaled to [0, 1]; ``y_*``: int64 ``(N,)`` in
    ``[0, num_classes)``; ``feature_shape``: the per-sample shape before flattening
    (``prod(feature_shape) == D``).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    feature_shape: tuple[int, ...]
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    source: str = ""


# --------------------------------------------------------------------------- dispatch


def load_dataset(spec: str, *, val_fraction: float = 0.0, seed: int = 0) -> Dataset:
    """Load a dataset from ``spec`` (see the module docstring for the accepted forms).

    ``val_fraction`` in [0, 1) moves ``round(val_fraction * N_train)`` (at least one)
    training samples into ``x_val``/``y_val``, chosen by a permutation seeded with
    ``seed`` (same seed, same split); both parts keep the original sample order.
    The test split is never touched.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction: must be in [0, 1), got {val_fraction!r}")
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "digits" and not arg:
        ds = load_digits()
    elif kind in ("mnist", "fashion-mnist", "cifar10", "npz", "imagefolder"):
        if not arg:
            what = {"npz": "FILE", "imagefolder": "DIR|ZIP"}.get(kind, "DIR")
            raise DataError(f"dataset spec {spec!r}: missing path, expected {kind}:{what}")
        path = Path(arg).expanduser()
        if kind == "cifar10":
            ds = load_cifar10_bin(path)
        elif kind == "npz":
            ds = load_npz(path)
        elif kind == "imagefolder":
            # imagefolder sits below this module (it cannot import DataError/Dataset without
            # an import cycle), so its error and its uint8 (N, C, H, W) arrays are wrapped here
            try:
                images = read_imagefolder(path)
            except ImageFolderError as exc:
                raise DataError(str(exc)) from None
            x_train, y_train = _to_tensors(images.x_train, images.y_train, 255.0)
            x_test, y_test = _to_tensors(images.x_test, images.y_test, 255.0)
            ds = Dataset(
                name=f"imagefolder:{path.name}",
                x_train=x_train,
                y_train=y_train,
                x_test=x_test,
                y_test=y_test,
                num_classes=len(images.classes),
                feature_shape=tuple(int(d) for d in images.x_train.shape[1:]),
                source=str(path),
            )
        else:
            ds = load_idx(path, kind)
    else:
        raise DataError(f"unknown dataset spec {spec!r}: expected one of {SPEC_FORMS}")
    return _split_validation(ds, val_fraction, seed) if val_fraction > 0 else ds


def _split_validation(ds: Dataset, val_fraction: float, seed: int) -> Dataset:
    n = ds.x_train.shape[0]
    n_val = max(1, round(val_fraction * n))
    if n_val >= n:
        raise DataError(
            f"{ds.source or ds.name}: val_fraction {val_fraction} leaves no training samples out of {n}"
        )
    perm = np.random.RandomState(seed).permutation(n)
    val_idx = torch.from_numpy(np.sort(perm[:n_val]))
    train_idx = torch.from_numpy(np.sort(perm[n_val:]))
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[train_idx],
        y_train=ds.y_train[train_idx],
        x_val=ds.x_train[val_idx],
        y_val=ds.y_train[val_idx],
    )


def _to_tensors(x: np.ndarray, y: np.ndarray, scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, ...) array -> float32 (N, D) tensor (divided by ``scale`` if given); labels -> int64."""
    x = x.reshape(x.shape[0], -1).astype(np.float32)
    if scale is not None:
        x /= np.float32(scale)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


# --------------------------------------------------------------------------- digits


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set; 1,797 images, 10 classes).

    Bundled with scikit-learn, so no download. Pixels 0..16 are scaled by 1/16.
    There is no official split; we use a fixed stratified one: per class, a
    ``RandomState(DIGITS_SPLIT_SEED=0)`` permutation, and 360 test images shared across
    the classes in proportion to their size (largest remainder), giving 1,437 train /
    360 test. The split ignores the user's seed so every run sees the same test set.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images)  # (1797, 8, 8), float64 0..16
    labels = np.asarray(bunch.target)
    test_mask = _stratified_test_mask(labels, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    x_train, y_train = _to_tensors(images[~test_mask], labels[~test_mask], 16.0)
    x_test, y_test = _to_tensors(images[test_mask], labels[test_mask], 16.0)
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=int(labels.max()) + 1,
        feature_shape=(8, 8),
        source="sklearn.datasets.load_digits (UCI optdigits)",
    )


def _stratified_test_mask(labels: np.ndarray, test_size: int, seed: int) -> np.ndarray:
    """Boolean mask choosing ``test_size`` samples, per class in proportion to class size."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * test_size / len(labels)
    per_class = np.floor(quota).astype(int)
    # hand the remaining slots to the classes with the largest fractional parts (stable)
    short = test_size - per_class.sum()
    per_class[np.argsort(-(quota - per_class), kind="stable")[:short]] += 1
    rng = np.random.RandomState(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls, k in zip(classes, per_class):
        idx = np.flatnonzero(labels == cls)
        mask[idx[rng.permutation(len(idx))[:k]]] = True
    return mask


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_SUBDIRS = {"mnist": ("raw", "MNIST/raw"), "fashion-mnist": ("raw", "FashionMNIST/raw")}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_idx(directory: str | Path, kind: str = "mnist") -> Dataset:
    """MNIST or Fashion-MNIST (``kind`` = "mnist" / "fashion-mnist") from the original IDX files.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``; plain
    wins) in ``directory``, then ``directory/raw``, then torchvision's
    ``directory/MNIST/raw`` or ``directory/FashionMNIST/raw``; the first folder holding
    any of them must hold all four. Pixels are scaled by 1/255; feature_shape (28, 28).
    """
    if kind not in _IDX_SUBDIRS:
        raise DataError(f"{directory}: unknown IDX dataset kind {kind!r}, expected mnist or fashion-mnist")
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: {kind} directory not found")
    folder = _find_idx_folder(root, kind)
    x_train, y_train = _read_idx_pair(folder, *_IDX_FILES["train"])
    x_test, y_test = _read_idx_pair(folder, *_IDX_FILES["test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{folder}: train images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}"
        )
    xt, yt = _to_tensors(x_train, y_train, 255.0)
    xs, ys = _to_tensors(x_test, y_test, 255.0)
    return Dataset(
        name=kind,
        x_train=xt,
        y_train=yt,
        x_test=xs,
        y_test=ys,
        num_classes=IDX_NUM_CLASSES,
        feature_shape=tuple(int(d) for d in x_train.shape[1:]),
        source=str(folder),
    )


def _find_idx_folder(root: Path, kind: str) -> Path:
    candidates = [root] + [root / sub for sub in _IDX_SUBDIRS[kind]]
    names = [n for pair in _IDX_FILES.values() for n in pair]
    for folder in candidates:
        if any(_idx_file(folder, n) is not None for n in names):
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise DataError(f"{root}: no {kind} IDX files found (looked for {names[0]}[.gz] etc. in {searched})")


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    paths = []
    for name in (images_name, labels_name):
        path = _idx_file(folder, name)
        if path is None:
            raise DataError(f"{folder / name}: file not found (searched {name}, {name}.gz in {folder})")
        paths.append(path)
    images = _read_idx(paths[0], IDX_IMAGES_MAGIC, "image")
    labels = _read_idx(paths[1], IDX_LABELS_MAGIC, "label")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{paths[1]}: {labels.shape[0]} labels but {paths[0].name} has {images.shape[0]} images"
        )
    if labels.size and labels.max() >= IDX_NUM_CLASSES:
        bad = int(np.flatnonzero(labels >= IDX_NUM_CLASSES)[0])
        raise DataError(
            f"{paths[1]}: label {int(labels[bad])} at index {bad} is out of range [0, {IDX_NUM_CLASSES})"
        )
    return images, labels


def _read_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """Parse one IDX file (unsigned-byte data): big-endian u32 magic, u32 dims, then the payload."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: wrong magic number 0x{found:08x} (expected 0x{magic:08x} for an IDX {what} file)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload < expected:
        raise DataError(
            f"{path}: truncated data, dims {dims} need {expected} bytes but only {payload} follow the header"
        )
    if payload > expected:
        raise DataError(f"{path}: {payload - expected} unexpected trailing bytes after dims {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


# --------------------------------------------------------------------------- CIFAR-10


def load_cifar10_bin(directory: str | Path) -> Dataset:
    """CIFAR-10 from its *binary* release (never the pickled one).

    ``directory`` is ``cifar-10-batches-bin/`` or its parent. Files ``data_batch_1.bin``
    .. ``data_batch_5.bin`` (train) and ``test_batch.bin`` (test); each record is one
    label byte then 3,072 pixel bytes (1,024 R, 1,024 G, 1,024 B, row-major), i.e. already
    (3, 32, 32) order. Pixels are scaled by 1/255.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: cifar10 directory not found")
    folder = root
    if not (root / CIFAR10_TEST_FILE).is_file() and (root / CIFAR10_DIRNAME).is_dir():
        folder = root / CIFAR10_DIRNAME
    train = [_read_cifar10_batch(folder / name, root) for name in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar10_batch(folder / CIFAR10_TEST_FILE, root)
    xt, yt = _to_tensors(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), 255.0)
    xs, ys = _to_tensors(x_test, y_test, 255.0)
    return Dataset(
        name="cifar10",
        x_train=xt,
        y_train=yt,
        x_test=xs,
        y_test=ys,
        num_classes=10,
        feature_shape=(3, 32, 32),
        source=str(folder),
    )


def _read_cifar10_batch(path: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(
            f"{path}: file not found (searched {path.name} in {root} and {root / CIFAR10_DIRNAME})"
        )
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if raw.size == 0 or raw.size % CIFAR10_RECORD_BYTES:
        raise DataError(
            f"{path}: size {raw.size} bytes is not a positive multiple of the "
            f"{CIFAR10_RECORD_BYTES}-byte CIFAR-10 record"
        )
    records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0]
    if labels.max() >= 10:
        bad = int(np.flatnonzero(labels >= 10)[0])
        raise DataError(f"{path}: label {int(labels[bad])} in record {bad} is out of range [0, 10)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


# --------------------------------------------------------------------------- npz


def load_npz(path: str | Path) -> Dataset:
    """A user dataset from an ``.npz`` holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    ``x_*``: shape (N, ...) of any per-sample shape (flattened); uint8 is scaled by 1/255,
    any other real dtype is converted to float32 as stored. ``y_*``: 1-D labels, integer
    dtype (or float holding whole numbers), >= 0. ``num_classes`` = max label + 1 over train
    and test, and must be >= 2. Opened with ``allow_pickle=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: npz file not found")
    if not zipfile.is_zipfile(path):  # also catches .npy files and pickles renamed .npz
        raise DataError(f"{path}: not an .npz archive (not a zip file)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive")
    with loaded as archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing key {missing[0]!r} (an npz dataset needs {', '.join(NPZ_KEYS)}; "
                f"found {', '.join(archive.files) or 'none'})"
            )
        try:
            arrays = {key: archive[key] for key in NPZ_KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            # object arrays (pickles) are refused here because allow_pickle=False
            raise DataError(f"{path}: cannot read arrays ({exc})") from exc

    x_train, x_test = (_npz_features(path, k, arrays[k]) for k in ("x_train", "x_test"))
    y_train, y_test = (_npz_labels(path, k, arrays[k]) for k in ("y_train", "y_test"))
    for xk, yk, x, y in (("x_train", "y_train", x_train, y_train), ("x_test", "y_test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: {xk} has {x.shape[0]} samples but {yk} has {y.shape[0]} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{path}: x_train samples have shape {x_train.shape[1:]} but x_test samples {x_test.shape[1:]}"
        )
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if num_classes < 2:
        raise DataError(f"{path}: labels span {num_classes} class, need at least 2")
    scale = 255.0 if x_train.dtype == np.uint8 else None
    xt, yt = _to_tensors(x_train, y_train, scale)
    scale = 255.0 if x_test.dtype == np.uint8 else None
    xs, ys = _to_tensors(x_test, y_test, scale)
    return Dataset(
        name=f"npz:{path.name}",
        x_train=xt,
        y_train=yt,
        x_test=xs,
        y_test=ys,
        num_classes=num_classes,
        feature_shape=tuple(int(d) for d in x_train.shape[1:]),
        source=str(path),
    )


def _npz_features(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{path}: {key} has shape {x.shape}, expected (N, ...) with N >= 1 and features")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{path}: {key} has dtype {x.dtype}, expected integer or floating point")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{path}: {key} contains NaN or infinite values")
    return x


def _npz_labels(path: Path, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] == 0:
        raise DataError(f"{path}: {key} has shape {y.shape}, expected a non-empty 1-D label vector")
    if np.issubdtype(y.dtype, np.floating):
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(f"{path}: {key} holds non-integer labels")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {key} has dtype {y.dtype}, expected integer labels")
    if y.min() < 0:
        raise DataError(f"{path}: {key} holds negative label {y.min()!r}")
    return y.astype(np.int64)
