"""`--format text|json|csv` of the commands that print tables (estimate, compare, profiles
list): the CSV read back equals the JSON report of the same command, number for number."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.hw.events import EVENT_KINDS, EventLedger
from ffneuro.runs.files import write_json

runner = CliRunner()

ENERGY = ["energy_pj", *(f"energy_pj_{k}" for k in EVENT_KINDS), "static_energy_pj", "time_ns"]
LAYER_MEMORY = ["fan_in", "fan_out", "synapses", "weight_sram_bytes", "bias_sram_bytes", "state_sram_bytes",
                "trace_sram_bytes", "optimizer_sram_bytes"]
SHARED_MEMORY = ["activation_buffer_sram_bytes", "learning_history_sram_bytes"]
TIME = ["latency_s", "samples_per_s", "power_w", "edp_pj_s"]
ESTIMATE_HEADER = ["profile", "source", "phase", "layer", *ENERGY, *LAYER_MEMORY, *SHARED_MEMORY,
                   "sram_bytes", "synaptic_sram_bytes", "cores", *TIME]
SUMMED = ["synapses", "weight_sram_bytes", "bias_sram_bytes", "state_sram_bytes", "trace_sram_bytes",
          "optimizer_sram_bytes", "synaptic_sram_bytes"]

# A profile with static power and a step time (no shipped one models them) and shared SRAM.
STATIC_PROFILE = """name = "static-test"
extends = "cmos-45nm"
[energy]
static_power_mw = { value = 2.5, source = "test figure", confidence = "assumed" }
time_per_step_ns = { value = 100.0, source = "test figure", confidence = "assumed" }
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args) -> str:
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return r.stdout


def read_csv(text: str) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(text))
    return reader.fieldnames, list(reader)


def cell(value):
    """What a JSON value reads back as from the CSV: None an empty cell, a number unrounded."""
    return "" if value is None else value


def number(text: str):
    return int(text) if text.lstrip("-").isdigit() else float(text)


def check_estimate_csv(args) -> tuple[list[str], dict]:
    """The CSV of `estimate ARGS` against its JSON: every number equal, the totals as the
    report defines them. Returns the header and the report."""
    report = json.loads(ok("estimate", *args, "--json"))
    header, rows = read_csv(ok("estimate", *args, "--format", "csv"))
    n = len(report["layer_sizes"]) - 1
    assert [(r["phase"], r["layer"]) for r in rows] == [
        (ph, str(layer)) for ph in ("training", "inference") for layer in [*range(1, n + 1), "total"]]
    assert {r["profile"] for r in rows} == {report["profile"]} and {r["source"] for r in rows} == {report["source"]}
    for ph in ("training", "inference"):
        phase = report[ph]
        *layers, total = [r for r in rows if r["phase"] == ph]
        for row, energy, memory in zip(layers, phase["layers"], report["layers"]):
            assert number(row["energy_pj"]) == energy["energy_pj"]
            for kind in EVENT_KINDS:
                assert number(row[f"energy_pj_{kind}"]) == energy["energy_pj_by_kind"][kind]
            for col in [*LAYER_MEMORY, "sram_bytes", "synaptic_sram_bytes", "cores"]:
                assert number(row[col]) == memory[col], col
            for col in SHARED_MEMORY:  # shared, not the layer's
                assert row[col] == ""
            for col in ["static_energy_pj", "time_ns", *TIME]:  # the layer's share of the phase's time
                assert row[col] == "" if energy[col] is None else number(row[col]) == energy[col], col
        # totals: what the report gives the phase; per kind the layers' sum
        assert number(total["energy_pj"]) == phase["energy_pj_per_sample"]
        assert number(total["static_energy_pj"]) == phase["static_energy_pj_per_sample"]
        assert number(total["time_ns"]) == phase["time_ns_per_sample"]
        for col in TIME:
            assert total[col] == "" if phase[col] is None else number(total[col]) == phase[col], col
        for kind in EVENT_KINDS:
            col = f"energy_pj_{kind}"
            assert number(total[col]) == phase["energy_pj_by_kind"][kind] == sum(number(r[col]) for r in layers)
        assert number(total["energy_pj"]) == pytest.approx(
            sum(number(r["energy_pj"]) for r in layers) + number(total["static_energy_pj"]), rel=1e-12)
        # memory totals: counts and bytes summed; sram_bytes is the FF total with the shared
        # buffers, cores the cores used (layers share cores)
        for col in SUMMED:
            assert number(total[col]) == sum(number(r[col]) for r in layers), col
        for col in SHARED_MEMORY:
            assert number(total[col]) == report["memory"][col]
        assert number(total["sram_bytes"]) == report["ff_sram_bytes"] == sum(
            number(r["sram_bytes"]) for r in layers) + sum(number(total[c]) for c in SHARED_MEMORY)
        assert number(total["cores"]) == report["cores_used"] <= sum(number(r["cores"]) for r in layers)
        assert total["fan_in"] == total["fan_out"] == ""
    return header, report


def test_estimate_analytic_csv_equals_the_json_report():
    header, report = check_estimate_csv(["--profile", "loihi-like", "--layers", "784,500,500"])
    assert header == ESTIMATE_HEADER
    assert report["memory"]["activation_buffer_sram_bytes"] == 0          # Loihi: no shared SRAM


def test_estimate_csv_has_static_energy_and_shared_sram_in_the_totals(tmp_path):
    profile = tmp_path / "static.toml"
    profile.write_text(STATIC_PROFILE)
    header, report = check_estimate_csv(["--profile", profile, "--layers", "20,6,4"])
    assert header == ESTIMATE_HEADER
    assert report["training"]["static_energy_pj_per_sample"] > 0 and report["memory"]["activation_buffer_sram_bytes"] > 0


def measured_run(path, profile: str = "cmos-45nm"):
    """A run dir as `estimate --run` reads it: hand-made event counts of a 12-5-3 network
    whose units keep 2 steps of learning history."""
    ledger = EventLedger()
    for phase, n, scale in (("train", 4, 3.0), ("infer", 3, 1.0)):
        for layer, width in enumerate((5, 3)):
            ledger.add(phase, layer, {"synop_dense": 37.0 * scale, "neuron_update": width * 2.0 * n,
                                      "neuron_update_active": width * 1.5 * n, "weight_read": 11.0 * scale,
                                      "weight_write": 7.0 * (phase == "train"), "goodness_op": 3.0 * n})
        ledger.add_samples(phase, n)
    resources = [{"fan_in": a, "fan_out": b, "synapses": a * b, "neurons": b, "history_steps": 2}
                 for a, b in ((12, 5), (5, 3))]
    write_json(path / "config.json", {"layer_sizes": [12, 5, 3], "num_classes": 3, "n_train": 40,
                                      "resources": resources, "profile_name": profile})
    write_json(path / "events.json", ledger.to_dict())
    return path


def test_estimate_measured_csv_equals_the_json_report_with_the_analytic_header(tmp_path):
    run = measured_run(tmp_path / "run")
    header, report = check_estimate_csv(["--profile", "cmos-45nm", "--run", run])
    assert report["source"] == "measured" and header == ESTIMATE_HEADER
    assert report["memory"]["learning_history_sram_bytes"] > 0


def test_estimate_csv_header_is_the_same_for_every_profile():
    names = [p["name"] for p in json.loads(ok("profiles", "list", "--json"))]
    for name in names:
        header, _ = read_csv(ok("estimate", "--profile", name, "--layers", "64,32,10", "--format", "csv"))
        assert header == ESTIMATE_HEADER, name


def compare_runs(tmp_path):
    """Two run dirs: one estimated with both inference modes, one float run with one mode."""
    chip, flt = tmp_path / "chip", tmp_path / "float"
    write_json(chip / "config.json", {"config": RunConfig.from_flat(layers=(8, 4)).to_dict(), "dataset": "digits",
                                      "profile_name": "loihi-like"})
    write_json(chip / "metrics.json", {"test_error": {"multi_pass": 12.5, "one_pass": 1 / 3}, "epochs": 3,
                                       "wall_s": 4.25})
    write_json(chip / "estimate.json", {"inference": {"energy_pj_per_sample": 2500.125},
                                        "training": {"energy_pj_per_sample": 7000.0625}})
    write_json(flt / "config.json", {"config": RunConfig.from_flat(layers=(16,)).to_dict(), "dataset": "digits"})
    write_json(flt / "metrics.json", {"test_error": {"one_pass": 0.1 + 0.2}, "epochs": 1, "wall_s": 0.5})
    return [chip, flt]


def test_compare_csv_is_a_row_per_run_with_empty_cells_for_missing_values(tmp_path):
    runs = compare_runs(tmp_path)
    table = json.loads(ok("compare", *runs, "--json"))["runs"]
    header, rows = read_csv(ok("compare", *runs, "--format", "csv"))
    assert header == ["run", "algo", "schedule", "layers", "dataset", "profile", "epochs", "wall_s",
                      "test_error_pct_multi_pass", "test_error_pct_one_pass", "inference_energy_pj",
                      "training_energy_pj"]
    assert [r["layers"] for r in rows] == ["8x4", "16"]
    for row, run in zip(rows, table):
        for col in ("run", "algo", "schedule", "dataset", "profile"):
            assert row[col] == cell(run[col])
        for col in ("epochs", "wall_s", "inference_energy_pj", "training_energy_pj"):
            assert row[col] == "" if run[col] is None else number(row[col]) == run[col]
        for mode in ("multi_pass", "one_pass"):
            got = row[f"test_error_pct_{mode}"]
            assert got == "" if mode not in run["test_error"] else number(got) == run["test_error"][mode]
    assert rows[1]["profile"] == rows[1]["inference_energy_pj"] == rows[1]["test_error_pct_multi_pass"] == ""
    assert rows[1]["test_error_pct_one_pass"] == "0.30000000000000004"                 # full precision


def test_profiles_list_csv_has_the_columns_of_the_json_rows():
    profiles = json.loads(ok("profiles", "list", "--json"))
    header, rows = read_csv(ok("profiles", "list", "--format", "csv"))
    assert header == list(profiles[0])
    assert len(rows) == len(profiles)
    for row, p in zip(rows, profiles):
        assert {k: number(v) if isinstance(p[k], int) else v for k, v in row.items()} == p


@pytest.mark.parametrize("args", [["profiles", "list"], ["estimate", "--profile", "loihi-like", "--layers", "20,8"],
                                  ["compare", "RUNS"]])
def test_json_flag_is_format_json_and_text_is_the_default(tmp_path, args):
    if args == ["compare", "RUNS"]:
        args = ["compare", *compare_runs(tmp_path)]
    assert ok(*args, "--json") == ok(*args, "--format", "json")
    assert ok(*args) == ok(*args, "--format", "text")
    json.loads(ok(*args, "--json"))


@pytest.mark.parametrize("args", [["profiles", "list"], ["estimate", "--profile", "loihi-like", "--layers", "20,8"],
                                  ["compare", "RUNS"]])
@pytest.mark.parametrize("fmt,extra,needle", [("xml", [], "--format 'xml'"), ("CSV", [], "--format 'CSV'"),
                                              ("csv", ["--json"], "--json")])
def test_bad_format_is_one_error_line_before_anything_runs(tmp_path, args, fmt, extra, needle):
    if args == ["compare", "RUNS"]:
        args = ["compare", *compare_runs(tmp_path)]
    plot = tmp_path / "p.png"
    plotting = ["--plot", plot] if args[0] in ("estimate", "compare") else []
    r = invoke(*args, *plotting, "--format", fmt, *extra)
    assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    assert needle in r.output
    assert not plot.exists()
