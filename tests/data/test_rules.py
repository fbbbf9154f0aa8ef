"""The loaders' shared rules (ffneuro.data.checks, ffneuro.data.npzfile), one hand-made file
per rule: bounded dense labels, one scaling rule for both splits, degenerate input refused,
and sizes checked against the file before anything is allocated. Every error is one line
naming the file and the offending value."""

from __future__ import annotations

import bz2
import gzip
import io
import pickle
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from builders import cifar_records, idx_bytes, make_folder, synthetic_idx, write_cifar, write_idx
from ffneuro.data import checks, imagefolder
from ffneuro.data.checks import MAX_CLASSES, DataError
from ffneuro.data.imagefolder import ImageFolderError, decode_image
from ffneuro.data.loaders import load_cifar10_bin, load_dataset, load_idx, load_npz


KIB = 1024


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Image folders cache into the test's own folder, never ~/.cache."""
    monkeypatch.setenv("FFNEURO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def refused(call, *fragments: str, error: type[Exception] = DataError, peak_bytes: int = 4 * 2**20) -> str:
    """Run ``call``; it must raise ``error`` with a one-line message holding every fragment,
    within a second and without allocating more than ``peak_bytes`` (numpy reports its
    arrays to tracemalloc, so a header-sized array would show). The call runs once first,
    unmeasured, so that what a process does once (a module imported on first use, a cache
    filled) is not counted; then the smallest peak of three measured calls is the
    refusal's: tracemalloc also counts what anything else in a long test process allocates
    meanwhile (a full-suite run once showed 7.8 MB during a refusal of a 4-image folder
    that allocates 0.07 MB alone), and a header-sized array would show in all three."""
    with pytest.raises(error):
        call()
    peaks = []
    for _ in range(3):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            with pytest.raises(error) as excinfo:
                call()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert time.perf_counter() - start < 5.0
    assert min(peaks) < peak_bytes, f"peaks {peaks} bytes"
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError) and "\n" not in msg and msg.strip() == msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def npz(tmp_path: Path, name: str = "data.npz", **overrides) -> Path:
    arrays = {
        "x_train": np.linspace(0, 1, 24, dtype=np.float32).reshape(6, 4),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": np.full((3, 4), 0.5, dtype=np.float32),
        "y_test": np.array([2, 1, 0]),
    }
    arrays.update(overrides)
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def npy_bytes(shape, descr: str = "<f4", data: bytes = b"", fortran: bool = False) -> bytes:
    """A .npy member whose header says anything (``shape``, ``descr``), followed by ``data``."""
    fh = io.BytesIO()
    np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    return fh.getvalue() + data


def zip_members(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def valid_members(**replace: bytes) -> dict[str, bytes]:
    """The .npy members of a small valid npz dataset, some replaced by hand-made bytes."""
    fh = io.BytesIO()
    np.savez(fh, x_train=np.zeros((4, 2), np.float32), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 2), np.float32), y_test=np.array([1, 0]))
    with zipfile.ZipFile(fh) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members.update({f"{key}.npy": data for key, data in replace.items()})
    return members


def png_claiming(width: int, height: int) -> bytes:
    """A small valid 1x1 PNG whose IHDR (CRC fixed up) claims ``width`` x ``height``."""
    fh = io.BytesIO()
    Image.new("L", (1, 1)).save(fh, format="PNG")
    data = bytearray(fh.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_errors_are_value_errors():
    assert issubclass(DataError, ValueError) and issubclass(ImageFolderError, DataError)
    assert MAX_CLASSES == 1000


# --------------------------------------------------------------------------- 1. labels


def test_one_stray_label_is_one_line_without_a_large_allocation(tmp_path):
    path = npz(tmp_path, y_train=np.array([0, 1, 50000, 0, 1, 2]))
    msg = refused(lambda: load_dataset(f"npz:{path}"), "y_train holds label 50000", "4 distinct labels",
                  "label 3 never occurs", "0..C-1", "C <= 1000")
    assert msg.startswith(f"{path}: ")


def test_more_classes_than_the_maximum(tmp_path):
    n = MAX_CLASSES + 1
    path = npz(tmp_path, x_train=np.zeros((n, 4), np.float32), y_train=np.arange(n), y_test=np.array([0, 1, 2]))
    refused(lambda: load_npz(path), "y_train holds 1001 distinct labels", "more than 1000")


def test_the_maximum_number_of_classes_is_accepted(tmp_path):
    n = MAX_CLASSES
    path = npz(tmp_path, x_train=np.zeros((n, 4), np.float32), y_train=np.arange(n)[::-1], y_test=np.array([999, 0, 5]))
    assert load_npz(path).num_classes == 1000


def test_labels_must_be_dense(tmp_path):
    path = npz(tmp_path, y_train=np.array([0, 2, 3, 0, 2, 3]), y_test=np.array([0, 2, 3]))
    refused(lambda: load_npz(path), "y_train holds label 3 but only 3 distinct labels", "label 1 never occurs")


def test_test_labels_must_occur_in_training(tmp_path):
    path = npz(tmp_path, y_test=np.array([0, 7, 1]))
    refused(lambda: load_npz(path), "y_test holds label 7", "y_train only labels 0..2")


@pytest.mark.parametrize(
    "y_train, fragments",
    [
        (np.array([0, 1, -7, 0, 1, 2]), ["y_train holds negative label -7"]),
        (np.array([0, 1, 2.5, 0, 1, 2]), ["y_train holds non-integer label 2.5"]),
        (np.array([0, 1, np.nan, 0, 1, 2]), ["y_train holds non-integer label nan"]),
        (np.array([0, 1, np.inf, 0, 1, 2]), ["y_train holds non-integer label inf"]),
        (np.array([0, 1, 1e300, 0, 1, 2]), ["y_train holds label 1e+300"]),
        (np.array([0, 1, 2**62, 0, 1, 2], dtype=np.uint64), [f"y_train holds label {2**62}"]),
        (np.zeros(6, np.int8), ["y_train holds 1 class (label 0)", "at least 2"]),
        (np.array([True, False] * 3), ["y_train has dtype bool", "integer labels"]),
        (np.array(["0", "1"] * 3), ["y_train has dtype <U1"]),
        (np.array([0, 1, 2, 0, 1, 2]).reshape(3, 2), ["y_train has shape (3, 2)", "1-D"]),
    ],
    ids=["negative", "fraction", "nan", "inf", "huge float", "huge uint64", "one class", "bool", "strings", "2-D"],
)
def test_label_values_and_dtypes(tmp_path, y_train, fragments):
    path = npz(tmp_path, y_train=y_train)
    refused(lambda: load_npz(path), str(path), *fragments)


def test_float_labels_holding_whole_numbers_are_labels(tmp_path):
    path = npz(tmp_path, y_train=np.array([0.0, 1, 2, 0, 1, 2], np.float16), y_test=np.array([2, 1, 0], np.uint8))
    ds = load_npz(path)
    assert ds.y_train.dtype == torch.int64 and ds.y_train.tolist() == [0, 1, 2, 0, 1, 2] and ds.num_classes == 3


def test_fixed_class_formats_check_each_label_against_ten(tmp_path):
    files = synthetic_idx()
    files["train-labels-idx1-ubyte"] = idx_bytes([0, 1, 2, 255, 4, 5])
    write_idx(tmp_path / "idx", files)
    refused(lambda: load_idx(tmp_path / "idx"), "label 255 at index 3", "[0, 10)")
    write_cifar(tmp_path / "cifar")
    (tmp_path / "cifar/data_batch_2.bin").write_bytes(cifar_records([3, 200], seed=0)[0])
    refused(lambda: load_cifar10_bin(tmp_path / "cifar"), "data_batch_2.bin: label 200 in record 1")


def test_image_folders_with_more_class_folders_than_the_maximum(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")  # 3 classes
    monkeypatch.setattr(imagefolder, "MAX_CLASSES", 2)
    monkeypatch.setattr(imagefolder, "decode_image", lambda *a: pytest.fail("decoded before counting classes"))
    refused(lambda: load_dataset(f"imagefolder:{tmp_path / 'data'}"), "/train: 3 class folders, more than 2",
            error=ImageFolderError)


# --------------------------------------------------------------------------- 2. scaling


def test_one_scaling_rule_for_both_splits(tmp_path):
    pixels = np.array([[0, 255], [51, 102]], np.uint8)
    path = npz(tmp_path, x_train=pixels, y_train=np.array([0, 1]), x_test=pixels.astype(np.float64), y_test=np.array([1, 0]))
    refused(lambda: load_npz(path), "x_train is uint8 but x_test is float64", "both splits must be uint8 or neither")
    path = npz(tmp_path, x_train=pixels, y_train=np.array([0, 1]), x_test=pixels[:1], y_test=np.array([1]))
    ds = load_npz(path)
    assert torch.equal(ds.x_test, torch.tensor([[0.0, 1.0]])) and ds.x_train[1, 0] == np.float32(51) / 255


@pytest.mark.parametrize("train, test", [(np.int64, np.float32), (np.uint16, np.uint16), (np.float64, np.int8)])
def test_other_dtypes_are_taken_as_stored_in_both_splits(tmp_path, train, test):
    path = npz(tmp_path, x_train=np.full((6, 4), 300 if train != np.int8 else 3).astype(train),
               x_test=np.full((3, 4), 7).astype(test))
    ds = load_npz(path)
    assert ds.x_train.max() == 300 and ds.x_test.max() == 7


# --------------------------------------------------------------------------- 3. degenerate input


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"x_train": np.zeros((6, 0), np.float32)}, ["x_train has shape (6, 0): zero features"]),
        ({"x_test": np.zeros((3, 4, 0), np.float32)}, ["x_test has shape (3, 4, 0): zero features"]),
        ({"x_test": np.zeros((0, 4), np.float32), "y_test": np.zeros(0, int)}, ["x_test has shape (0, 4)", "N >= 1"]),
        ({"y_test": np.array([2, 1])}, ["x_test has 3 samples but y_test has 2 labels"]),
        ({"x_train": np.zeros(6, np.float32)}, ["x_train has shape (6,)"]),
        ({"x_test": np.array([[0, 1, np.inf, 2]] * 3)}, ["x_test holds inf (features must be finite"]),
        ({"x_train": np.full((6, 4), np.nan)}, ["x_train holds NaN"]),
        ({"x_train": np.full((6, 4), -np.inf, np.float16)}, ["x_train holds -inf"]),
        ({"x_train": np.full((6, 4), 1e300)}, ["x_train holds 1e+300, beyond float32's range"]),
        ({"x_train": np.ones((6, 4), np.complex128)}, ["x_train has dtype complex128"]),
        ({"x_test": np.full((3, 4), "a")}, ["x_test has dtype <U1"]),
        ({"x_test": np.zeros((3, 4), bool)}, ["x_test has dtype bool"]),
        ({"x_train": np.zeros((6, 4), "datetime64[s]")}, ["x_train has dtype datetime64[s]"]),
        ({"x_train": np.zeros((6, 4), [("a", "<f4")])}, ["x_train", "structured"]),
        ({"x_test": np.zeros((3, 5), np.float32)}, ["x_train samples have shape (4,) but x_test samples (5,)"]),
    ],
    ids=["zero features", "zero features 3-D", "empty split", "length mismatch", "1-D features", "inf", "nan", "-inf",
         "beyond float32", "complex", "strings", "bool", "datetime", "structured", "feature count"],
)
def test_degenerate_npz_is_refused(tmp_path, overrides, fragments):
    path = npz(tmp_path, **overrides)
    refused(lambda: load_dataset(f"npz:{path}"), str(path), *fragments)


def test_object_arrays_are_refused_and_never_unpickled(tmp_path, monkeypatch):
    path = npz(tmp_path, x_test=np.array([[1.0, 2.0, 3.0, 4.0]] * 3, dtype=object))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    refused(lambda: load_npz(path), "x_test", "object array", "never unpickled")


@pytest.mark.parametrize(
    "name, dims, fragment",
    [
        ("train-images-idx3-ubyte", (0, 28, 28), "dims (0, 28, 28) hold no images"),
        ("t10k-images-idx3-ubyte", (4, 0, 28), "dims (4, 0, 28) give zero pixels"),
        ("t10k-labels-idx1-ubyte", (0,), "dims (0,) hold no labels"),
    ],
)
def test_degenerate_idx_is_refused(tmp_path, name, dims, fragment):
    files = synthetic_idx()
    files[name] = idx_bytes(np.zeros(dims))
    write_idx(tmp_path, files, gz=False)
    refused(lambda: load_idx(tmp_path), f"{name}: {fragment}")


def test_idx_trailing_bytes(tmp_path):
    files = synthetic_idx()
    files["t10k-labels-idx1-ubyte"] += b"\0" * 5
    write_idx(tmp_path / "plain", files, gz=False)
    refused(lambda: load_idx(tmp_path / "plain"), "5 unexpected trailing bytes after dims (4,)")
    write_idx(tmp_path / "gz", files, gz=True)
    refused(lambda: load_idx(tmp_path / "gz"), "t10k-labels-idx1-ubyte.gz: unexpected trailing bytes")


# --------------------------------------------------------------------------- 4. sizes before allocation


def test_idx_header_claiming_2_31_images_in_a_100_byte_file(tmp_path):
    files = synthetic_idx()
    files["train-images-idx3-ubyte"] = struct.pack(">IIII", 0x803, 2**31, 28, 28) + bytes(84)
    write_idx(tmp_path / "plain", files, gz=False)
    refused(lambda: load_idx(tmp_path / "plain"), "dims (2147483648, 28, 28) need 1683627180032 bytes", "only 84")
    write_idx(tmp_path / "gz", files, gz=True)
    refused(lambda: load_idx(tmp_path / "gz"), "train-images-idx3-ubyte.gz: IDX dims (2147483648, 28, 28)",
            "claims 1,683,627,180,048 bytes", "1032-fold")


def test_idx_labels_claiming_more_than_the_file(tmp_path):
    files = synthetic_idx()
    files["train-labels-idx1-ubyte"] = struct.pack(">II", 0x801, 2**32 - 1) + bytes(6)
    write_idx(tmp_path, files, gz=False)
    refused(lambda: load_idx(tmp_path), "dims (4294967295,) need 4294967295 bytes but only 6")


def test_the_values_cap_is_checked_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "MAX_VALUES", 1000)
    write_idx(tmp_path / "idx", synthetic_idx())  # 6 images of 784 pixels
    refused(lambda: load_idx(tmp_path / "idx"), "IDX dims (6, 28, 28) make 4,704 values", "more than the 1,000")
    write_cifar(tmp_path / "cifar")
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("read before the cap was checked"))
    refused(lambda: load_cifar10_bin(tmp_path / "cifar"), "15 records of the training batches make 46,080 values")
    path = npz(tmp_path, x_train=np.zeros((6, 400), np.float32))
    refused(lambda: load_npz(path), "x_train of shape (6, 400) make 2,400 values")


def test_npz_header_claiming_more_than_the_member_holds(tmp_path):
    path = zip_members(tmp_path / "forged.npz", valid_members(x_train=npy_bytes((2**31, 784), data=bytes(10))))
    refused(lambda: load_npz(path), "cannot read x_train", "shape (2147483648, 784)", "holds 10 bytes")


def test_npz_deflated_member_claiming_more_than_deflate_can_hold(tmp_path):
    path = zip_members(tmp_path / "bomb.npz", valid_members(), zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central directory entry: x_train.npy
    data[entry + 24 : entry + 28] = struct.pack("<I", 2**31)  # its uncompressed size
    path.write_bytes(bytes(data))
    refused(lambda: load_npz(path), "x_train: claims 2,147,483,648 bytes", "1032-fold")


def test_npz_members_other_than_stored_or_deflate_are_refused(tmp_path):
    path = zip_members(tmp_path / "bz.npz", valid_members(), zipfile.ZIP_BZIP2)
    refused(lambda: load_npz(path), "x_train: zip compression method 12 is not read")


@pytest.mark.parametrize(
    "member, fragment",
    [
        (npy_bytes((-1, 2), data=bytes(8)), "negative dimension"),
        (npy_bytes((2, 2), descr="|O", data=bytes(32)), "object array"),
        (b"\x93NUMPY\x03\x00" + bytes(40), "format version 3.0"),
        (b"not an npy member at all", "cannot read x_train"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'" + b" " * 4, "cannot read x_train"),
    ],
    ids=["negative dim", "object dtype", "npy 3.0", "not npy", "broken header"],
)
def test_npz_forged_members(tmp_path, member, fragment):
    path = zip_members(tmp_path / "forged.npz", valid_members(x_train=member))
    refused(lambda: load_npz(path), str(path), fragment)


def test_npz_fortran_order_and_big_endian_arrays_read_as_numpy_does(tmp_path):
    x = np.asfortranarray(np.arange(24, dtype=">f8").reshape(6, 4))
    path = npz(tmp_path, x_train=x)
    assert torch.equal(load_npz(path).x_train, torch.from_numpy(x.astype(np.float32)))


def test_image_header_beyond_the_pixel_cap_is_refused_before_decoding():
    refused(lambda: decode_image(png_claiming(10000, 10000), "big.png"), "big.png: image is 10000x10000",
            "more than 16,777,216 pixels", error=ImageFolderError)


def test_image_header_claiming_more_pixels_than_its_file_can_hold():
    data = png_claiming(3000, 3000)
    refused(lambda: decode_image(data, "small.png"), f"header says 3000x3000 but a {len(data)}-byte file",
            error=ImageFolderError)


def test_image_folder_split_cap_is_checked_from_the_first_header(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")  # 6 train images of 3x4x5
    monkeypatch.setattr(checks, "MAX_VALUES", 100)
    refused(lambda: load_dataset(f"imagefolder:{tmp_path / 'data'}"), "/train: 6 images of 3x4x5 make 360 values",
            error=ImageFolderError)


def test_image_folder_file_size_cap(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")
    monkeypatch.setattr(imagefolder, "MAX_IMAGE_BYTES", 10)
    refused(lambda: load_dataset(f"imagefolder:{tmp_path / 'data'}"), "/train/ant/00.png:", "more than an image file",
            error=ImageFolderError)


def test_image_folder_zip_members_other_than_stored_or_deflate_are_refused(tmp_path):
    make_folder(tmp_path / "data")
    archive = tmp_path / "bz.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_BZIP2) as zf:
        for path in sorted((tmp_path / "data").rglob("*.png")):
            zf.write(path, path.relative_to(tmp_path / "data").as_posix())
    refused(lambda: load_dataset(f"imagefolder:{archive}"), f"{archive}/train/ant/00.png: zip compression method 12",
            error=ImageFolderError)


def test_images_must_be_png_or_jpeg_whatever_their_suffix(tmp_path):
    make_folder(tmp_path / "data")
    Image.new("RGB", (5, 4)).save(tmp_path / "data/train/bird/00.png", format="GIF")
    refused(lambda: load_dataset(f"imagefolder:{tmp_path / 'data'}"), "train/bird/00.png: cannot decode image",
            "not a PNG or JPEG", error=ImageFolderError)


def test_a_cache_file_with_a_forged_header_is_ignored(tmp_path, cache):
    make_folder(tmp_path / "data")
    first = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    (cached,) = cache.glob("imagefolder-*.npz")
    with zipfile.ZipFile(cached) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["x_train.npy"] = npy_bytes((2**31, 3, 4, 5), descr="|u1", data=bytes(16))
    zip_members(cached, members)
    again = load_dataset(f"imagefolder:{tmp_path / 'data'}")  # decoded afresh, cache rewritten
    assert torch.equal(first.x_train, again.x_train)


def test_gzip_and_bz2_files_that_are_not_what_they_claim(tmp_path):
    files = synthetic_idx()
    write_idx(tmp_path, files, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(bz2.compress(files["t10k-images-idx3-ubyte"]))
    refused(lambda: load_idx(tmp_path), "t10k-images-idx3-ubyte.gz: cannot read")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(files["t10k-images-idx3-ubyte"])[:-12])
    refused(lambda: load_idx(tmp_path), "t10k-images-idx3-ubyte.gz: cannot read")


def test_a_zip_member_of_an_unsupported_zip_version_is_one_error(tmp_path):
    """zipfile raises NotImplementedError while opening an archive whose central directory
    names an extract version above 6.3 (found by the property tests)."""
    import io
    import zipfile

    from ffneuro.data.loaders import DataError, load_dataset

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train/a/0.png", b"x")
    data = bytearray(buf.getvalue())
    cd = data.index(b"PK\x01\x02")
    data[cd + 6] = 0xFF                      # "version needed to extract" of the central directory entry
    (tmp_path / "d.zip").write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a readable zip archive"):
        load_dataset(f"imagefolder:{tmp_path / 'd.zip'}")
