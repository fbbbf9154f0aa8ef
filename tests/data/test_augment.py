"""Random translations (``data.augment_shift``): exact pixel moves, seeded, wired into training."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ffneuro.data.augment import batch_transform, random_shift, shift_images
from ffneuro.cli import app
from ffneuro.config import ConfigError, RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.train.loop import train


def test_shift_moves_pixels_and_fills_the_border():
    x = torch.arange(1, 13, dtype=torch.float32).reshape(1, 12)          # a 3×4 image 1..12
    down1_left1 = shift_images(x, (3, 4), torch.tensor([1]), torch.tensor([-1]), fill=-5.0)
    assert down1_left1.reshape(3, 4).tolist() == [[-5, -5, -5, -5],
                                                  [2, 3, 4, -5],
                                                  [6, 7, 8, -5]]
    same = shift_images(x, (3, 4), torch.tensor([0]), torch.tensor([0]))
    assert torch.equal(same, x)


def test_shift_matches_numpy_roll_with_blanked_border_for_every_offset():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, size=(2, 5, 6)).astype(np.float32)          # (C, H, W), no zeros
    x = torch.from_numpy(img.reshape(1, -1)).repeat(25, 1)
    offs = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    dy = torch.tensor([o[0] for o in offs])
    dx = torch.tensor([o[1] for o in offs])
    out = shift_images(x, (2, 5, 6), dy, dx).reshape(25, 2, 5, 6).numpy()
    for k, (a, b) in enumerate(offs):
        want = np.roll(img, (a, b), axis=(1, 2))
        if a > 0:
            want[:, :a] = 0
        if a < 0:
            want[:, a:] = 0
        if b > 0:
            want[:, :, :b] = 0
        if b < 0:
            want[:, :, b:] = 0
        np.testing.assert_array_equal(out[k], want, err_msg=f"offset {(a, b)}")


def test_random_shift_is_seeded_and_bounded():
    x = torch.zeros(400, 49)
    x[:, 24] = 1.0                                                          # one lit pixel at (3, 3) of 7×7
    a = random_shift(x, (7, 7), 2, torch.Generator().manual_seed(1))
    b = random_shift(x, (7, 7), 2, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    pos = a.reshape(400, 7, 7).nonzero()[:, 1:]
    assert a.sum() == 400                                                  # the pixel stays in frame
    assert set(map(tuple, pos.tolist())) == {(r, c) for r in range(1, 6) for c in range(1, 6)}
    assert torch.equal(random_shift(x, (7, 7), 0, torch.Generator()), x)


def test_shift_needs_image_data():
    digits = load_dataset("digits")          # 8×8 images: shiftable
    with pytest.raises(ValueError, match="needs image data"):
        batch_transform(1, type("D", (), {"feature_shape": (64,), "name": "npz"})())
    assert batch_transform(1, digits)(torch.ones(2, 64), torch.Generator()).shape == (2, 64)
    with pytest.raises(ConfigError, match="augment_shift"):
        RunConfig.from_flat(augment_shift=-1).validate()


@pytest.mark.slow
def test_training_with_shift_differs_and_resumes_exactly(tmp_path):
    digits = load_dataset("digits")
    cfg = RunConfig.from_flat(layers=(64, 64), epochs=2, batch_size=64, seed=3, augment_shift=1).validate()
    plain = train(cfg.with_flat(augment_shift=0), progress=False, data=digits)
    full = train(cfg, out=tmp_path / "full", progress=False, data=digits)
    assert full["test_error"] != plain["test_error"]
    train(cfg, out=tmp_path / "cut", progress=False, data=digits, stop_after=1)
    resumed = train(cfg, out=tmp_path / "cut", resume=True, progress=False, data=digits)
    assert resumed["test_error"] == full["test_error"]


def test_cli_flag_reaches_the_config(tmp_path):
    r = CliRunner().invoke(app, ["train", "--layers", "32", "--epochs", "1", "--set", "data.augment_shift=1",
                                 "--no-progress", "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["config"]["data"]["augment_shift"] == 1
    bad = CliRunner().invoke(app, ["train", "--set", "data.augment_shift=20", "--no-progress"])
    assert bad.exit_code == 1 and "data.augment_shift = 20 must be in 0..8" in bad.output


def test_every_preset_is_a_valid_config_and_hinton_jitter_only_adds_the_shift():
    from ffneuro.config import preset, preset_names

    for name in preset_names():
        preset(name).validate()
    jitter, plain = preset("hinton-jitter"), preset("hinton")
    assert jitter.data.augment_shift == 1 and jitter.replace(data={"augment_shift": 0}) == plain
