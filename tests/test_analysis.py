"""Analysis: layer collaboration, the functional-entropy log, reports, comparison, baselines."""

import json

import pytest
import torch
from typer.testing import CliRunner

from ffneuro.analysis import (collaboration_table, entropy_record, finding, marginal_contributions,
                              probe_goodness, probe_indices)
from ffneuro.cli import app
from ffneuro.config import TrainConfig
from ffneuro.data import load_dataset
from ffneuro.encoding import random_wrong_labels
from ffneuro.goodness import entropy_decomposition
from ffneuro.trainer import load_run, train

runner = CliRunner()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "ff"
    train(TrainConfig(layers=(32, 32, 32), epochs=2, entropy_probe=120).validate(), out=out, data=digits,
          progress=False)
    return out


def test_marginal_contributions_and_finding_hand_computed():
    assert marginal_contributions([4.87, 4.75, 3.27]) == [None, pytest.approx(0.12), pytest.approx(1.48)]
    ff = collaboration_table({"per_layer_error": [2.31, 2.45, 2.88], "cumulative_error": [2.31, 1.92, 1.97]})
    assert [r["marginal"] for r in ff] == [None, pytest.approx(0.39), pytest.approx(-0.05)]
    assert finding(ff).startswith("Layer 1 is the best layer alone") and "mixed" in finding(ff)
    cff = collaboration_table({"per_layer_error": [4.9, 16.7, 90.2], "cumulative_error": [4.9, 4.75, 3.27]})
    assert "all positive" in finding(cff)


def test_entropy_log_matches_a_recomputation_on_the_same_probe(run, digits):
    metrics = json.loads((run / "metrics.json").read_text())
    logged = metrics["history"][-1]["entropy"]
    cfg, _, net = load_run(run)
    idx = probe_indices(digits.x_test.shape[0], 120, cfg.seed)
    x, y = net.prepare_input(digits.x_test[idx]), digits.y_test[idx]
    y_neg = random_wrong_labels(y, 10, torch.Generator().manual_seed(cfg.seed))
    assert bool((y_neg != y).all())
    g_pos, g_neg = probe_goodness(net, x, y, y_neg)
    assert g_pos.shape == (120, 3)
    want = entropy_record(g_pos, g_neg)
    for kind in ("positive", "negative", "both"):
        for part in ("total", "across", "within"):
            assert logged[kind][part] == pytest.approx(want[kind][part], rel=1e-6)
        assert logged[kind]["total"] == pytest.approx(logged[kind]["across"] + logged[kind]["within"], rel=1e-9)
    assert want["positive"] == entropy_decomposition(g_pos.double())
    assert all("entropy" in r for r in metrics["history"])


def test_entropy_log_can_be_turned_off(digits):
    m = train(TrainConfig(layers=(16,), epochs=1, entropy_probe=0).validate(), data=digits, progress=False)
    assert "entropy" not in m["history"][0]


def test_analyze_writes_plots_and_self_contained_reports(run, tmp_path):
    out = tmp_path / "a"
    r = runner.invoke(app, ["analyze", str(run), "--out", str(out), "--probe", "200", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [row["layer"] for row in rep["collaboration"]] == [1, 2, 3]
    for name in ("training_curves.png", "collaboration.png", "entropy.png", "goodness_hist.png", "report.md"):
        assert (out / name).stat().st_size > 500
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "Layer collaboration" in html


def test_compare_lines_up_ff_and_baselines(run, tmp_path, digits):
    bp = tmp_path / "bp"
    m = train(TrainConfig(algo="bp", layers=(64, 64), epochs=10).validate(), out=bp, data=digits, progress=False)
    assert m["test_error"]["bp"] < 10.0
    r = runner.invoke(app, ["compare", str(run), str(bp), "--plot", str(tmp_path / "c.png"), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["runs"]
    assert [row["algo"] for row in rows] == ["ff", "bp"] and rows[1]["test_error"]["bp"] == pytest.approx(
        m["test_error"]["bp"])
    assert (tmp_path / "c.png").stat().st_size > 500


def test_pairwise_baseline_learns_the_digits(digits):
    m = train(TrainConfig(algo="bp-pairwise", layers=(64, 64), epochs=10).validate(), data=digits, progress=False)
    assert m["test_error"]["bp-pairwise"] < 10.0


@pytest.mark.parametrize("cmd", ["analyze", "compare"])
def test_bad_run_dir_is_one_error_line(tmp_path, cmd):
    r = runner.invoke(app, [cmd, str(tmp_path / "missing")])
    assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1
