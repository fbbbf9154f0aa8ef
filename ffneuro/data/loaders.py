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
names the file and the problem. The rules the formats share (labels 0..C-1 with at most
``MAX_CLASSES = 1000`` classes, finite features, one scaling rule for both splits, and
sizes checked against the file and the ``MAX_VALUES`` cap before any array is allocated)
are in :mod:`ffneuro.data.checks`. Nothing here unpickles: .npz files are read member by
member (:mod:`ffneuro.data.npzfile`, object arrays refused) and CIFAR-10 is read from its
binary (not its pickle) release.

Example::

    >>> ds = load_dataset("digits", val_fraction=0.1, seed=0)
    >>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape, ds.feature_shape
    (torch.Size([1295, 64]), torch.Size([142, 64]), torch.Size([360, 64]), (8, 8))
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import importlib.util
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ffneuro.data.checks import (
    MAX_CLASSES,
    PIXEL_SCALE,
    DataError,
    check_compressed_size,
    check_feature_header,
    check_label_header,
    check_values,
    class_count,
    feature_scale,
    flatten_features,
    label_array,
)
from ffneuro.data.imagefolder import read_imagefolder
from ffneuro.data.npzfile import read_npz

__all__ = [
    "DEFAULT_DATASET",
    "MAX_CLASSES",
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
            # its error (ImageFolderError) is a DataError; its arrays are uint8 (N, C, H, W)
            # with labels dense by construction (every class folder holds a training image)
            images = read_imagefolder(path)
            ds = _dataset(f"imagefolder:{path.name}", str(path), images.x_train, images.y_train,
                          images.x_test, images.y_test, len(images.classes), PIXEL_SCALE)
        else:
            ds = load_idx(path, kind)
    else:
        raise DataError(f"unknown dataset spec {spec!r}: expected one of {SPEC_FORMS}")
    return _split_validation(ds, val_fraction, seed) if val_fraction > 0 else ds


def _split_validation(ds: Dataset, val_fraction: float, seed: int) -> Dataset:
    """Hold out a stratified ``val_fraction`` of the training set: each class gives
    round(fraction × its count) samples (at least one, if it has two), drawn with ``seed``,
    so that choices are made on validation data and the test set is touched once."""
    y = ds.y_train.numpy()
    rng = np.random.RandomState(seed)
    val = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = int(round(val_fraction * members.size))
        k = min(max(k, 1 if members.size > 1 else 0), members.size - 1)
        val.append(rng.permutation(members)[:k])
    val_mask = np.zeros(y.size, dtype=bool)
    val_mask[np.concatenate(val)] = True
    if not val_mask.any():
        raise DataError(f"{ds.source or ds.name}: val_fraction {val_fraction} holds out no sample of {y.size}")
    val_idx = torch.from_numpy(np.flatnonzero(val_mask))
    train_idx = torch.from_numpy(np.flatnonzero(~val_mask))
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[train_idx],
        y_train=ds.y_train[train_idx],
        x_val=ds.x_train[val_idx],
        y_val=ds.y_train[val_idx],
    )


def _dataset(name: str, source: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray, num_classes: int, scale: float | None) -> Dataset:
    """A :class:`Dataset` of checked ``(N, ...)`` arrays: features flattened to float32 (divided
    by ``scale`` if given; NaN and inf refused), labels cast to int64."""
    return Dataset(
        name=name,
        x_train=torch.from_numpy(flatten_features(source, "x_train", x_train, scale)),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=torch.from_numpy(flatten_features(source, "x_test", x_test, scale)),
        y_test=torch.from_numpy(y_test.astype(np.int64)),
        num_classes=num_classes,
        feature_shape=tuple(int(d) for d in x_train.shape[1:]),
        source=source,
    )


# --------------------------------------------------------------------------- digits


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set; 1,797 images, 10 classes).

    Bundled with scikit-learn, so no download. Pixels 0..16 are scaled by 1/16.
    There is no official split; we use a fixed stratified one: per class, a
    ``RandomState(DIGITS_SPLIT_SEED=0)`` permutation, and 360 test images shared across
    the classes in proportion to their size (largest remainder), giving 1,437 train /
    360 test. The split ignores the user's seed so every run sees the same test set.
    """
    images, labels = _digits_arrays()
    test_mask = _stratified_test_mask(labels, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    source = "sklearn.datasets.load_digits (UCI optdigits)"
    return _dataset("digits", source, images[~test_mask], labels[~test_mask], images[test_mask],
                    labels[test_mask], int(labels.max()) + 1, 16.0)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits as scikit-learn's ``load_digits`` returns them: images (1797, 8, 8)
    float64 0..16 and labels (1797,) int64. Read straight from the CSV scikit-learn ships
    (importing scikit-learn itself costs seconds at every command's start); its own
    loader where that file is not found."""
    spec = importlib.util.find_spec("sklearn")
    roots = spec.submodule_search_locations if spec is not None else None
    csv = Path(roots[0]) / "datasets" / "data" / "digits.csv.gz" if roots else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits as sk_load_digits
        bunch = sk_load_digits()
        return np.asarray(bunch.images), np.asarray(bunch.target)
    table = np.loadtxt(csv, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


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
    The format fixes 10 classes: every label must lie in 0..9 (a split need not hold all
    ten). A header's dims are checked against the file's size (exactly for a plain file,
    against deflate's limit for a .gz) and against ``MAX_VALUES`` before the data is read.
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
    return _dataset(kind, str(folder), x_train, y_train, x_test, y_test, IDX_NUM_CLASSES, PIXEL_SCALE)


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
    if labels.max() >= IDX_NUM_CLASSES:
        bad = int(np.flatnonzero(labels >= IDX_NUM_CLASSES)[0])
        raise DataError(
            f"{paths[1]}: label {int(labels[bad])} at index {bad} is out of range [0, {IDX_NUM_CLASSES})"
        )
    return images, labels


def _read_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """Parse one IDX file (unsigned-byte data): big-endian u32 magic, u32 dims, then the payload.
    The dims are checked (at least one sample and one feature, the file's size, ``MAX_VALUES``)
    before the payload is read."""
    try:
        with _open_idx(path) as fh:
            dims = _idx_dims(path, fh, magic, what)
            expected = math.prod(dims)
            _check_idx_size(path, dims, 4 + 4 * len(dims))
            payload = fh.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(payload) < expected:
        raise DataError(
            f"{path}: truncated data, dims {dims} need {expected} bytes but only {len(payload)} follow the header"
        )
    if len(payload) > expected:
        raise DataError(f"{path}: unexpected trailing bytes after the {expected} bytes of dims {dims}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


@contextlib.contextmanager
def _open_idx(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes as a stream (decompressed for ``.gz``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        yield fh


def _idx_dims(path: Path, fh: BinaryIO, magic: int, what: str) -> tuple[int, ...]:
    """Read and check the magic number and the dims: N >= 1 samples of >= 1 byte each."""
    head = fh.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(head)} bytes)")
    found = int.from_bytes(head, "big")
    if found != magic:
        raise DataError(
            f"{path}: wrong magic number 0x{found:08x} (expected 0x{magic:08x} for an IDX {what} file)"
        )
    ndim = magic & 0xFF
    raw = fh.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({4 + len(raw)} bytes, need {4 + 4 * ndim})")
    dims = struct.unpack(f">{ndim}I", raw)
    if dims[0] == 0:
        raise DataError(f"{path}: dims {dims} hold no {what}s (a split needs at least one sample)")
    if math.prod(dims[1:]) == 0:
        raise DataError(f"{path}: dims {dims} give zero pixels per {what}")
    return dims


def _check_idx_size(path: Path, dims: tuple[int, ...], header: int) -> None:
    """Dims against the file: a plain file must hold exactly the header and the payload, a
    .gz cannot expand beyond deflate's limit; and the payload must fit ``MAX_VALUES``."""
    expected = math.prod(dims)
    stored = path.stat().st_size
    if path.suffix == ".gz":
        check_compressed_size(f"{path}: IDX dims {dims}", header + expected, stored)
    elif stored - header < expected:
        raise DataError(
            f"{path}: truncated data, dims {dims} need {expected} bytes but only {stored - header} follow the header"
        )
    elif stored - header > expected:
        raise DataError(f"{path}: {stored - header - expected} unexpected trailing bytes after dims {dims}")
    check_values(str(path), f"IDX dims {dims}", expected)


# --------------------------------------------------------------------------- CIFAR-10


def load_cifar10_bin(directory: str | Path) -> Dataset:
    """CIFAR-10 from its *binary* release (never the pickled one).

    ``directory`` is ``cifar-10-batches-bin/`` or its parent. Files ``data_batch_1.bin``
    .. ``data_batch_5.bin`` (train) and ``test_batch.bin`` (test); each record is one
    label byte then 3,072 pixel bytes (1,024 R, 1,024 G, 1,024 B, row-major), i.e. already
    (3, 32, 32) order. Pixels are scaled by 1/255. The format fixes 10 classes: every label
    byte must lie in 0..9. Every file's size must be a positive multiple of the record, and
    each split's pixel count at most ``MAX_VALUES``, checked before anything is read.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: cifar10 directory not found")
    folder = root
    if not (root / CIFAR10_TEST_FILE).is_file() and (root / CIFAR10_DIRNAME).is_dir():
        folder = root / CIFAR10_DIRNAME
    train_paths = [folder / name for name in CIFAR10_TRAIN_FILES]
    test_path = folder / CIFAR10_TEST_FILE
    for split, paths in (("training batches", train_paths), ("test batch", [test_path])):
        records = sum(_cifar10_records(path, root) for path in paths)
        check_values(str(folder), f"{records:,} records of the {split}", records * (CIFAR10_RECORD_BYTES - 1))
    train = [_read_cifar10_batch(path) for path in train_paths]
    x_test, y_test = _read_cifar10_batch(test_path)
    x_train, y_train = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    return _dataset("cifar10", str(folder), x_train, y_train, x_test, y_test, 10, PIXEL_SCALE)


def _cifar10_records(path: Path, root: Path) -> int:
    """The number of records in a batch file, from its size (which must be a positive multiple of the record)."""
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if size is None:
        raise DataError(
            f"{path}: file not found (searched {path.name} in {root} and {root / CIFAR10_DIRNAME})"
        )
    if size == 0 or size % CIFAR10_RECORD_BYTES:
        raise DataError(
            f"{path}: size {size} bytes is not a positive multiple of the "
            f"{CIFAR10_RECORD_BYTES}-byte CIFAR-10 record"
        )
    return size // CIFAR10_RECORD_BYTES


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file (its size already checked) -> uint8 pixels (N, 3, 32, 32) and labels (N,)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8, count=path.stat().st_size)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if raw.size == 0 or raw.size % CIFAR10_RECORD_BYTES:  # it changed since it was measured
        raise DataError(f"{path}: size {raw.size} bytes is not a positive multiple of the CIFAR-10 record")
    records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0]
    if labels.max() >= 10:
        bad = int(np.flatnonzero(labels >= 10)[0])
        raise DataError(f"{path}: label {int(labels[bad])} in record {bad} is out of range [0, 10)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


# --------------------------------------------------------------------------- npz


def load_npz(path: str | Path) -> Dataset:
    """A user dataset from an ``.npz`` holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    ``x_*``: shape (N, ...) with N >= 1 and at least one feature (flattened), integer or
    float, finite; both splits with one per-sample shape. Scaling, one rule for both splits:
    uint8 is divided by 255, any other integer or float dtype is taken as stored, and a
    uint8 split next to a split of another dtype is refused. ``y_*``: 1-D labels, integer
    dtype (or float holding whole numbers), as many as samples. The classes come from the
    labels: ``y_train`` holds exactly 0..C-1, each at least once, 2 <= C <= ``MAX_CLASSES``
    (1000), and ``y_test`` only labels ``y_train`` holds. Every shape and dtype is checked
    before any array is read (:mod:`ffneuro.data.npzfile`); nothing is unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: npz file not found")
    if not zipfile.is_zipfile(path):  # also catches .npy files and pickles renamed .npz
        raise DataError(f"{path}: not an .npz archive (not a zip file)")
    where = str(path)
    arrays = read_npz(path, NPZ_KEYS, check=lambda headers: _check_npz_headers(where, headers))
    y_train = label_array(where, "y_train", arrays["y_train"])
    y_test = label_array(where, "y_test", arrays["y_test"])
    num_classes = class_count(where, y_train, y_test)
    scale = feature_scale(where, arrays["x_train"].dtype, arrays["x_test"].dtype)
    return _dataset(f"npz:{path.name}", where, arrays["x_train"], y_train, arrays["x_test"], y_test,
                    num_classes, scale)


def _check_npz_headers(where: str, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Every rule an npz dataset's shapes and dtypes must meet, checked before its data is read."""
    for key, (shape, dtype) in headers.items():
        check = check_feature_header if key.startswith("x_") else check_label_header
        check(where, key, shape, dtype)
    for split in ("train", "test"):
        n_x, n_y = headers[f"x_{split}"][0][0], headers[f"y_{split}"][0][0]
        if n_x != n_y:
            raise DataError(f"{where}: x_{split} has {n_x} samples but y_{split} has {n_y} labels")
    train, test = headers["x_train"][0][1:], headers["x_test"][0][1:]
    if train != test:
        raise DataError(f"{where}: x_train samples have shape {train} but x_test samples {test}")
    feature_scale(where, headers["x_train"][1], headers["x_test"][1])
