"""The CLI through Typer's CliRunner: happy paths, --json, and one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from ffneuro.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_json_and_eval(tmp_path):
    out = tmp_path / "run"
    r = invoke("train", "--layers", "64,64", "--epochs", "2", "--out", out, "--json", "--no-progress")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert set(m["test_error"]) == {"multi_pass", "one_pass"} and m["epochs"] == 2
    r = invoke("eval", out, "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["test_error"] == m["test_error"]          # checkpoint reproduces the run exactly
    assert again["per_layer_error"] == m["per_layer_error"]
    # a second train into the same dir is refused; --resume of a finished run changes nothing
    r = invoke("train", "--out", out, "--no-progress")
    assert r.exit_code == 1 and "already holds a run" in r.output
    r = invoke("train", "--out", out, "--resume", "--json", "--no-progress")
    assert r.exit_code == 0 and json.loads(r.stdout)["test_error"] == m["test_error"]
    # options equal to the saved run pass; one that would change it is refused, not ignored
    r = invoke("train", "--out", out, "--resume", "--epochs", "2", "--layers", "64,64", "--json", "--no-progress")
    assert r.exit_code == 0 and json.loads(r.stdout)["epochs"] == 2
    r = invoke("train", "--out", out, "--resume", "--epochs", "5", "--set", "units.temperature=3", "--no-progress")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "Traceback" not in r.output
    assert "loop.epochs (--epochs)" in r.output and "units.temperature (--set units.temperature)" in r.output
    r = invoke("train", "--out", out, "--resume", "--preset", "hinton", "--profile", "loihi-like", "--no-progress")
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "units.layers (--preset hinton)" in r.output and "hardware.profile (--profile)" in r.output


@pytest.mark.parametrize("args,needle", [
    (["train", "--data", "mnist:/nonexistent/dir"], "/nonexistent/dir"),
    (["train", "--data", "imagenet"], "imagenet"),
    (["train", "--layers", "500,x"], "--layers"),
    (["train", "--set", "loop.algo=backprop"], "loop.algo"),
    (["train", "--preset", "nope"], "nope"),
    (["train", "--set", "optim.lrr=1"], "optim.lrr"),
    (["train", "--set", "nosection.lr=1"], "nosection"),
    (["train", "--set", "optim.lr=fast"], "optim.lr"),
    (["train", "--set", "lr=1"], "SECTION.KEY=VALUE"),
    (["train", "--config", "/nonexistent/run.toml"], "/nonexistent/run.toml"),
    (["train", "--resume"], "--out"),
    (["train", "--resume", "--out", "/nonexistent/run"], "/nonexistent/run"),
    (["train", "--augment-shift", "20"], "--set data.augment_shift=20"),   # per-field flags of old: a hint
    (["train", "--no-head"], "--set inference.head=false"),
    (["train", "--epoch", "3"], "no such option --epoch"),
    (["eval", "/nonexistent/run"], "/nonexistent/run"),
    (["profiles", "show", "no-such-chip"], "no-such-chip"),
    (["estimate", "--profile", "loihi-like"], "--run"),
    (["estimate", "--profile", "loihi-like", "--layers", "784"], "--layers"),
])
def test_bad_input_is_one_line_error(args, needle):
    r = invoke(*args)
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    err_lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and needle in err_lines[0], r.output


def test_profiles_commands(tmp_path):
    r = invoke("profiles", "list")
    assert r.exit_code == 0 and "loihi-like" in r.output and "float32" in r.output
    r = invoke("profiles", "show", "loihi-like", "--json")
    d = json.loads(r.stdout)
    assert d["memory"]["cores"] == 128 and d["sources"]["energy.synop_dense_pj"]["source"]
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nextends = "loihi-like"\n[precision]\nweight_bits = { value = 0, '
                   'source = "x", confidence = "assumed" }\n')
    r = invoke("profiles", "validate", bad)
    assert r.exit_code == 1 and "weight_bits" in r.output and "bad.toml" in r.output
    good = tmp_path / "good.toml"
    good.write_text('name = "good"\nextends = "loihi-like"\n')
    assert invoke("profiles", "validate", good).exit_code == 0


def test_estimate_analytic_json_and_plot(tmp_path):
    png = tmp_path / "e.png"
    r = invoke("estimate", "--profile", "loihi-like", "--layers", "784,500,500", "--json", "--plot", png)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["inference"]["energy_pj_per_sample"] > 0 and rep["training"]["energy_pj_per_sample"] > 0
    assert [layer["sram_bytes"] > 0 for layer in rep["layers"]] == [True, True]
    assert "cores_used" in rep and "fits" in rep
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_under_profile_records_profile_and_estimate(tmp_path):
    out = tmp_path / "chip"
    r = invoke("train", "--profile", "cmos-45nm", "--layers", "32", "--epochs", "1", "--out", out,
               "--json", "--no-progress")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["profile"] == "cmos-45nm" and m["batch_size_applied"] == 16
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["profile_name"] == "cmos-45nm" and cfg["profile"]["precision"]["weight_bits"] == 8
    est = json.loads((out / "estimate.json").read_text())
    assert est["source"] == "measured" and est["training"]["energy_pj_per_sample"] > 0
    r = invoke("estimate", "--profile", "cmos-45nm", "--run", out, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["training"]["energy_pj_per_sample"] == pytest.approx(
        est["training"]["energy_pj_per_sample"])


def test_budget_check_stops_with_table(tmp_path):
    r = invoke("train", "--profile", "cortex-m7-int8", "--layers", "2000,2000", "--epochs", "1", "--no-progress")
    assert r.exit_code == 1
    assert "does not fit" in r.output and "SRAM per layer" in r.output and "Traceback" not in r.output


def test_set_and_config_file_reach_config_json(tmp_path):
    """Precedence on a real run: preset < --config file < everyday flags < --set (in order)."""
    run_toml = tmp_path / "run.toml"
    run_toml.write_text('preset = "hinton"\n[units]\nlayers = [48, 48]\ntemperature = 2.0\n'
                        '[optim]\nlr = 0.01\n[loop]\nepochs = 9\nbatch_size = 64\n')
    out = tmp_path / "run"
    r = invoke("train", "--config", run_toml, "--layers", "32", "--epochs", "1", "--set", "optim.lr=0.02",
               "--set", "units.temperature=4", "--set", "units.temperature=3", "--set", "loop.entropy_probe=0",
               "--out", out, "--json", "--no-progress")
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["units"]["layers"] == [32]                    # --layers beats the file
    assert saved["loop"]["epochs"] == 1 and saved["loop"]["batch_size"] == 64   # flag beats file; file kept
    assert saved["optim"]["lr"] == 0.02                        # --set beats the file
    assert saved["units"]["temperature"] == 3.0                # the last --set wins
    assert saved["units"]["peer_norm"] == 0.03 and saved["optim"]["optimizer"] == "sgd"   # the file's preset
    assert saved["hardware"] == {"profile": None, "onchip_lr": 0.25, "batch_rule": "sqrt", "shadow_bits": 0,
                                 "simulate_anyway": False}
    assert json.loads(r.stdout)["epochs"] == 1
    # resume: equal values pass (also through the same --config), a changed --set is refused naming the key
    r = invoke("train", "--out", out, "--resume", "--config", run_toml, "--layers", "32", "--epochs", "1",
               "--set", "optim.lr=0.02", "--set", "units.temperature=3", "--set", "loop.entropy_probe=0",
               "--no-progress", "--json")
    assert r.exit_code == 0, r.output
    r = invoke("train", "--out", out, "--resume", "--set", "optim.lr=0.03", "--no-progress")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "optim.lr (--set optim.lr)" in r.output
    r = invoke("train", "--out", out, "--resume", "--config", run_toml, "--no-progress")
    assert r.exit_code == 1 and "--config" in r.output and "units.layers" in r.output


def test_print_config(tmp_path):
    from ffneuro.config import RunConfig

    r = invoke("train", "--preset", "cff-paper-cff", "--layers", "64,64", "--set", "inference.layers=1,2",
               "--set", "units.theta=3.5", "--print-config")
    assert r.exit_code == 0, r.output
    assert "[units]" in r.stdout and "layers = [64, 64]" in r.stdout and "# label_scale is unset" in r.stdout
    (tmp_path / "run.toml").write_text(r.stdout)
    cfg = RunConfig.from_toml(tmp_path / "run.toml")
    assert cfg.units.layers == (64, 64) and cfg.inference.layers == (1, 2) and cfg.loop.algo == "cff"
    assert cfg.units.theta == 3.5 and cfg.units.temperature == 100.0
    r = invoke("train", "--config", tmp_path / "run.toml", "--print-config", "--json")
    assert r.exit_code == 0, r.output
    assert RunConfig.from_dict(json.loads(r.stdout)) == cfg
    assert not list(tmp_path.glob("*/config.json"))            # nothing was trained


def test_train_help_lists_every_option():
    from dataclasses import fields

    from ffneuro.config.sections import SECTIONS

    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert r.exit_code == 0
    for sec, cls in SECTIONS.items():
        for f in fields(cls):
            assert f"{sec}.{f.name} = " in r.output, f"{sec}.{f.name} missing from train --help"
    assert "units.neuron = relu   (one of relu, lif)" in r.output
    assert "--print-config" in r.output and "--set" in r.output and "--temperature" not in r.output


def test_train_prints_a_backprop_baselines_report(tmp_path):
    # a baseline records its parameter count as one number, not per unit
    r = runner.invoke(app, ["train", "--set", "loop.algo=bp", "--layers", "20", "--epochs", "1", "--no-progress",
                            "--out", str(tmp_path / "bp")])
    assert r.exit_code == 0, r.output
    assert "trainable parameters" in r.output and "test error bp" in r.output
