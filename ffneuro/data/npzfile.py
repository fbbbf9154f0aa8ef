"""Reading ``.npz`` archives without trusting them: nothing unpickled, and no array allocated
that the archive's size cannot back.

:func:`read_npz` opens the archive with :mod:`zipfile` (never ``np.load``) and, for every
wanted array, reads the member's ``.npy`` header (format 1.0 or 2.0) and hands its shape and
dtype to the caller's ``check``, all before any array data is read. A member is then
refused unless

- it is stored or deflated (what ``np.savez`` and ``np.savez_compressed`` write; bzip2 and
  lzma members can expand without bound before a reader gets to stop them), not encrypted;
- its declared size fits the archive: a stored member's bytes lie inside the file, a
  deflated one claims at most ``MAX_DEFLATE_RATIO`` times its compressed bytes;
- its header's shape times the dtype's item size is exactly the rest of the member;
- its dtype holds no Python objects (their data is a pickle) and is not structured or empty.

Errors are :class:`~ffneuro.data.checks.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from ffneuro.data.checks import DataError, check_compressed_size

__all__ = ["read_npz"]

HeaderCheck = Callable[[dict[str, tuple[tuple[int, ...], np.dtype]]], None]  # {key: (shape, dtype)} -> raises

_CHUNK_BYTES = 1 << 24  # arrays are read in pieces of 16 MiB
# what zipfile and the .npy header reader raise on damaged input (numpy tokenizes a header
# that is not a Python literal, in case it is an old Python 2 one)
_READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error,
                tokenize.TokenError)


def read_npz(path: Path, keys: Sequence[str], check: HeaderCheck | None = None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` archive ``path`` (members ``KEY.npy`` or ``KEY``).

    ``check({key: (shape, dtype)})`` sees every header before any data is read, so a caller
    can refuse arrays by their shapes and dtypes unread. Arrays come back writable, in
    the stored memory order.
    """
    try:
        archive = zipfile.ZipFile(path)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    with archive:
        members = _members(archive)
        missing = [key for key in keys if key not in members]
        if missing:
            raise DataError(
                f"{path}: missing key {missing[0]!r} (needs {', '.join(keys)}; "
                f"found {', '.join(sorted(members)) or 'none'})"
            )
        size = path.stat().st_size
        headers = {key: _header(path, archive, members[key], key, size) for key in keys}
        if check is not None:
            check({key: header[:2] for key, header in headers.items()})
        return {key: _array(path, archive, members[key], key, headers[key]) for key in keys}


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Array name -> member (``x.npy`` answers to ``x``, as in ``np.load``; a later member of
    the same name wins, as in zipfile)."""
    found = {}
    for info in archive.infolist():
        if not info.filename.endswith("/"):  # (ZipInfo.is_dir fails on an empty name)
            found[info.filename[:-4] if info.filename.endswith(".npy") else info.filename] = info
    return found


def _header(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
            archive_bytes: int) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran order, data bytes) of one member, checked against its size."""
    where = f"{path}: {key}"
    if info.flag_bits & 0x1:
        raise DataError(f"{where} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size > info.compress_size or info.header_offset + info.compress_size > archive_bytes:
            raise DataError(
                f"{where}: member claims {info.file_size:,} bytes but the {archive_bytes:,}-byte archive cannot hold them"
            )
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.header_offset + info.compress_size > archive_bytes:
            raise DataError(f"{where}: member claims {info.compress_size:,} compressed bytes, past the archive's end")
        check_compressed_size(where, info.file_size, info.compress_size)
    else:
        raise DataError(
            f"{where}: zip compression method {info.compress_type} is not read (only stored or deflate, "
            f"as np.savez and np.savez_compressed write)"
        )
    try:
        with archive.open(info) as fh:
            version = npy.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise DataError(f"{where}: .npy format version {version[0]}.{version[1]} is not read (1.0 or 2.0)")
            reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = reader(fh)
            offset = fh.tell()
        shape = tuple(int(d) for d in shape)  # (a header may say True for 1)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read {key} ({exc})") from exc
    if dtype.hasobject:
        raise DataError(f"{path}: cannot read {key}: an object array holds pickled data, which is never unpickled")
    if dtype.names is not None or dtype.subdtype is not None or dtype.itemsize == 0:
        raise DataError(f"{path}: cannot read {key}: dtype {dtype} is structured or empty, expected plain numbers")
    if any(d < 0 for d in shape):
        raise DataError(f"{path}: cannot read {key}: negative dimension in shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise DataError(
            f"{path}: cannot read {key}: header says shape {shape} of {dtype} ({nbytes:,} bytes) but the member "
            f"holds {info.file_size - offset:,} bytes of data"
        )
    return shape, dtype, fortran, nbytes


def _array(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
           header: tuple[tuple[int, ...], np.dtype, bool, int]) -> np.ndarray:
    """Read one member's data (its header already checked) into a fresh array."""
    shape, dtype, fortran, nbytes = header
    data = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(data)
    try:
        with archive.open(info) as fh:
            fh.seek(info.file_size - nbytes)  # past the header
            got = 0
            while got < nbytes:
                n = fh.readinto(view[got : got + _CHUNK_BYTES])
                if not n:
                    break
                got += n
            fh.read(1)  # reach the end, where zipfile checks the CRC
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read {key} ({exc})") from exc
    if got < nbytes:
        raise DataError(f"{path}: cannot read {key}: its data ends after {got:,} of {nbytes:,} bytes")
    return data.view(dtype).reshape(shape, order="F" if fortran else "C")
