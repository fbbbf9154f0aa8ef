"""`verify` proves what it says, and the HDF5 reader never crashes (issue #18).

The rules, each with its test below:

- a file with no test vectors does not verify: only checksums could be checked;
- a layer group deleted, or a ``num_layers`` that disagrees with the groups present, is refused;
- an attribute changed while every dataset is intact fails the root ``content_sha256``, which
  covers every attribute the replay reads (and every other attribute, the structure, and
  every dataset's dtype, shape and checksum);
- a schema 2 file still verifies, with a note that its attributes are covered by no checksum;
  a schema 3 file without its digest is refused;
- a damaged, foreign or malformed file, a directory or a special file is one GoldenError (a
  ValueError) with a one-line message naming the file, without a large allocation;
- property tests (hypothesis, derandomized): damaged bytes and edits made through h5py
  never verify unless the file's content is unchanged, and never raise anything but a
  GoldenError.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import shutil
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ffneuro.config import RunConfig
from ffneuro.export import golden
from ffneuro.export.hdf5 import export_run
from ffneuro.train.loop import train

PROPERTY = dict(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits) -> Path:
    """A tiny net (74 → 8 → 6, with a head) trained for one epoch on 64 digits on the
    simulated cortex-m7-int8: quick, and every part of the schema a dense net has."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    data = dataclasses.replace(digits, x_train=digits.x_train[:64], y_train=digits.y_train[:64])
    train(RunConfig.from_flat(layers=(8, 6), epochs=1, batch_size=8, entropy_probe=0).validate(), out=out,
          data=data, profile="cortex-m7-int8", progress=False)
    return out


@pytest.fixture(scope="module")
def exported(run) -> Path:
    path = run.parent / "model.h5"
    export_run(run, path, vectors=2)
    return path


class Original:
    """The export's bytes and its content as h5py shows it (a short repr for hypothesis's reports)."""

    def __init__(self, path: Path):
        self.raw, self.content = path.read_bytes(), content(path)

    def __repr__(self) -> str:
        return f"Original({len(self.raw)} bytes)"

    def changed(self, path: Path) -> list[str]:
        """What differs between ``path``'s content and the export's: object names, or why h5py
        cannot read it all."""
        try:
            now = content(path)
        except Exception as e:  # noqa: BLE001 - any failure means "not the original content"
            return [f"unreadable ({type(e).__name__}: {e})"]
        return sorted(k for k in set(now) | set(self.content) if now.get(k) != self.content.get(k))


@pytest.fixture(scope="module")
def original(exported) -> Original:
    return Original(exported)


def copy(src: Path, tmp_path: Path, name: str = "copy.h5") -> Path:
    dst = tmp_path / name
    shutil.copy(src, dst)
    return dst


def refused(fn, path: Path, *args) -> str:
    """The one-line GoldenError message ``fn(path)`` raises (it names the file)."""
    with pytest.raises(golden.GoldenError) as info:
        fn(path, *args)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message and str(path) in message, message
    return message


def _value(v):
    """An attribute value in a form that compares by type and content."""
    if isinstance(v, str):
        return "str", v
    if isinstance(v, bytes):
        return "bytes", v
    if isinstance(v, (np.ndarray, np.generic)):
        a = np.asarray(v)
        return a.dtype.str, a.shape, (tuple(a.ravel().tolist()) if a.dtype.kind == "O" else a.tobytes())
    return "other", repr(v)


def content(path: Path) -> dict:
    """Everything h5py shows of a file, independently of the golden reader: every object's
    path and attributes, and each dataset's dtype, shape and bytes (raises when h5py cannot
    read it all)."""
    size = path.stat().st_size
    out: dict = {}

    def attrs(obj) -> dict:
        return {k: _value(obj.attrs[k]) for k in obj.attrs}

    def visit(group, prefix: str):             # by name, as a reader finds things (not H5Ovisit)
        for key in group:
            obj = group[key]
            name = f"{prefix}{key}"
            if isinstance(obj, h5py.Dataset):
                if obj.size * obj.dtype.itemsize > size:
                    raise ValueError(f"{name} claims more bytes than the file")
                out[name] = ("dataset", obj.dtype.str, obj.shape, np.ascontiguousarray(obj[()]).tobytes(),
                             attrs(obj))
            else:
                out[name] = ("group", attrs(obj))
                visit(obj, f"{name}/")

    with h5py.File(path, "r") as f:
        out["/"] = ("group", attrs(f))
        visit(f, "")
    return out


# -- a fresh export ---------------------------------------------------------------------------------
def test_a_fresh_export_verifies_with_every_attribute_covered(exported):
    report = golden.verify(exported)
    assert report["ok"] and report["reason"] is None and report["failures"] == []
    assert report["schema_version"] == golden.SCHEMA_VERSION == 4 and report["vectors"] == 2
    assert report["digest_ok"] is True and report["attributes_covered"] and report["notes"] == []
    summary = golden.inspect(exported)
    assert summary["checksums_ok"] and summary["digest_ok"] is True and summary["schema_version"] == 4
    with h5py.File(exported, "r") as f:
        assert f.attrs[golden.DIGEST_ATTR] == golden.content_digest(f)


def test_the_digest_covers_every_attribute_the_replay_reads(exported, monkeypatch):
    """Every attribute the golden reader reads to replay (recorded as it reads them) is in
    the canonical content the digest hashes, and so is every dataset's dtype and shape."""
    read: set[tuple[str, str]] = set()
    raw = golden._Reader.raw

    def recording(self, obj, key):
        read.add((obj.name, key))
        return raw(self, obj, key)
    monkeypatch.setattr(golden._Reader, "raw", recording)
    golden.verify(exported)
    for key in ("norm_gain", "norm_gain_frac_bits", "accumulator_bits", "input_bits", "input_signed",
                "goodness_scale", "goodness", "kind"):
        assert ("/layers/0", key) in read, key
    assert {("/input", "label_code"), ("/input", "levels"), ("/head", "norm_gains"),
            ("/inference", "multi_pass_layers"), ("/layers/1/weight", "sha256")} <= read
    golden.inspect(exported)                    # and what inspect shows: weight scales, exponents
    with h5py.File(exported, "r") as f:
        covered = json.loads(golden.canonical_content(f))
    assert ("/layers/0", "weight_scale") in read and len(read) > 50
    for name, key in read - {("/", golden.DIGEST_ATTR)}:
        assert key in covered[name]["attrs"], (name, key)
    for name in ("/layers/0/weight", "/head/weight", "/vectors/score"):
        assert covered[name]["kind"] == "dataset" and covered[name]["dtype"] and covered[name]["shape"]


# -- rule: no vectors, nothing proven -----------------------------------------------------------------
def test_a_file_without_test_vectors_does_not_verify(run, digits, tmp_path):
    path = tmp_path / "novec.h5"
    export_run(run, path, vectors=0)
    for x, y in ((None, None), (digits.x_test.numpy(), digits.y_test.numpy())):     # accuracy is no proof
        report = golden.verify(path, x, y)
        assert not report["ok"] and report["vectors"] == 0 and report["digest_ok"] is True
        assert report["reason"].startswith("no test vectors") and "only checksums were checked" in report["reason"]
    assert golden.inspect(path)["checksums_ok"]          # the file itself is intact


# -- rule: a missing layer is refused ---------------------------------------------------------------
@pytest.mark.parametrize("edit", ["delete layer 1", "delete layer 0", "num_layers 1", "num_layers 3"])
def test_a_missing_or_extra_layer_is_refused(exported, tmp_path, edit):
    path = copy(exported, tmp_path)
    with h5py.File(path, "r+") as f:
        if edit.startswith("delete"):
            del f[f"layers/{edit[-1]}"]
        else:
            f.attrs["num_layers"] = int(edit[-1])
    for fn in (golden.verify, golden.inspect, golden.read_model):
        assert "a layer is missing or extra" in refused(fn, path)


# -- rule: a changed attribute fails, datasets untouched ----------------------------------------------
ATTRIBUTE_EDITS = [       # (object, attribute, new value): what the integer datapath reads, and a doc string
    ("layers/0", "weight_scale", lambda v: v * 2), ("layers/0", "norm_gain", lambda v: v + 1),
    ("layers/1", "norm_gain_frac_bits", lambda v: v - 1), ("layers/1", "accumulator_bits", lambda v: v + 8),
    ("layers/0", "input_bits", lambda v: v - 1), ("layers/0", "input_signed", lambda v: 1 - v),
    ("layers/1", "goodness_scale", lambda v: np.nextafter(v, np.inf)), ("layers/0", "goodness", lambda v: "sum"),
    ("layers/0", "weight_bits", lambda v: v + 1), ("layers/0", "output_scale", lambda v: v / 2),
    ("input", "levels", lambda v: v - 1), ("input", "label_code", lambda v: v - 1),
    ("input", "neutral_code", lambda v: v + 1), ("input", "rule", lambda v: v + "!"),
    ("inference", "multi_pass_layers", lambda v: v - 1), ("head", "norm_gains", lambda v: v + 1),
    ("head", "accumulator_bits", lambda v: v - 8), ("head", "input_bits", lambda v: v - 1),
    ("layers/0/weight", "doc", lambda v: "weights"), ("provenance", "seed", lambda v: v + 1),
    ("/", "ffneuro_version", lambda v: "0.0.0"), ("/", "default_inference", lambda v: "multi-pass"),
]


@pytest.mark.parametrize("obj, key, change", ATTRIBUTE_EDITS, ids=[f"{o}:{k}" for o, k, _ in ATTRIBUTE_EDITS])
def test_a_changed_attribute_with_intact_datasets_fails(exported, tmp_path, obj, key, change):
    path = copy(exported, tmp_path)
    with h5py.File(path, "r+") as f:
        f[obj].attrs[key] = change(f[obj].attrs[key])
    report = golden.verify(path)
    assert not report["ok"] and report["checksum_failures"] == [] and report["digest_ok"] is False
    assert report["reason"].startswith("content_sha256 does not match")
    assert not golden.inspect(path)["checksums_ok"]


def test_an_added_attribute_group_or_dataset_or_a_retyped_table_fails(exported, tmp_path):
    edits = {"attribute": lambda f: f["layers/0"].attrs.__setitem__("shift", 3),
             "group": lambda f: f.create_group("extra"),
             "dataset": lambda f: f["layers/0"].create_dataset("extra", data=np.arange(3)),
             "retyped": lambda f: _rewrite(f, "layers/1/weight", lambda w: w.astype(np.int16))}
    for name, edit in edits.items():
        path = copy(exported, tmp_path, f"{name}.h5")
        with h5py.File(path, "r+") as f:
            edit(f)
        report = golden.verify(path)
        assert not report["ok"] and report["digest_ok"] is False, name


def _rewrite(f, name: str, change, new_checksum: bool = True) -> None:
    """Replace dataset ``name`` by ``change(data)`` with its attributes, and a sha256 that
    matches the new bytes (or, ``new_checksum`` false, the old one)."""
    ds = f[name]
    data, attrs = change(ds[()]), dict(ds.attrs)
    del f[name]
    new = f.create_dataset(name, data=data)
    for k, v in attrs.items():
        new.attrs[k] = v
    if new_checksum:
        new.attrs["sha256"] = golden.sha256(data)


def test_a_tampered_table_names_its_checksum_as_the_reason(exported, tmp_path):
    path = copy(exported, tmp_path)
    with h5py.File(path, "r+") as f:
        f["layers/1/weight"][0, 0] += 1
    report = golden.verify(path)
    assert not report["ok"] and report["reason"] == "checksum failed for /layers/1/weight"


# -- rule: files of the previous schema ------------------------------------------------------------------
def _downgrade(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 2
        del f.attrs[golden.DIGEST_ATTR]


def test_a_schema_2_file_verifies_with_a_note_that_attributes_are_not_covered(exported, tmp_path):
    path = copy(exported, tmp_path)
    _downgrade(path)
    report = golden.verify(path)
    assert report["ok"] and report["schema_version"] == 2 and report["digest_ok"] is None
    assert not report["attributes_covered"]
    assert report["notes"] and "schema version 2" in report["notes"][0] and "no checksum" in report["notes"][0]
    summary = golden.inspect(path)
    assert summary["checksums_ok"] and not summary["attributes_covered"] and summary["notes"] == report["notes"]
    with h5py.File(path, "r+") as f:                 # an attribute the replay reads: the stored vectors catch it
        f["layers/1"].attrs["goodness_scale"] *= 2
    report = golden.verify(path)
    assert not report["ok"] and report["reason"].startswith("replay mismatch: multi-pass score")


def test_a_digest_is_checked_whatever_the_version_and_required_from_version_3(exported, tmp_path):
    path = copy(exported, tmp_path)
    with h5py.File(path, "r+") as f:                 # an older version number does not skip the digest
        f.attrs["schema_version"] = 2
    assert golden.verify(path)["digest_ok"] is False
    path = copy(exported, tmp_path)
    with h5py.File(path, "r+") as f:
        del f.attrs[golden.DIGEST_ATTR]
    assert "has no attribute 'content_sha256'" in refused(golden.verify, path)


# -- rule: damaged files are one GoldenError, one line, naming the file ---------------------------------------
def _fill(path: Path, exported: Path, kind: str) -> None:
    raw = exported.read_bytes()
    if kind.startswith("truncated"):
        path.write_bytes(raw[:int(len(raw) * float(kind.split(":")[1]))])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "hdf5 signature then noise":
        path.write_bytes(raw[:8] + bytes(4000))
    elif kind == "text":
        path.write_text("not hdf5\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "foreign hdf5":
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.arange(3))
    elif kind == BIG_ATTRIBUTE:
        shutil.copy(exported, path)
        with h5py.File(path, "r+", libver="latest") as f:        # a new group: dense attributes, no 64 KiB limit
            f.create_group("big").attrs.create("levels", data=np.zeros(2 ** 21, dtype=np.int8))
    else:
        shutil.copy(exported, path)
        with h5py.File(path, "r+") as f:
            EDITS[kind](f)


EDITS = {
    "float weights": lambda f: _rewrite(f, "layers/0/weight", lambda w: w.astype(np.float64)),
    "bias of the wrong shape": lambda f: _rewrite(f, "layers/0/bias", lambda b: b[:-1]),
    "transposed weights": lambda f: _rewrite(f, "layers/1/weight", lambda w: np.ascontiguousarray(w.T)),
    "string scores": lambda f: _rewrite(f, "vectors/score", lambda s: s.astype("S8")),
    "missing attribute": lambda f: f["input"].attrs.__delitem__("levels"),
    "missing dataset": lambda f: f["head"].__delitem__("weight"),
    "missing group": lambda f: f.__delitem__("inference"),
    "attribute of the wrong type": lambda f: f["input"].attrs.__setitem__("levels", "255"),
    "array for a scalar": lambda f: f["layers/0"].attrs.__setitem__("norm_gain", np.arange(4)),
    "NaN scale": lambda f: f["layers/0"].attrs.__setitem__("goodness_scale", np.nan),
    "huge bit width": lambda f: f["layers/0"].attrs.__setitem__("accumulator_bits", 1000),
    "huge time steps": lambda f: (f["input"].attrs.__setitem__("spike_encoding", "rate"),
                                  f["input"].attrs.__setitem__("steps", 2 ** 40)),
    "unknown kind": lambda f: f["layers/1"].attrs.__setitem__("kind", "attention"),
    "unknown vector": lambda f: f["vectors"].create_dataset("activity9", data=np.zeros((2, 11, 6), np.int8)),
    "a group for a dataset": lambda f: (f["layers/0"].__delitem__("bias"), f["layers/0"].create_group("bias")),
    "soft link": lambda f: (f["layers/0"].__delitem__("bias"), f["layers/0"].__setitem__(
        "bias", h5py.SoftLink("/layers/1/bias"))),
    "external link": lambda f: (f["layers/0"].__delitem__("bias"), f["layers/0"].__setitem__(
        "bias", h5py.ExternalLink("/dev/zero", "/x"))),
    "2^31 vectors claimed": lambda f: (f["vectors"].__delitem__("input"),
                                       f["vectors"].create_dataset("input", shape=(2 ** 31, 64), dtype=np.int8)),
}
BIG_ATTRIBUTE = "2 MiB attribute"           # above the reader's 1 MiB limit for one attribute
VECTOR_DAMAGE = ("string scores", "unknown vector", "2^31 vectors claimed")     # read_model does not read /vectors
DAMAGE = ["truncated:0.05", "truncated:0.5", "truncated:0.95", "random bytes", "hdf5 signature then noise", "text",
          "empty", "directory", "fifo", "foreign hdf5", *EDITS, BIG_ATTRIBUTE]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_or_malformed_file_is_one_golden_error_naming_it(exported, tmp_path, kind):
    path = tmp_path / "bad.h5"
    try:
        _fill(path, exported, kind)
    except (OSError, ValueError, TypeError) as e:       # h5py or the file system cannot make this one
        pytest.skip(f"cannot build {kind!r} here: {e}")
    tracemalloc.start()
    try:
        for fn in (golden.verify, golden.inspect) + (() if kind in VECTOR_DAMAGE else (golden.read_model,)):
            message = refused(fn, path)
            assert kind != BIG_ATTRIBUTE or "above the reader's limit" in message, message
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 64 * 2 ** 20, peak_bytes                 # nothing near the sizes the file claims


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the address-space cap is Linux's")
def test_a_reader_cannot_grow_the_process_without_bound(exported, monkeypatch):
    """A damaged group B-tree can make libhdf5 allocate without end (found by fuzzing: the
    kernel's OOM killer); while a reader runs, the process's address space is capped, so
    such an allocation fails and the reader raises one GoldenError. The limit is restored
    after. (np.empty: without the cap nothing would be touched.)"""
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryError):
        with golden._memory_bound(2 ** 28):
            np.empty(2 ** 31, dtype=np.uint8)                  # 2 GiB > 256 MiB of headroom
    assert resource.getrlimit(resource.RLIMIT_AS) == before

    def hog(model, vectors):
        return np.empty(2 ** 34, dtype=np.uint8)               # 16 GiB > 2 GiB + 4 x the file
    monkeypatch.setattr(golden, "check_vectors", hog)
    assert "MemoryError" in refused(golden.verify, exported)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_a_missing_file_and_unreadable_provenance_are_golden_errors(exported, tmp_path):
    assert "no such file" in refused(golden.verify, tmp_path / "absent.h5")
    path = copy(exported, tmp_path)
    with h5py.File(path, "r+") as f:
        f["provenance"].attrs["config"] = "[1, 2]"
    assert "not a JSON object" in refused(golden.provenance, path)
    assert "no such file" in refused(golden.provenance, tmp_path / "absent.h5")


# -- property tests --------------------------------------------------------------------------------------------
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@st.composite
def damaged(draw, raw: bytes) -> bytes:
    """The export's bytes damaged: bytes flipped anywhere or in the first 2 KiB (the
    superblock and root group's header), truncated, overwritten by a run of bytes, or
    replaced by noise (with or without the HDF5 signature)."""
    how = draw(st.sampled_from(["flip", "flip metadata", "truncate", "overwrite", "noise"]))
    event(f"damage: {how}")
    b = bytearray(raw)
    if how.startswith("flip"):
        top = len(b) if how == "flip" else 2048
        for offset, mask in draw(st.lists(st.tuples(st.integers(0, top - 1), st.integers(1, 255)),
                                          min_size=1, max_size=4)):
            b[offset] ^= mask
    elif how == "truncate":
        del b[draw(st.integers(0, len(b) - 1)):]
    elif how == "overwrite":
        offset, run = draw(st.integers(0, len(b) - 1)), draw(st.binary(min_size=1, max_size=64))
        b[offset:offset + len(run)] = run[:len(b) - offset]
    else:
        b = bytearray(draw(st.sampled_from([b"", HDF5_SIGNATURE])) + draw(st.binary(max_size=512)))
    return bytes(b)


READER_BUG = re.compile(r"unreadable export \((AttributeError|IndexError|NameError|UnboundLocalError|"
                        r"ZeroDivisionError|AssertionError|RecursionError|MemoryError)")


def check_reader(path: Path, reader: str, original: Original) -> str:
    """Run one public reader on ``path``: it either refuses with one GoldenError (one line,
    naming the file) or succeeds; ``verify`` may say ok, and ``inspect`` checksums_ok, only
    when the file's content equals the export's. Returns the outcome."""
    fn = {"verify": golden.verify, "inspect": golden.inspect, "provenance": golden.provenance}[reader]
    try:
        result = fn(path)
    except golden.GoldenError as e:
        message = str(e)
        assert "\n" not in message and str(path) in message, message
        assert not READER_BUG.search(message), message             # the reader's own slip, not the file's damage
        return "refused"
    if reader == "provenance":
        return "read"
    passed = result["ok"] if reader == "verify" else result["checksums_ok"]
    if passed:
        changed = original.changed(path)
        assert not changed, f"{reader} passed a file changed in {changed}"
        return "passed (content unchanged)"
    return "failed"


@settings(max_examples=400, **PROPERTY)
@given(data=st.data())
def test_damaged_bytes_never_verify_and_never_crash(original, tmp_path_factory, data):
    path = _scratch(tmp_path_factory) / "damaged.h5"
    rewrite(path, data.draw(damaged(original.raw)))
    reader = data.draw(st.sampled_from(["verify", "verify", "verify", "inspect", "provenance"]))
    event(f"{reader}: {check_reader(path, reader, original)}")


def rewrite(path: Path, data: bytes) -> None:
    """``path`` with new contents, as a new file: truncating a file in place can make ext4
    flush it (4 ms a write here), a large part of an example's time."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _scratch(factory) -> Path:
    """One scratch folder for every example of this module (hypothesis re-enters the test
    many times; a function-scoped tmp_path would be shared across examples anyway)."""
    folder = factory.getbasetemp() / "integrity-scratch"
    folder.mkdir(exist_ok=True)
    return folder


def _layout(path: Path) -> dict:
    """The export's groups, datasets and (object, attribute) pairs."""
    groups, datasets, attrs = [], [], []
    with h5py.File(path, "r") as f:
        attrs.extend(("/", k) for k in f.attrs)
        def visit(name, obj):
            (datasets if isinstance(obj, h5py.Dataset) else groups).append(name)
            attrs.extend((name, k) for k in obj.attrs)
        f.visititems(visit)
    return {"groups": groups, "datasets": datasets, "attrs": attrs}


NEW_VALUES = st.one_of(
    st.integers(-2 ** 63, 2 ** 63 - 1).map(np.int64), st.integers(-3, 300).map(np.int32),
    st.floats(allow_nan=True, allow_infinity=True).map(np.float64), st.booleans().map(np.bool_),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.binary(max_size=12).map(np.bytes_),
    st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=4).map(lambda v: np.asarray(v, dtype=np.int64)),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=3).map(np.asarray),
)


def _nudged(value, delta: int):
    """``value`` changed a little, keeping its type: numbers by ``delta`` (scaled for
    floats), strings by a suffix, arrays in their first entry."""
    if isinstance(value, str):
        return value + "x"
    a = np.array(value)
    if a.size == 0:
        return np.zeros(1, dtype=a.dtype if a.dtype.kind in "iuf" else np.int64)
    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        flat[0] = flat[0] * (1 + 2.0 ** -20 * delta) if flat[0] else delta
    elif a.dtype.kind in "iu":
        flat[0] = flat[0] + delta
    else:
        return "changed"
    return a.reshape(np.shape(value))[()] if a.ndim == 0 else a


@st.composite
def h5py_edit(draw, layout: dict):
    """One edit made through h5py: delete a dataset, group or attribute; change an
    attribute a little (same type) or to any value; add an attribute, dataset or group;
    change one entry of a table with or without a matching sha256; change its dtype or
    shape keeping its bytes and checksum."""
    how = draw(st.sampled_from(["delete dataset", "delete group", "delete attribute", "nudge attribute",
                                "set attribute", "add attribute", "add member", "change entry",
                                "change entry and sha256", "retype dataset", "reshape dataset"]))
    event(f"edit: {how}")
    if how in ("delete attribute", "nudge attribute", "set attribute"):
        obj, key = draw(st.sampled_from(layout["attrs"]))
        if how == "delete attribute":
            return lambda f: f[obj].attrs.__delitem__(key)
        if how == "set attribute":
            value = draw(NEW_VALUES)
            return lambda f: f[obj].attrs.__setitem__(key, value)
        delta = draw(st.sampled_from([1, -1, 2, -7, 2 ** 20]))
        return lambda f: f[obj].attrs.__setitem__(key, _nudged(f[obj].attrs[key], delta))
    if how == "add attribute":
        obj, key, value = draw(st.sampled_from(["/", *layout["groups"], *layout["datasets"]])), draw(
            st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)), draw(NEW_VALUES)
        return lambda f: f[obj].attrs.__setitem__(key, value) if key not in f[obj].attrs else None
    if how == "add member":
        parent = draw(st.sampled_from(["/", *layout["groups"]]))
        name = draw(st.text(st.characters(codec="ascii", exclude_characters="/.\x00"), min_size=1, max_size=8))
        group = draw(st.booleans())
        return lambda f: None if name in f[parent] else (
            f[parent].create_group(name) if group else f[parent].create_dataset(name, data=np.arange(3)))
    if how.startswith("delete"):
        name = draw(st.sampled_from(layout["datasets" if how == "delete dataset" else "groups"]))
        return lambda f: f.__delitem__(name)
    name = draw(st.sampled_from(layout["datasets"]))
    if how.startswith("change entry"):
        index, delta, resum = draw(st.integers(0, 10 ** 6)), draw(st.sampled_from([1, -1, 3])), how.endswith("sha256")

        def change(f):
            ds = f[name]
            data = ds[()]
            flat = data.reshape(-1)
            i = index % data.size
            bumped = flat[i].item() + delta
            if data.dtype.kind == "i" and not np.iinfo(data.dtype).min <= bumped <= np.iinfo(data.dtype).max:
                bumped = flat[i].item() - delta
            flat[i] = bumped
            ds[...] = data
            if resum:
                ds.attrs["sha256"] = golden.sha256(ds[()])
        return change
    if how == "retype dataset":
        dtype = draw(st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.float64, ">i2", ">f8"]))
        return lambda f: _rewrite(f, name, lambda d: d.astype(dtype), new_checksum=False)
    shape = draw(st.sampled_from(["flat", "leading 1", "reversed"]))
    return lambda f: _rewrite(f, name, lambda d: d.reshape(
        {"flat": (-1,), "leading 1": (1, *d.shape), "reversed": d.shape[::-1]}[shape]), new_checksum=False)


@pytest.fixture(scope="module")
def layout(exported) -> dict:
    return _layout(exported)


@settings(max_examples=160, **PROPERTY)
@given(data=st.data())
def test_edits_made_through_h5py_never_verify_and_never_crash(original, exported, layout, tmp_path_factory, data):
    path = _scratch(tmp_path_factory) / "edited.h5"
    rewrite(path, original.raw)
    edit = data.draw(h5py_edit(layout))
    with h5py.File(path, "r+") as f:
        edit(f)
    reader = data.draw(st.sampled_from(["verify", "verify", "verify", "inspect"]))
    event(f"{reader}: {check_reader(path, reader, original)}")
