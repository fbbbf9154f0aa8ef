"""The CLI as a careless user meets it: nothing of the user's is overwritten, a model too
big for the machine is refused before allocation, a diverging run stops, corrupt
checkpoints are caught, and every failure is one ``error:`` line."""

from __future__ import annotations

import errno
import json

import pytest
import torch
from typer.testing import CliRunner

from ffneuro import api
from ffneuro.cli import app
from ffneuro.runs import files as runio

runner = CliRunner()
SMALL = ("--layers", "32,32", "--epochs", "1", "--no-progress")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r) -> str:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and r.output.count("\n") == 1, r.output
    assert r.output.startswith("error: ")
    return r.output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    r = invoke("train", *SMALL, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_train_never_writes_into_a_folder_of_the_users(tmp_path, monkeypatch):
    (tmp_path / "thesis.tex").write_text("years of work")
    one_error_line(invoke("train", *SMALL, "--out", tmp_path))
    monkeypatch.chdir(tmp_path)
    assert "not an ffneuro run dir" in one_error_line(invoke("train", *SMALL, "--out", ""))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    assert "is a file" in one_error_line(invoke("train", *SMALL, "--out", tmp_path / "thesis.tex"))
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_the_whole_run(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *SMALL, "--out", out).exit_code == 0
    runio.write_json(out / "estimate.json", {"energy": "of another run"})
    assert "--overwrite replaces it" in one_error_line(invoke("train", *SMALL, "--out", out))
    r = invoke("train", *SMALL, "--seed", "3", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (out / "estimate.json").exists()
    assert runio.read_json(out / runio.CONFIG)["config"]["loop"]["seed"] == 3
    one_error_line(invoke("train", *SMALL, "--out", out, "--resume", "--overwrite"))
    assert "nothing to resume" in one_error_line(invoke("train", *SMALL, "--out", tmp_path / "none", "--resume"))


def test_outputs_are_not_replaced_without_force(run, tmp_path):
    ckpt = (run / runio.CHECKPOINT).read_bytes()
    assert "is a file of the run dir" in one_error_line(
        invoke("export", run, "-o", run / runio.CHECKPOINT, "--profile", "cmos-45nm", "--force"))
    assert (run / runio.CHECKPOINT).read_bytes() == ckpt
    mine = tmp_path / "model.h5"
    mine.write_bytes(b"my own file")
    assert "pass --force" in one_error_line(invoke("export", run, "-o", mine, "--profile", "cmos-45nm"))
    assert mine.read_bytes() == b"my own file"
    assert "is a folder" in one_error_line(invoke("export", run, "-o", tmp_path, "--profile", "cmos-45nm"))
    r = invoke("export", run, "-o", mine, "--profile", "cmos-45nm", "--vectors", "2", "--force")
    assert r.exit_code == 0, r.output
    assert mine.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    plot = tmp_path / "energy.png"
    plot.write_bytes(b"my plot")
    one_error_line(invoke("estimate", "--profile", "loihi-like", "--layers", "784,100", "--plot", plot))
    one_error_line(invoke("compare", run, "--plot", plot))
    assert plot.read_bytes() == b"my plot"
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "fig1.png").write_bytes(b"mine")
    assert "not empty" in one_error_line(invoke("analyze", run, "--out", folder))
    assert (folder / "fig1.png").read_bytes() == b"mine"


def test_a_model_too_big_for_the_machine_is_refused_before_allocation(monkeypatch):
    from ffneuro.train import loop

    monkeypatch.setattr(loop, "available_memory_bytes", lambda: 2**20)
    out = one_error_line(invoke("train", *SMALL))
    assert "needs about" in out and "0.0 GiB available" in out


def test_spiking_units_are_sized_before_allocation_too(monkeypatch):
    from ffneuro.train import loop

    built = []
    monkeypatch.setattr(loop, "available_memory_bytes", lambda: 2**20)
    build = loop.build_network
    monkeypatch.setattr(loop, "build_network", lambda *a, **k: built.append(1) or build(*a, **k))
    out = one_error_line(invoke("train", *SMALL, "--set", "units.neuron=lif"))
    assert "needs about" in out and built == [1]          # only the meta-device build ran


def test_under_a_profile_the_fit_check_comes_first(monkeypatch):
    from ffneuro.train import loop

    monkeypatch.setattr(loop, "available_memory_bytes", lambda: 2**20)    # the host check would refuse too
    r = invoke("train", "--profile", "loihi-like", "--layers", "100000,100000", "--no-progress")
    assert r.exit_code == 1 and "Traceback" not in r.output           # the per-layer table, then one error line
    assert r.output.splitlines()[-1].startswith("error: model [74, 100000, 100000] does not fit profile 'loihi-like'")


def test_training_memory_estimate_counts_weights_optimiser_and_activity(digits):
    from ffneuro.config import RunConfig
    from ffneuro.rng import Streams
    from ffneuro.train.loop import build_network
    from ffneuro.train.memory import shape_only, training_memory_bytes

    cfg = RunConfig().replace(units={"layers": (20, 30)}).validate()
    net = shape_only(lambda: build_network(cfg, digits, Streams(0, 2)))
    assert all(p.device.type == "meta" for p in net.parameters())       # nothing allocated
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())
    # Adam: weight + gradient + 2 moments = 4 words of 4 bytes; evaluation (1000 samples ×
    # 10 label codes × the widest unit, 30, × 2 × 4 bytes) outweighs a batch of 64 in training
    assert training_memory_bytes(net, cfg, 64, chip=False) == params * 16 + buffers + 1000 * 10 * 30 * 8
    assert training_memory_bytes(net, cfg, 4000, chip=False) == params * 16 + buffers + 3 * 4000 * 50 * 16
    assert training_memory_bytes(net, cfg, 64, chip=True) == params * 24 + buffers + 1000 * 10 * 30 * 8


@pytest.mark.parametrize("sets, profile", [
    ([], None), ([], "loihi-like"), (["units.neuron=lif"], None),
    (["units.stack=conv:8:k3:s2:p1,conv:20:k3:p1:g2:pool2,dense:20"], "cmos-45nm"),
    (["units.stack=conv:10:k3:p1,conv:20:k3:p1:g2:pool2", "units.loss=cwc", "units.neuron=lif"], None)])
def test_the_shape_only_network_has_the_real_ones_shapes(digits, sets, profile):
    from ffneuro.config import RunConfig
    from ffneuro.hw.chip import chip_spec
    from ffneuro.hw.profiles import load_profile
    from ffneuro.rng import Streams
    from ffneuro.train.loop import build_network
    from ffneuro.train.memory import shape_only

    cfg = RunConfig().with_sets(sets)
    chip = chip_spec(load_profile(profile)) if profile else None
    meta = shape_only(lambda: build_network(cfg, digits, Streams(0, cfg.units.n_units), chip)).state_dict()
    real = build_network(cfg, digits, Streams(0, cfg.units.n_units), chip).state_dict()
    assert [(k, v.shape, v.dtype) for k, v in meta.items()] == [(k, v.shape, v.dtype) for k, v in real.items()]
    assert all(v.device.type == "meta" for k, v in meta.items() if k.endswith(("weight", "bias")))


def test_a_diverging_run_stops_with_one_line(tmp_path):
    out = tmp_path / "run"
    r = invoke("train", *SMALL, "--set", "optim.lr=1e30", "--set", "optim.head_lr=1e30", "--out", out)
    assert "training diverged: unit 1" in one_error_line(r) and "epoch 1" in r.output
    assert not (out / runio.METRICS).exists()


def test_a_corrupt_checkpoint_is_caught_and_resume_falls_back(tmp_path, caplog):
    out = tmp_path / "run"
    assert invoke("train", *SMALL, "--epochs", "2", "--out", out).exit_code == 0
    good = json.loads(invoke("eval", out, "--json").stdout)
    data = bytearray((out / runio.CHECKPOINT).read_bytes())
    data[-5] ^= 0x40
    (out / runio.CHECKPOINT).write_bytes(bytes(data))
    for cmd in (("eval", out), ("export", out, "-o", tmp_path / "m.h5", "--profile", "cmos-45nm"),
                ("analyze", out, "--probe", "50")):
        assert "corrupt checkpoint" in one_error_line(invoke(*cmd))
    with caplog.at_level("WARNING"):
        r = invoke("train", "--out", out, "--resume", "--json", "--no-progress")
    assert r.exit_code == 0 and "resuming from checkpoint.prev.safetensors (after epoch 1)" in caplog.text
    assert json.loads(r.stdout)["test_error"] == good["test_error"]        # epoch 2 re-trained exactly


def test_a_config_that_disagrees_with_its_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *SMALL, "--out", out).exit_code == 0
    saved = runio.read_json(out / runio.CONFIG)
    saved["config"]["units"]["layers"] = [32, 40]
    runio.write_json(out / runio.CONFIG, saved)
    assert "does not match" in one_error_line(invoke("eval", out))
    assert "does not match" in one_error_line(invoke("train", "--out", out, "--resume", "--no-progress"))


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.EROFS, "Read-only file system", "runs/a"), "error: runs/a: Read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), "error: No space left on device"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out.h5"), "error: out.h5: Is a directory"),
    (MemoryError(), "error: out of memory"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes"),
     "error: out of memory (DefaultCPUAllocator"),
    (KeyError("layer"), "error: internal error: KeyError: 'layer' (ffneuro --debug"),
])
def test_every_failure_is_one_line(monkeypatch, exc, expected):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(api, "train_run", boom)
    assert one_error_line(invoke("train", "--no-progress")).startswith(expected)
    r = invoke("--debug", "train", "--no-progress")
    assert r.exception is exc                                     # --debug lets the traceback through


def test_metrics_are_strict_json(run):
    text = (run / runio.METRICS).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert torch.isfinite(torch.tensor(json.loads(text)["test_error"]["multi_pass"]))


def test_a_chip_refuses_input_outside_its_range_instead_of_wrapping(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).random((60, 12)).astype(np.float32)
    y = np.arange(60) % 3
    x_test = x[:20].copy()
    x_test[0, 0] = 1e30                      # would wrap to INT64_MIN as an integer input
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x_test, y_test=y[:20])
    out = one_error_line(invoke("train", "--data", f"npz:{tmp_path / 'd.npz'}", "--profile", "cmos-45nm",
                                *SMALL))
    assert "takes input values in [0, 1]" in out and "1e+30" in out


def test_val_fraction_reports_validation_beside_test(tmp_path):
    out = tmp_path / "run"
    r = invoke("train", *SMALL, "--val-fraction", "0.1", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["n_val"] == 142 and m["n_train"] == 1437 - 142         # stratified: Σ round(0.1 × class count)
    assert set(m["val_error"]) == set(m["test_error"]) == {"multi_pass", "one_pass"}
    assert runio.read_json(out / runio.CONFIG)["config"]["data"]["val_fraction"] == 0.1
