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
    r = invoke("train", "--out", out, "--resume", "--epochs", "5", "--temperature", "3", "--no-progress")
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "drop --epochs, --temperature" in r.output and "Traceback" not in r.output
    r = invoke("train", "--out", out, "--resume", "--preset", "hinton", "--profile", "loihi-like", "--no-progress")
    assert r.exit_code == 1 and "drop --preset, --profile" in r.output


@pytest.mark.parametrize("args,needle", [
    (["train", "--data", "mnist:/nonexistent/dir"], "/nonexistent/dir"),
    (["train", "--data", "imagenet"], "imagenet"),
    (["train", "--layers", "500,x"], "--layers"),
    (["train", "--algo", "backprop"], "algo"),
    (["train", "--preset", "nope"], "nope"),
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
