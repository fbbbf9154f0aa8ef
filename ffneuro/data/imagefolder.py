"""Image-folder datasets (``imagefolder:DIR`` or ``imagefolder:FILE.zip``), decoded once and cached.

Layout: ``train/CLASS/IMAGE`` and ``test/CLASS/IMAGE``, where IMAGE is a ``.png``,
``.jpg`` or ``.jpeg`` file (any letter case). In a zip archive the layout sits at the top
of the archive or inside its one top-level folder (``cifar10-jpeg.zip`` holds
``cifar10-jpeg/train/airplane/0001.jpg`` ...). The class names are the sorted names of the
folders in ``train/`` and a class's label is its index in that order; ``test/`` must hold
the same class folders, and every class folder at least one image. Within a class the
images are taken in sorted file-name order. Other files (``README``, ``.DS_Store``), hidden
files and folders (names starting with ``.``), macOS ``__MACOSX/`` folders and anything
deeper than ``CLASS/IMAGE`` are ignored.

Pixels: every image must be a PNG or JPEG file (whatever its suffix says; other formats
Pillow knows are refused) and have the same width and height. Greyscale images ("L", "LA",
"1", and palette images with an all-grey palette) give one channel, everything else three
(RGB; alpha is dropped, not composited). If the images mix grey and colour, all become
RGB (the grey value in each channel). Images with more than 8 bits per channel are
refused rather than silently clipped. :class:`ImageFolder` holds the uint8 pixels as
``(N, C, H, W)`` (channel-major, the order of the CIFAR-10 binary release);
``load_dataset("imagefolder:...")`` scales them by 1/255 and flattens them.

Cache: decoding tens of thousands of images takes seconds, so the decoded arrays (and
the class names, as a fixed-width unicode array) are saved to an uncompressed ``.npz`` in
``$FFNEURO_CACHE`` if set, else ``~/.cache/ffneuro``, and read back with
``allow_pickle=False`` on the next load. The cache key is a digest of the resolved path,
the Pillow version and, for a folder, every image's (relative path, size, mtime_ns) or,
for a zip, the archive's size and mtime_ns and its member list (name, size, CRC); any
change decodes again and replaces the old cache file. The file is written atomically (a
temporary file in the cache folder, fsync, rename). Caching is best effort: a corrupt
cache file is ignored and rewritten, and a cache folder that cannot be written only
means the next load decodes again.

Sizes are checked before anything is allocated: at most ``MAX_CLASSES`` (1000) class
folders; an image file (or zip member: stored or deflate only, as bzip2 and lzma can expand
without bound) of at most ``MAX_IMAGE_BYTES``; an image header of at most
``MAX_IMAGE_PIXELS`` pixels and at most ``MAX_PIXELS_PER_BYTE`` pixels per byte of its file
(PNG's deflate and JPEG's 8x8 blocks cannot pack more), checked before its pixels are
decoded; and each split's images x pixels x channels at most ``MAX_VALUES``, checked
when the first image's size is known.

Bad input raises :class:`ImageFolderError` (a ``DataError``, so a ``ValueError``) with a
one-line message that starts with the file or folder at fault; a file inside an archive is
named ``ARCHIVE.zip/MEMBER``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from ffneuro.data.checks import MAX_CLASSES, MAX_DEFLATE_RATIO, DataError, check_values
from ffneuro.data.npzfile import read_npz
from ffneuro.runs.files import atomic_output

__all__ = [
    "CACHE_ENV",
    "IMAGE_SUFFIXES",
    "ImageFolder",
    "ImageFolderError",
    "cache_dir",
    "decode_image",
    "read_imagefolder",
]

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CACHE_ENV = "FFNEURO_CACHE"
CACHE_VERSION = 2  # bump when the decoding or the cache file's contents change (2: PNG and JPEG only)
IMAGE_FORMATS = ("PNG", "JPEG")  # Pillow's names; nothing else is decoded
MAX_IMAGE_BYTES = 64 * 2**20  # one encoded image file
MAX_IMAGE_PIXELS = 2**24  # one image's width x height (4096 x 4096)
MAX_PIXELS_PER_BYTE = 8 * MAX_DEFLATE_RATIO  # 1-bit PNG: 8 pixels a byte, deflated at most 1032-fold
_CACHE_KEYS = ("key", "x_train", "y_train", "x_test", "y_test", "classes")

_GREY_MODES = frozenset({"1", "L", "LA", "La"})
_DEEP_MODES = frozenset({"I", "F"})  # more than 8 bits a channel (I;16, I;16B, ... match by the part before ";")
_LAYOUT_HINT = "expected train/CLASS/ and test/CLASS/ folders of .png/.jpg/.jpeg images"


class ImageFolderError(DataError):
    """Bad image-folder input; a one-line message naming the file and the problem."""


@dataclass(frozen=True, eq=False)
class ImageFolder:
    """Decoded image folder: ``x_*`` uint8 ``(N, C, H, W)``, ``y_*`` int64 ``(N,)`` labels
    indexing ``classes`` (the sorted class folder names)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class _Source:
    """A folder or an open archive, listed: where train/ and test/ are and what they hold."""

    label: str  # the folder holding train/ and test/: DIR, ARCHIVE.zip or ARCHIVE.zip/TOP
    key: str  # digest of the path and the files' fingerprints (see the module docstring)
    classes: tuple[str, ...]
    images: dict[str, list[list[str]]]  # split -> per label, the sorted image paths under ``label``
    read: Callable[[str], bytes]  # image path under ``label`` -> its bytes


# --------------------------------------------------------------------------- entry point


def read_imagefolder(path: str | Path) -> ImageFolder:
    """Read an image folder (a directory or a zip archive; see the module docstring), from
    the cache when its key matches, else by decoding every image and caching the result."""
    path = Path(path).expanduser()
    with _open_source(path) as source:
        cache_file = _cache_file(path, source.key)
        cached = _load_cache(cache_file, source.key, source.classes) if cache_file else None
        if cached is not None:
            return cached
        data = _decode_source(source)
    if cache_file:
        _save_cache(cache_file, source.key, data)
    return data


@contextlib.contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    if path.is_dir():
        yield _dir_source(path)
    elif path.is_file():
        if not zipfile.is_zipfile(path):
            raise ImageFolderError(f"{path}: not a zip archive (imagefolder takes a directory or a .zip archive)")
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, EOFError, ValueError, NotImplementedError, zipfile.BadZipFile) as exc:
            # NotImplementedError: a member needing a zip version the reader lacks (e.g. 25.5)
            raise ImageFolderError(f"{path}: not a readable zip archive ({exc})") from exc
        with archive:
            yield _zip_source(path, archive)
    else:
        raise ImageFolderError(f"{path}: not found (imagefolder takes a directory or a .zip archive)")


# --------------------------------------------------------------------------- layout


def _is_visible(rel: str) -> bool:
    """False for anything inside a hidden (dot) or ``__MACOSX`` folder, or a hidden file."""
    padded = f"/{rel}/"
    return "/." not in padded and "/__MACOSX/" not in padded


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _layout(label: str, folders: set[str], files: Iterable[str]) -> tuple[tuple[str, ...], dict[str, list[list[str]]]]:
    """The class names and, per split, each class's sorted image paths, from the relative
    paths (``/``-separated) of the folders and files under ``label``; checks the layout."""
    for split in SPLITS:
        if split not in folders:
            raise ImageFolderError(f"{label}: no {split}/ folder ({_LAYOUT_HINT})")
    class_names = {
        split: sorted(f[len(split) + 1 :] for f in folders if f.startswith(split + "/") and f.count("/") == 1)
        for split in SPLITS
    }
    classes = tuple(class_names["train"])
    if len(classes) > MAX_CLASSES:
        raise ImageFolderError(f"{label}/train: {len(classes)} class folders, more than {MAX_CLASSES} (MAX_CLASSES)")
    if len(classes) < 2:
        found = ", ".join(classes) or "none"
        raise ImageFolderError(f"{label}/train: only {len(classes)} class folder ({found}); need at least 2 classes")
    if class_names["test"] != list(classes):
        missing = sorted(set(classes) - set(class_names["test"]))
        extra = sorted(set(class_names["test"]) - set(classes))
        raise ImageFolderError(
            f"{label}/test: class folders differ from train/: missing {', '.join(missing) or 'none'}; "
            f"extra {', '.join(extra) or 'none'}"
        )
    index = {name: i for i, name in enumerate(classes)}
    images: dict[str, list[list[str]]] = {split: [[] for _ in classes] for split in SPLITS}
    for rel in files:
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] in images and parts[1] in index and _is_image_name(parts[2]):
            images[parts[0]][index[parts[1]]].append(rel)
    for split in SPLITS:
        for name, paths in zip(classes, images[split]):
            if not paths:
                raise ImageFolderError(f"{label}/{split}/{name}: class folder holds no .png/.jpg/.jpeg images")
            paths.sort()
    return classes, images


def _digest(parts: list[object]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _key_header(kind: str, path: Path) -> list[object]:
    return [CACHE_VERSION, PIL.__version__, kind, str(path.resolve())]


# --------------------------------------------------------------------------- directory


def _dir_source(root: Path) -> _Source:
    folders: set[str] = set()
    stats: dict[str, tuple[int, int]] = {}  # relative file path -> (size, mtime_ns)
    try:
        for split in SPLITS:
            if not (root / split).is_dir():
                continue
            folders.add(split)
            for cls in os.scandir(root / split):
                if not _is_visible(cls.name) or not cls.is_dir():
                    continue
                folders.add(f"{split}/{cls.name}")
                for entry in os.scandir(cls.path):
                    if _is_visible(entry.name) and _is_image_name(entry.name) and entry.is_file():
                        st = entry.stat()
                        stats[f"{split}/{cls.name}/{entry.name}"] = (st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise ImageFolderError(f"{exc.filename or root}: cannot list folder ({exc.strerror or exc})") from exc
    classes, images = _layout(str(root), folders, stats.keys())
    every = [rel for split in SPLITS for paths in images[split] for rel in paths]
    key = _digest(_key_header("dir", root) + [classes] + [[rel, *stats[rel]] for rel in sorted(every)])

    def read(rel: str) -> bytes:
        _check_file_size(f"{root}/{rel}", stats[rel][0])
        try:
            return (root / rel).read_bytes()
        except OSError as exc:
            raise ImageFolderError(f"{root}/{rel}: cannot read ({exc.strerror or exc})") from exc

    return _Source(str(root), key, classes, images, read)


# --------------------------------------------------------------------------- zip


def _zip_prefix(names: list[str]) -> str:
    """``""`` if train/ or test/ sit at the top of the archive, else ``"TOP/"`` when all the
    archive's folders sit in one top-level folder TOP (then the layout is looked for there)."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if tops & set(SPLITS) or len(tops) != 1:
        return ""
    return f"{tops.pop()}/"


def _zip_source(path: Path, archive: zipfile.ZipFile) -> _Source:
    infos = archive.infolist()
    names = [info.filename for info in infos if _is_visible(info.filename.rstrip("/"))]
    prefix = _zip_prefix(names)
    folders: set[str] = set()
    files: list[str] = []
    for name in names:
        if not name.startswith(prefix) or name == prefix:
            continue
        rel = name[len(prefix) :]
        parts = rel.rstrip("/").split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if rel.endswith("/"):
            folders.add(rel.rstrip("/"))
        else:
            files.append(rel)
    label = f"{path}/{prefix.rstrip('/')}" if prefix else str(path)
    classes, images = _layout(label, folders, files)
    st = path.stat()
    key = _digest(
        _key_header("zip", path) + [st.st_size, st.st_mtime_ns] + [[i.filename, i.file_size, i.CRC] for i in infos]
    )

    def read(rel: str) -> bytes:
        _check_member(f"{label}/{rel}", archive.getinfo(prefix + rel))
        try:
            return archive.read(prefix + rel)
        except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
            raise ImageFolderError(f"{label}/{rel}: cannot read from the archive ({exc})") from exc

    return _Source(label, key, classes, images, read)


def _check_member(where: str, info: zipfile.ZipInfo) -> None:
    """Refuse a zip member that could expand without bound or beyond ``MAX_IMAGE_BYTES``
    before it is read (zipfile stops a member at its declared size)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ImageFolderError(
            f"{where}: zip compression method {info.compress_type} is not read (only stored or deflate)"
        )
    _check_file_size(where, info.file_size)


def _check_file_size(where: str, size: int) -> None:
    if size > MAX_IMAGE_BYTES:
        raise ImageFolderError(f"{where}: {size:,} bytes, more than an image file may hold ({MAX_IMAGE_BYTES:,})")


# --------------------------------------------------------------------------- decoding


def decode_image(data: bytes, where: str, check_size: Callable[[int, int, int], None] | None = None) -> np.ndarray:
    """One encoded PNG or JPEG image -> uint8 ``(H, W)`` (greyscale) or ``(H, W, 3)`` (colour) pixels.

    ``where`` names the image in error messages. Palette images become greyscale when the
    palette is all grey, else RGB; alpha is dropped; more than 8 bits a channel is refused.
    The header is checked before any pixel is decoded: at least one pixel, at most
    ``MAX_IMAGE_PIXELS``, at most ``MAX_PIXELS_PER_BYTE`` per byte of ``data``, then
    ``check_size(width, height, channels)`` if given (it raises to refuse the image).
    """
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning; the lower cap below refuses such images
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        with img:
            if img.mode.split(";")[0] in _DEEP_MODES:
                raise ImageFolderError(
                    f"{where}: {img.mode} image has more than 8 bits per channel; save the images as 8-bit"
                )
            target = _target_mode(img)
            _check_header(where, *img.size, len(data))
            if check_size is not None:
                check_size(*img.size, len(target))
            return _pixels(img, target)
    except ImageFolderError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageFolderError(f"{where}: cannot decode image (not a PNG or JPEG file)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageFolderError(f"{where}: cannot decode image ({exc})") from exc


def _check_header(where: str, width: int, height: int, file_bytes: int) -> None:
    """Refuse an image size no sound file of ``file_bytes`` could hold, before decoding it."""
    pixels = width * height
    if pixels == 0:
        raise ImageFolderError(f"{where}: image is {width}x{height}: no pixels")
    if pixels > MAX_IMAGE_PIXELS:
        raise ImageFolderError(
            f"{where}: image is {width}x{height}, more than {MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS)"
        )
    if pixels > MAX_PIXELS_PER_BYTE * file_bytes:
        raise ImageFolderError(
            f"{where}: header says {width}x{height} but a {file_bytes:,}-byte file holds at most "
            f"{MAX_PIXELS_PER_BYTE * file_bytes:,} pixels"
        )


def _target_mode(img: Image.Image) -> str:
    """"L" (one channel) for grey images, "RGB" for everything else."""
    return "L" if img.mode in _GREY_MODES or (img.mode == "P" and _grey_palette(img)) else "RGB"


def _pixels(img: Image.Image, target: str) -> np.ndarray:
    if img.mode in ("P", "PA") and target == "RGB":  # via RGBA, as Pillow asks when a palette has transparency
        img = img.convert("RGBA")
    if img.mode != target:  # (convert would copy even when the mode is already right)
        img = img.convert(target)
    return np.asarray(img, dtype=np.uint8)


def _grey_palette(img: Image.Image) -> bool:
    rgb = np.asarray(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    return len(rgb) > 0 and bool((rgb == rgb[:, :1]).all())


def _stack(pixels: list[np.ndarray]) -> np.ndarray:
    """Decoded images of one size -> one uint8 ``(N, C, H, W)`` array: C = 1 if every image
    is grey, else 3 (grey images repeated in each channel)."""
    height, width = pixels[0].shape[:2]
    out = np.empty((len(pixels), _channels(pixels), height, width), dtype=np.uint8)
    for i, img in enumerate(pixels):
        out[i] = img.transpose(2, 0, 1) if img.ndim == 3 else img  # a grey image broadcasts to every channel
    return out


def _channels(pixels: list[np.ndarray]) -> int:
    return 3 if any(img.ndim == 3 for img in pixels) else 1


def _decode_source(source: _Source) -> ImageFolder:
    """Decode every image; sizes and the split caps are checked from the headers, before
    the pixels of the image that would break them are decoded."""
    counts = {split: sum(len(paths) for paths in source.images[split]) for split in SPLITS}
    first: list[tuple[str, int, int]] = []  # (where, width, height) of the first image

    def check_size(where: str, width: int, height: int, channels: int) -> None:
        if not first:
            first.append((where, width, height))
            _check_splits(source.label, counts, width, height, channels)
        elif (width, height) != first[0][1:]:
            name, w0, h0 = first[0]
            raise ImageFolderError(
                f"{source.label}: images differ in size: {name} is {w0}x{h0} but {where} is "
                f"{width}x{height} (width x height); all images must have one size"
            )

    pixels: list[np.ndarray] = []
    labels: dict[str, np.ndarray] = {}
    for split in SPLITS:
        per_class = source.images[split]
        for paths in per_class:
            for rel in paths:
                where = f"{source.label}/{rel}"
                size_check = functools.partial(check_size, where)
                pixels.append(decode_image(source.read(rel), where, size_check))
        labels[split] = np.repeat(np.arange(len(per_class), dtype=np.int64), [len(p) for p in per_class])
    height, width = pixels[0].shape[:2]
    _check_splits(source.label, counts, width, height, _channels(pixels))  # grey and colour mixed: 3 channels
    x = _stack(pixels)
    n_train = len(labels["train"])
    return ImageFolder(x[:n_train], labels["train"], x[n_train:], labels["test"], source.classes)


def _check_splits(label: str, counts: dict[str, int], width: int, height: int, channels: int) -> None:
    for split in SPLITS:
        what = f"{counts[split]:,} images of {channels}x{height}x{width}"
        check_values(f"{label}/{split}", what, counts[split] * channels * height * width, ImageFolderError)


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path | None:
    """``$FFNEURO_CACHE`` if set, else ``~/.cache/ffneuro`` (None when there is no home folder)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    try:
        return Path.home() / ".cache" / "ffneuro"
    except RuntimeError:  # no home directory to be found
        return None


def _cache_file(path: Path, key: str) -> Path | None:
    """``imagefolder-NAME-PATHHASH-KEYHASH.npz`` in the cache folder: one file per source
    path (PATHHASH), the newest version of its contents (KEYHASH)."""
    folder = cache_dir()
    if folder is None:
        return None
    return folder / f"{_cache_prefix(path)}{key[:20]}.npz"


def _cache_prefix(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:40]
    return f"imagefolder-{name}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}-"


def _load_cache(file: Path, key: str, classes: tuple[str, ...]) -> ImageFolder | None:
    """The cached arrays if ``file`` is a readable cache of exactly this ``key``, else None
    (missing, unreadable, corrupt, or another version: the caller decodes and rewrites it)."""
    try:
        arrays = read_npz(file, _CACHE_KEYS)  # headers checked against the file: a corrupt one allocates nothing
    except (OSError, DataError):
        return None
    data = ImageFolder(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                       tuple(str(c) for c in arrays["classes"].reshape(-1)))
    return data if str(arrays["key"]) == key and _valid(data, classes) else None


def _valid(data: ImageFolder, classes: tuple[str, ...]) -> bool:
    if data.classes != classes:
        return False
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[1:] != data.x_train.shape[1:]:
            return False
        if y.dtype != np.int64 or y.shape != (x.shape[0],) or not len(y) or y.min() < 0 or y.max() >= len(classes):
            return False
    return bool(np.bincount(data.y_train, minlength=len(classes)).all())  # every class in training


def _save_cache(file: Path, key: str, data: ImageFolder) -> None:
    """Write the cache atomically, then drop older versions of this source's cache. Best
    effort: an OS error (read-only or full disk, a file where the folder should be) only
    means the images are decoded again next time."""
    try:
        with atomic_output(file) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                key=np.array(key),
                x_train=data.x_train,
                y_train=data.y_train,
                x_test=data.x_test,
                y_test=data.y_test,
                classes=np.array(data.classes, dtype=str),  # fixed-width unicode: no pickle
            )
            fh.flush()
            os.fsync(fh.fileno())
        same_source = file.name.rsplit("-", 1)[0]  # imagefolder-NAME-PATHHASH
        for old in file.parent.glob(f"{same_source}-*.npz"):
            if old != file:
                old.unlink(missing_ok=True)
    except OSError:
        pass
