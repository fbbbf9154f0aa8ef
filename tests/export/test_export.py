"""Export for chip bring-up: integer-exact chip inference, HDF5 tables, golden replay."""

import math
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ffneuro.export import golden
from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.export.hdf5 import chip_network, export_run, smallest_int_dtype
from ffneuro.network import default_inference_layers
from ffneuro.functional.fixed import GAIN_FRAC_BITS, int_normalize, isqrt, norm_gain
from ffneuro.hw.profiles import list_profiles, load_profile
from ffneuro.functional.quant import FixedPoint
from ffneuro.evaluate import multipass_scores
from ffneuro.train.loop import train

runner = CliRunner()
INTEGER_PROFILES = [p for p in list_profiles() if load_profile(p).precision.format != "float"]


@pytest.fixture(scope="module")
def float_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "float"
    train(RunConfig.from_flat(layers=(48, 40), epochs=2, seed=1).validate(), out=out, data=digits, progress=False)
    return out


@pytest.fixture(scope="module")
def chip_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "chip"
    train(RunConfig.from_flat(layers=(48, 40), epochs=1, batch_size=8).validate(), out=out, data=digits,
          profile="cortex-m7-int8", progress=False)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, chip_run):
    path = tmp_path_factory.mktemp("h5") / "model.h5"
    export_run(chip_run, path, vectors=5)
    return path


# -- integer maths, hand-checked ------------------------------------------------------------
def test_int_normalize_hand_computed_in_torch_and_numpy():
    # a = (3, 4), RMS over 2 entries, x step 2^-4: x = a / sqrt(25 / 2) / 2^-4 = (13.58, 18.10)
    gain = norm_gain(2, "rms", 2.0 ** -4)
    assert gain == math.floor(math.sqrt(2) * 16 * 2 ** GAIN_FRAC_BITS + 0.5)
    fmt = FixedPoint(8, False, 2.0 ** -4)
    assert int_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), gain, fmt).tolist() == [[14, 18], [0, 0]]
    assert golden.int_normalize(np.array([[3, 4], [0, 0]]), gain, GAIN_FRAC_BITS, 0, 255).tolist() == [[14, 18], [0, 0]]
    # saturation at the format's range, and signed rounding half up (-0.5 -> 0)
    assert int_normalize(torch.tensor([[1000.0, 1.0]]), gain, FixedPoint(4, False, 2.0 ** -4)).tolist() == [[15, 0]]


def test_isqrt_is_exact_near_squares_and_large_values():
    vals = [0, 1, 2, 3, 4, 15, 16, 17, 2 ** 52 - 1, 2 ** 52, (2 ** 30 + 7) ** 2 - 1, (2 ** 30 + 7) ** 2,
            2 ** 61 + 12345]
    want = [math.isqrt(v) for v in vals]
    assert isqrt(torch.tensor(vals, dtype=torch.int64)).tolist() == want
    assert golden.isqrt(np.array(vals, dtype=np.int64)).tolist() == want


def test_smallest_int_dtype():
    assert smallest_int_dtype(-128, 127) == np.int8
    assert smallest_int_dtype(-129, 0) == np.int16
    assert smallest_int_dtype(0, 2 ** 31) == np.int64


def test_golden_imports_no_training_code():
    code = "import sys, ffneuro.export.golden; bad = [m for m in ('torch', 'ffneuro.units.dense', 'ffneuro.train.loop') " \
           "if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the chip datapath is integer -------------------------------------------------------------
def test_chip_activities_are_integers_and_goodness_is_their_exact_sum(chip_run, digits):
    _, _, net, how = chip_network(chip_run, None)
    assert how == "trained on chip"
    a0 = net.prepare_input(digits.x_test[:20])
    assert torch.equal(a0, torch.round(a0)) and float(a0.max()) <= 255
    h = net.encoding.encode(a0, digits.y_test[:20])
    for layer in net.layers:
        h = layer(h)
        assert torch.equal(h, torch.round(h)) and float(h.min()) >= 0
        g = layer.goodness(h)
        assert torch.equal(g, (h.to(torch.int64) ** 2).sum(1).double() * layer.out_step ** 2)


# -- golden replay == ffneuro, on every test sample, for every integer profile --------------------
@pytest.mark.parametrize("profile", INTEGER_PROFILES)
def test_golden_replay_agrees_with_ffneuro_on_every_test_sample(tmp_path, float_run, digits, profile):
    path = tmp_path / f"{profile}.h5"
    export_run(float_run, path, profile=profile, vectors=3)
    cfg, _, net, how = chip_network(float_run, profile)
    assert how == "post-training"
    a0 = net.prepare_input(digits.x_test)
    table = net.goodness_table(a0)
    model, bad = golden.read_model(path)
    assert bad == []
    x0 = golden.integer_input(digits.x_test.numpy(), model.levels)
    assert np.array_equal(x0, a0.numpy().astype(np.int64))
    g_table = model.goodness_table(x0)
    ours = np.stack([np.rint(table[:, :, i].numpy() / net.layers[i].goodness_scale()) for i in range(table.shape[2])], 2)
    assert np.array_equal(ours, g_table)
    layers = default_inference_layers(cfg)
    assert np.array_equal(multipass_scores(table, layers).numpy(), model.scores(g_table))
    assert np.array_equal(net.head_logits(a0).numpy().astype(np.int64), model.head_logits(x0))
    assert golden.verify(path)["ok"]


def test_verify_reports_the_same_errors_as_ffneuro_eval(exported, chip_run, digits):
    report = golden.verify(exported, digits.x_test.numpy(), digits.y_test.numpy())
    assert report["ok"] and report["vectors"] == 5 and report["mismatch"] is None
    ours = runner.invoke(app, ["eval", str(chip_run), "--json"])
    import json
    want = json.loads(ours.stdout)["test_error"]
    for mode in ("multi_pass", "one_pass"):
        assert report["test_error"][mode] == pytest.approx(want[mode], abs=1e-4)


# -- the file ------------------------------------------------------------------------------------
def test_file_layout_and_dtypes(exported):
    with h5py.File(exported, "r") as f:
        assert f.attrs["format"] == "ffneuro-chip" and f.attrs["schema_version"] == golden.SCHEMA_VERSION
        w = f["layers/0/weight"]
        assert w.dtype == np.int8 and w.shape == (48, 74)           # 8-bit profile, 64 + 10 label inputs
        assert f["layers/1/weight"].shape == (40, 48)
        assert f["layers/0"].attrs["input_bits"] == 8 and f["layers/0"].attrs["accumulator_bits"] == 32
        assert f["head/weight"].shape == (10, 40)
        assert f["vectors/activity0"].shape == (5, 11, 48)           # 10 labels + neutral
        for name in ("layers/0/weight", "layers/0/bias", "vectors/input"):
            assert f[name].attrs["sha256"] == golden.sha256(f[name][()])
        assert "config" in f["provenance"].attrs and "metrics" in f["provenance"].attrs


def test_cli_export_inspect_verify(tmp_path, chip_run):
    out = tmp_path / "m.h5"
    r = runner.invoke(app, ["export", str(chip_run), "-o", str(out), "--vectors", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and "checksums: OK" in r.output and "48x74" in r.output
    r = runner.invoke(app, ["verify", str(out)])
    assert r.exit_code == 0 and "OK" in r.output and "golden replay on digits" in r.output


def test_tampered_weight_fails_its_checksum(tmp_path, exported):
    path = tmp_path / "t.h5"
    shutil.copy(exported, path)
    with h5py.File(path, "r+") as f:
        f["layers/1/weight"][0, 0] += 1
    r = runner.invoke(app, ["verify", str(path), "--vectors-only"])
    assert r.exit_code == 1 and "CHECKSUM FAILED: /layers/1/weight" in r.output
    assert runner.invoke(app, ["inspect", str(path)]).exit_code == 1


def test_wrong_expected_value_names_the_first_mismatching_layer_and_index(tmp_path, exported):
    path = tmp_path / "t.h5"
    shutil.copy(exported, path)
    with h5py.File(path, "r+") as f:
        ds = f["vectors/activity1"]
        v = ds[()]
        v[2, 3, 7] += 1
        ds[...] = v
        ds.attrs["sha256"] = golden.sha256(v)           # a consistent file with a wrong expectation
    r = runner.invoke(app, ["verify", str(path), "--vectors-only"])
    assert r.exit_code == 1
    assert "MISMATCH: layer 2, vector 2, label 3, unit 7" in r.output


@pytest.mark.parametrize("kind", ["truncated", "foreign", "text"])
def test_corrupt_or_foreign_files_give_one_line_errors(tmp_path, exported, kind):
    path = tmp_path / "bad.h5"
    if kind == "truncated":
        path.write_bytes(exported.read_bytes()[:5000])
    elif kind == "foreign":
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.arange(3))
    else:
        path.write_text("not hdf5\n")
    for cmd in ("inspect", "verify"):
        r = runner.invoke(app, [cmd, str(path)])
        assert r.exit_code == 1
        assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output


def test_export_errors_and_no_half_written_file(tmp_path, float_run, monkeypatch):
    r = runner.invoke(app, ["export", str(float_run), "-o", str(tmp_path / "a.h5")])
    assert r.exit_code == 1 and "trained in float" in r.output
    r = runner.invoke(app, ["export", str(float_run), "--profile", "float32", "-o", str(tmp_path / "a.h5")])
    assert r.exit_code == 1 and "floating point" in r.output
    import ffneuro.export.hdf5 as ex

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(ex, "_write", boom)
    with pytest.raises(RuntimeError):
        export_run(float_run, tmp_path / "b.h5", profile="loihi-like", vectors=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_spiking_run_exports_integer_lif_layers_that_replay_exactly(tmp_path, digits):
    run = tmp_path / "snn"
    train(RunConfig.from_flat(neuron="lif", layers=(40, 30), epochs=2, lr=3e-3, entropy_probe=0).validate(), out=run,
          data=digits, progress=False)
    path = tmp_path / "snn.h5"
    export_run(run, path, profile="loihi-like", vectors=3)
    with h5py.File(path, "r") as f:
        g = f["layers/0"]
        assert g.attrs["kind"] == "lif" and g.attrs["decay"] == round(0.9 * 2 ** 12) and g.attrs["threshold"] >= 1
        assert f["input"].attrs["spike_encoding"] == "rate" and f["input"].attrs["steps"] == 8
    cfg, _, net, _ = chip_network(run, "loihi-like")
    a0 = net.prepare_input(digits.x_test)
    table = net.goodness_table(a0)
    model, bad = golden.read_model(path)
    g_table = model.goodness_table(golden.integer_input(digits.x_test.numpy(), model.levels))
    ours = np.stack([np.rint(table[:, :, i].numpy() / net.layers[i].goodness_scale()) for i in range(2)], 2)
    assert bad == [] and np.array_equal(ours, g_table)
    assert golden.verify(path)["ok"]
