"""Builders of small data files for the loader tests: IDX, CIFAR-10 binary batches and
image folders (PNG keeps pixel values exact), shared by the unit and property tests."""

from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 4, 5  # every synthetic image is 4 pixels high, 5 wide
CLASSES = ("ant", "bird", "cat")  # created in another order below: labels follow the sorted names


# --------------------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file: big-endian magic 0x0000 08 <ndim>, dims, payload."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def synthetic_idx(n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.RandomState(seed)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.randint(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte": idx_bytes(rng.randint(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes((np.arange(n_test) * 3) % 10),
    }


def write_idx(folder: Path, files: dict[str, bytes], gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


# --------------------------------------------------------------------------- CIFAR-10 binary


def cifar_records(labels, seed: int) -> tuple[bytes, np.ndarray]:
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, (len(labels), 3072)).astype(np.uint8)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels], axis=1)
    return records.tobytes(), pixels


def write_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        labels = [(i + j) % 10 for j in range(i)]  # batch i holds i records
        data, pixels = cifar_records(labels, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(data)
        xs.append(pixels)
        ys.extend(labels)
    data, test_pixels = cifar_records([9, 0, 5], seed=99)
    (folder / "test_batch.bin").write_bytes(data)
    return np.concatenate(xs), np.array(ys), test_pixels, np.array([9, 0, 5])


# --------------------------------------------------------------------------- image folders


def rgb(seed: int) -> np.ndarray:
    """A distinct deterministic (H, W, 3) uint8 image."""
    return ((np.arange(H * W * 3).reshape(H, W, 3) * 7 + seed * 31) % 256).astype(np.uint8)


def grey(seed: int) -> np.ndarray:
    return ((np.arange(H * W).reshape(H, W) * 11 + seed * 17) % 256).astype(np.uint8)


def save(path: Path, pixels: np.ndarray | Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    img.save(path, format="PNG")
    return path


def make_folder(root: Path, image=rgb, n_train: int = 2, n_test: int = 1) -> dict[str, list[np.ndarray]]:
    """root/{train,test}/{cat,ant,bird}/NN.png; returns the pixels per split in label order."""
    pixels: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cls in enumerate(CLASSES):
            for i in range(n):
                pixels[split].append(image(100 * label + 10 * i + (split == "test")))
        for cls in ("cat", "ant", "bird"):  # not in label order on disk
            label = CLASSES.index(cls)
            for i in range(n):
                save(root / split / cls / f"{i:02d}.png", pixels[split][label * n + i])
    return pixels


def make_zip(folder: Path, archive: Path, top: str | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """Zip ``folder``'s contents, at the top of the archive or inside ``top/`` (with its folder entries)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            name = f"{top}/{name}" if top else name
            if path.is_dir():
                zf.writestr(name + "/", b"")
            else:
                zf.write(path, name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive
