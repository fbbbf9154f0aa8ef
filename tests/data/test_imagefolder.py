"""Tests for ffneuro.data.imagefolder (``imagefolder:DIR|ZIP``): tiny synthetic PNG folders
and zips (PNG keeps pixel values exact), the decode-once cache, and every input error."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from builders import CLASSES, H, W, grey, make_folder, make_zip, rgb, save
from ffneuro.data import imagefolder
from ffneuro.data.imagefolder import ImageFolderError, read_imagefolder
from ffneuro.data.loaders import DataError, load_dataset

@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test caches into its own folder, never ~/.cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FFNEURO_CACHE", str(folder))
    return folder


def channel_major(images: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) or (H, W) uint8 images -> the expected flattened float32 (N, C*H*W) / 255."""
    chw = [img.transpose(2, 0, 1) if img.ndim == 3 else img[None] for img in images]
    return torch.from_numpy(np.stack(chw).reshape(len(images), -1).astype(np.float32) / np.float32(255))


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, DataError)
    assert "\n" not in msg and msg.strip() == msg and msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("imagefolder-*.npz"))


def no_decoding(monkeypatch) -> None:
    def fail(data: bytes, where: str):
        raise AssertionError(f"decoded {where} although the cache holds it")

    monkeypatch.setattr(imagefolder, "decode_image", fail)


# --------------------------------------------------------------------------- folders


def test_folder_pixels_labels_class_order_and_shape(tmp_path):
    pixels = make_folder(tmp_path / "data")
    ds = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    assert ds.name == "imagefolder:data" and ds.source == str(tmp_path / "data")
    assert ds.num_classes == 3 and ds.feature_shape == (3, H, W)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_train.shape == (6, 3 * H * W) and ds.x_test.shape == (3, 3 * H * W)
    assert torch.equal(ds.y_train, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(ds.y_test, torch.tensor([0, 1, 2]))
    assert torch.equal(ds.x_train, channel_major(pixels["train"]))
    assert torch.equal(ds.x_test, channel_major(pixels["test"]))
    assert read_imagefolder(tmp_path / "data").classes == CLASSES


def test_read_imagefolder_gives_uint8_channel_major_arrays(tmp_path):
    pixels = make_folder(tmp_path / "data")
    data = read_imagefolder(tmp_path / "data")
    assert data.x_train.dtype == np.uint8 and data.x_train.shape == (6, 3, H, W)
    assert np.array_equal(data.x_train[3], pixels["train"][3].transpose(2, 0, 1))
    assert data.y_train.dtype == np.int64


def test_greyscale_images_give_one_channel(tmp_path):
    pixels = make_folder(tmp_path / "data", image=grey)
    ds = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    assert ds.feature_shape == (1, H, W) and ds.x_train.shape == (6, H * W)
    assert torch.equal(ds.x_train, channel_major(pixels["train"]))


def test_mixed_grey_and_colour_all_become_rgb(tmp_path):
    pixels = make_folder(tmp_path / "data")
    save(tmp_path / "data/train/bird/00.png", grey(5))
    ds = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    assert ds.feature_shape == (3, H, W)
    expected = channel_major([grey(5)[..., None].repeat(3, axis=2)])[0]
    assert torch.equal(ds.x_train[2], expected)  # the grey value in every channel
    assert torch.equal(ds.x_train[3], channel_major([pixels["train"][3]])[0])


def _rgba():
    alpha = np.full((H, W, 1), 7, np.uint8)
    return Image.fromarray(np.concatenate([rgb(1), alpha], axis=2), "RGBA"), rgb(1)


def _la():
    alpha = np.full((H, W, 1), 200, np.uint8)
    return Image.fromarray(np.concatenate([grey(1)[..., None], alpha], axis=2), "LA"), grey(1)


def _colour_palette():
    img = Image.fromarray(rgb(1)).quantize(colors=256)
    return img, np.asarray(img.convert("RGB"))


def _grey_palette():
    img = Image.fromarray(grey(1)).convert("P")  # Pillow's grey image -> palette of greys
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    img.info["transparency"] = 0
    return img, np.asarray(img.convert("L"))


def _bilevel():
    img = Image.fromarray(grey(1) > 100)
    return img, np.where(grey(1) > 100, 255, 0).astype(np.uint8)


@pytest.mark.parametrize(
    "make, channels",
    [(_rgba, 3), (_la, 1), (_colour_palette, 3), (_grey_palette, 1), (_bilevel, 1)],
    ids=["RGBA->RGB", "LA->L", "P->RGB", "grey P->L", "1->L"],
)
def test_image_modes_are_converted(tmp_path, make, channels):
    img, expected = make()
    assert img.mode in ("RGBA", "LA", "P", "1")
    save(tmp_path / "data/train/a/0.png", img)
    save(tmp_path / "data/train/b/0.png", img)
    save(tmp_path / "data/test/a/0.png", img)
    save(tmp_path / "data/test/b/0.png", img)
    data = read_imagefolder(tmp_path / "data")
    assert data.x_train.shape == (2, channels, H, W)
    assert np.array_equal(data.x_train[0], expected.transpose(2, 0, 1) if channels == 3 else expected[None])


def test_extensions_any_case_and_other_files_ignored(tmp_path):
    pixels = make_folder(tmp_path / "data")
    root = tmp_path / "data"
    (root / "train/ant/00.png").rename(root / "train/ant/00.PNG")
    (root / "train/ant/01.png").unlink()
    Image.fromarray(rgb(9)).save(root / "train/ant/01.JPeG", format="JPEG", quality=95)
    for junk in ("train/.DS_Store", "train/ant/.DS_Store", "train/ant/README", "README", "test/cat/notes.txt"):
        (root / junk).write_bytes(b"not an image")
    save(root / "train/ant/._00.png", rgb(3)).write_bytes(b"AppleDouble junk")  # hidden: ignored
    save(root / "train/.ipynb_checkpoints/x.png", rgb(3))  # hidden folder: not a class
    save(root / "train/ant/deeper/x.png", rgb(3))  # below CLASS/IMAGE: ignored
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.num_classes == 3 and torch.equal(ds.y_train, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(ds.x_train[0], channel_major([pixels["train"][0]])[0])  # 00.PNG read
    with Image.open(root / "train/ant/01.JPeG") as jpeg:  # lossy: compare with Pillow's own decoding
        assert torch.equal(ds.x_train[1], channel_major([np.asarray(jpeg.convert("RGB"))])[0])


def test_validation_split_works_on_image_folders(tmp_path):
    make_folder(tmp_path / "data", n_train=4)
    ds = load_dataset(f"imagefolder:{tmp_path / 'data'}", val_fraction=0.25, seed=1)
    assert ds.x_train.shape[0] == 9 and ds.x_val.shape[0] == 3 and ds.x_test.shape[0] == 3


# --------------------------------------------------------------------------- zips


@pytest.mark.parametrize("top", [None, "my-data"])
def test_zip_with_and_without_a_top_level_folder_matches_the_folder(tmp_path, top):
    make_folder(tmp_path / "data")
    junk = {"__MACOSX/my-data/train/._x": b"junk", "README.md": b"# notes"}
    archive = make_zip(tmp_path / "data", tmp_path / "set.zip", top, extra=junk)
    from_zip = load_dataset(f"imagefolder:{archive}")
    from_dir = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    assert from_zip.name == "imagefolder:set.zip" and from_zip.feature_shape == (3, H, W)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(from_zip, key), getattr(from_dir, key)), key
    assert read_imagefolder(archive).classes == CLASSES


def test_zip_without_folder_entries(tmp_path):
    make_folder(tmp_path / "data")
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # files only, as some zip tools write them
        for path in sorted((tmp_path / "data").rglob("*.png")):
            zf.write(path, "top/" + path.relative_to(tmp_path / "data").as_posix())
    assert read_imagefolder(archive).x_train.shape == (6, 3, H, W)


# --------------------------------------------------------------------------- cache


def test_second_load_comes_from_the_cache(tmp_path, cache, monkeypatch):
    make_folder(tmp_path / "data")
    first = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    (file,) = cache_files(cache)
    with np.load(file, allow_pickle=False) as npz:  # readable without pickle; names fixed-width unicode
        assert npz["classes"].dtype.kind == "U" and tuple(npz["classes"]) == CLASSES
        assert npz["x_train"].dtype == np.uint8
    no_decoding(monkeypatch)
    second = load_dataset(f"imagefolder:{tmp_path / 'data'}")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, key), getattr(second, key)), key
    assert second.feature_shape == first.feature_shape and second.num_classes == 3


def test_zip_is_cached_too(tmp_path, cache, monkeypatch):
    make_folder(tmp_path / "data")
    archive = make_zip(tmp_path / "data", tmp_path / "set.zip", "set")
    first = read_imagefolder(archive)
    no_decoding(monkeypatch)
    assert np.array_equal(read_imagefolder(archive).x_train, first.x_train)
    assert len(cache_files(cache)) == 1


def test_changing_an_image_invalidates_the_cache(tmp_path, cache):
    make_folder(tmp_path / "data")
    before = read_imagefolder(tmp_path / "data")
    path = save(tmp_path / "data/train/bird/01.png", rgb(77))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # a different mtime even on a coarse clock
    after = read_imagefolder(tmp_path / "data")
    assert np.array_equal(after.x_train[3], rgb(77).transpose(2, 0, 1))
    assert not np.array_equal(before.x_train[3], after.x_train[3])
    assert len(cache_files(cache)) == 1  # the stale version was replaced, not kept


def test_adding_an_image_invalidates_the_cache(tmp_path):
    make_folder(tmp_path / "data")
    assert read_imagefolder(tmp_path / "data").x_train.shape[0] == 6
    save(tmp_path / "data/train/cat/99.png", rgb(99))
    assert read_imagefolder(tmp_path / "data").x_train.shape[0] == 7


def test_changing_the_zip_invalidates_the_cache(tmp_path):
    make_folder(tmp_path / "data")
    archive = make_zip(tmp_path / "data", tmp_path / "set.zip")
    read_imagefolder(archive)
    save(tmp_path / "data/test/ant/00.png", rgb(55))
    make_zip(tmp_path / "data", archive)
    assert np.array_equal(read_imagefolder(archive).x_test[0], rgb(55).transpose(2, 0, 1))


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04 truncated zip", b""])
def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path, cache, monkeypatch, content):
    make_folder(tmp_path / "data")
    first = read_imagefolder(tmp_path / "data")
    (file,) = cache_files(cache)
    file.write_bytes(content)
    again = read_imagefolder(tmp_path / "data")  # decodes again, no error
    assert np.array_equal(again.x_train, first.x_train)
    no_decoding(monkeypatch)
    assert np.array_equal(read_imagefolder(tmp_path / "data").x_test, first.x_test)  # rewritten


def test_a_cache_of_other_contents_under_the_right_name_is_ignored(tmp_path, cache):
    make_folder(tmp_path / "data")
    read_imagefolder(tmp_path / "data")
    (file,) = cache_files(cache)
    with np.load(file) as npz:
        arrays = dict(npz)
    np.savez(file, **(arrays | {"key": np.array("another key"), "x_train": np.zeros_like(arrays["x_train"])}))
    assert read_imagefolder(tmp_path / "data").x_train.any()


def test_an_unwritable_cache_folder_still_returns_the_data(tmp_path, monkeypatch):
    pixels = make_folder(tmp_path / "data")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FFNEURO_CACHE", str(tmp_path / "a-file" / "cache"))  # cannot be created
    for _ in range(2):
        ds = load_dataset(f"imagefolder:{tmp_path / 'data'}")
        assert torch.equal(ds.x_train, channel_major(pixels["train"]))


def test_default_cache_folder_is_home_cache_ffneuro(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")
    monkeypatch.delenv("FFNEURO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    read_imagefolder(tmp_path / "data")
    assert len(cache_files(tmp_path / "home/.cache/ffneuro")) == 1


# --------------------------------------------------------------------------- errors


def _corrupt(root: Path) -> str:
    (root / "train/bird/01.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return "train/bird/01.png"


def _truncated(root: Path) -> str:
    path = root / "test/cat/00.png"
    path.write_bytes(path.read_bytes()[:60])
    return "test/cat/00.png"


def _sixteen_bit(root: Path) -> str:
    Image.fromarray(np.full((H, W), 1000, np.uint16)).save(root / "train/ant/01.png")
    return "train/ant/01.png"


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (lambda root: shutil.rmtree(root / "train"), ["{root}: no train/ folder"]),
        (lambda root: shutil.rmtree(root / "test"), ["{root}: no test/ folder"]),
        (lambda root: [p.unlink() for p in (root / "train/bird").iterdir()], ["{root}/train/bird:", "no .png"]),
        (lambda root: [p.unlink() for p in (root / "test/ant").iterdir()], ["{root}/test/ant:", "no .png"]),
        (lambda root: (root / "test/ant").rename(root / "test/ants"), ["{root}/test:", "missing ant", "extra ants"]),
        (lambda root: shutil.rmtree(root / "test/cat"), ["{root}/test:", "missing cat", "extra none"]),
        (lambda root: [shutil.rmtree(root / s / c) for s in ("train", "test") for c in ("ant", "bird")],
         ["{root}/train:", "1 class folder (cat)", "at least 2"]),
        (lambda root: save(root / "test/bird/00.png", np.zeros((H, W + 1, 3), np.uint8)),
         ["{root}: images differ in size", "{root}/train/ant/00.png is 5x4", "{root}/test/bird/00.png is 6x4"]),
    ],
    ids=["no train", "no test", "empty train class", "empty test class", "renamed test class",
         "missing test class", "one class", "mixed sizes"],
)
@pytest.mark.parametrize("as_zip", [False, True], ids=["dir", "zip"])
def test_layout_errors_name_the_place(tmp_path, damage, fragments, as_zip):
    root = tmp_path / "data"
    make_folder(root)
    damage(root)
    if as_zip:
        for path in root.rglob("*"):  # keep emptied folders in the archive as folder entries
            if path.is_dir() and not any(path.iterdir()):
                (path / "README").write_text("not an image")
        source = make_zip(root, tmp_path / "data.zip", "top")
        where = f"{source}/top"
    else:
        source = where = root
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{source}")
    assert_one_line_error(excinfo, *(f.format(root=where) for f in fragments))


@pytest.mark.parametrize(
    "damage, problem",
    [(_corrupt, "cannot decode image"), (_truncated, "cannot decode image"), (_sixteen_bit, "I;16 image has more than 8 bits")],
    ids=["corrupt", "truncated", "16-bit"],
)
@pytest.mark.parametrize("as_zip", [False, True], ids=["dir", "zip"])
def test_bad_image_errors_name_the_file(tmp_path, damage, problem, as_zip):
    root = tmp_path / "data"
    make_folder(root)
    rel = damage(root)
    source = make_zip(root, tmp_path / "data.zip") if as_zip else root
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{source}")
    assert_one_line_error(excinfo, f"{source}/{rel}: {problem}")


def test_a_damaged_zip_member_names_the_member(tmp_path):
    make_folder(tmp_path / "data")
    archive = make_zip(tmp_path / "data", tmp_path / "data.zip")  # stored: the pixels' bytes are in the clear
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("train/cat/01.png")
    raw = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # local header, then the data
    raw[start + info.compress_size - 1] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{archive}")
    assert_one_line_error(excinfo, f"{archive}/train/cat/01.png: cannot read from the archive", "CRC")


def test_zip_without_the_layout(tmp_path):
    make_folder(tmp_path / "a")
    archive = tmp_path / "two-tops.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "a/train/ant/00.png", "one/train/ant/00.png")
        zf.write(tmp_path / "a/train/ant/00.png", "two/train/ant/00.png")
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{archive}")
    assert_one_line_error(excinfo, f"{archive}: no train/ folder")


def test_path_not_found(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    assert_one_line_error(excinfo, f"{tmp_path / 'nowhere'}: not found")


def test_a_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "images.zip"
    path.write_bytes(b"this is not a zip archive\n" * 10)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{path}")
    assert_one_line_error(excinfo, f"{path}: not a zip archive")


def test_spec_without_path():
    with pytest.raises(DataError) as excinfo:
        load_dataset("imagefolder:")
    assert_one_line_error(excinfo, "imagefolder:DIR|ZIP")


def test_unknown_spec_lists_imagefolder():
    with pytest.raises(DataError) as excinfo:
        load_dataset("images:/x")
    assert_one_line_error(excinfo, "imagefolder:DIR|ZIP")


def test_read_imagefolder_raises_a_value_error(tmp_path):
    with pytest.raises(ImageFolderError) as excinfo:
        read_imagefolder(tmp_path / "nowhere")
    assert isinstance(excinfo.value, ValueError) and "\n" not in str(excinfo.value)
