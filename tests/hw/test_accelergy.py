"""Accelergy interchange: action counts and ERT written by `estimate --format accelergy`,
an ERT read back through a profile's `energy_from`, and Accelergy's own convention
(component energy = Σ counts × ERT energy) checked against ffneuro's figures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.hw.accelergy import (ACTION_FIELDS, COUNTS_FILE, ENERGY_FILE, ERT_FILE, action_counts_doc, ert_doc,
                                  read_ert)
from ffneuro.hw.energy import ENERGY_FIELDS, estimate, event_energies_pj
from ffneuro.hw.estimate import estimate_from_layers
from ffneuro.hw.events import EVENT_KINDS, EventLedger
from ffneuro.hw.profiles import USER_CONFIDENCE, Energy, load_profile
from ffneuro.runs.files import write_json

runner = CliRunner()



def profile_toml(name: str, extends: str, *, energy_from: str | None = None, section: str | None = None,
                 **leaves) -> str:
    """A profile file extending ``extends``, with ``leaves`` in ``[section]`` cited to this test."""
    lines = [f'name = "{name}"', f'extends = "{extends}"']
    lines += [f'energy_from = "{energy_from}"'] if energy_from is not None else []
    lines += [f"[{section}]"] if section else []
    lines += [f'{k} = {{ value = {json.dumps(v)}, source = "test figure", confidence = "assumed" }}'
              for k, v in leaves.items()]
    return "\n".join(lines) + "\n"


BITS_PROFILE = profile_toml("bits", "cmos-45nm", section="energy_model", model="bit-scaled")
# Static power and a tick, so the phase totals hold static energy the ERT does not.
STATIC_PROFILE = profile_toml("static", "loihi-like", section="energy", static_power_mw=2.5, time_per_step_ns=100.0)


def cli(*args, code: int = 0):
    """``ffneuro ARGS`` through Typer's runner; the exit code must be ``code``."""
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, r.output
    return r


def ok(*args) -> str:
    return cli(*args).stdout


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def accelergy_energy_pj(counts: dict, ert: dict) -> dict[str, float]:
    """What Accelergy computes from the two files: per component Σ counts × the energy of
    the same action in the component's table."""
    tables = {t["name"]: {a["name"]: a["energy"] for a in t["actions"]} for t in ert["ERT"]["tables"]}
    return {c["name"]: sum(a["counts"] * tables[c["name"]][a["name"]] for a in c["action_counts"])
            for c in counts["action_counts"]["local"]}


def measured_run(path: Path) -> Path:
    """A run dir as `estimate --run` reads it: hand-made counts of a 12-5-3 network, some
    neuron updates idle (so both neuron_update actions have counts), spikes routed."""
    ledger = EventLedger()
    for phase, n, scale in (("train", 4, 3.0), ("infer", 3, 1.0)):
        for layer, width in enumerate((5, 3)):
            ledger.add(phase, layer, {"synop_dense": 37.0 * scale, "synop_sparse": 5.0 * scale,
                                      "neuron_update": width * 2.0 * n, "neuron_update_active": width * 1.5 * n,
                                      "weight_read": 11.0 * scale, "weight_write": 7.0 * (phase == "train"),
                                      "learning_update": 9.0 * (phase == "train"), "state_access": 13.0 * scale,
                                      "goodness_op": 3.0 * n, "spike_route": 2.0 * scale})
        ledger.add_samples(phase, n)
    write_json(path / "config.json", {"layer_sizes": [12, 5, 3], "num_classes": 3, "n_train": 40})
    write_json(path / "events.json", ledger.to_dict())
    return path


def energies(report: dict) -> list[float]:
    """Every energy figure of a report: per phase the totals, per layer and kind."""
    out = []
    for ph in ("training", "inference"):
        r = report[ph]
        out += [r["energy_pj_per_sample"], r["dynamic_energy_pj_per_sample"], r["static_energy_pj_per_sample"]]
        out += [layer["energy_pj_by_kind"][k] for layer in r["layers"] for k in EVENT_KINDS]
    return out


# ----------------------------------------------------------------------------- hand-computed


HAND_ENERGY = Energy(synop_dense_pj=1.0, synop_sparse_pj=0.5, neuron_update_active_pj=10.0,
                     neuron_update_idle_pj=4.0, weight_read_pj=2.0, weight_write_pj=100.0, learning_update_pj=3.0,
                     state_access_pj=5.0, goodness_op_pj=0.25, spike_route_pj=7.0, static_power_mw=0.0,
                     time_per_step_ns=0.0)


def hand_report() -> dict:
    """A 5-4-2 network with hand-picked counts per sample, priced by HAND_ENERGY."""
    profile = dataclasses.replace(load_profile("cmos-45nm"), name="hand", energy=HAND_ENERGY)
    events = {
        "train": [{"synop_dense": 6.0, "weight_read": 6.0, "neuron_update": 4.0, "neuron_update_active": 3.0,
                   "goodness_op": 4.0, "learning_update": 2.0, "weight_write": 1.0, "state_access": 5.0},
                  {"synop_sparse": 8.0, "spike_route": 2.0, "neuron_update": 2.0, "neuron_update_active": 2.0}],
        "infer": [{"synop_dense": 3.0, "weight_read": 3.0, "neuron_update": 4.0, "neuron_update_active": 0.0},
                  {"neuron_update": 2.0, "neuron_update_active": 1.0}],
    }
    return estimate(profile, layer_sizes=[5, 4, 2], events=events, num_classes=2, source="analytic")


def test_hand_counted_action_counts_and_ert_give_the_hand_computed_energy():
    report = hand_report()
    counts = {c["name"]: {a["name"]: a["counts"] for a in c["action_counts"]}
              for c in action_counts_doc(report)["action_counts"]["local"]}
    assert list(counts) == ["ffneuro.training.layer1", "ffneuro.training.layer2",
                            "ffneuro.inference.layer1", "ffneuro.inference.layer2"]
    # 4 neuron updates, 3 of them active: 3 active, 1 idle; every action listed, zeros kept
    assert counts["ffneuro.training.layer1"] == {
        "synop_dense": 6.0, "synop_sparse": 0.0, "neuron_update_active": 3.0, "neuron_update_idle": 1.0,
        "weight_read": 6.0, "weight_write": 1.0, "learning_update": 2.0, "state_access": 5.0, "goodness_op": 4.0,
        "spike_route": 0.0}
    assert counts["ffneuro.inference.layer1"]["neuron_update_idle"] == 4.0
    tables = ert_doc(report)["ERT"]["tables"]
    assert [t["name"] for t in tables] == list(counts)
    for t in tables:                                   # every table the profile's energies, one per action
        assert {a["name"]: a["energy"] for a in t["actions"]} == {
            a: getattr(HAND_ENERGY, f) for a, f in ACTION_FIELDS.items()}
        assert all(a["arguments"] is None for a in t["actions"])
    got = accelergy_energy_pj(action_counts_doc(report), ert_doc(report))
    # training L1: 6×1 + 3×10 + 1×4 + 6×2 + 1×100 + 2×3 + 5×5 + 4×0.25 = 184
    # training L2: 8×0.5 + 2×10 + 2×7 = 38; inference L1: 3×1 + 4×4 + 3×2 = 25; L2: 10 + 4 = 14
    assert got == {"ffneuro.training.layer1": 184.0, "ffneuro.training.layer2": 38.0,
                   "ffneuro.inference.layer1": 25.0, "ffneuro.inference.layer2": 14.0}
    assert report["training"]["dynamic_energy_pj_per_sample"] == 184.0 + 38.0
    assert report["inference"]["dynamic_energy_pj_per_sample"] == 25.0 + 14.0


# ----------------------------------------------------------------------------- round trip


def round_trip(tmp_path: Path, profile: str, estimate_args: list) -> tuple[dict, dict, Path]:
    """`estimate --format accelergy` with ``profile``, then the same estimate with a profile
    that extends it and takes its energies from the ERT written. Returns both reports
    and the profile file."""
    out = tmp_path / "acc"
    line = ok("estimate", "--profile", profile, *estimate_args, "--format", "accelergy", "-o", out)
    assert line.startswith(f"wrote {out / COUNTS_FILE}, {out / ERT_FILE}, {out / ENERGY_FILE}: ")
    child = tmp_path / "from-ert.toml"
    child.write_text(profile_toml("from-ert", profile, energy_from=f"acc/{ERT_FILE}"))
    original = json.loads(ok("estimate", "--profile", profile, *estimate_args, "--json"))
    again = json.loads(ok("estimate", "--profile", child, *estimate_args, "--json"))
    return original, again, child


@pytest.mark.parametrize("model", ["table", "bit-scaled"])
def test_an_ert_written_and_read_back_reproduces_the_energy_to_the_digit(tmp_path, model):
    if model == "table":
        profile = "loihi-like"
    else:
        profile = str(tmp_path / "bits.toml")
        Path(profile).write_text(BITS_PROFILE)
    run = measured_run(tmp_path / "run")
    original, again, child = round_trip(tmp_path, profile, ["--run", run])
    assert original["energy_model"] == model and again["energy_model"] == "table"
    assert energies(again) == energies(original)                 # every figure equal, not approximately
    assert again["energy_table_pj"] == original["energy_table_pj"]
    loaded = load_profile(str(child))
    for action, field in ACTION_FIELDS.items():
        src = loaded.sources[f"energy.{field}"]
        assert src.confidence == USER_CONFIDENCE and "ERT" in src.source and action in src.source
    assert loaded.sources["energy_model.model"].confidence == USER_CONFIDENCE
    if model == "bit-scaled":        # the ERT holds the bit-scaled figures, not cmos-45nm's table
        bits = load_profile(profile)
        assert loaded.energy.synop_dense_pj == event_energies_pj(bits)["synop_dense_pj"] != bits.energy.synop_dense_pj


def test_analytic_round_trip_with_static_energy(tmp_path):
    profile = tmp_path / "static.toml"
    profile.write_text(STATIC_PROFILE)
    original, again, _ = round_trip(tmp_path, str(profile), ["--layers", "40,16,8"])
    assert original["training"]["static_energy_pj_per_sample"] > 0
    assert energies(again) == energies(original)


# ----------------------------------------------------------------------------- Accelergy's convention


@pytest.mark.parametrize("profile", ["loihi-like", "cmos-45nm", "STATIC"])
def test_sum_of_counts_times_ert_energy_reproduces_ffneuro_energy(tmp_path, profile):
    if profile == "STATIC":
        profile = tmp_path / "static.toml"
        profile.write_text(STATIC_PROFILE)
    run = measured_run(tmp_path / "run")
    out = tmp_path / "acc"
    ok("estimate", "--profile", profile, "--run", run, "--format", "accelergy", "-o", out)
    report = json.loads(ok("estimate", "--profile", profile, "--run", run, "--json"))
    counts, ert, mine = load_yaml(out / COUNTS_FILE), load_yaml(out / ERT_FILE), load_yaml(out / ENERGY_FILE)
    assert counts["action_counts"]["version"] == ert["ERT"]["version"] == 0.3
    by_component = accelergy_energy_pj(counts, ert)
    summary = mine["ffneuro_energy"]
    assert summary["unit"] == "pJ" and summary["per"] == "sample" and summary["profile"] == report["profile"]
    assert [c["name"] for c in summary["components"]] == list(by_component)
    for c in summary["components"]:
        # the same products, summed in Accelergy's order (neuron updates as two actions)
        assert by_component[c["name"]] == pytest.approx(c["energy"], rel=1e-12, abs=1e-9)
    for phase in summary["phases"]:
        ph = report[phase["name"]]
        layers = [by_component[f"ffneuro.{phase['name']}.layer{i}"] for i in (1, 2)]
        assert [layer["energy_pj"] for layer in ph["layers"]] == [
            c["energy"] for c in summary["components"] if c["name"].startswith(f"ffneuro.{phase['name']}.")]
        assert phase["dynamic_energy_pj"] == ph["dynamic_energy_pj_per_sample"]
        assert phase["static_energy_pj"] == ph["static_energy_pj_per_sample"]
        assert phase["energy_pj"] == ph["energy_pj_per_sample"]
        assert sum(layers) + phase["static_energy_pj"] == pytest.approx(ph["energy_pj_per_sample"], rel=1e-12)
    if "static" in str(profile):
        assert summary["phases"][0]["static_energy_pj"] > 0


def test_every_count_kind_reaches_the_action_counts(tmp_path):
    run = measured_run(tmp_path / "run")
    out = tmp_path / "acc"
    ok("estimate", "--profile", "loihi-like", "--run", run, "--format", "accelergy", "-o", out)
    counts = load_yaml(out / COUNTS_FILE)["action_counts"]["local"]
    train1 = {a["name"]: a["counts"] for a in counts[0]["action_counts"]}
    # per sample: 12 training samples' totals / 4 samples; 10 updates of which 7.5 active
    assert train1 == {"synop_dense": 111.0 / 4, "synop_sparse": 15.0 / 4, "neuron_update_active": 7.5,
                      "neuron_update_idle": 2.5, "weight_read": 33.0 / 4, "weight_write": 7.0 / 4,
                      "learning_update": 9.0 / 4, "state_access": 39.0 / 4, "goodness_op": 3.0,
                      "spike_route": 6.0 / 4}
    assert list(ACTION_FIELDS) == list(train1)
    # the actions are the energy table's kinds in its order, neuron_update as its two energies
    split = {"neuron_update": ["neuron_update_active", "neuron_update_idle"]}
    assert list(ACTION_FIELDS) == [a for kind in ENERGY_FIELDS for a in split.get(kind, [kind])]
    assert [ACTION_FIELDS[a] for a in split["neuron_update"]] == [
        ENERGY_FIELDS["neuron_update"], "neuron_update_idle_pj"]
    assert all(ACTION_FIELDS[kind] == field for kind, field in ENERGY_FIELDS.items() if kind not in split)


# ----------------------------------------------------------------------------- reading an ERT


def test_a_hand_written_ert_with_its_own_names_drives_any_network(tmp_path):
    """Component names are the architect's; one table is enough; integers and YAML 1.1's
    unquoted exponent (read as text) are numbers; arguments are not used."""
    actions = "\n".join(f"    - name: {a}\n      energy: {e}" for a, e in zip(
        ACTION_FIELDS, [2, 1, 5, "1e-3", 0.5, 0.5, 1, 0.25, 1, 0]))
    (tmp_path / "my28nm.yaml").write_text(
        "ERT:\n  version: 0.4\n  tables:\n  - name: chip.core[0..63].datapath\n    actions:\n" + actions
        + "\n    - name: synop_dense\n      arguments: {address_delta: 1}\n      energy: 2.0\n")
    ert = read_ert(tmp_path / "my28nm.yaml")
    assert ert.energy_pj("synop_dense") == 2.0 and ert.energy_pj("neuron_update_idle") == 0.001
    assert ert.table("spike_route") == "chip.core[0..63].datapath"
    (tmp_path / "p.toml").write_text(profile_toml("mine", "cmos-45nm", energy_from="my28nm.yaml"))
    p = load_profile(str(tmp_path / "p.toml"))
    assert (p.energy.synop_dense_pj, p.energy.neuron_update_active_pj, p.energy.spike_route_pj) == (2.0, 5.0, 0.0)
    assert p.energy.static_power_mw == load_profile("cmos-45nm").energy.static_power_mw   # not in an ERT
    shown = json.loads(ok("profiles", "show", tmp_path / "p.toml", "--json"))
    assert shown["sources"]["energy.synop_dense_pj"]["confidence"] == "user"
    for sizes in ([20, 8], [64, 32, 16, 10]):
        r = estimate_from_layers(p, sizes)
        assert r["training"]["layers"][0]["energy_pj_by_kind"]["synop_dense"] == pytest.approx(
            2.0 * r["training"]["layers"][0]["events"]["synop_dense"])


def good_ert() -> dict:
    return ert_doc(estimate_from_layers("cmos-45nm", [20, 8, 4]))


def mutate(doc: dict, how: str) -> str:
    """The YAML text of ``doc`` broken as ``how`` says."""
    tables = doc["ERT"]["tables"]
    if how == "unknown action":
        tables[0]["actions"][2]["name"] = "mac_random"
    elif how == "negative energy":
        tables[1]["actions"][0]["energy"] = -0.5
    elif how == "not a number":
        tables[0]["actions"][1]["energy"] = "lots"
    elif how == "nan":
        tables[0]["actions"][1]["energy"] = float("nan")
    elif how == "two energies":
        tables[1]["actions"][0]["energy"] = 0.25
    elif how == "missing action":
        for t in tables:
            t["actions"] = [a for a in t["actions"] if a["name"] != "spike_route"]
    elif how == "no energy":
        del tables[0]["actions"][4]["energy"]
    elif how == "v0.2 tables":
        doc["ERT"]["tables"] = {t["name"]: t["actions"] for t in tables}
    elif how == "not an ERT":
        return "action_counts:\n  version: 0.3\n"
    elif how == "YAML syntax":
        return "ERT: [\n"
    return yaml.safe_dump(doc, sort_keys=False)


BAD_ERTS = [
    ("unknown action", ["ERT.tables[0].actions[2].name", "'mac_random'", "not an ffneuro action", "synop_dense"]),
    ("negative energy", ["ERT.tables[1].actions[0].energy = -0.5", "negative"]),
    ("not a number", ["ERT.tables[0].actions[1].energy = 'lots'", "not a number"]),
    ("nan", ["ERT.tables[0].actions[1].energy", "not a finite number"]),
    ("two energies", ["ERT.tables[1].actions[0].energy = 0.25", "differs from the 0.3 pJ of synop_dense"]),
    ("missing action", ["no energy for action spike_route"]),
    ("no energy", ["ERT.tables[0].actions[4]", "must have a name and an energy"]),
    ("v0.2 tables", ["ERT.tables must be a list"]),
    ("not an ERT", ["not an Accelergy ERT"]),
    ("YAML syntax", ["YAML syntax error"]),
]


@pytest.mark.parametrize("command", ["validate", "estimate"])
@pytest.mark.parametrize("how,needles", BAD_ERTS, ids=[b[0] for b in BAD_ERTS])
def test_a_bad_ert_is_one_error_line_naming_profile_file_and_key(tmp_path, command, how, needles):
    (tmp_path / "ert.yaml").write_text(mutate(good_ert(), how))
    profile = tmp_path / "p.toml"
    profile.write_text(profile_toml("p", "cmos-45nm", energy_from="ert.yaml"))
    args = ["profiles", "validate", profile] if command == "validate" else [
        "estimate", "--profile", profile, "--layers", "20,8"]
    r = cli(*args, code=1)
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    assert f"{profile}: energy_from = \"ert.yaml\": {tmp_path / 'ert.yaml'}: " in r.output
    for needle in needles:
        assert needle in r.output, (needle, r.output)


@pytest.mark.parametrize("ref,leaves,needles", [
    ("nope.yaml", {}, ['energy_from = "nope.yaml"', "nope.yaml: no such file"]),
    (".", {}, ["is a folder"]),
    ("ert.yaml", {"energy": {"synop_dense_pj": 0.3}},
     ["energy.synop_dense_pj is given in the file and by energy_from", "one place"]),
    ("ert.yaml", {"energy_model": {"model": "bit-scaled"}},
     ['energy_model.model = "bit-scaled"', 'allowed with energy_from: "table"']),
    ("", {}, ["energy_from", "non-empty string"]),
], ids=["missing file", "a folder", "key given twice", "bit-scaled beside it", "empty"])
def test_energy_from_conflicts_and_missing_files_are_one_error_line(tmp_path, ref, leaves, needles):
    (tmp_path / "ert.yaml").write_text(yaml.safe_dump(good_ert()))
    profile = tmp_path / "p.toml"
    section, values = next(iter(leaves.items()), (None, {}))
    profile.write_text(profile_toml("p", "cmos-45nm", energy_from=ref, section=section, **values))
    r = cli("profiles", "validate", profile, code=1)
    assert r.output.startswith(f"error: {profile}: ") and r.output.count("\n") == 1, r.output
    for needle in needles:
        assert needle in r.output, (needle, r.output)


def test_a_child_profile_replaces_an_ert_value_and_inherits_the_rest(tmp_path):
    (tmp_path / "ert.yaml").write_text(yaml.safe_dump(good_ert()))
    (tmp_path / "base.toml").write_text(profile_toml("base", "loihi-like", energy_from="ert.yaml"))
    (tmp_path / "child.toml").write_text(profile_toml("child", "base", section="energy", spike_route_pj=9.0))
    base, child = load_profile(str(tmp_path / "base.toml")), load_profile(str(tmp_path / "child.toml"))
    assert base.energy.synop_dense_pj == child.energy.synop_dense_pj == 0.3            # cmos-45nm's, via the ERT
    assert child.energy.spike_route_pj == 9.0 and child.sources["energy.spike_route_pj"].confidence == "assumed"
    assert child.energy.static_power_mw == load_profile("loihi-like").energy.static_power_mw


# ----------------------------------------------------------------------------- the command


def test_the_command_writes_new_files_and_replaces_them_only_with_force(tmp_path):
    out = tmp_path / "acc"
    args = ["estimate", "--profile", "cmos-45nm", "--layers", "20,8,4", "--format", "accelergy", "-o", out]
    line = ok(*args)
    assert line.count("\n") == 1 and "4 Accelergy components" in line and "x 10 actions" in line
    assert sorted(p.name for p in out.iterdir()) == sorted([COUNTS_FILE, ERT_FILE, ENERGY_FILE])
    text = (out / ERT_FILE).read_text()
    assert text.startswith("# ffneuro estimate, profile cmos-45nm (analytic counts), net 20-8-4: ")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli(*args, code=1)
    assert r.output == f"error: {out}: folder is not empty (pass --force to replace the files in it)\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    ok(*args, "--force")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before             # deterministic


@pytest.mark.parametrize("extra,needle", [
    (["--format", "accelergy"], "give their folder with -o DIR"),
    (["-o", "OUT"], "add --format accelergy"),
    (["-o", "OUT", "--format", "csv"], "add --format accelergy"),
    (["--format", "accelergy", "-o", "OUT", "--json"], "--json means --format json"),
])
def test_accelergy_needs_its_folder_and_the_folder_needs_the_format(tmp_path, extra, needle):
    extra = [tmp_path / "out" if a == "OUT" else a for a in extra]
    r = cli("estimate", "--profile", "cmos-45nm", "--layers", "20,8", *extra, code=1)
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    assert needle in r.output
    assert not (tmp_path / "out").exists()
