"""Property tests of the profile parser (issue #18): whatever a profile file holds (random
bytes, random text, generated TOML, a shipped profile with one value, field, key or
section changed), ``load_profile`` returns a valid Profile or raises one ProfileError (a
ValueError) with a one-line message that starts with the file's path and names the key at
fault; never another exception. Every Profile it returns holds only values of their
declared type and range, every float finite and >= 0.

Hypothesis is derandomized, with no example database, so CI runs the same inputs every time.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ffneuro.hw.profiles import (
    CONFIDENCES, OPTIONAL_SECTIONS, SCHEMA, Profile, ProfileError, list_profiles, load_profile, profile_dir,
)

PROPERTY = dict(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SHIPPED = {n: tomllib.loads((profile_dir() / f"{n}.toml").read_text()) for n in list_profiles()}
STANDALONE = sorted(n for n, doc in SHIPPED.items() if "extends" not in doc)     # complete on their own
LEAVES = [(sec, key) for sec, keys in SCHEMA.items() for key in keys]


# -- a TOML writer for generated documents ------------------------------------------------------------
SPECIAL = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and everything beyond printable ASCII escaped."""
    def escape(m: re.Match) -> str:
        ch = m.group()
        if ch in '"\\':
            return "\\" + ch
        return f"\\u{ord(ch):04X}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08X}"
    return '"' + SPECIAL.sub(escape, text) + '"'


def toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else toml_string(key)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(t) for t in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(t)}" for k, t in v.items()) + " }"
    return v.isoformat()                      # dates and times


def toml_document(doc: dict) -> str:
    """A TOML document: top-level scalars first, then one [table] per dict value."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{toml_key(k)}]")
            lines += [f"{toml_key(sub)} = {toml_value(t)}" for sub, t in v.items()]
    return "\n".join(lines) + "\n"


SCALARS = st.one_of(
    st.integers(), st.integers(-3, 70), st.integers(2 ** 53 - 2, 2 ** 80), st.floats(), st.floats(0, 1e3),
    st.booleans(), st.text(max_size=10), st.sampled_from(["fixed", "float", "sgd", "adam", "pow2", "nearest"]),
    st.dates(), st.times(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=6)
KEYS = st.one_of(st.sampled_from([k for _, k in LEAVES] + ["value", "source", "confidence", "note"]),
                 st.text(min_size=1, max_size=8))


# -- checks ----------------------------------------------------------------------------------------------
def assert_valid(p: Profile) -> None:
    """Every value a Profile holds has its declared type and range; every float is finite and >= 0."""
    for sec, keys in SCHEMA.items():
        obj = getattr(p, sec)
        for key, (kind, constraint) in keys.items():
            v = getattr(obj, key)
            if kind == "int":
                lo, hi = constraint
                assert type(v) is int and lo <= v <= hi, (sec, key, v)
            elif kind == "float":
                assert type(v) is float and math.isfinite(v) and v >= 0, (sec, key, v)
            elif kind == "bool":
                assert type(v) is bool, (sec, key, v)
            else:
                assert v in constraint, (sec, key, v)
    assert set(p.sources) == {f"{s}.{k}" for s, k in LEAVES}
    assert all(s.confidence in CONFIDENCES and s.source.strip() for s in p.sources.values())
    for f in fields(p.energy):
        assert math.isfinite(getattr(p.energy, f.name))


def load(path: Path) -> tuple[Profile | None, str]:
    """``load_profile(path)``: (the Profile, "") or (None, the ProfileError's message), which
    must be one line starting with a profile file's path."""
    try:
        p = load_profile(str(path))
    except ProfileError as e:
        message = str(e)
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith(str(path) + ": ") or message.startswith(str(profile_dir())), message
        return None, message
    assert_valid(p)
    return p, ""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("profiles")


def rewrite(path: Path, data: bytes) -> None:
    """``path`` with new contents, as a new file: truncating a file in place can make ext4
    flush it (4 ms a write here), which would be most of an example's time."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


# -- properties --------------------------------------------------------------------------------------------
@settings(max_examples=600, **PROPERTY)
@given(raw=st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"name = 'x'\n[precision]\n" + b)))
def test_random_bytes_give_a_profile_error(scratch, raw):
    path = scratch / "bytes.toml"
    rewrite(path, raw)
    p, message = load(path)
    assert p is None
    event("refused: " + message[len(str(path)) + 2:].split(" ")[0])


@settings(max_examples=600, **PROPERTY)
@given(text=st.text(max_size=200))
def test_random_text_gives_a_profile_error(scratch, text):
    path = scratch / "text.toml"
    rewrite(path, text.encode("utf-8", errors="surrogatepass"))
    p, message = load(path)
    assert p is None
    event("refused: " + message[len(str(path)) + 2:].split(" ")[0])


@settings(max_examples=200, **PROPERTY)
@given(doc=st.fixed_dictionaries({"name": st.text(min_size=1, max_size=8)}, optional={
    "extends": st.sampled_from(["loihi-like", "cmos-45nm", "nope", "generated", "../x.toml"]),
    "description": VALUES, "vendor": VALUES,
    **{sec: st.dictionaries(KEYS, st.one_of(VALUES, st.fixed_dictionaries(
        {"value": VALUES, "source": st.text(max_size=5), "confidence": st.sampled_from(CONFIDENCES)},
        optional={"note": VALUES, "unit": VALUES})), max_size=3) for sec in SCHEMA}}))
def test_generated_toml_gives_a_valid_profile_or_a_profile_error(scratch, doc):
    path = scratch / "generated.toml"
    rewrite(path, toml_document(doc).encode("utf-8"))
    p, message = load(path)
    event("valid profile" if p else "refused")


@st.composite
def mutated_profile(draw):
    """A standalone shipped profile with one thing changed: a leaf's value replaced (any
    TOML value, or an integer or float at or beyond its range, NaN, ±inf), a leaf replaced
    by a bare value, a leaf, its source or its confidence removed, its source, confidence
    or note replaced, an unknown field or key added, or a whole section removed. Returns
    (document, the "section.key" at fault or None, whether the result must be an error)."""
    doc = {k: ({key: dict(leaf) for key, leaf in v.items()} if isinstance(v, dict) else v)    # leaves copied
           for k, v in SHIPPED[draw(st.sampled_from(STANDALONE))].items()}
    sec, key = draw(st.sampled_from([(s, k) for s, k in LEAVES if k in doc.get(s, {})]))
    optional = sec in OPTIONAL_SECTIONS     # a key or the section left out takes its default
    kind, constraint = SCHEMA[sec][key]
    leaf = doc[sec][key]
    how = draw(st.sampled_from(["value", "edge value", "bare value", "drop leaf", "drop field", "field",
                                "unknown field", "unknown key", "drop section"]))
    event(f"mutation: {how}")
    if how in ("value", "edge value"):
        if how == "value":
            leaf["value"] = draw(VALUES)
        elif kind == "int":
            lo, hi = constraint
            leaf["value"] = draw(st.sampled_from([lo - 1, lo, hi, hi + 1, -2 ** 63, 2 ** 64, 10 ** 400]))
        else:
            leaf["value"] = draw(st.sampled_from([-0.0, -1e-300, math.nan, math.inf, -math.inf, 1e308, 10 ** 400,
                                                  2 ** 53 + 1, True, "1.0"]))
        return doc, f"{sec}.{key}", None
    if how == "bare value":
        doc[sec][key] = draw(SCALARS)
        return doc, f"{sec}.{key}", True
    if how == "drop leaf":
        del doc[sec][key]
        return doc, f"{sec}.{key}", None if optional else True
    if how == "drop field":
        field = draw(st.sampled_from(["value", "source", "confidence"]))
        del leaf[field]
        return doc, f"{sec}.{key}", True
    if how == "field":
        leaf[draw(st.sampled_from(["source", "confidence", "note"]))] = draw(VALUES)
        return doc, f"{sec}.{key}", None
    if how == "unknown field":
        leaf[draw(st.text(min_size=1, max_size=6).filter(lambda k: k not in leaf and k != "note"))] = draw(SCALARS)
        return doc, f"{sec}.{key}", True
    if how == "unknown key":
        doc[sec][draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in SCHEMA[sec]))] = leaf
        return doc, sec, True
    del doc[sec]
    return doc, f"[{sec}]", None if optional else True


@settings(max_examples=1100, **PROPERTY)
@given(case=mutated_profile())
def test_a_mutated_profile_loads_valid_or_fails_naming_its_key(scratch, case):
    doc, at_fault, must_fail = case
    path = scratch / "mutated.toml"
    rewrite(path, toml_document(doc).encode("utf-8"))
    p, message = load(path)
    if p is None:
        assert at_fault in message, (at_fault, message)
        event("refused, naming the key")
    else:
        assert not must_fail, f"loaded a profile with {at_fault} broken"
        section, _, key = at_fault.partition(".")
        if at_fault.startswith("[") or key not in doc[section]:      # an optional key or section left out
            event("valid profile, default taken")
            return
        written, kind = doc[section][key]["value"], SCHEMA[section][key][0]
        assert getattr(getattr(p, section), key) == (float(written) if kind == "float" else written)
        event("valid profile")
