"""Hardware profiles: shipped files load, every value is sourced, and bad files fail clearly."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from ffneuro.hw.profiles import (
    CONFIDENCES, SCHEMA, Profile, ProfileError, Source, list_profiles, load_profile, profile_dir,
    profile_to_dict,
)

SHIPPED = ["akida-like", "cmos-45nm", "cortex-m7-int8", "float32", "loihi-like", "loihi2-like",
           "speck-like", "spinnaker2-like", "truenorth-like"]


def test_list_profiles_is_the_shipped_set():
    assert list_profiles() == SHIPPED
    assert (profile_dir() / "loihi-like.toml").is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_with_a_source_for_every_leaf(name):
    p = load_profile(name)
    assert isinstance(p, Profile) and p.name == name and p.description
    expected = {f"{sec}.{key}" for sec, keys in SCHEMA.items() for key in keys}
    assert set(p.sources) == expected
    for key, src in p.sources.items():
        assert isinstance(src, Source)
        assert src.source.strip(), key
        assert src.confidence in CONFIDENCES, key
        if src.confidence in ("derived", "estimated", "assumed"):
            # honest modelling choices explain themselves, in the note or the source text
            assert src.note or len(src.source) > 10, key
    d = profile_to_dict(p)
    assert json.loads(json.dumps(d)) == d
    assert d["precision"]["weight_bits"] == p.precision.weight_bits
    assert d["sources"]["energy.synop_sparse_pj"]["confidence"] == p.sources["energy.synop_sparse_pj"].confidence


def test_numeric_types():
    for name in SHIPPED:
        p = load_profile(name)
        for f in fields(p.energy):
            assert type(getattr(p.energy, f.name)) is float
        for f in fields(p.memory):
            assert type(getattr(p.memory, f.name)) is int


def test_loihi_figures():
    p = load_profile("loihi-like")
    assert p.memory.cores == 128
    assert p.memory.synaptic_sram_bytes_per_core == 131072          # 128 KB
    assert p.memory.neurons_per_core == 1024
    assert p.memory.max_fan_in_per_core == 4096
    assert p.energy.synop_sparse_pj == 23.6                          # not 23.6 + 3.5
    assert p.energy.neuron_update_active_pj == 81.0
    assert p.energy.neuron_update_idle_pj == 52.0
    assert p.energy.learning_update_pj == 120.0
    assert p.precision.trace_bits == 7 and p.precision.state_bits == 24
    assert p.sources["energy.synop_sparse_pj"].confidence == "pre-silicon"
    assert not p.is_float and load_profile("float32").is_float


def test_other_spec_figures():
    s = load_profile("spinnaker2-like")
    assert (s.memory.cores, s.memory.synaptic_sram_bytes_per_core) == (152, 131072)
    assert (s.energy.synop_sparse_pj, s.energy.neuron_update_active_pj) == (450.0, 2190.0)
    t = load_profile("truenorth-like")
    assert (t.memory.cores, t.memory.neurons_per_core, t.memory.max_fan_in_per_core) == (4096, 256, 256)
    assert t.energy.synop_sparse_pj == 26.0
    m = load_profile("cortex-m7-int8")
    assert m.memory.cores == 1
    assert m.memory.synaptic_sram_bytes_per_core + m.memory.other_sram_bytes == 320 * 1024
    assert (m.precision.weight_bits, m.precision.accumulator_bits) == (8, 32)
    assert m.streaming.max_batch <= 16
    c = load_profile("cmos-45nm")
    assert c.energy.synop_dense_pj == pytest.approx(0.2 + 0.1)      # Horowitz int8 mult + int32 add


def test_load_by_path_equals_load_by_name():
    by_name = load_profile("speck-like")
    by_path = load_profile(str(profile_dir() / "speck-like.toml"))
    assert by_name == by_path


# --- extends --------------------------------------------------------------------------------

def test_extends_shipped_parent_overrides_one_key(tmp_path):
    f = tmp_path / "child.toml"
    f.write_text('name = "child"\nextends = "loihi-like"\n[precision]\n'
                 'weight_bits = { value = 4, source = "what-if", confidence = "assumed" }\n')
    child, parent = load_profile(str(f)), load_profile("loihi-like")
    assert child.name == "child" and child.path == str(f)
    assert child.precision.weight_bits == 4
    assert child.sources["precision.weight_bits"] == Source("what-if", "assumed", "")  # leaf replaced whole
    assert child.precision.state_bits == parent.precision.state_bits
    assert child.energy == parent.energy and child.memory == parent.memory
    assert child.description == parent.description


def test_extends_sibling_and_relative_path(tmp_path):
    base = (profile_dir() / "cmos-45nm.toml").read_text().replace('name = "cmos-45nm"', 'name = "base"')
    (tmp_path / "base.toml").write_text(base)
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.toml").write_text('name = "a"\nextends = "base"\n[memory]\n'
                                     'cores = { value = 2, source = "s", confidence = "assumed" }\n')
    (tmp_path / "sub" / "b.toml").write_text('name = "b"\nextends = "../a.toml"\n')
    b = load_profile(str(tmp_path / "sub" / "b.toml"))
    assert b.name == "b" and b.memory.cores == 2 and b.precision.weight_bits == 8


def test_shipped_children_inherit():
    m, c = load_profile("cortex-m7-int8"), load_profile("cmos-45nm")
    assert m.energy.synop_dense_pj == c.energy.synop_dense_pj
    assert m.memory.synaptic_sram_bytes_per_core != c.memory.synaptic_sram_bytes_per_core


# --- errors ---------------------------------------------------------------------------------

def _full_profile_text() -> str:
    return (profile_dir() / "cmos-45nm.toml").read_text()


def _error(path: Path) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, ValueError)
    return message


def _with_line(text: str, key: str, new_line: str | None) -> str:
    """Replace (or drop, when new_line is None) the line that defines ``key``."""
    lines = text.splitlines()
    idx = [i for i, line in enumerate(lines) if re.match(rf"{key}\s*=", line)]
    assert len(idx) == 1, key
    if new_line is None:
        del lines[idx[0]]
    else:
        lines[idx[0]] = new_line
    return "\n".join(lines) + "\n"


BAD_LEAVES = [
    # (key, replacement line, fragments the message must contain)
    ("weight_bits", 'weight_bits = { value = 0, source = "s", confidence = "assumed" }',
     ["precision.weight_bits = 0", "out of range", "1..32"]),
    ("weight_bits", 'weight_bits = { value = 33, source = "s", confidence = "assumed" }',
     ["precision.weight_bits = 33", "1..32"]),
    ("weight_bits", 'weight_bits = { value = true, source = "s", confidence = "assumed" }',
     ["precision.weight_bits = true", "wrong type", "integer"]),
    ("weight_bits", 'weight_bits = { value = 8.0, source = "s", confidence = "assumed" }',
     ["precision.weight_bits = 8.0", "wrong type"]),
    ("weight_signed", 'weight_signed = { value = 1, source = "s", confidence = "assumed" }',
     ["precision.weight_signed = 1", "wrong type", "true or false"]),
    ("rounding", 'rounding = { value = "up", source = "s", confidence = "assumed" }',
     ['precision.rounding = "up"', '"nearest"', '"stochastic"']),
    ("scale_rule", 'scale_rule = { value = "log", source = "s", confidence = "assumed" }',
     ['precision.scale_rule = "log"', '"pow2"', '"per_layer"', '"none"']),
    ("cores", 'cores = { value = 0, source = "s", confidence = "assumed" }',
     ["memory.cores = 0", "out of range", "1..2^53"]),         # ceiling: exact in int64 and float
    ("synaptic_sram_bytes_per_core", 'synaptic_sram_bytes_per_core = { value = 0, source = "s", confidence = "assumed" }',
     ["memory.synaptic_sram_bytes_per_core = 0", "out of range"]),
    ("max_batch", 'max_batch = { value = 0, source = "s", confidence = "assumed" }',
     ["streaming.max_batch = 0", "out of range"]),
    ("optimizer", 'optimizer = { value = "rmsprop", source = "s", confidence = "assumed" }',
     ['learning.optimizer = "rmsprop"', '"sgd"', '"adam"']),
    ("synop_dense_pj", 'synop_dense_pj = { value = -1.0, source = "s", confidence = "assumed" }',
     ["energy.synop_dense_pj = -1.0", "out of range", ">= 0"]),
    ("synop_dense_pj", 'synop_dense_pj = { value = nan, source = "s", confidence = "assumed" }',
     ["energy.synop_dense_pj = nan", "finite"]),
    ("synop_dense_pj", 'synop_dense_pj = { value = "0.3", source = "s", confidence = "assumed" }',
     ['energy.synop_dense_pj = "0.3"', "wrong type"]),
    ("synop_dense_pj", "synop_dense_pj = 0.3",
     ["energy.synop_dense_pj = 0.3", "inline table", "source"]),
    ("synop_dense_pj", 'synop_dense_pj = { value = 0.3, confidence = "assumed" }',
     ["energy.synop_dense_pj", "no source"]),
    ("synop_dense_pj", 'synop_dense_pj = { value = 0.3, source = "s" }',
     ["energy.synop_dense_pj", "no confidence", "measured"]),
    ("synop_dense_pj", 'synop_dense_pj = { value = 0.3, source = "s", confidence = "sure" }',
     ['energy.synop_dense_pj.confidence = "sure"', "pre-silicon", "assumed"]),
    ("synop_dense_pj", 'synop_dense_pj = { value = 0.3, source = "s", confidence = "assumed", unit = "pJ" }',
     ["unknown field energy.synop_dense_pj.unit", "note"]),
    ("synop_dense_pj", 'synop_dense_pj = { source = "s", confidence = "assumed" }',
     ["energy.synop_dense_pj", "no value"]),
]


@pytest.mark.parametrize("key, line, fragments", BAD_LEAVES)
def test_bad_leaf_errors_name_file_and_key(tmp_path, key, line, fragments):
    f = tmp_path / "my.toml"
    f.write_text(_with_line(_full_profile_text(), key, line))
    message = _error(f)
    assert message.startswith(str(f) + ": "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_example_message_exactly(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(_with_line(_full_profile_text(), "weight_bits",
                            'weight_bits = { value = 0, source = "s", confidence = "assumed" }'))
    assert _error(f) == f"{f}: precision.weight_bits = 0 is out of range (allowed 1..32)"


def test_missing_key(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(_with_line(_full_profile_text(), "trace_bits", None))
    message = _error(f)
    assert "my.toml" in message and "missing key precision.trace_bits" in message and "1..32" in message


def test_missing_section(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text('name = "x"\n')
    message = _error(f)
    assert "my.toml" in message and "missing section [precision]" in message


def test_unknown_key_and_section(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(_full_profile_text().replace(
        "[memory]\n", '[memory]\nbanks = { value = 2, source = "s", confidence = "assumed" }\n'))
    message = _error(f)
    assert "my.toml" in message and "unknown key memory.banks" in message and "cores" in message
    f.write_text(_full_profile_text() + '\n[thermal]\ntdp_mw = { value = 1, source = "s", confidence = "assumed" }\n')
    message = _error(f)
    assert "my.toml" in message and "unknown section [thermal]" in message and "precision" in message
    f.write_text("vendor = 'x'\n" + _full_profile_text())
    message = _error(f)
    assert "my.toml" in message and "unknown top-level key vendor" in message


def test_missing_name(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(_with_line(_full_profile_text(), "name", None))
    assert "missing top-level key name" in _error(f)


def test_toml_syntax_error_has_line(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text('name = "x"\n[precision]\nweight_bits = { value = 8, source = "s" confidence = "a" }\n')
    message = _error(f)
    assert "my.toml" in message and "TOML syntax error" in message and "line 3" in message


def test_extends_cycle(tmp_path):
    (tmp_path / "a.toml").write_text('name = "a"\nextends = "b"\n')
    (tmp_path / "b.toml").write_text('name = "b"\nextends = "a.toml"\n')
    message = _error(tmp_path / "a.toml")
    assert "a.toml" in message and "extends cycle" in message and "b.toml" in message
    (tmp_path / "self.toml").write_text('name = "self"\nextends = "self"\n')
    assert "extends cycle" in _error(tmp_path / "self.toml")


def test_extends_unknown_parent(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text('name = "x"\nextends = "loihi-9000"\n')
    message = _error(f)
    assert "my.toml" in message and 'extends = "loihi-9000"' in message and "loihi-like" in message


def test_error_in_parent_names_the_parent_file(tmp_path):
    (tmp_path / "base.toml").write_text(_with_line(
        _full_profile_text(), "cores", 'cores = { value = -2, source = "s", confidence = "assumed" }'))
    (tmp_path / "child.toml").write_text('name = "child"\nextends = "base"\n')
    message = _error(tmp_path / "child.toml")
    assert message.startswith(str(tmp_path / "base.toml") + ": memory.cores = -2")


def test_cross_field_checks(tmp_path):
    f = tmp_path / "my.toml"
    text = _with_line(_full_profile_text(), "weight_bits",
                      'weight_bits = { value = 1, source = "s", confidence = "assumed" }')
    f.write_text(text)
    message = _error(f)
    assert "my.toml" in message and "precision.weight_bits = 1" in message and "weight_signed" in message
    f.write_text(_with_line(_full_profile_text(), "optimizer",
                            'optimizer = { value = "adam", source = "s", confidence = "assumed" }'))
    message = _error(f)
    assert "my.toml" in message and 'learning.optimizer = "adam"' in message and "optimizer_state" in message


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="unknown profile 'nope'.*loihi-like"):
        load_profile("nope")
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(str(tmp_path / "absent.toml"))
