"""Hardware profiles: precision, memory budget, streaming limits, learning rule and energy table.

A profile is a TOML file in ``hw_profiles/`` (installed as package data ``ffneuro.hw_profiles``)
or anywhere on disk. Every leaf is an inline table that carries its value *and* where the
value comes from::

    [precision]
    weight_bits = { value = 8, source = "Davies et al., IEEE Micro 38(1) 2018", confidence = "pre-silicon" }

``confidence`` is one of:

- ``measured``    measured on fabricated silicon and published;
- ``pre-silicon`` published simulation of the design before (or without) silicon measurement;
- ``datasheet``   vendor documentation, product brief or published architecture parameter;
- ``derived``     arithmetic on published figures (the ``note`` shows the arithmetic);
- ``estimated``   a model built from figures of *other* hardware (e.g. Horowitz 45 nm) because
                  the chip has no published figure;
- ``assumed``     our modelling choice with no published figure (the ``note`` says why).

A file may start with ``extends = "parent"`` (a shipped name, a sibling ``<name>.toml`` or a
path relative to the file); the child's leaves replace the parent's leaf by leaf (a leaf —
value, source, confidence, note — is replaced whole, never merged field by field).

Energy convention (what the estimator multiplies by event counts). Each energy is *exclusive*
of the others, so the estimator may sum them without double counting:

- ``synop_dense_pj``          one multiply-accumulate of a graded (multi-bit) input into the accumulator;
- ``synop_sparse_pj``         one accumulate of a binary event (spike) into the accumulator;
- ``neuron_update_active_pj`` one neuron update in a time step/sample in which it received input;
- ``neuron_update_idle_pj``   one neuron update without input (leak only; 0 when clock-gated);
- ``weight_read_pj``          one weight read from synaptic memory *beyond* what the synop figure includes;
- ``weight_write_pj``         one weight write-back;
- ``learning_update_pj``      the arithmetic of one weight update (Δw computation and add);
- ``state_access_pj``         one read or write of a neuron state / activation word;
- ``goodness_op_pj``          one goodness term (square and accumulate of one activity);
- ``spike_route_pj``          delivering one spike (output event) to its destination core;
- ``static_power_mw``         always-on power while the chip runs;
- ``time_per_step_ns``        wall time of one network time step (0: not modelled, so no
                              static energy or latency is derived from it).

When a chip publishes an all-in figure (e.g. Loihi's 23.6 pJ synaptic op includes the weight
read), the components it includes are set to 0 and the ``note`` says so.

Two optional sections (a key left out takes the default below, cited as "not given in the
profile", confidence ``assumed``; shipped profiles give every key with its source):

``[time]``: the time one event occupies the core that processes it, in ns, one key per event
kind as above (``synop_dense_ns``, ``synop_sparse_ns``, ``neuron_update_ns``,
``weight_read_ns``, ``weight_write_ns``, ``learning_update_ns``, ``state_access_ns``,
``goodness_op_ns``, ``spike_route_ns``; default 0 = takes no time, not modelled) and
``lanes_per_core`` (default 1): events one core processes at once (parallel pipelines or
SIMD lanes). The latency model that uses them is in :mod:`ffneuro.hw.energy`.

``[energy_model]``: ``model = "table"`` (default: the per-event energies above) or
``"bit-scaled"``: the arithmetic and memory events are priced from the operand widths of
``[precision]`` with the coefficients ``int_add_pj_per_bit`` (an integer add, linear in its
width), ``int_mult_pj_per_bit2`` (an integer multiply, proportional to the product of its
operand widths), ``sram_read_pj_per_bit`` and ``sram_write_pj_per_bit`` (one bit of a
weight read or written) and ``state_access_pj_per_bit`` (one bit of a neuron state word,
often a smaller array; 0 takes ``sram_read_pj_per_bit``); :func:`ffneuro.hw.energy.event_energies_pj` gives the formulas.

A file may also say ``energy_from = "ert.yaml"`` (top level; a path relative to the file): an
Accelergy energy reference table whose per-action energies (pJ) become the file's per-event
energies, as if written in its ``[energy]`` section (the ten per-event keys; static power
and the step time are still the profile's), and ``energy_model.model`` becomes ``"table"``
(an ERT holds energies at one set of widths). The actions and how an ERT is checked are in
:mod:`ffneuro.hw.accelergy`. An ERT carries no citation: each value's source names the ERT
file and table, and its confidence is ``user`` (:data:`USER_CONFIDENCE`, given by the user;
not a confidence a TOML leaf may claim). A key given both in the file and by its ERT is
refused, and so is ``energy_from`` beside ``energy_model.model = "bit-scaled"`` in the same
file; a child profile replaces ERT values leaf by leaf like any other.
"""

from __future__ import annotations

import importlib.resources
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ProfileError(ValueError):
    """A hardware profile file that cannot be loaded (one-line message naming the file and
    key; line breaks in a message, e.g. from a name in the file, become spaces)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


CONFIDENCES = ("measured", "pre-silicon", "datasheet", "derived", "estimated", "assumed")
LEAF_FIELDS = ("value", "source", "confidence", "note")
TOP_LEVEL_KEYS = ("name", "description", "extends", "energy_from")
USER_CONFIDENCE = "user"     # the confidence of a value taken from an energy_from ERT


@dataclass(frozen=True)
class Source:
    """Where a profile value comes from."""

    source: str
    confidence: str
    note: str = ""


@dataclass(frozen=True)
class Precision:
    format: str                 # "fixed" | "float"
    weight_bits: int
    weight_signed: bool
    scale_rule: str             # "pow2" | "per_layer" | "none"
    activation_bits: int
    state_bits: int
    accumulator_bits: int
    learning_bits: int          # bits of the weight update
    trace_bits: int
    rounding: str               # "nearest" | "stochastic"


@dataclass(frozen=True)
class Memory:
    cores: int
    synaptic_sram_bytes_per_core: int
    neurons_per_core: int
    max_fan_in_per_core: int
    max_fan_out_per_core: int
    other_sram_bytes: int       # per chip: on-chip memory besides synaptic SRAM (activations, state, ...)


@dataclass(frozen=True)
class Streaming:
    max_batch: int              # samples resident at once = largest batch the chip learns from
    time_steps: int             # steps per sample for spiking use
    store_activations: bool     # False for on-chip learning (no backward pass)


@dataclass(frozen=True)
class Learning:
    optimizer: str              # "sgd" | "sgd_momentum" | "adam"
    lr_power_of_two: bool
    optimizer_state: bool


@dataclass(frozen=True)
class Energy:
    synop_dense_pj: float
    synop_sparse_pj: float
    neuron_update_active_pj: float
    neuron_update_idle_pj: float
    weight_read_pj: float
    weight_write_pj: float
    learning_update_pj: float
    state_access_pj: float
    goodness_op_pj: float
    spike_route_pj: float
    static_power_mw: float
    time_per_step_ns: float


@dataclass(frozen=True)
class Time:
    """ns one event occupies a core (0: not modelled) and the events a core overlaps."""

    synop_dense_ns: float = 0.0
    synop_sparse_ns: float = 0.0
    neuron_update_ns: float = 0.0
    weight_read_ns: float = 0.0
    weight_write_ns: float = 0.0
    learning_update_ns: float = 0.0
    state_access_ns: float = 0.0
    goodness_op_ns: float = 0.0
    spike_route_ns: float = 0.0
    lanes_per_core: int = 1


@dataclass(frozen=True)
class EnergyModel:
    """How events are priced: the ``[energy]`` table, or scaled by operand widths."""

    model: str = "table"            # "table" | "bit-scaled"
    int_add_pj_per_bit: float = 0.0
    int_mult_pj_per_bit2: float = 0.0
    sram_read_pj_per_bit: float = 0.0
    sram_write_pj_per_bit: float = 0.0
    state_access_pj_per_bit: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    precision: Precision
    memory: Memory
    streaming: Streaming
    learning: Learning
    energy: Energy
    sources: dict[str, Source]  # keyed "section.key"
    path: str                   # the file this profile was loaded from
    time: Time = Time()
    energy_model: EnergyModel = EnergyModel()

    @property
    def is_float(self) -> bool:
        return self.precision.format == "float"


# ---------------------------------------------------------------------------------------------
# Schema: section -> key -> (kind, constraint). kinds: int (range), float (finite, >= 0), bool, enum.

_INT, _FLOAT, _BOOL, _ENUM = "int", "float", "bool", "enum"
INT_MAX = 2 ** 53      # the largest integer a profile may hold: exact as a float, fits int64

SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "precision": {
        "format": (_ENUM, ("fixed", "float")),
        "weight_bits": (_INT, (1, 32)),
        "weight_signed": (_BOOL, None),
        "scale_rule": (_ENUM, ("pow2", "per_layer", "none")),
        "activation_bits": (_INT, (1, 32)),
        "state_bits": (_INT, (1, 64)),
        "accumulator_bits": (_INT, (1, 64)),
        "learning_bits": (_INT, (1, 32)),
        "trace_bits": (_INT, (1, 32)),
        "rounding": (_ENUM, ("nearest", "stochastic")),
    },
    "memory": {
        "cores": (_INT, (1, INT_MAX)),
        "synaptic_sram_bytes_per_core": (_INT, (1, INT_MAX)),
        "neurons_per_core": (_INT, (1, INT_MAX)),
        "max_fan_in_per_core": (_INT, (1, INT_MAX)),
        "max_fan_out_per_core": (_INT, (1, INT_MAX)),
        "other_sram_bytes": (_INT, (0, INT_MAX)),
    },
    "streaming": {
        "max_batch": (_INT, (1, INT_MAX)),
        "time_steps": (_INT, (1, INT_MAX)),
        "store_activations": (_BOOL, None),
    },
    "learning": {
        "optimizer": (_ENUM, ("sgd", "sgd_momentum", "adam")),
        "lr_power_of_two": (_BOOL, None),
        "optimizer_state": (_BOOL, None),
    },
    "energy": {f.name: (_FLOAT, None) for f in fields(Energy)},
    "time": {f.name: (_INT, (1, 1 << 20)) if f.name == "lanes_per_core" else (_FLOAT, None)
             for f in fields(Time)},
    "energy_model": {"model": (_ENUM, ("table", "bit-scaled")),
                     **{f.name: (_FLOAT, None) for f in fields(EnergyModel) if f.name != "model"}},
}

_SECTION_CLASSES = {"precision": Precision, "memory": Memory, "streaming": Streaming,
                    "learning": Learning, "energy": Energy, "time": Time, "energy_model": EnergyModel}

# Sections whose keys may be left out: the dataclass default, cited as below.
OPTIONAL_SECTIONS = ("time", "energy_model")
DEFAULT_SOURCE = Source(source="not given in the profile", confidence="assumed",
                        note="default: 0 (not modelled) for a time or coefficient, 1 lane per core, the table model")

# The schema and the dataclasses must agree (checked at import, cheap).
for _section, _cls in _SECTION_CLASSES.items():
    assert tuple(SCHEMA[_section]) == tuple(f.name for f in fields(_cls)), _section


def _allowed(kind: str, constraint: Any) -> str:
    """Human description of the allowed values of a key, for error messages."""
    if kind == _INT:
        lo, hi = constraint
        return f"an integer in {_range_text(lo, hi)}"
    if kind == _FLOAT:
        return "a finite number >= 0"
    if kind == _BOOL:
        return "true or false"
    return "one of " + ", ".join(f'"{c}"' for c in constraint)


def _range_text(lo: int, hi: int) -> str:
    return f"{lo}..{'2^53' if hi == INT_MAX else hi}"


def _toml_string(text: str) -> str:
    """``text`` as a one-line TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04X}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + '"'


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fmt(value: Any) -> str:
    """A value as it would be written in TOML (for one-line error messages, shortened)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _shorten(_toml_string(value))
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, int) and abs(value) > INT_MAX:
        return _shorten(str(value), 24)
    return _shorten(repr(value))


def _key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, else a quoted string (one line)."""
    return name if name and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name) else _toml_string(name)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table",
            list: "array"}.get(type(value), type(value).__name__)


def _check_value(file: str, key: str, value: Any, kind: str, constraint: Any) -> Any:
    """Type- and range-check one value; return it normalised (floats as float)."""
    allowed = _allowed(kind, constraint)
    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(f"{file}: {key} = {_fmt(value)} has the wrong type "
                               f"(expected {allowed}, got {_type_name(value)})")
        lo, hi = constraint
        if not lo <= value <= hi:
            raise ProfileError(f"{file}: {key} = {_fmt(value)} is out of range (allowed {_range_text(lo, hi)})")
        return value
    if kind == _FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{file}: {key} = {_fmt(value)} has the wrong type "
                               f"(expected {allowed}, got {_type_name(value)})")
        try:
            number = float(value)          # an integer beyond the float range overflows
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ProfileError(f"{file}: {key} = {_fmt(value)} is not a finite number (allowed >= 0)")
        if number < 0:
            raise ProfileError(f"{file}: {key} = {_fmt(value)} is out of range (allowed >= 0)")
        return number
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise ProfileError(f"{file}: {key} = {_fmt(value)} has the wrong type "
                               f"(expected {allowed}, got {_type_name(value)})")
        return value
    if not isinstance(value, str):
        raise ProfileError(f"{file}: {key} = {_fmt(value)} has the wrong type "
                           f"(expected {allowed}, got {_type_name(value)})")
    if value not in constraint:
        raise ProfileError(f"{file}: {key} = {_fmt(value)} is not allowed (allowed {allowed})")
    return value


def _check_leaf(file: str, key: str, leaf: Any, kind: str, constraint: Any) -> tuple[Any, Source]:
    """Validate one ``{ value, source, confidence, note }`` leaf."""
    shape = '{ value = ..., source = "...", confidence = "..." }'
    if not isinstance(leaf, dict):
        raise ProfileError(f"{file}: {key} = {_fmt(leaf)} must be an inline table {shape} "
                           f"(a value with its source and confidence)")
    unknown = sorted(set(leaf) - set(LEAF_FIELDS))
    if unknown:
        raise ProfileError(f"{file}: unknown field {key}.{_key(unknown[0])} "
                           f"(allowed: {', '.join(LEAF_FIELDS)})")
    if "value" not in leaf:
        raise ProfileError(f"{file}: {key} has no value (expected {shape} with value {_allowed(kind, constraint)})")
    value = _check_value(file, key, leaf["value"], kind, constraint)
    source = leaf.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ProfileError(f"{file}: {key} has no source (every value needs source = \"...\", "
                           f"a non-empty string naming where it comes from)")
    confidence = leaf.get("confidence")
    if confidence is None:
        raise ProfileError(f"{file}: {key} has no confidence (allowed: {', '.join(CONFIDENCES)})")
    if confidence not in CONFIDENCES:
        raise ProfileError(f"{file}: {key}.confidence = {_fmt(confidence)} is not allowed "
                           f"(allowed: {', '.join(CONFIDENCES)})")
    note = leaf.get("note", "")
    if not isinstance(note, str):
        raise ProfileError(f"{file}: {key}.note = {_fmt(note)} has the wrong type (expected a string)")
    return value, Source(source=source, confidence=confidence, note=note)


# ---------------------------------------------------------------------------------------------
# Locating files.

def profile_dir() -> Path:
    """The folder of shipped profiles (package data, or ``<repo>/hw_profiles`` in a checkout)."""
    try:
        res = importlib.resources.files("ffneuro.hw_profiles")
    except (ModuleNotFoundError, TypeError):
        res = None
    if res is not None:
        if isinstance(res, Path) and res.is_dir():
            return res
        # A namespace package (no __init__.py) gives a MultiplexedPath; its entries are Paths.
        for entry in res.iterdir():
            if isinstance(entry, Path) and entry.name.endswith(".toml"):
                return entry.parent
    return Path(__file__).resolve().parents[2] / "hw_profiles"


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    folder = profile_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml"))


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path


def _user_path(text: str) -> Path:
    """``text`` as a path with ``~`` expanded (kept as it is when there is no such home)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a regular file; a name the system refuses (too long, …) is not."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _resolve(name_or_path: str) -> Path:
    if _looks_like_path(name_or_path):
        path = _user_path(name_or_path)
        if not _is_file(path):
            raise ProfileError(f"{name_or_path}: no such profile file")
        return path
    shipped = profile_dir() / f"{name_or_path}.toml"
    if _is_file(shipped):
        return shipped
    raise ProfileError(f"unknown profile {name_or_path!r} (shipped: {', '.join(list_profiles())}; "
                       f"or give a path to a .toml file)")


def _resolve_parent(child: Path, parent: str) -> Path:
    """``extends`` target: a path relative to the child, a sibling ``<name>.toml``, or a shipped name."""
    if _looks_like_path(parent):
        path = _user_path(parent)
        path = path if path.is_absolute() else child.parent / path
        if _is_file(path):
            return path
    else:
        sibling = child.parent / f"{parent}.toml"
        if _is_file(sibling):
            return sibling
        shipped = profile_dir() / f"{parent}.toml"
        if _is_file(shipped):
            return shipped
    raise ProfileError(f"{child}: extends = {_fmt(parent)} is not a shipped profile nor a file "
                       f"relative to {child.name} (shipped: {', '.join(list_profiles())})")


# ---------------------------------------------------------------------------------------------
# Loading.

def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        message = " ".join(str(exc).split())
        raise ProfileError(f"{path}: TOML syntax error: {message}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ProfileError(f"{path}: TOML nested too deeply to read") from None


def _parse_file(path: Path) -> tuple[dict, dict[str, dict[str, tuple[Any, Source]]]]:
    """Read one file and validate what it contains (not yet completeness).

    Returns the top-level scalars (name, description, extends) and, per section, the
    validated leaves as (value, Source).
    """
    file = str(path)
    raw = _read_toml(path)
    top: dict = {}
    sections: dict[str, dict[str, tuple[Any, Source]]] = {}
    for key, item in raw.items():
        if key in SCHEMA:
            if not isinstance(item, dict):
                raise ProfileError(f"{file}: {key} = {_fmt(item)} must be a section [{key}]")
            schema = SCHEMA[key]
            leaves = {}
            for sub, leaf in item.items():
                if sub not in schema:
                    raise ProfileError(f"{file}: unknown key {key}.{_key(sub)} (allowed: {', '.join(schema)})")
                kind, constraint = schema[sub]
                leaves[sub] = _check_leaf(file, f"{key}.{sub}", leaf, kind, constraint)
            sections[key] = leaves
        elif key in TOP_LEVEL_KEYS:
            if not isinstance(item, str) or (key != "description" and not item.strip()):
                raise ProfileError(f"{file}: {key} = {_fmt(item)} has the wrong type (expected a non-empty string)")
            top[key] = item
        elif isinstance(item, dict):
            raise ProfileError(f"{file}: unknown section [{_key(key)}] (allowed: {', '.join(SCHEMA)})")
        else:
            raise ProfileError(f"{file}: unknown top-level key {_key(key)} "
                               f"(allowed: {', '.join(TOP_LEVEL_KEYS)} and sections {', '.join(SCHEMA)})")
    if "name" not in top:
        raise ProfileError(f"{file}: missing top-level key name (a non-empty string)")
    if "energy_from" in top:
        _energy_from(path, top["energy_from"], sections)
    return top, sections


def _energy_from(path: Path, ref: str, sections: dict[str, dict[str, tuple[Any, Source]]]) -> None:
    """Put the per-action energies of the ERT ``ref`` (relative to ``path``) into the file's
    ``[energy]`` leaves, and ``energy_model.model = "table"`` (module docstring)."""
    from ffneuro.hw.accelergy import ACTION_FIELDS, AccelergyError, read_ert

    file, key = str(path), f"energy_from = {_fmt(ref)}"
    ert_path = _user_path(ref)
    ert_path = ert_path if ert_path.is_absolute() else path.parent / ert_path
    try:
        ert = read_ert(ert_path)
    except AccelergyError as exc:
        raise ProfileError(f"{file}: {key}: {exc}") from None
    energy = sections.setdefault("energy", {})
    given = [f for f in ACTION_FIELDS.values() if f in energy]
    if given:
        raise ProfileError(f"{file}: energy.{given[0]} is given in the file and by {key} (give it in one place)")
    model = sections.setdefault("energy_model", {})
    if model.get("model", ("table",))[0] != "table":
        raise ProfileError(f"{file}: {key} prices events by the ERT's table, but the file sets "
                           f"energy_model.model = {_fmt(model['model'][0])} (allowed with energy_from: \"table\")")
    for action, field in ACTION_FIELDS.items():
        energy[field] = (ert.energy_pj(action), Source(
            source=f"Accelergy ERT {ert_path} (energy_from), table {ert.table(action)!r}, action {action}",
            confidence=USER_CONFIDENCE, note="an ERT carries no citation: the figure is the user's"))
    model.setdefault("model", ("table", Source(
        source=f"energy_from = {_fmt(ref)}", confidence=USER_CONFIDENCE,
        note="an ERT holds energies at one set of operand widths, so events are priced by its table")))


def _load_merged(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[str, dict[str, tuple[Any, Source]]]]:
    """Load ``path`` and, recursively, its ``extends`` parents; child leaves replace parent leaves."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:       # e.g. a symlink loop
        raise ProfileError(f"{path}: cannot resolve the path: {' '.join(str(exc).split())}") from None
    if resolved in chain:
        loop = " -> ".join(p.name for p in chain + (resolved,))
        raise ProfileError(f"{path}: extends cycle {loop}")
    top, sections = _parse_file(path)
    if "extends" not in top:
        return top, sections
    parent_top, merged = _load_merged(_resolve_parent(path, top["extends"]), chain + (resolved,))
    merged = {sec: dict(leaves) for sec, leaves in merged.items()}
    for sec, leaves in sections.items():
        merged.setdefault(sec, {}).update(leaves)
    out_top = {"description": parent_top.get("description", ""), **top}
    return out_top, merged


def _cross_checks(file: str, values: dict[str, dict[str, Any]]) -> None:
    p, learn = values["precision"], values["learning"]
    if p["format"] == "fixed" and p["weight_signed"] and p["weight_bits"] < 2:
        raise ProfileError(f"{file}: precision.weight_bits = 1 with precision.weight_signed = true leaves "
                           f"no positive weight (allowed: weight_bits >= 2, or weight_signed = false)")
    model = values["energy_model"]
    if model["model"] == "bit-scaled":
        zero = [k for k in ("int_add_pj_per_bit", "int_mult_pj_per_bit2", "sram_read_pj_per_bit")
                if not model[k] > 0]
        if zero:
            raise ProfileError(f"{file}: energy_model.model = \"bit-scaled\" needs energy_model.{zero[0]} > 0 "
                               f"(the coefficient that prices operands by their width)")
    if learn["optimizer"] != "sgd" and not learn["optimizer_state"]:
        raise ProfileError(f"{file}: learning.optimizer = {_fmt(learn['optimizer'])} keeps per-weight state "
                           f"but learning.optimizer_state = false (allowed: optimizer = \"sgd\", "
                           f"or optimizer_state = true)")


def load_profile(name_or_path: str) -> Profile:
    """Load a shipped profile by name (``"loihi-like"``) or a ``.toml`` file by path.

    Raises ProfileError (a ValueError) with a one-line message naming the file and key.
    """
    path = _resolve(str(name_or_path))
    file = str(path)
    top, sections = _load_merged(path, ())
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, Source] = {}
    for sec, schema in SCHEMA.items():
        leaves = sections.get(sec)
        if leaves is None and sec in OPTIONAL_SECTIONS:
            leaves = {}
        if leaves is None:
            raise ProfileError(f"{file}: missing section [{sec}] (needs keys: {', '.join(schema)})")
        for key, (kind, constraint) in schema.items():
            if key not in leaves and sec in OPTIONAL_SECTIONS:
                default = next(f.default for f in fields(_SECTION_CLASSES[sec]) if f.name == key)
                leaves[key] = (default, DEFAULT_SOURCE)
            if key not in leaves:
                raise ProfileError(f"{file}: missing key {sec}.{key} ({_allowed(kind, constraint)}, "
                                   f"with source and confidence)")
            value, src = leaves[key]
            values.setdefault(sec, {})[key] = value
            sources[f"{sec}.{key}"] = src
    _cross_checks(file, values)
    return Profile(
        name=top["name"],
        description=top.get("description", ""),
        precision=Precision(**values["precision"]),
        memory=Memory(**values["memory"]),
        streaming=Streaming(**values["streaming"]),
        learning=Learning(**values["learning"]),
        energy=Energy(**values["energy"]),
        sources=sources,
        path=file,
        time=Time(**values["time"]),
        energy_model=EnergyModel(**values["energy_model"]),
    )


def profile_to_dict(p: Profile) -> dict:
    """JSON-able view: name, description, path, one dict of values per section, and the sources.

    ``sources`` maps "section.key" to {"source", "confidence", "note"}.
    """
    out: dict[str, Any] = {"name": p.name, "description": p.description, "path": p.path}
    for sec in SCHEMA:
        obj = getattr(p, sec)
        out[sec] = {f.name: getattr(obj, f.name) for f in fields(obj)}
    out["sources"] = {key: {"source": s.source, "confidence": s.confidence, "note": s.note}
                      for key, s in p.sources.items()}
    return out
