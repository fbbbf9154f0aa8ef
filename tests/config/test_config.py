"""The run configuration as `ffneuro train` builds it: --set typing, precedence, config
files, presets, the TOML that --print-config writes, old flat run dirs, and errors that
name the section and key. No training here (tests/cli/test_cli.py runs the command)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from ffneuro import api
from ffneuro.config import ConfigError, RunConfig, preset, preset_names
from ffneuro.config.run import parse_assignment
from ffneuro.config.sections import SECTIONS

REPO = Path(__file__).resolve().parents[2]


def resolve(*sets, config=None, preset=None, **flags):
    return api.resolve_train_config(config, preset, flags, list(sets))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- --set typing ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("optim.lr=3e-3", ("optim", "lr", 3e-3)),
    ("optim.lr = 2", ("optim", "lr", 2.0)),
    ("loop.epochs=7", ("loop", "epochs", 7)),
    ("units.layers=64,32", ("units", "layers", (64, 32))),
    ("units.layers=64", ("units", "layers", (64,))),
    ("units.layers= 64, 32 ", ("units", "layers", (64, 32))),
    ("optim.milestones=", ("optim", "milestones", ())),
    ("inference.layers=2,3", ("inference", "layers", (2, 3))),
    ("inference.layers=none", ("inference", "layers", None)),
    ("units.theta=none", ("units", "theta", None)),
    ("units.theta=12.5", ("units", "theta", 12.5)),
    ("hardware.profile=loihi-like", ("hardware", "profile", "loihi-like")),
    ("data.standardize=true", ("data", "standardize", True)),
    ("data.standardize=False", ("data", "standardize", False)),
    ("data.standardize=yes", ("data", "standardize", True)),
    ("data.standardize=0", ("data", "standardize", False)),
    ("inference.head=off", ("inference", "head", False)),
    ("data.name=mnist:/a=b", ("data", "name", "mnist:/a=b")),       # only the first = splits
])
def test_set_values_take_the_fields_type(text, expected):
    assert parse_assignment(text) == expected


def test_set_reaches_the_config():
    cfg = resolve("units.layers=64,32", "inference.layers=1,2", "units.theta=none", "data.standardize=true",
                  "optim.milestones=3,6", "optim.lr_schedule=multistep")
    assert cfg.units.layers == (64, 32) and cfg.inference.layers == (1, 2) and cfg.units.theta is None
    assert cfg.data.standardize is True and cfg.optim.milestones == (3, 6)
    assert resolve("inference.layers=2", "inference.layers=none").inference.layers is None


@pytest.mark.parametrize("text,needles", [
    ("optim.lr=fast", ["optim.lr", "'fast'", "number"]),
    ("loop.epochs=2.5", ["loop.epochs", "integer"]),
    ("units.layers=64,x", ["units.layers", "comma-separated integers"]),
    ("data.standardize=maybe", ["data.standardize", "true or false"]),
    ("loop.epochs=none", ["loop.epochs", "integer"]),
    ("optim.lrr=1", ["optim.lrr", "keys of [optim]", "lr_schedule"]),
    ("optimizer.lr=1", ["'optimizer'", "sections: data, units"]),
    ("lr=1", ["SECTION.KEY=VALUE"]),
    ("optim.lr", ["SECTION.KEY=VALUE"]),
    ("loop.algo=backprop", ["loop.algo", "'backprop'", "ff, cff, bp, bp-pairwise"]),
    ("units.temperature=0", ["units.temperature"]),
])
def test_set_errors_name_section_and_key(text, needles):
    with pytest.raises(ConfigError) as e:
        resolve(text)
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


# -- precedence ------------------------------------------------------------------------------
def test_precedence_defaults_preset_file_flags_sets(tmp_path):
    base = RunConfig()
    hinton = preset("hinton")
    assert resolve() == base
    assert resolve(preset="hinton") == hinton
    run = write(tmp_path / "run.toml", "[units]\nlayers = [48, 48]\ntemperature = 2.0\n"
                                       "[optim]\nlr = 0.01\n[loop]\nepochs = 9\nseed = 4\n")
    cfg = resolve(config=run, preset="hinton")
    assert cfg.units.layers == (48, 48) and cfg.optim.lr == 0.01 and cfg.loop.epochs == 9   # file beats preset
    assert cfg.units.peer_norm == hinton.units.peer_norm and cfg.optim.optimizer == "sgd"    # preset kept
    cfg = resolve("optim.lr=0.02", "units.temperature=4", "units.temperature=3", config=run, preset="hinton",
                  layers="32", epochs=1, data="digits", profile="loihi-like", simulate_anyway=True)
    assert cfg.units.layers == (32,) and cfg.loop.epochs == 1 and cfg.loop.seed == 4     # flags beat the file
    assert cfg.hardware.profile == "loihi-like" and cfg.hardware.simulate_anyway is True
    assert cfg.optim.lr == 0.02 and cfg.units.temperature == 3.0                          # --set last, in order
    assert resolve("units.layers=16", layers="32").units.layers == (16,)                  # --set beats a flag
    assert resolve("loop.epochs=3", epochs=None).loop.epochs == 3                         # None: flag not given


def test_config_file_may_name_a_preset(tmp_path):
    run = write(tmp_path / "run.toml", 'preset = "hinton"\n[loop]\nepochs = 3\n')
    cfg = resolve(config=run)
    assert cfg == preset("hinton").replace(loop={"epochs": 3})
    # --preset on the command line replaces the file's preset; the file still wins over it
    cfg = resolve(config=run, preset="cff-paper-cff")
    assert cfg == preset("cff-paper-cff").replace(loop={"epochs": 3})


def test_cross_checks_apply_to_the_end_result_only(tmp_path):
    # the file asks for 4 units and sums units 3,4; the flag then shrinks the stack: the end
    # result is checked once (and is wrong), a half-applied request is never checked
    run = write(tmp_path / "run.toml", "[units]\nlayers = [8, 8, 8, 8]\n[inference]\nlayers = [3, 4]\n")
    assert resolve(config=run).inference.layers == (3, 4)
    assert resolve("inference.layers=1,2", config=run, layers="8,8").inference.layers == (1, 2)
    with pytest.raises(ConfigError, match="inference.layers"):
        resolve(config=run, layers="8,8")
    # the hinton preset samples hard negatives from the head: turning both off together works
    assert not resolve("inference.head=false", "loop.negatives=random", preset="hinton").inference.head


# -- config files, presets -------------------------------------------------------------------
@pytest.mark.parametrize("text,needles", [
    ("[optim\nlr = 1\n", ["TOML syntax error", "line 1"]),
    ("[optimizer]\nlr = 1\n", ["unknown config section 'optimizer'"]),
    ("[optim]\nlrr = 1\n", ["optim.lrr"]),
    ("[optim]\nlr = \"fast\"\n", ["optim.lr", "wrong type"]),
    ("[units]\nlayers = [64, \"x\"]\n", ["units.layers"]),
    ("[loop]\nepochs = true\n", ["loop.epochs"]),
    ("lr = 0.1\n", ["top-level key 'lr'", "[optim]"]),
    ("optim = 3\n", ["top-level key 'optim'"]),
    ("preset = 3\n", ["preset = 3"]),
    ("preset = \"nope\"\n", ["unknown preset 'nope'"]),
    ("[loop]\nalgo = \"backprop\"\n", ["loop.algo", "'backprop'"]),
])
def test_config_file_errors_are_one_line_naming_the_key(tmp_path, text, needles):
    run = write(tmp_path / "run.toml", text)
    with pytest.raises(ConfigError) as e:
        resolve(config=run)
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


def test_missing_config_file_and_unknown_preset():
    with pytest.raises(ConfigError, match="/nonexistent/run.toml: no such config file"):
        resolve(config=Path("/nonexistent/run.toml"))
    with pytest.raises(ConfigError, match="unknown preset 'nope' .*hinton"):
        resolve(preset="nope")
    with pytest.raises(ConfigError, match="--layers: units.layers"):
        resolve(layers="500,x")
    with pytest.raises(ConfigError, match="--epochs: loop.epochs"):
        resolve(epochs="many")


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_valid_and_round_trips(name, tmp_path):
    cfg = preset(name).validate()
    assert cfg != RunConfig()
    assert resolve(preset=name) == cfg
    path = write(tmp_path / "p.toml", api.format_config_toml(cfg))
    assert RunConfig.from_toml(path) == cfg


def test_presets_are_the_ones_documented():
    assert set(preset_names()) >= {"cff-paper-ff", "cff-paper-ff-network", "cff-paper-cff", "hinton",
                                   "hinton-jitter"}


# -- --print-config: TOML and JSON that read back to the same config --------------------------
ODD = RunConfig().replace(
    data={"name": 'npz:/tmp/a "quoted" \\ dir/ünï\tcode.npz', "label_scale": 0.5, "val_fraction": 0.125},
    units={"layers": (7, 5), "theta": 1e-7, "temperature": 12345678.9, "neuron": "lif", "steps": 3},
    optim={"milestones": (), "lr": 3e-3, "lr_schedule": "multistep"},
    inference={"layers": (1, 2)},
    hardware={"profile": "loihi-like", "onchip_lr": 2.0 ** -7, "simulate_anyway": True})


@pytest.mark.parametrize("cfg", [RunConfig(), ODD, RunConfig().replace(optim={"milestones": (3, 9)})],
                         ids=["defaults", "odd-values", "milestones"])
@pytest.mark.parametrize("comments", [True, False])
def test_print_config_toml_round_trip(cfg, comments, tmp_path):
    text = api.format_config_toml(cfg, comments=comments)
    path = write(tmp_path / "run.toml", text)
    assert RunConfig.from_toml(path) == cfg
    assert resolve(config=path) == cfg                       # also as a --config file


def test_print_config_toml_lists_every_field_with_its_help():
    text = api.format_config_toml(RunConfig())
    for sec, cls in SECTIONS.items():
        assert f"\n[{sec}]\n" in text
        for f in fields(cls):
            assert f"\n{f.name} = " in text or f"\n# {f.name} is unset (none)" in text
            assert f.metadata["help"] in text
    assert 'preset = "hinton"' in text                        # the top-level preset key is documented


def test_print_config_json_round_trip():
    for cfg in (RunConfig(), ODD):
        assert RunConfig.from_dict(json.loads(api.format_config_json(cfg))) == cfg


# -- run dirs written before sections ---------------------------------------------------------
@pytest.mark.parametrize("cfg", [RunConfig(), ODD, preset("hinton-jitter")], ids=["defaults", "odd", "hinton"])
def test_flat_dict_loads_equal_to_the_nested_form(cfg):
    flat = json.loads(json.dumps(cfg.flat()))                # as an old config.json held it
    nested = json.loads(json.dumps(cfg.to_dict()))
    assert not any(isinstance(v, dict) for v in flat.values())
    assert RunConfig.from_dict(flat) == RunConfig.from_dict(nested) == cfg


def test_old_run_dir_resumes_with_its_profile_name(tmp_path):
    cfg = RunConfig().replace(units={"layers": (16,)}, loop={"epochs": 1})
    flat = {k: v for k, v in json.loads(json.dumps(cfg.flat())).items() if k not in ("profile", "simulate_anyway")}
    write(tmp_path / "config.json", json.dumps({"config": flat, "profile_name": "loihi-like"}))
    saved = api.saved_config(tmp_path)
    assert saved == cfg.replace(hardware={"profile": "loihi-like"})
    # equal options pass, the saved profile included; a change is refused naming its key and option
    assert api.resolve_train_config(None, None, {"layers": "16", "profile": "loihi-like"}, [],
                                    resume=tmp_path) == saved
    with pytest.raises(ConfigError) as e:
        api.resolve_train_config(None, None, {"profile": "cmos-45nm", "epochs": 1}, ["optim.lr=0.5"],
                                 resume=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "hardware.profile (--profile)" in msg and "optim.lr (--set optim.lr)" in msg
    assert "loop.epochs" not in msg


def test_resume_refuses_a_changing_preset_or_file_but_not_an_equal_one(tmp_path):
    cfg = preset("hinton").replace(units={"layers": (16,)})
    write(tmp_path / "config.json", json.dumps({"config": cfg.to_dict(), "profile_name": None}))
    assert api.resolve_train_config(None, None, {}, [], resume=tmp_path) == cfg
    assert api.resolve_train_config(None, "hinton", {"layers": "16"}, [], resume=tmp_path) == cfg
    with pytest.raises(ConfigError, match=r"units.layers \(--preset hinton\)"):
        api.resolve_train_config(None, "hinton", {}, [], resume=tmp_path)
    same = write(tmp_path / "same.toml", api.format_config_toml(cfg))
    assert api.resolve_train_config(same, None, {}, [], resume=tmp_path) == cfg
    other = write(tmp_path / "other.toml", "[optim]\nlr = 0.5\n")
    with pytest.raises(ConfigError, match=r"optim.lr \(--config .*other.toml\)"):
        api.resolve_train_config(other, None, {}, [], resume=tmp_path)


def test_train_run_refuses_to_resume_with_another_config(tmp_path):
    cfg = RunConfig().replace(units={"layers": (16,)})
    write(tmp_path / "config.json", json.dumps({"config": cfg.to_dict()}))
    with pytest.raises(ConfigError, match="loop.epochs"):
        api.train_run(cfg.replace(loop={"epochs": 3}), out=tmp_path, resume=True)
    with pytest.raises(ConfigError, match="--resume needs --out"):
        api.train_run(cfg, resume=True)


def test_build_config_keeps_working_for_scripts():
    # scripts/bench_mnist.py: a preset and flat overrides (JSON-decoded --set values)
    cfg = api.build_config("hinton", {"data": "digits", "epochs": 3, "eval_every": None, "layers": [64, 64],
                                      "negatives": "random", "head": False})
    assert cfg.units.layers == (64, 64) and cfg.loop.epochs == 3 and cfg.units.peer_norm == 0.03
    assert cfg.loop.negatives == "random" and cfg.inference.head is False


# -- generated documentation ------------------------------------------------------------------
def test_option_rows_cover_every_field():
    rows = api.option_rows()
    keys = [r["key"] for r in rows]
    assert keys == [f"{sec}.{f.name}" for sec, cls in SECTIONS.items() for f in fields(cls)]
    row = {r["key"]: r for r in rows}
    assert row["units.neuron"]["choices"] == ["relu", "lif"] and row["units.neuron"]["default"] == "relu"
    assert row["units.layers"]["default"] == "500,500,500" and row["units.theta"]["default"] == "none"
    assert row["optim.milestones"]["default"] == "(empty)" and row["inference.head"]["default"] == "true"
    table = api.options_markdown().splitlines()
    assert len(table) == 2 + len(rows) and all(line.count(" | ") == 4 for line in table[2:])  # | escaped


def test_options_doc_table_is_up_to_date():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "options_table.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + "run `python scripts/options_table.py`"
