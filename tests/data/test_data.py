"""Tests for ffneuro.data.loaders: the embedded digits, real MNIST, and small synthetic files per format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import cifar_records, idx_bytes, synthetic_idx, write_cifar, write_idx
from ffneuro.data.loaders import (
    DEFAULT_DATASET,
    DataError,
    Dataset,
    load_cifar10_bin,
    load_dataset,
    load_idx,
    load_npz,
)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert "\n" not in msg and msg.strip() == msg and msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- synthetic IDX


# --------------------------------------------------------------------------- digits


def test_default_is_digits():
    assert DEFAULT_DATASET == "digits"


def test_digits_shapes_range_and_fixed_split():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.feature_shape == (8, 8)
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.y_train.shape == (1437,) and ds.y_test.shape == (360,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_val is None and ds.y_val is None
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0  # 0..16 scaled by 1/16
        assert torch.equal(x * 16, torch.round(x * 16))
    # stratified: every class has 34..37 test samples (class sizes 174..183, 20 %)
    counts = torch.bincount(ds.y_test, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 34 and counts.max() <= 37
    # the test set ignores the user's seed
    other = load_dataset("digits", seed=123)
    assert torch.equal(ds.x_test, other.x_test) and torch.equal(ds.y_test, other.y_test)


def test_digits_split_is_disjoint_and_complete():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    all_rows = torch.cat([ds.x_train, ds.x_test])
    ref = torch.from_numpy(load_digits().data.astype(np.float32) / 16)
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(all_rows) == key(ref)


def test_val_split_is_seeded_and_shrinks_train():
    full = load_dataset("digits")
    a = load_dataset("digits", val_fraction=0.1, seed=1)
    b = load_dataset("digits", val_fraction=0.1, seed=1)
    c = load_dataset("digits", val_fraction=0.1, seed=2)
    # stratified: each class gives round(0.1 × its training count)
    per_class = torch.bincount(full.y_train)
    want = torch.round(per_class.double() * 0.1).long()
    assert torch.equal(torch.bincount(a.y_val, minlength=10), want)
    assert a.x_val.shape == (int(want.sum()), 64) and a.x_train.shape == (1437 - int(want.sum()), 64)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_val, c.x_val)
    assert torch.equal(a.x_test, full.x_test)
    # train + val is a partition of the original train split
    merged = sorted(map(tuple, torch.cat([a.x_train, a.x_val]).tolist()))
    assert merged == sorted(map(tuple, full.x_train.tolist()))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_val_fraction_out_of_range(fraction):
    with pytest.raises(DataError) as excinfo:
        load_dataset("digits", val_fraction=fraction)
    assert_one_line_error(excinfo, "val_fraction", "[0, 1)")


@pytest.mark.parametrize("spec", ["mnist2:/tmp", "imagenet", "", "digits:/x"])
def test_unknown_spec_lists_accepted_forms(spec):
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec)
    assert_one_line_error(excinfo, repr(spec), "digits", "mnist:DIR", "fashion-mnist:DIR", "cifar10:DIR", "npz:FILE")


def test_spec_without_path():
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist:")
    assert_one_line_error(excinfo, "mnist:DIR")


# --------------------------------------------------------------------------- real MNIST


def test_real_mnist(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10 and mnist.feature_shape == (28, 28)
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_test.dtype == torch.int64
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert torch.bincount(mnist.y_train).tolist()[1] == 6742  # the well-known count of ones


def test_real_mnist_torchvision_layout(mnist_dir, mnist, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_NAMES:
        (raw / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    ds = load_dataset(f"mnist:{tmp_path}")
    assert ds.source == str(raw)
    assert torch.equal(ds.y_train, mnist.y_train) and torch.equal(ds.x_test, mnist.x_test)


# --------------------------------------------------------------------------- synthetic IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    files = synthetic_idx()
    write_idx(tmp_path, files, gz=gz)
    ds = load_dataset(f"mnist:{tmp_path}")
    expected = np.frombuffer(files["train-images-idx3-ubyte"], np.uint8, offset=16).reshape(6, 784)
    assert torch.equal(ds.x_train, torch.from_numpy(expected.astype(np.float32) / 255))
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5]
    assert ds.y_test.tolist() == [0, 3, 6, 9]
    assert ds.x_test.shape == (4, 784) and ds.feature_shape == (28, 28)


@pytest.mark.parametrize("kind,sub", [("fashion-mnist", "FashionMNIST/raw"), ("mnist", "raw"), ("fashion-mnist", "raw")])
def test_idx_subfolder_layouts(tmp_path, kind, sub):
    write_idx(tmp_path / sub, synthetic_idx(), gz=False)
    ds = load_dataset(f"{kind}:{tmp_path}")
    assert ds.name == kind and ds.x_train.shape == (6, 784)


def test_idx_missing_file_names_searched_files_and_dir(tmp_path):
    files = synthetic_idx()
    del files["t10k-labels-idx1-ubyte"]
    write_idx(tmp_path, files)
    with pytest.raises(DataError) as excinfo:
        load_idx(tmp_path, "mnist")
    assert_one_line_error(
        excinfo, "t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz", str(tmp_path), "not found"
    )


def test_idx_no_files_at_all(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    assert_one_line_error(excinfo, str(tmp_path), "train-images-idx3-ubyte", "MNIST/raw")


def test_idx_dir_not_found(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"fashion-mnist:{tmp_path / 'nope'}")
    assert_one_line_error(excinfo, "nope", "not found")


def test_idx_wrong_magic(tmp_path):
    files = synthetic_idx()
    files["t10k-labels-idx1-ubyte"] = idx_bytes(np.zeros((4, 1, 1)), magic=0x00000803)
    write_idx(tmp_path, files)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    msg = assert_one_line_error(excinfo, "t10k-labels-idx1-ubyte.gz", "wrong magic number 0x00000803", "0x00000801")
    assert msg.endswith(
        "t10k-labels-idx1-ubyte.gz: wrong magic number 0x00000803 (expected 0x00000801 for an IDX label file)"
    )


def test_idx_truncated(tmp_path):
    files = synthetic_idx()
    files["train-images-idx3-ubyte"] = files["train-images-idx3-ubyte"][:-10]
    write_idx(tmp_path, files, gz=False)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    assert_one_line_error(excinfo, "train-images-idx3-ubyte", "truncated", "4704", "4694")


def test_idx_truncated_header(tmp_path):
    files = synthetic_idx()
    files["train-labels-idx1-ubyte"] = files["train-labels-idx1-ubyte"][:6]
    write_idx(tmp_path, files)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    assert_one_line_error(excinfo, "train-labels-idx1-ubyte.gz", "truncated")


def test_idx_count_mismatch(tmp_path):
    files = synthetic_idx()
    files["train-labels-idx1-ubyte"] = idx_bytes(np.arange(5))
    write_idx(tmp_path, files)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    assert_one_line_error(excinfo, "train-labels-idx1-ubyte.gz", "5 labels", "6 images")


def test_idx_label_out_of_range(tmp_path):
    files = synthetic_idx()
    files["t10k-labels-idx1-ubyte"] = idx_bytes([1, 2, 10, 3])
    write_idx(tmp_path, files)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    assert_one_line_error(excinfo, "t10k-labels-idx1-ubyte.gz", "label 10", "index 2", "out of range")


def test_idx_corrupt_gzip(tmp_path):
    write_idx(tmp_path, synthetic_idx())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"mnist:{tmp_path}")
    assert_one_line_error(excinfo, "train-images-idx3-ubyte.gz", "cannot read")


# --------------------------------------------------------------------------- CIFAR-10 binary


@pytest.mark.parametrize("use_parent", [False, True])
def test_cifar10_roundtrip(tmp_path, use_parent):
    folder = tmp_path / "cifar-10-batches-bin"
    x_train, y_train, x_test, y_test = write_cifar(folder)
    ds = load_dataset(f"cifar10:{tmp_path if use_parent else folder}")
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.feature_shape == (3, 32, 32)
    assert ds.x_train.shape == (15, 3072) and ds.x_test.shape == (3, 3072)
    assert torch.equal(ds.x_train, torch.from_numpy(x_train.astype(np.float32) / 255))
    assert torch.equal(ds.x_test, torch.from_numpy(x_test.astype(np.float32) / 255))
    assert ds.y_train.tolist() == y_train.tolist() and ds.y_test.tolist() == y_test.tolist()
    assert ds.source == str(folder)
    # CHW order: the first 1024 pixel bytes are the red plane
    assert torch.equal(ds.x_test[0].view(3, 32, 32)[0].flatten(), ds.x_test[0, :1024])


def test_cifar10_bad_size(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3.bin").write_bytes(b"\x00" * 3074)
    with pytest.raises(DataError) as excinfo:
        load_cifar10_bin(tmp_path)
    assert_one_line_error(excinfo, "data_batch_3.bin", "3074", "multiple", "3073")


def test_cifar10_bad_label(tmp_path):
    write_cifar(tmp_path)
    data, _ = cifar_records([1, 12], seed=0)
    (tmp_path / "test_batch.bin").write_bytes(data)
    with pytest.raises(DataError) as excinfo:
        load_cifar10_bin(tmp_path)
    assert_one_line_error(excinfo, "test_batch.bin", "label 12", "record 1", "out of range")


def test_cifar10_missing_file(tmp_path):
    write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_5.bin")
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"cifar10:{tmp_path}")
    assert_one_line_error(excinfo, "data_batch_5.bin", "not found", str(tmp_path))


# --------------------------------------------------------------------------- npz


def npz_arrays(**overrides) -> dict[str, np.ndarray]:
    arrays = {
        "x_train": np.arange(6 * 16, dtype=np.float32).reshape(6, 4, 4) / 10,
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": np.full((3, 4, 4), 2.5, dtype=np.float32),
        "y_test": np.array([2, 1, 0]),
    }
    arrays.update(overrides)
    return {k: v for k, v in arrays.items() if v is not None}


def write_npz(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "toy.npz"
    np.savez(path, **npz_arrays(**overrides))
    return path


def test_npz_roundtrip(tmp_path):
    path = write_npz(tmp_path)
    ds = load_dataset(f"npz:{path}")
    ref = npz_arrays()
    assert ds.name == "npz:toy.npz" and ds.source == str(path)
    assert ds.num_classes == 3 and ds.feature_shape == (4, 4)
    assert ds.x_train.shape == (6, 16) and ds.x_test.shape == (3, 16)
    assert torch.equal(ds.x_train, torch.from_numpy(ref["x_train"].reshape(6, 16)))  # not rescaled
    assert ds.x_test.max() == 2.5
    assert ds.y_train.dtype == torch.int64 and ds.y_test.tolist() == [2, 1, 0]


def test_npz_uint8_is_scaled(tmp_path):
    x = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    path = write_npz(tmp_path, x_train=x, y_train=np.array([0, 1]), x_test=x[:1], y_test=np.array([1]))
    ds = load_npz(path)
    assert torch.equal(ds.x_train, torch.tensor([[0, 255], [51, 102]], dtype=torch.float32) / 255)
    assert ds.feature_shape == (2,) and ds.num_classes == 2


def test_npz_float_labels_with_whole_values_accepted(tmp_path):
    path = write_npz(tmp_path, y_train=np.array([0.0, 1, 2, 0, 1, 2]))
    assert load_npz(path).y_train.tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        ({"y_test": None}, ["missing key 'y_test'"]),
        ({"y_train": np.array([0, 1, -1, 0, 1, 2])}, ["y_train", "negative label"]),
        ({"y_train": np.array([0, 1, 2.5, 0, 1, 2])}, ["y_train", "non-integer"]),
        ({"y_test": np.array(["a", "b", "c"])}, ["y_test", "integer labels"]),
        ({"y_train": np.array([0, 1, 2, 0, 1])}, ["x_train has 6 samples", "y_train has 5 labels"]),
        ({"y_train": np.zeros(6, int), "y_test": np.zeros(3, int)}, ["1 class", "at least 2"]),
        ({"x_test": np.zeros((3, 16), np.float32)}, ["x_test", "(16,)", "(4, 4)"]),
        ({"x_train": np.full((6, 4, 4), np.nan)}, ["x_train", "NaN"]),
    ],
)
def test_npz_errors(tmp_path, overrides, fragments):
    path = write_npz(tmp_path, **overrides)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"npz:{path}")
    assert_one_line_error(excinfo, "toy.npz", *fragments)


@pytest.mark.parametrize(
    "content,fragment",
    [(b"definitely not a zip archive\n\n", "not an .npz archive"), (b"", "not an .npz archive"), (b"PK\x03\x04broken", "not")],
)
def test_npz_corrupt_file(tmp_path, content, fragment):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"npz:{path}")
    assert_one_line_error(excinfo, "bad.npz", fragment)


def test_npz_given_npy_file(tmp_path):
    path = tmp_path / "arr.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(DataError) as excinfo:
        load_npz(path)
    assert_one_line_error(excinfo, "arr.npz", "not an .npz archive")


def test_npz_object_array_refused_without_unpickling(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, **npz_arrays(y_test=np.array([2, None, 0], dtype=object)))
    with pytest.raises(DataError) as excinfo:
        load_npz(path)
    assert_one_line_error(excinfo, "obj.npz", "cannot read")


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    assert_one_line_error(excinfo, "absent.npz", "not found")


def test_npz_corrupt_member(tmp_path):
    path = write_npz(tmp_path)
    data = bytearray(path.read_bytes())
    start = data.index(b"x_train.npy") + 200  # inside the stored x_train member
    data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as excinfo:
        load_npz(path)
    assert_one_line_error(excinfo, "toy.npz", "cannot read")


def test_digits_are_scikit_learns_digits_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits as sk_load_digits

    from ffneuro.data.loaders import _digits_arrays

    images, labels = _digits_arrays()
    bunch = sk_load_digits()
    assert np.array_equal(images, bunch.images) and images.dtype == bunch.images.dtype
    assert np.array_equal(labels, bunch.target)
    code = "import sys; from ffneuro.data.loaders import load_digits; load_digits(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
