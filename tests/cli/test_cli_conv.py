"""The command line with conv stacks on an image folder: train, its parameter count,
eval from the run dir, and one-line errors for stacks that cannot be built."""

from __future__ import annotations

import zipfile

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from ffneuro.cli import app

runner = CliRunner()
STACK = "units.stack=conv:6:k3:p1,conv:6:k3:p1:g3:pool2"


def photos_zip(tmp_path):
    """3 classes × 6 RGB 8×8 PNG images per split, each class a different colour, in a zip."""
    rng = np.random.default_rng(0)
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as z:
        for split in ("train", "test"):
            for c, name in enumerate(("red", "green", "blue")):
                for i in range(6):
                    img = rng.integers(0, 60, (8, 8, 3), dtype=np.uint8)
                    img[..., c] = 200
                    png = tmp_path / f"{split}-{name}-{i}.png"
                    Image.fromarray(img, "RGB").save(png)
                    z.write(png, f"photos/{split}/{name}/{i}.png")
    return path


def test_conv_stack_trains_on_an_image_folder_and_reports_its_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("FFNEURO_CACHE", str(tmp_path / "cache"))
    data = f"imagefolder:{photos_zip(tmp_path)}"
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", data, "--set", STACK, "--set", "units.loss=cwc", "--epochs", "3",
                            "--set", "optim.lr=0.01", "--out", str(out)])
    assert r.exit_code == 0, r.output
    first = next(line for line in r.output.replace("\r", "\n").splitlines() if "dataset " in line)
    # conv 3→6 (3·9·6 + 6) and 6→6 in 3 groups (2·9·6 + 6), head 3 classes × (6·8·8 + 6·4·4) (last two units)
    assert first.endswith(f"{(162 + 6) + (108 + 6) + 3 * (384 + 96):,} trainable parameters"), first
    r = runner.invoke(app, ["eval", str(out), "--json"])
    assert r.exit_code == 0, r.output


def test_conv_stacks_that_cannot_be_built_fail_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FFNEURO_CACHE", str(tmp_path / "cache"))
    data = f"imagefolder:{photos_zip(tmp_path)}"
    for sets, words in ((["units.stack=conv:4:k3", "units.loss=cwc"], "do not split into 3 equal class groups"),
                        (["units.stack=conv:6:k9"], "does not fit input maps of 8x8"),
                        (["units.stack=conv:6:k3:p1:pool2", "units.batch_norm=true", "units.norm=rms"],
                         "no fixed-point training form")):
        args = ["train", "--data", data, "--epochs", "1"] + [a for s in sets for a in ("--set", s)]
        if "batch_norm" in " ".join(sets):
            args += ["--profile", "cmos-45nm", "--simulate-anyway"]
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and words in r.output and r.output.count("\n") == 1, r.output


def test_eval_of_a_label_plane_conv_run_reads_its_data_and_refuses_other_shapes(tmp_path, monkeypatch):
    # label planes: the first unit reads (3 + 3 label planes) maps, the data samples are 3×8×8
    monkeypatch.setenv("FFNEURO_CACHE", str(tmp_path / "cache"))
    data = f"imagefolder:{photos_zip(tmp_path)}"
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", data, "--set", "units.stack=conv:6:k3:p1:pool2,dense:20",
                            "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(out), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(out), "--data", "digits"])
    assert r.exit_code == 1 and "64 features per sample, but the run was trained on samples of 192" in r.output
