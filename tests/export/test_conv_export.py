"""Conv units in the HDF5 export: the golden replay (numpy only) reproduces ffneuro's
integer conv inference bit for bit — every activity, goodness, class-group sum, score,
prediction and head logit — for channel-wise competitive and label-plane conv nets and a
mixed conv → dense stack, on every digits test sample."""

import dataclasses
import itertools
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.evaluate import multipass_scores
from ffneuro.export import golden
from ffneuro.export.hdf5 import chip_network, export_run
from ffneuro.network import default_inference_layers
from ffneuro.train.loop import train

runner = CliRunner()
PROFILE = "cmos-45nm"
CONV_STACK = "conv:10:k3:p1,conv:20:k3:p1:g10:pool2"
NETS = {      # 8×8 digits → (1, 8, 8) maps; onchip_lr 1/16 keeps the label-plane nets' units alive
    "cwc": [f"units.stack={CONV_STACK}", "units.loss=cwc", "units.norm=rms", "hardware.onchip_lr=8", "hardware.batch_rule=mean"],
    "planes": [f"units.stack={CONV_STACK}", "hardware.onchip_lr=0.0625", "hardware.batch_rule=mean"],
    "mixed": ["units.stack=conv:8:k3:s2:p1,conv:20:k3:p1:g2:pool2,dense:20", "hardware.onchip_lr=0.0625", "hardware.batch_rule=mean"],
    "cwc-dense": ["units.stack=dense:40,dense:30", "units.loss=cwc", "hardware.onchip_lr=8", "hardware.batch_rule=mean"],
}
TRAIN_SAMPLES = 600
VECTORS = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions: one thread is faster than two contending for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits):
    """(name, profile) → (run dir, export) of a net of NETS trained for one epoch on part of
    digits on chip (profile None: trained on PROFILE, exported as trained) or in float and
    quantised to ``profile`` by the export; each made once, on first use."""
    made = {}

    def get(name: str, profile: str | None = None):
        if (name, profile) not in made:
            folder = tmp_path_factory.mktemp(name)
            data = dataclasses.replace(digits, x_train=digits.x_train[:TRAIN_SAMPLES],
                                       y_train=digits.y_train[:TRAIN_SAMPLES])
            cfg = RunConfig().with_sets([*NETS[name], "loop.epochs=1", "loop.entropy_probe=0"])
            train(cfg, data=data, progress=False, profile=None if profile else PROFILE, out=folder / "run",
                  count_events=False)
            export_run(folder / "run", folder / "model.h5", profile=profile, vectors=VECTORS)
            made[name, profile] = folder / "run", folder / "model.h5"
        return made[name, profile]
    return get


def passes(net) -> list[int | None]:
    """The label codes inference runs: every label then the neutral code, or the one
    label-free pass of a competitive net."""
    return [None] if net.competitive else [*range(net.num_classes), None]


def assert_replay_is_ffneuro(run, path, digits, profile: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ffneuro's integer inference (``chip_network``: the net as exported) and the golden
    replay of ``path`` agree on every digits test sample: the integer input, every layer's
    activity and integer goodness for every pass, the per-layer score tables (exact float64),
    the scores and the head's integer logits. Returns the replayed (scores, logits)."""
    cfg, _, net, _ = chip_network(run, profile)
    model, bad = golden.read_model(path)
    assert bad == [] and model.competitive == net.competitive
    a0 = net.prepare_input(digits.x_test)
    x0 = golden.integer_input(digits.x_test.numpy(), model.levels)
    assert np.array_equal(x0, a0.flatten(1).numpy().astype(np.int64))
    n = x0.shape[0]
    live = np.zeros(len(model.layers), dtype=np.int64)
    for label in passes(net):                            # every activity and goodness of every layer
        labels = None if label is None else [torch.full((n,), label, dtype=torch.long)]
        replay = model.activities(model.encode(x0, label))
        for p, layer, h in zip(net.stream(a0, labels), model.layers, replay):
            assert np.array_equal(p.unit.head_activity(p.h_out).numpy().astype(np.int64), h), (label, p.index)
            assert np.array_equal(p.unit.integer_goodness(p.h_out).numpy(), golden.int_goodness(h, layer.goodness))
            live[p.index] += int((h > 0).sum())
    assert live.all(), live                              # no dead layer: the comparison means something
    table = net.goodness_table(a0).numpy()               # ffneuro's real scores per layer
    g_table = model.goodness_table(x0)
    for i in range(len(model.layers)):
        assert np.array_equal(table[:, :, i], model.real_table(g_table, i)), i
    score = model.scores(g_table)
    assert np.array_equal(multipass_scores(torch.from_numpy(table), default_inference_layers(cfg)).numpy(), score)
    logits = model.head_logits(x0)
    assert np.array_equal(net.head_logits(a0).numpy().astype(np.int64), logits)
    assert golden.verify(path)["ok"]
    return score, logits


# -- the replay is ffneuro, bit for bit, on every test sample -------------------------------
@pytest.mark.parametrize("name", list(NETS))
def test_golden_replay_agrees_with_ffneuro_on_every_test_sample(exported, digits, name):
    run, path = exported(name)
    score, logits = assert_replay_is_ffneuro(run, path, digits)
    # the replayed errors are the run's own (evaluated by ffneuro at the end of training)
    want = json.loads((run / "metrics.json").read_text())["test_error"]
    y = digits.y_test.numpy()
    assert float((score.argmax(1) != y).mean() * 100) == pytest.approx(want["multi_pass"], abs=1e-4)
    assert float((logits.argmax(1) != y).mean() * 100) == pytest.approx(want["one_pass"], abs=1e-4)


def test_a_float_competitive_conv_run_quantised_for_export_replays_exactly(exported, digits):
    """Post-training quantisation to a profile whose scales are not powers of two."""
    run, path = exported("cwc", "cortex-m7-int8")
    with h5py.File(path, "r") as f:
        assert json.loads(f["provenance"].attrs["profile"])["name"] == "cortex-m7-int8"
        assert f["provenance"].attrs["quantisation"] == "post-training"
        assert "weight_exponent" not in f["layers/0"].attrs          # the weight step is not a power of two
    assert_replay_is_ffneuro(run, path, digits, "cortex-m7-int8")


@pytest.mark.parametrize("name", ["cwc", "mixed"])
def test_early_exit_of_a_conv_net_replays_exactly(tmp_path, exported, digits, name):
    """Early exit on conv nets (class-group scores of a competitive net, label planes into
    a dense unit): every digits test sample leaves at the same layer with the same
    prediction in ffneuro's integer inference and in the golden replay of its export."""
    from ffneuro.evaluate import early_exit

    run, _ = exported(name)
    _, _, net, _ = chip_network(run, None)
    table = net.goodness_table(net.prepare_input(digits.x_test))
    # a threshold, nearest 0.3 first, at which samples leave at more than one depth
    theta = next(t for t in (0.3, 0.2, 0.5, 0.1, 0.8, 0.05, 1.2, 2.0) if len(set(early_exit(table, t)[0].tolist())) > 1)
    path = tmp_path / "exit.h5"
    export_run(run, path, vectors=VECTORS, exit_threshold=theta)
    report = golden.verify(path, digits.x_test.numpy(), digits.y_test.numpy())
    assert report["ok"], report["reason"]
    depth, score = early_exit(table, theta)
    model, _ = golden.read_model(path)
    a0 = golden.integer_input(digits.x_test.numpy(), model.levels)
    g_depth, g_score = model.early_exit(model.goodness_table(a0))
    assert g_depth.tolist() == depth.tolist() and len(set(depth.tolist())) > 1   # exits at more than one depth
    assert g_score.argmax(axis=1).tolist() == score.argmax(dim=1).tolist()


@pytest.mark.parametrize("name", list(NETS))
def test_file_describes_conv_layers_input_maps_and_scoring(exported, name):
    run, path = exported(name)
    _, _, net, _ = chip_network(run, None)
    k = 1 if net.competitive else net.num_classes + 1
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == golden.SCHEMA_VERSION
        gi, ginf = f["input"], f["inference"]
        assert gi.attrs["data_features"] == 64
        assert gi.attrs["label_mode"] == ("none" if net.competitive else "planes")
        assert ginf.attrs["competitive"] == int(net.competitive)
        assert list(gi.attrs["first_layer_shape"]) == list(net.layers[0].in_shape)
        for i, unit in enumerate(net.layers):
            g = f[f"layers/{i}"]
            assert g.attrs["in_features"] == unit.in_features and g.attrs["out_features"] == unit.out_features
            assert f[f"vectors/activity{i}"].shape == (VECTORS, k, unit.out_features)
            assert ("class_goodness_scale" in g.attrs) == net.competitive
            if g.attrs["kind"] != "conv-relu":
                continue
            o, cg, kern = g.attrs["out_channels"], g.attrs["in_channels"] // g.attrs["groups"], g.attrs["kernel"]
            assert g["weight"].shape == (o, cg, kern, kern) and g["weight"].dtype == np.int8
            assert g["bias"].shape == (o,)
            assert list(unit.in_shape) == [g.attrs["in_channels"], g.attrs["in_height"], g.attrs["in_width"]]
            for key in ("stride", "padding", "pool", "norm_gain", "accumulator_bits", "output_scale", "goodness_scale"):
                assert key in g.attrs
        assert f["vectors/goodness"].shape == (VECTORS, k, len(net.layers))
        assert ("class_goodness" in f["vectors"]) == net.competitive


def test_data_shape_and_label_planes_are_written(exported):
    _, path = exported("planes")
    with h5py.File(path, "r") as f:
        gi = f["input"]
        assert list(gi.attrs["data_shape"]) == [1, 8, 8] and list(gi.attrs["first_layer_shape"]) == [11, 8, 8]
        assert gi.attrs["label_offset"] == 64 and gi.attrs["label_width"] == 10
        assert gi.attrs["label_code"] == 255 and gi.attrs["neutral_code"] == 26
        assert f["layers/0"].attrs["in_channels"] == 11


# -- the CLI and tampering ----------------------------------------------------------------------
def test_cli_verify_and_inspect_a_conv_export(exported):
    _, path = exported("cwc")
    r = runner.invoke(app, ["verify", str(path)])
    assert r.exit_code == 0 and "OK" in r.output and "golden replay on digits" in r.output, r.output
    r = runner.invoke(app, ["inspect", str(path)])
    assert r.exit_code == 0 and "conv-relu" in r.output and "20x1x3x3" in r.output, r.output


def test_a_tampered_conv_kernel_is_detected(tmp_path, exported):
    _, path = exported("cwc")
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as f:
        o = int(f["vectors/activity1"][()].reshape(VECTORS, 20, -1).sum(axis=(0, 2)).argmax())  # most active channel
        w = f["layers/1/weight"][()]
        w[o] = np.minimum(w[o].astype(np.int64) + 1, np.iinfo(w.dtype).max)
        f["layers/1/weight"][...] = w
    r = runner.invoke(app, ["verify", str(bad), "--vectors-only"])
    assert r.exit_code == 1 and "CHECKSUM FAILED: /layers/1/weight" in r.output
    with h5py.File(bad, "r+") as f:                        # a consistent file with a wrong kernel
        f["layers/1/weight"].attrs["sha256"] = golden.sha256(f["layers/1/weight"][()])
    r = runner.invoke(app, ["verify", str(bad), "--vectors-only"])
    assert r.exit_code == 1 and "CHECKSUM" not in r.output
    assert "MISMATCH: layer 2, vector" in r.output and f"(channel {o}, y " in r.output, r.output


# -- the integer convolution by hand -------------------------------------------------------------
def naive_conv(x, w, stride, padding, groups):
    n, c, hgt, wid = x.shape
    o, cg, k, _ = w.shape
    ho, wo = (hgt + 2 * padding - k) // stride + 1, (wid + 2 * padding - k) // stride + 1
    out = np.zeros((n, o, ho, wo), dtype=object)           # Python integers: no overflow, no rounding
    for b, oc, i, j, ci, di, dj in itertools.product(range(n), range(o), range(ho), range(wo), range(cg),
                                                      range(k), range(k)):
        r, q = i * stride + di - padding, j * stride + dj - padding
        if 0 <= r < hgt and 0 <= q < wid:
            out[b, oc, i, j] += int(w[oc, ci, di, dj]) * int(x[b, (oc // (o // groups)) * cg + ci, r, q])
    return out


@pytest.mark.parametrize("stride,padding,groups,scale", [(1, 1, 1, 1), (2, 1, 2, 1), (2, 0, 4, 1), (1, 2, 2, 2 ** 16)])
def test_int_conv2d_matches_the_definition_exactly(stride, padding, groups, scale):
    rng = np.random.default_rng(stride * 100 + padding * 10 + groups)
    x = rng.integers(0, 256, size=(2, 4, 7, 6)) * scale      # scale 2^16: bound ≥ 2^53, the int64 route
    w = rng.integers(-128, 128, size=(4, 4 // groups, 3, 3)) * scale
    want = naive_conv(x, w, stride, padding, groups)
    got = golden.int_conv2d(x, w, stride, padding, groups, chunk=50)   # small chunks: several per group
    assert got.dtype == np.int64 and got.shape == want.shape and (got == want).all()


def test_max_pool_and_class_sums_by_hand():
    h = np.arange(2 * 1 * 5 * 5).reshape(2, 1, 5, 5)
    assert golden.max_pool(h, 2)[0, 0].tolist() == [[6, 8], [16, 18]]     # floor: last row and column dropped
    assert golden.class_sums(np.array([[1, 2, 3, 0, 0, 4]]), 3).tolist() == [[5, 9, 16]]
