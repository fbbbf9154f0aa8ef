"""The search space file: what it accepts, and one-line errors naming file, key and what is allowed."""

from __future__ import annotations

import pytest

from ffneuro.sweep.space import SpaceError, base_config, check_for_grid, check_for_training, load_space

GOOD = """
[study]
name = "recipes"
objectives = ["val_error", "inference_energy_pj"]
directions = ["minimize", "minimize"]
trials = 12
[fixed]
"data.val_fraction" = 0.1
"loop.epochs" = 3
"hardware.profile" = "loihi-like"
[params."optim.lr"]
low = 1e-4
high = 1e-2
log = true
[params."units.layers"]
choices = ["500,500", [64, 32]]
[params."loop.batch_size"]
low = 1
high = 9
step = 4
[params."profile.precision.weight_bits"]
choices = [4, 8]
[params.preset]
choices = ["ff-tiny", "hinton"]
"""


def write(tmp_path, text: str):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def test_a_full_space_loads_into_frozen_data(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    assert space.name == "recipes" and space.trials == 12 and space.multi_objective
    p = {q.key: q for q in space.params}
    assert p["optim.lr"].kind == "float" and p["optim.lr"].log and p["optim.lr"].low == 1e-4
    assert p["units.layers"].choices == ("500,500", "64,32")          # a list value is kept as its text
    assert p["loop.batch_size"].grid_values() == (1, 5, 9)
    assert p["profile.precision.weight_bits"].choices == (4, 8)
    check_for_training(space)
    cfg, profile = base_config(space, {"optim.lr": 3e-3, "units.layers": "64,32", "preset": "ff-tiny",
                                       "profile.precision.weight_bits": 4})
    assert cfg.optim.lr == 3e-3 and cfg.units.layers == (64, 32) and cfg.loop.epochs == 3
    assert cfg.data.val_fraction == 0.1 and profile == {"precision.weight_bits": 4}
    with pytest.raises(AttributeError):
        space.name = "other"                                           # frozen


@pytest.mark.parametrize("text,needles", [
    ('[study]\nname = "a"\n[fixed]\n"optim.lrr" = 1', ["fixed.\"optim.lrr\"", "optim.lrr"]),
    ('[study]\nname = "a"\n[fixed]\n"data.val_fraction" = 1.5', ["data.val_fraction", "[0, 1)"]),
    ('[study]\nname = "a"\n[params."optim.lr"]\nlow = 0\nhigh = 1\nlog = true', ["params.\"optim.lr\"", "> 0"]),
    ('[study]\nname = "a"\n[params."optim.lr"]\nlow = 1\nhigh = 0.5', ["params.\"optim.lr\"", "below high"]),
    ('[study]\nname = "a"\n[params."optim.optimizer"]\nchoices = ["adam", "lion"]', ["optim.optimizer", "lion",
                                                                                  "adam, sgd"]),
    ('[study]\nname = "a"\n[params."units.layers"]\nlow = 1\nhigh = 5', ["units.layers", "choices"]),
    ('[study]\nname = "a"\n[params.preset]\nchoices = ["nope"]', ["preset", "nope", "hinton"]),
    ('[study]\nname = "a"\n[params."profile.precision.weight_bits"]\nchoices = [0]', ["weight_bits", "1..32"]),
    ('[study]\nname = "a"\n[params."profile.precision.bits"]\nchoices = [4]', ["precision.bits", "profile keys"]),
    ('[study]\nname = "a"\nobjectives = ["accuracy"]', ["study.objectives", "val_error"]),
    ('[study]\nname = "a"\nobjectives = ["val_error"]\ndirections = ["down"]', ["study.directions", "minimize"]),
    ('[study]\nname = "a"\ntrials = 0', ["study.trials", "1..100000"]),
    ('[study]\nname = "a/b"', ["study.name"]),
    ('[study]\nname = "a"\nsampler = "cma"', ["study.sampler", "tpe"]),
    ('[study]\nname = "a"\n[extra]\nx = 1', ["[extra]", "study, fixed, params"]),
    ('[study]\nname = "a"\n[fixed]\n"optim.lr" = 1e-3\n[params."optim.lr"]\nchoices = [1e-3]', ["also in [fixed]"]),
    ('[study\nname = "a"', ["TOML syntax error"]),
])
def test_a_bad_space_is_one_line_naming_file_and_key(tmp_path, text, needles):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_a_training_sweep_needs_a_validation_split_and_profiles_for_energy(tmp_path):
    base = '[study]\nname = "a"\n'
    with pytest.raises(SpaceError, match="holds out nothing"):
        check_for_training(load_space(write(tmp_path, base)))
    with pytest.raises(SpaceError, match="holds out nothing"):          # one choice without a split is enough
        check_for_training(load_space(write(tmp_path, base + '[params."data.val_fraction"]\nchoices = [0.1, 0.0]')))
    energy = base + 'objectives = ["val_error", "sram_bytes"]\n[fixed]\n"data.val_fraction" = 0.1\n'
    with pytest.raises(SpaceError, match="sram_bytes needs a chip profile"):
        check_for_training(load_space(write(tmp_path, energy)))
    check_for_training(load_space(write(tmp_path, energy + '"hardware.profile" = "loihi-like"')))
    with pytest.raises(SpaceError, match="must include val_error"):
        check_for_training(load_space(write(tmp_path, base + 'objectives = ["sram_bytes"]')))
    with pytest.raises(SpaceError, match="needs training"):
        check_for_grid(load_space(write(tmp_path, base + '[fixed]\n"hardware.profile" = "loihi-like"')))
    with pytest.raises(SpaceError, match="a grid needs choices"):
        check_for_grid(load_space(write(tmp_path, base + 'objectives = ["sram_bytes"]\n[fixed]\n'
                                        '"hardware.profile" = "loihi-like"\n[params."optim.lr"]\nlow = 0.1\nhigh = 1')))


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(SpaceError, match="no such search space file"):
        load_space(tmp_path / "nope.toml")
