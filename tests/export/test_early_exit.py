"""Early-exit inference: the rule by hand, the golden replay's copy of it, exact exits in the
export, event counts for the units each sample ran, and the eval curve; and the inference
count of a channel-wise competitive net."""

import dataclasses
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.config import ConfigError, RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.evaluate import early_exit, early_exit_summary
from ffneuro.export import golden
from ffneuro.export.hdf5 import export_run
from ffneuro.hw.events import EventLedger
from ffneuro.runs.load import load_run
from ffneuro.train.loop import count_early_exit, count_inference, train
from ffneuro.train.step import event_counter

runner = CliRunner()


def table_of(*layers):
    """(N, C, L) from L tables of (N, C) scores."""
    return torch.tensor(layers, dtype=torch.float64).permute(1, 2, 0).contiguous()


# -- the rule, by hand ------------------------------------------------------------------------
def test_exit_rule_hand_computed():
    # 3 samples, 3 labels, 3 layers; cumulative scores after each layer:
    #   sample 0: [10, 2, 0] -> margin 8 of spread 10 = 0.8: leaves after layer 1 at θ = 0.5
    #   sample 1: [5, 4, 0] (0.2), then [9, 4, 0] (5/9 = 0.56): leaves after layer 2
    #   sample 2: [1, 1, 1] (no spread: never confident), [2, 2, 1] (0), [2, 3, 1]: the last layer answers
    table = table_of([[10, 2, 0], [5, 4, 0], [1, 1, 1]],
                     [[0, 0, 0], [4, 0, 0], [1, 1, 0]],
                     [[0, 9, 0], [0, 9, 0], [0, 1, 0]])
    depth, score = early_exit(table, 0.5)
    assert depth.tolist() == [1, 2, 3]
    assert score.tolist() == [[10, 2, 0], [9, 4, 0], [2, 3, 1]]
    assert score.argmax(dim=1).tolist() == [0, 0, 1]
    # θ = 0 leaves after the first unit unless every score ties; θ = 1 only when the others tie for last
    assert early_exit(table, 0.0)[0].tolist() == [1, 1, 2]
    assert early_exit(table, 1.0)[0].tolist() == [3, 3, 3]
    s = early_exit_summary(table, torch.tensor([0, 1, 1]), 0.5)
    assert s["exit_fraction"] == [1 / 3, 1 / 3, 1 / 3] and s["mean_depth"] == 2.0
    assert s["error"] == pytest.approx(100 / 3)          # sample 1 is predicted 0, label 1


def test_a_threshold_never_exits_later_than_a_higher_one():
    g = torch.Generator().manual_seed(0)
    table = torch.rand(200, 10, 4, generator=g, dtype=torch.float64)
    depths = [early_exit(table, t)[0] for t in (0.0, 0.1, 0.3, 0.6, 1.0)]
    for lower, higher in zip(depths, depths[1:]):
        assert bool((lower <= higher).all())
    assert depths[0].tolist() == [1] * 200 and depths[-1].tolist() == [4] * 200


class _Layer:
    goodness_scale = 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(2, 5), st.floats(0, 1), st.integers(0, 2 ** 31 - 1))
def test_golden_rule_equals_ffneuros(n_layers, classes, theta, seed):
    # integer goodness tables with many ties, as on a chip
    table = np.random.default_rng(seed).integers(0, 6, size=(7, classes, n_layers))
    model = golden.Model(layers=[_Layer()] * n_layers, num_classes=classes, data_features=classes, levels=255,
                         label_mode="overlay", label_code=1, neutral_code=0, multi_pass_layers=[0], head=None,
                         exit_threshold=theta)
    g_depth, g_score = model.early_exit(table)
    depth, score = early_exit(torch.from_numpy(table).to(torch.float64), theta)
    assert g_depth.tolist() == depth.tolist()
    assert g_score.argmax(axis=1).tolist() == score.argmax(dim=1).tolist()


def test_config_refuses_a_negative_threshold():
    with pytest.raises(ConfigError, match="exit_threshold"):
        RunConfig.from_flat(layers=(20,)).with_sets(["inference.exit_threshold=-0.1"]).validate()


# -- a chip run: exits in training metrics, counts, export and golden replay -------------------
@pytest.fixture(scope="module")
def chip_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "chip"
    cfg = RunConfig.from_flat(layers=(48, 40, 40), epochs=1, batch_size=8).with_sets(
        ["inference.head=false", "inference.exit_threshold=0.3"]).validate()
    metrics = train(cfg, out=out, data=digits, profile="cortex-m7-int8", progress=False)
    return out, metrics


def test_training_reports_exits_and_counts_only_the_units_run(chip_run):
    out, m = chip_run
    ee = m["early_exit"]
    assert m["test_error"]["early_exit"] == ee["error"] and sum(ee["exit_fraction"]) == pytest.approx(1)
    assert m["inference_events_mode"] == "multi-pass-early-exit"
    assert 1 <= ee["mean_depth"] <= 3
    # the priced inference is cheaper than every unit for every label, by the units skipped
    _, _, net = load_run(out)
    x = net.prepare_input(load_dataset("digits").x_test[:200])
    full, none_run = EventLedger(), EventLedger()
    count_inference(net, x, full)                                    # no head: all C passes, all units
    count_early_exit(net, x, torch.full((200,), 3, dtype=torch.long), none_run)
    assert full.per_sample("infer") == none_run.per_sample("infer")
    first = EventLedger()
    count_early_exit(net, x, torch.ones(200, dtype=torch.long), first)
    assert first.per_sample("infer")[0] == full.per_sample("infer")[0] and first.num_layers == 1
    # a mix: layer 2's counts are those of the samples that reached it
    depth = torch.tensor([1, 3] * 100)
    mixed, reached = EventLedger(), EventLedger()
    count_early_exit(net, x, depth, mixed)
    count_inference(net, x[1::2], reached)
    assert mixed.totals("infer")[2] == reached.totals("infer")[2]


def test_export_stores_exits_and_golden_replays_them(chip_run, tmp_path, digits):
    out, m = chip_run
    path = tmp_path / "m.h5"
    export_run(out, path, vectors=40)
    with h5py.File(path) as f:
        assert f.attrs["schema_version"] == golden.SCHEMA_VERSION == 4
        assert f["inference"].attrs["exit_threshold"] == 0.3
        stored = f["vectors/exit_layer"][()]
    assert set(stored.tolist()) <= {1, 2, 3}
    report = golden.verify(path, digits.x_test.numpy(), digits.y_test.numpy())
    assert report["ok"], report["reason"]
    # the replayed early-exit error on the whole test set is ffneuro's, to the sample
    assert report["test_error"]["early_exit"] == pytest.approx(m["test_error"]["early_exit"], abs=1e-4)


def test_golden_catches_a_wrong_exit_layer(chip_run, tmp_path):
    out, _ = chip_run
    path = tmp_path / "m.h5"
    export_run(out, path, vectors=20, exit_threshold=0.1)
    model, _ = golden.read_model(path)
    vec = golden.read_vectors(path)
    vec["exit_layer"] = vec["exit_layer"].copy()
    vec["exit_layer"][3] = vec["exit_layer"][3] % 3 + 1
    r = golden.check_vectors(model, vec)
    assert r["mismatch"].startswith("exit layer of vector 3")


def test_export_without_a_threshold_has_no_exit_members(chip_run, tmp_path):
    out, _ = chip_run
    cfg_path = out / "config.json"
    saved = json.loads(cfg_path.read_text())
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    saved["config"]["inference"]["exit_threshold"] = None
    (copy / "config.json").write_text(json.dumps(saved))
    path = tmp_path / "plain.h5"
    export_run(copy, path, vectors=4)
    with h5py.File(path) as f:
        assert "exit_threshold" not in f["inference"].attrs and "exit_layer" not in f["vectors"]
    assert golden.verify(path)["ok"]


# -- the curve --------------------------------------------------------------------------------
def test_eval_curve_prices_the_units_each_sample_ran(chip_run):
    out, _ = chip_run
    r = runner.invoke(app, ["eval", str(out), "--exit-threshold", "0,0.3,1", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)
    full = {row["mode"]: row for row in c["reference"]}["multi-pass"]
    zero, mid, one = c["points"]
    assert zero["mean_depth"] == 1.0 and one["mean_depth"] == 3.0
    assert one["energy_pj_per_sample"] == pytest.approx(full["energy_pj_per_sample"])
    assert zero["energy_pj_per_sample"] < mid["energy_pj_per_sample"] <= one["energy_pj_per_sample"]
    text = runner.invoke(app, ["eval", str(out), "--exit-threshold", "0.3"]).output
    assert "early exit θ=0.3" in text and "multi-pass" in text


@pytest.mark.parametrize("arg", ["-1", "abc", ",", "nan"])
def test_eval_refuses_bad_thresholds(chip_run, arg):
    out, _ = chip_run
    r = runner.invoke(app, ["eval", str(out), f"--exit-threshold={arg}"])
    assert r.exit_code == 1 and r.output.startswith("error: --exit-threshold")


def test_a_competitive_net_is_counted_as_its_one_label_free_pass(tmp_path, digits):
    # channel-wise competition infers from one pass without a label: its multi-pass
    # inference events are that pass's, not C label passes
    cfg = RunConfig.from_flat(layers=(40, 40), epochs=1).with_sets(["units.loss=cwc", "inference.head=false"]).validate()
    train(cfg, out=tmp_path / "r", data=dataclasses.replace(digits, x_train=digits.x_train[:64],
                                                            y_train=digits.y_train[:64]), progress=False)
    _, _, net = load_run(tmp_path / "r")
    x = net.prepare_input(digits.x_test[:50])
    counted, one = EventLedger(), EventLedger()
    assert count_inference(net, x, counted) == "multi-pass"
    on_unit = event_counter(one, "infer", net, head=False)
    for p in net.stream(x, None):
        on_unit(p)
    one.add_samples("infer", 50)
    assert counted.per_sample("infer") == one.per_sample("infer")
