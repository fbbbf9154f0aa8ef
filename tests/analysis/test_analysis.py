"""Analysis: layer collaboration, the functional-entropy log, reports, comparison, baselines."""

import json
import math

import pytest
import torch

from ffneuro import rng
from typer.testing import CliRunner

from ffneuro.train.probe import entropy_record, probe_goodness, probe_indices, silent_fraction
from ffneuro.analysis.report import collaboration_table, entropy_rows, finding, marginal_contributions
from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.functional.encoding import random_wrong_labels
from ffneuro.functional.goodness import entropy_decomposition
from ffneuro.network import FFNetwork
from ffneuro.runs.files import write_json
from ffneuro.runs.load import load_run
from ffneuro.train.loop import train

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "ff"
    train(RunConfig.from_flat(layers=(32, 32, 32), epochs=2, entropy_probe=120).validate(), out=out, data=digits,
          progress=False)
    return out


def test_marginal_contributions_and_finding_hand_computed():
    assert marginal_contributions([4.87, 4.75, 3.27]) == [None, pytest.approx(0.12), pytest.approx(1.48)]
    ff = collaboration_table({"per_layer_error": [2.31, 2.45, 2.88], "cumulative_error": [2.31, 1.92, 1.97]})
    assert [r["marginal"] for r in ff] == [None, pytest.approx(0.39), pytest.approx(-0.05)]
    assert finding(ff).startswith("Layer 1 is the best layer alone") and "mixed" in finding(ff)
    cff = collaboration_table({"per_layer_error": [4.9, 16.7, 90.2], "cumulative_error": [4.9, 4.75, 3.27]})
    assert "all positive" in finding(cff)


def test_entropy_record_hand_computed():
    ln2, ln3 = math.log(2), math.log(3)
    e = entropy_record(torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 1.0]]))
    # positive: h ∈ {1, 3}: E[h log h] − E[h] log E[h] = 3 ln3 / 2 − 2 ln 2, all of it across layers
    assert e["positive"]["total"] == pytest.approx(1.5 * ln3 - 2 * ln2)
    assert e["positive"]["across"] == pytest.approx(1.5 * ln3 - 2 * ln2) and e["positive"]["within"] == pytest.approx(0)
    assert e["negative"] == {"total": 0.0, "across": 0.0, "within": 0.0, "mean": 1.0}
    # both: layer 1 {1, 1}, layer 2 {3, 1}; across = Ent of the layer means (1, 2), within = Ent{3, 1} / 2
    assert e["both"]["across"] == pytest.approx(ln2 - 1.5 * math.log(1.5))
    assert e["both"]["within"] == pytest.approx((1.5 * ln3 - 2 * ln2) / 2)
    assert e["both"]["mean"] == pytest.approx(1.5)
    # negative goodness (neg-sumsq) is shifted by its minimum: {-3, -1} -> {0, 2}
    assert entropy_record(torch.tensor([[-3.0, -1.0]]), torch.tensor([[0.0, 0.0]]))["positive"]["total"] == \
        pytest.approx(ln2)


def test_entropy_rows_keep_first_and_last():
    hist = [{"epoch": e} for e in range(1, 51)]
    rows = entropy_rows(hist, max_rows=5)
    assert [r["epoch"] for r in rows] == [1, 13, 25, 38, 50]   # 1 + round(k · 49 / 4), half to even
    assert entropy_rows(hist[:3]) == hist[:3]


def test_entropy_log_matches_a_recomputation_on_the_same_probe(run, digits):
    metrics = json.loads((run / "metrics.json").read_text())
    logged = metrics["history"][-1]["entropy"]
    cfg, _, net = load_run(run)
    g = rng.generator(cfg.loop.seed, 'probe')
    idx = probe_indices(digits.x_test.shape[0], 120, g)
    x, y = net.prepare_input(digits.x_test[idx]), digits.y_test[idx]
    y_neg = random_wrong_labels(y, 10, g)
    assert bool((y_neg != y).all())
    g_pos, g_neg, silent = probe_goodness(net, x, y, y_neg)
    assert g_pos.shape == (120, 3)
    assert metrics["history"][-1]["silent_units"] == silent
    want = entropy_record(g_pos, g_neg)
    for kind in ("positive", "negative", "both"):
        for part in ("total", "across", "within"):
            assert logged[kind][part] == pytest.approx(want[kind][part], rel=1e-6)
        assert logged[kind]["total"] == pytest.approx(logged[kind]["across"] + logged[kind]["within"], rel=1e-9)
    assert want["positive"] == {**entropy_decomposition(g_pos.double()), "mean": pytest.approx(float(g_pos.mean()))}
    assert all("entropy" in r for r in metrics["history"])


def test_silent_fraction_counts_units_zero_on_every_input():
    h = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    assert silent_fraction(h) == 0.5
    assert silent_fraction(h.unsqueeze(0).repeat(3, 1, 1)) == 0.5        # spike trains (T, N, units)
    assert silent_fraction(torch.zeros(5, 7)) == 1.0


def test_a_killed_layer_is_reported_silent(digits):
    net = FFNetwork.from_config(RunConfig.from_flat(layers=(16, 8)).validate(), digits.x_train.shape[1], 10, "concat", 0.0, 1.0,
                    generators=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.layers[1].bias.fill_(-1e6)                                   # every pre-activation < 0
    x = net.prepare_input(digits.x_test[:50])
    y = digits.y_test[:50]
    _, g_neg, silent = probe_goodness(net, x, y, (y + 1) % 10)
    assert silent[1] == 1.0 and silent[0] < 1.0
    assert float(g_neg[:, 1].abs().max()) == 0.0


def test_entropy_log_can_be_turned_off(digits):
    m = train(RunConfig.from_flat(layers=(16,), epochs=1, entropy_probe=0).validate(), data=digits, progress=False)
    assert "entropy" not in m["history"][0]


@pytest.mark.slow
def test_analyze_writes_plots_and_self_contained_reports(run, tmp_path):
    out = tmp_path / "a"
    r = runner.invoke(app, ["analyze", str(run), "--out", str(out), "--probe", "200", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [row["layer"] for row in rep["collaboration"]] == [1, 2, 3]
    for name in ("training_curves.png", "collaboration.png", "entropy.png", "goodness_hist.png", "silent_units.png",
                 "report.md"):
        assert (out / name).stat().st_size > 500
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "Layer collaboration" in html
    assert len(rep["silent_units"]) == 3 and "Silent units" in html
    md = (out / "report.md").read_text()
    logged = json.loads((run / "metrics.json").read_text())["history"]
    for r in logged:            # the entropy log, one row per epoch: total (across + within) per kind
        e = r["entropy"]["both"]
        assert f"| {r['epoch']} | " in md and f"{e['total']:.4g} ({e['across']:.3g} + {e['within']:.3g}) |" in md


def test_compare_lines_up_ff_and_baselines(run, tmp_path, digits):
    bp = tmp_path / "bp"
    m = train(RunConfig.from_flat(algo="bp", layers=(64, 64), epochs=10).validate(), out=bp, data=digits, progress=False)
    assert m["test_error"]["bp"] < 10.0
    r = runner.invoke(app, ["compare", str(run), str(bp), "--plot", str(tmp_path / "c.png"), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["runs"]
    assert [row["algo"] for row in rows] == ["ff", "bp"] and rows[1]["test_error"]["bp"] == pytest.approx(
        m["test_error"]["bp"])
    assert (tmp_path / "c.png").stat().st_size > 500
    r = runner.invoke(app, ["train", "--resume", "--out", str(bp)])      # a baseline has no resumable state
    assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1


def test_compare_reads_energy_from_estimate_json(tmp_path):
    run = tmp_path / "chip"
    cfg = RunConfig.from_flat(layers=(8, 4)).to_dict()
    write_json(run / "config.json", {"config": cfg, "dataset": "digits", "profile_name": "loihi-like"})
    write_json(run / "metrics.json", {"test_error": {"multi_pass": 12.5}, "epochs": 3, "wall_s": 4.0})
    write_json(run / "estimate.json", {"inference": {"energy_pj_per_sample": 2500.0},
                                       "training": {"energy_pj_per_sample": 7000.0}})
    r = runner.invoke(app, ["compare", str(run), "--out", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[-4:] == ["infer", "nJ", "train", "nJ"] and "layers" in header
    assert row.split()[:7] == ["chip", "ff", "network", "8x4", "digits", "3", "4.0"]
    assert row.split()[-3:] == ["12.50", "2.5", "7.0"]            # error %, inference nJ, training nJ
    assert (tmp_path / "c.png").stat().st_size > 500


def test_pairwise_baseline_learns_the_digits(digits):
    m = train(RunConfig.from_flat(algo="bp-pairwise", layers=(64, 64), epochs=10).validate(), data=digits, progress=False)
    assert m["test_error"]["bp-pairwise"] < 10.0


@pytest.mark.parametrize("cmd", ["analyze", "compare"])
def test_bad_run_dir_is_one_error_line(tmp_path, cmd):
    r = runner.invoke(app, [cmd, str(tmp_path / "missing")])
    assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1
