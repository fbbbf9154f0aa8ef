"""Property tests of the loaders: generated, truncated and mutated files of every format
(IDX, CIFAR-10 binary, npz bytes and npz arrays, image folders from a folder and from zip
bytes, the image-folder cache) give either a Dataset that keeps its invariants or a
DataError (ImageFolderError is one), never another exception, a hang or a large
allocation. Deterministic (``derandomize=True``, no example database), so CI sees the same
inputs on every run."""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import re
import shutil
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from builders import idx_bytes
from ffneuro.data import imagefolder
from ffneuro.data.checks import MAX_CLASSES, DataError
from ffneuro.data.imagefolder import read_imagefolder
from ffneuro.data.loaders import Dataset, load_cifar10_bin, load_dataset, load_idx, load_npz

HEADROOM_BYTES = 2 * 2**30   # inputs are a few KiB: a larger allocation was sized by a header (room for thread arenas)
SLOW_SECONDS = 10.0  # one input, on a busy machine


def deterministic(examples: int):
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work() -> Path:
    """A temporary folder, in memory (/dev/shm) where there is one: rewriting a file on a
    disk file system can cost milliseconds (ext4 flushes a truncated file), thousands of times."""
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="ffneuro-properties-", dir=shm if os.access(shm, os.W_OK) else None) as d:
        yield Path(d)


@pytest.fixture(scope="module", autouse=True)
def no_cache(work):
    """The image-folder cache folder cannot be made (a file stands in its way): every load
    decodes, and nothing is fsynced."""
    (work / "not-a-folder").write_bytes(b"")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FFNEURO_CACHE", str(work / "not-a-folder" / "cache"))
        yield


@pytest.fixture(scope="module", autouse=True)
def address_space_cap():
    """While these tests run, cap the process's address space at its size now plus
    ``HEADROOM_BYTES``: an array (numpy's or Pillow's) sized by a forged header then fails
    with MemoryError, which fails the test, rather than being reserved lazily. Costs
    nothing per input (tracing allocations would make these tests half again as slow;
    test_rules.py traces the hand-made header bombs). Linux only; elsewhere no cap."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        yield
        return
    size = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = min(limit for limit in (size + HEADROOM_BYTES, soft, hard) if limit != resource.RLIM_INFINITY)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class TookTooLong(Exception):
    """Raised into a load that runs past ``SLOW_SECONDS`` (no loader catches it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block with :class:`TookTooLong` after ``seconds`` (a real timer where
    there is SIGALRM, so a loader stuck in a loop fails the test instead of hanging it)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def interrupt(signum, frame):
        raise TookTooLong(f"one input took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_or_refuse(load):
    """``load()``'s Dataset, or None when it raised DataError; any other exception fails the
    test: a MemoryError too (see ``address_space_cap``), and TookTooLong."""
    try:
        with time_limit(SLOW_SECONDS):
            result = load()
        event("loaded" if result is not None else "None")
    except DataError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and msg.strip() == msg
        event(f"refused: {outcome(msg)}")
        result = None
    return result


def outcome(msg: str) -> str:
    """The kind of refusal, for ``--hypothesis-show-statistics``: the message without the
    file names and numbers, cut short."""
    text = msg.rsplit(".npz: ", 1)[-1].rsplit("-ubyte: ", 1)[-1].rsplit(".bin: ", 1)[-1]
    text = re.sub(r"\S*/\S*", "PATH", re.sub(r"0x[0-9a-f]+", "0xH", text))
    return re.sub(r"[0-9][0-9,]*", "N", text)[:48]


def assert_dataset(ds: Dataset, *, pixels: bool, dense: bool) -> None:
    """A Dataset's invariants; ``pixels``: features scaled into [0, 1]; ``dense``: the
    classes are exactly the training labels."""
    assert isinstance(ds, Dataset)
    assert 2 <= ds.num_classes <= MAX_CLASSES
    features = math.prod(ds.feature_shape)
    assert features >= 1
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.ndim == 2 and y.ndim == 1 and x.shape[0] == y.shape[0] >= 1 and x.shape[1] == features
        assert torch.isfinite(x).all()
        assert 0 <= int(y.min()) and int(y.max()) < ds.num_classes
        if pixels:
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    if dense:
        assert torch.equal(torch.unique(ds.y_train), torch.arange(ds.num_classes))
        assert set(ds.y_test.tolist()) <= set(ds.y_train.tolist())


# --------------------------------------------------------------------------- byte mutations
# Generation is most of these tests' time, so inputs are drawn from a few fixed strategies
# (positions as a number modulo the length) rather than strategies built afresh per input.

EDGE_U32 = st.sampled_from([0, 1, 2, 3, 9, 10, 255, 256, 3073, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1])
U32 = st.one_of(EDGE_U32, st.integers(0, 2**32 - 1))
ANY = st.integers(0, 2**32 - 1)
CHOICE = st.integers(0, 3)
EDITS = st.integers(1, 4)
BYTE = st.integers(1, 255)
JUNK = st.binary(min_size=1, max_size=16)


def mutate(draw, base: bytes, hot: tuple[int, ...] = ()) -> bytes:
    """``base`` truncated, with bytes flipped or inserted, or a 32-bit field overwritten with
    an edge value (often at one of the ``hot`` offsets, where a format keeps its sizes)."""
    n = len(base)

    def offset() -> int:
        return hot[draw(ANY) % len(hot)] if hot and draw(st.booleans()) else draw(ANY) % max(n, 1)

    choice = draw(CHOICE)  # (hypothesis favours 0: the flips, the least destructive)
    if choice == 3:
        return base[: draw(ANY) % (n + 1)]
    out = bytearray(base)
    if choice == 0:
        for _ in range(draw(EDITS)):
            i = offset()
            if i < n:
                out[i] ^= draw(BYTE)
    elif choice == 1:
        i = offset()
        out[i : i + 4] = draw(U32).to_bytes(4, "big" if draw(st.booleans()) else "little")
    else:
        i = draw(ANY) % (n + 1)
        out[i:i] = draw(JUNK)
    return bytes(out)


@st.composite
def mutated(draw, bases: list[bytes], hot=lambda data: ()) -> bytes:
    """One of ``bases``, mutated (``hot(base)``: the offsets worth aiming at)."""
    base = bases[draw(ANY) % len(bases)]
    return mutate(draw, base, hot(base))


FILE_DAMAGE = st.sampled_from(["none", "none", "none", "mutate", "mutate", "mutate", "forge", "junk", "missing"])
SMALL_JUNK = st.binary(max_size=24)


def damaged(draw, files: dict[str, bytes], hot: tuple[int, ...], forged: st.SearchStrategy[bytes]) -> dict[str, bytes]:
    """``files`` (name -> bytes), mostly with one of them mutated, forged, junk or missing."""
    how = draw(FILE_DAMAGE)
    name = sorted(files)[draw(ANY) % len(files)]
    if how == "mutate":
        files[name] = mutate(draw, files[name], hot)
    elif how in ("forge", "junk"):
        files[name] = draw(forged if how == "forge" else SMALL_JUNK)
    elif how == "missing":
        del files[name]
    return files


# --------------------------------------------------------------------------- IDX

IDX_HOT = (0, 4, 8, 12)  # the magic number and the dims
SIDE = st.integers(1, 3)
FORGED_IDX = st.builds(lambda magic, dims, payload: b"".join(d.to_bytes(4, "big") for d in (magic, *dims)) + payload,
                       st.sampled_from([0x801, 0x803]) | U32, st.lists(U32, max_size=3), st.binary(max_size=24))


@st.composite
def idx_folders(draw) -> dict[str, bytes]:
    """The four IDX files of a small sound dataset (file name -> bytes, ``.gz`` ones
    compressed), mostly with one file damaged."""
    rows, cols = draw(SIDE), draw(SIDE)
    files = {}
    for prefix in ("train", "t10k"):
        n = draw(SIDE)
        files[f"{prefix}-images-idx3-ubyte"] = idx_bytes(np.arange(n * rows * cols).reshape(n, rows, cols) * 37 % 256)
        files[f"{prefix}-labels-idx1-ubyte"] = idx_bytes([draw(ANY) % 10 for _ in range(n)])
    files = damaged(draw, files, IDX_HOT, FORGED_IDX)
    packed = {}
    for name, data in files.items():
        if draw(st.booleans()):
            packed[f"{name}.gz"] = gzip.compress(data, compresslevel=1, mtime=0)
        else:
            packed[name] = data
    return packed


def load_folder(folder: Path, files: dict[str, bytes], load) -> Dataset | None:
    """Write ``files`` (name -> bytes) into a fresh ``folder``, then ``load_or_refuse(load(folder))``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return load_or_refuse(lambda: load(folder))


@deterministic(1500)
@given(files=idx_folders())
def test_idx_files(work, files):
    ds = load_folder(work / "idx", files, load_idx)
    if ds is not None:
        assert_dataset(ds, pixels=True, dense=False)
        assert ds.num_classes == 10 and ds.x_train.shape[0] == len(ds.y_train)


# --------------------------------------------------------------------------- CIFAR-10 binary

CIFAR_NAMES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
RECORD = 3073
PIXELS = (np.arange(3072) * 7 % 256).astype(np.uint8).tobytes()


@st.composite
def cifar_folders(draw) -> dict[str, bytes]:
    """The six batch files of a small sound dataset (one or two records each), mostly with
    one file damaged (a record's label byte is a hot spot)."""
    files = {name: b"".join(bytes([draw(ANY) % 10]) + PIXELS for _ in range(1 + draw(st.booleans()))) for name in CIFAR_NAMES}
    return damaged(draw, files, (0, RECORD, RECORD - 1), SMALL_JUNK)


@deterministic(800)
@given(files=cifar_folders())
def test_cifar10_files(work, files):
    ds = load_folder(work / "cifar", files, load_cifar10_bin)
    if ds is not None:
        assert_dataset(ds, pixels=True, dense=False)
        assert ds.feature_shape == (3, 32, 32)
        assert ds.x_train.shape[0] == sum(len(files[name]) for name in CIFAR_NAMES[:5]) // RECORD


# --------------------------------------------------------------------------- npz: bytes

FEATURE_DTYPES = ["uint8", "int8", "uint16", "int32", "int64", "uint64", "float16", "float32", ">f8", "bool",
                  "complex64", "<U2", "datetime64[s]"]
LABEL_DTYPES = ["uint8", "int16", "int64", "uint64", "float32", "float64", "bool", "<U1"]


def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> bytes:
    fh = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return fh.getvalue()


def zip_hot_offsets(data: bytes) -> tuple[int, ...]:
    """The offsets of the sizes in a zip's headers and of the .npy headers' text."""
    hot = []
    for signature, fields in ((b"PK\x03\x04", (18, 22)), (b"PK\x01\x02", (20, 24, 42)), (b"PK\x05\x06", (10, 12, 16))):
        start = data.find(signature)
        while start >= 0:
            hot.extend(start + f for f in fields)
            start = data.find(signature, start + 1)
    for marker in (b"'shape': (", b"'descr': '"):
        start = data.find(marker)
        while start >= 0:
            hot.append(start + len(marker))
            start = data.find(marker, start + 1)
    return tuple(hot)


SMALL_ARRAYS = {
    "x_train": (np.arange(12).reshape(4, 3) * 20).astype(np.uint8),
    "y_train": np.array([0, 1, 2, 1]),
    "x_test": np.full((2, 3), 9, np.uint8),
    "y_test": np.array([2, 0]),
}
NPZ_BASES = [npz_bytes(SMALL_ARRAYS, compressed) for compressed in (False, True)]


def npy_member(args: tuple) -> bytes:
    """A .npy member (format 1.0) whose header says ``shape``, ``descr`` and ``fortran``
    (anything at all), followed by ``data``."""
    shape, descr, fortran, data = args
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


FORGED_MEMBER = st.tuples(
    st.lists(st.one_of(st.integers(0, 4), EDGE_U32, st.integers(-2, 2**64)), max_size=3).map(tuple),
    st.sampled_from(["<f4", "|u1", "<i8", "|O", "<c8", "|b1", "<U3", "|V4", "<M8[s]", "|u1x", ""]),
    st.booleans(),
    st.binary(max_size=40),
).map(npy_member)
MEMBER_NAMES = st.lists(st.sampled_from([f"{key}.npy" for key in SMALL_ARRAYS]), min_size=1, max_size=4, unique=True)
ZIP_METHODS = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])


@st.composite
def forged_npz(draw) -> bytes:
    """The small dataset's npz with one to four members replaced by forged ones."""
    members = {f"{key}.npy": npz_member(key) for key in SMALL_ARRAYS}
    for name in draw(MEMBER_NAMES):
        members[name] = draw(FORGED_MEMBER)
    fh = io.BytesIO()
    with zipfile.ZipFile(fh, "w", draw(ZIP_METHODS)) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return fh.getvalue()


def npz_member(key: str) -> bytes:
    fh = io.BytesIO()
    np.lib.format.write_array(fh, SMALL_ARRAYS[key])
    return fh.getvalue()


NPZ_FILES = st.one_of(
    st.sampled_from(NPZ_BASES),
    mutated(NPZ_BASES, zip_hot_offsets),
    mutated(NPZ_BASES, zip_hot_offsets),
    forged_npz(),
    st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b),
)


@deterministic(1300)
@given(data=NPZ_FILES)
def test_npz_bytes(work, data):
    path = work / "bytes.npz"
    path.write_bytes(data)
    ds = load_or_refuse(lambda: load_npz(path))
    if ds is not None:
        assert_dataset(ds, pixels=True, dense=True)


# --------------------------------------------------------------------------- npz: arrays

DIMS = st.integers(0, 3)
FEATURE_DTYPE = st.sampled_from(FEATURE_DTYPES)
ANY_DTYPE = st.sampled_from(FEATURE_DTYPES + LABEL_DTYPES)
LABEL_DTYPE = st.sampled_from(LABEL_DTYPES[:6])
EDGE_LABEL = st.sampled_from([-1, 4, 999, 1000, 50000, 2**40, 0.5, float("nan"), float("inf")])
EDGE_FEATURE = st.sampled_from([float("nan"), float("-inf"), 1e300, -1e39, 5e-324])
DAMAGE = st.sampled_from(["none", "none", "array", "label", "feature"])
CLASS_COUNT = st.sampled_from([2, 3, 4, 1])
PICKLED = st.sampled_from([False] * 19 + [True])


def raw_array(draw, dtype: str, shape: tuple[int, ...], finite: bool) -> np.ndarray:
    """An array of ``dtype`` and ``shape`` from drawn bytes: any bit pattern (NaN, inf,
    huge values) or, if ``finite``, the values 0..255."""
    dtype = np.dtype(dtype)
    if dtype.kind == "U":
        return np.full(shape, "ab", dtype)
    count = math.prod(shape)
    size = count if finite else count * dtype.itemsize
    raw = draw(st.binary(min_size=size, max_size=size))
    if finite or dtype.kind == "b":
        return np.frombuffer(raw[:count], np.uint8).astype(dtype).reshape(shape)
    return np.frombuffer(raw, dtype).reshape(shape).copy()


@st.composite
def npz_arrays(draw) -> dict[str, np.ndarray]:
    """Mostly a coherent dataset (samples, labels, one feature shape), then maybe one
    array replaced by an arbitrary one or one value set to an edge case."""
    n = {"train": draw(st.integers(1, 5)), "test": draw(SIDE)}
    shape = tuple(draw(SIDE) for _ in range(draw(st.integers(1, 2))))
    dtypes = [draw(FEATURE_DTYPE)]
    dtypes.append(dtypes[0] if draw(st.booleans()) else draw(FEATURE_DTYPE))
    label_dtype = np.dtype(draw(LABEL_DTYPE))
    classes = draw(CLASS_COUNT)
    finite = draw(st.booleans())
    arrays = {}
    for split, dtype in zip(("train", "test"), dtypes):
        arrays[f"x_{split}"] = raw_array(draw, dtype, (n[split], *shape), finite)
        labels = [draw(ANY) % classes for _ in range(n[split])]
        if split == "train" and n[split] >= classes and draw(CHOICE):
            labels[:classes] = range(classes)  # every class present: the dense rule holds
        arrays[f"y_{split}"] = np.array(labels).astype(label_dtype)
    damage = draw(DAMAGE)
    if damage == "array":
        key = sorted(arrays)[draw(CHOICE)]
        shape = tuple(draw(DIMS) for _ in range(draw(DIMS)))
        arrays[key] = raw_array(draw, draw(ANY_DTYPE), shape, draw(st.booleans()))
    elif damage == "label":
        key = ("y_train", "y_test")[draw(ANY) % 2]
        value = draw(EDGE_LABEL)
        arrays[key] = arrays[key].astype(np.float64 if isinstance(value, float) else np.int64)
        arrays[key][draw(ANY) % len(arrays[key])] = value
    elif damage == "feature" and arrays["x_train"].dtype.kind in "iuf":
        arrays["x_train"] = arrays["x_train"].astype(np.float64)
        arrays["x_train"].flat[0] = draw(EDGE_FEATURE)
    return arrays


@deterministic(1300)
@given(arrays=npz_arrays(), compressed=st.booleans(), pickled=PICKLED)
def test_npz_arrays(work, arrays, compressed, pickled):
    if pickled:  # now and then an object array, which np.savez pickles
        arrays["x_test"] = arrays["x_test"].astype(object)
    path = work / "arrays.npz"
    path.write_bytes(npz_bytes(arrays, compressed))
    ds = load_or_refuse(lambda: load_npz(path))
    if ds is not None:
        x = arrays["x_train"]
        assert_dataset(ds, pixels=x.dtype == np.uint8, dense=True)
        scale = 255 if x.dtype == np.uint8 else 1
        assert torch.equal(ds.x_train, torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / np.float32(scale)))
        assert ds.y_train.tolist() == arrays["y_train"].astype(np.int64).tolist()


# --------------------------------------------------------------------------- image folders


def _encoded(mode: str, size: tuple[int, int], fmt: str, **kwargs) -> bytes:
    img = Image.new("RGB", size, (40, 120, 200)) if mode not in ("I;16", "1", "L", "LA") else Image.new(mode, size, 1)
    if mode == "P":
        img = img.quantize(colors=4)
    elif mode not in ("RGB", "I;16", "1", "L", "LA"):
        img = img.convert(mode)
    fh = io.BytesIO()
    img.save(fh, format=fmt, **kwargs)
    return fh.getvalue()


IMAGES = [
    _encoded("RGB", (2, 3), "PNG"), _encoded("L", (2, 3), "PNG"), _encoded("RGBA", (2, 3), "PNG"),
    _encoded("P", (2, 3), "PNG"), _encoded("1", (2, 3), "PNG"), _encoded("LA", (2, 3), "PNG"),
    _encoded("I;16", (2, 3), "PNG"), _encoded("RGB", (3, 2), "PNG"), _encoded("RGB", (2, 3), "JPEG"),
    _encoded("L", (2, 3), "JPEG"), _encoded("RGB", (2, 3), "GIF"), _encoded("RGB", (2, 3), "BMP"),
]
SOUND_IMAGES = IMAGES[:6] + IMAGES[8:10]  # all 2 wide, 3 high; grey or colour
IMAGE_NAMES = ("0.png", "1.PNG", "2.jpg", "3.jpeg")
IGNORED = ("README", ".DS_Store", "._0.png", "deeper/0.png")  # files a layout ignores
BAD_IMAGE = st.one_of(st.sampled_from(IMAGES[6:8] + IMAGES[10:]), mutated(IMAGES, lambda _: (16, 20)), SMALL_JUNK)
LAYOUT_DAMAGE = st.sampled_from(["none", "none", "none", "ignored", "image", "image", "class", "split"])


@st.composite
def layouts(draw) -> dict[str, dict[str, dict[str, bytes]]]:
    """{split: {class: {file name: bytes}}} of a small sound image folder (2 or 3 classes,
    1 or 2 images each), mostly with one thing changed: files it ignores added, an image
    damaged (its IHDR's width and height are hot spots), a class folder renamed, emptied or
    hidden, or a split missing."""
    classes = ("a", "b", "c")[: 2 + draw(st.booleans())]
    layout = {split: {cls: {IMAGE_NAMES[draw(ANY) % 4]: SOUND_IMAGES[draw(ANY) % len(SOUND_IMAGES)]
                            for _ in range(1 + draw(ANY) % 2)} for cls in classes} for split in ("train", "test")}
    split = ("train", "test")[draw(ANY) % 2]
    cls = classes[draw(ANY) % len(classes)]
    how = draw(LAYOUT_DAMAGE)
    if how == "ignored":
        name = IGNORED[draw(ANY) % len(IGNORED)]
        layout[split].setdefault((cls, ".hidden", "__MACOSX")[draw(ANY) % 3], {})[name] = draw(SMALL_JUNK)
    elif how == "image":
        layout[split][cls][sorted(layout[split][cls])[0]] = draw(BAD_IMAGE)
    elif how == "class":
        layout[split][(".c", "d", cls)[draw(ANY) % 3]] = layout[split].pop(cls) if draw(st.booleans()) else {}
    elif how == "split":
        del layout[split]
    return layout


def assert_image_dataset(ds: Dataset) -> None:
    assert_dataset(ds, pixels=True, dense=True)
    channels, height, width = ds.feature_shape
    assert channels in (1, 3) and (height, width) in ((3, 2), (2, 3))


@deterministic(600)
@given(layout=layouts())
def test_image_folders(work, layout):
    root = work / "images"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for split, classes in layout.items():
        for cls, files in classes.items():
            (root / split / cls).mkdir(parents=True)
            for name, data in files.items():
                (root / split / cls / name).parent.mkdir(exist_ok=True)
                (root / split / cls / name).write_bytes(data)
    ds = load_or_refuse(lambda: load_dataset(f"imagefolder:{root}"))
    if ds is not None:
        assert_image_dataset(ds)


def zip_bytes(layout, top: str, method: int, folders: bool) -> bytes:
    fh = io.BytesIO()
    with zipfile.ZipFile(fh, "w", method) as zf:
        for split, classes in layout.items():
            for cls, files in classes.items():
                if folders:
                    zf.writestr(f"{top}{split}/{cls}/", b"")
                for name, data in files.items():
                    zf.writestr(f"{top}{split}/{cls}/{name}", data)
    return fh.getvalue()


TOPS = st.sampled_from(["", "", "top/"])
METHODS = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2])


@st.composite
def image_zips(draw) -> bytes:
    data = zip_bytes(draw(layouts()), draw(TOPS), draw(METHODS), draw(st.booleans()))
    if draw(CHOICE) == 0:  # some of the zips mutated (a damaged tail only makes it no zip at all)
        data = mutate(draw, data, zip_hot_offsets(data))
    return data


@deterministic(1000)
@given(data=image_zips())
def test_image_zips(work, data):
    path = work / "images.zip"
    path.write_bytes(data)
    ds = load_or_refuse(lambda: load_dataset(f"imagefolder:{path}"))
    if ds is not None:
        assert_image_dataset(ds)


# --------------------------------------------------------------------------- the image-folder cache


@pytest.fixture(scope="module")
def cached(work):
    """A sound image folder, its decoded arrays and the bytes of its cache file."""
    root = work / "cached"
    for split in ("train", "test"):
        for cls, data in (("a", IMAGES[0]), ("b", IMAGES[1])):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "0.png").write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FFNEURO_CACHE", str(work / "cache"))
        decoded = read_imagefolder(root)
        (file,) = (work / "cache").glob("imagefolder-*.npz")
    with imagefolder._open_source(root) as source:
        key = source.key
    return decoded, key, file.read_bytes()


@deterministic(600)
@given(data=st.data())
def test_a_damaged_cache_is_ignored(work, cached, data):
    decoded, key, good = cached
    damaged = data.draw(mutated([good], zip_hot_offsets))
    path = work / "damaged-cache.npz"
    path.write_bytes(damaged)
    found = load_or_refuse(lambda: imagefolder._load_cache(path, key, decoded.classes))  # unsound: None
    if found is not None:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            assert np.array_equal(getattr(found, name), getattr(decoded, name))
