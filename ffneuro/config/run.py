"""``RunConfig``: the seven sections together, their cross-checks, and every way a run's
config is written down: nested dicts (``config.json``), TOML files (``--config``, the
shipped presets), ``section.key=value`` assignments (``--set``) and the flat keys of
run dirs and benchmark files written before the config had sections.

A config is plain data: it round-trips through JSON (``to_dict``/``from_dict``) so a run
dir fully describes how it was produced, and a sweep is just a list of configs.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ffneuro.config.sections import (SECTIONS, CFFConfig, ConfigError, DataConfig, HardwareConfig,
                                     InferenceConfig, LayerSpec, LoopConfig, OptimConfig, UnitsConfig)

# Flat (pre-section) key → (section, field) where the names differ; every other flat key is
# the field of the same name in the one section that has it.
FLAT_RENAMES = {"data": ("data", "name"), "cff_theta": ("cff", "theta"), "gamma": ("cff", "gamma"),
                "inference_layers": ("inference", "layers"), "head": ("inference", "head")}


def _flat_table() -> dict[str, tuple[str, str]]:
    table = dict(FLAT_RENAMES)
    taken = {v for v in FLAT_RENAMES.values()}
    for sec, cls in SECTIONS.items():
        for f in fields(cls):
            if (sec, f.name) not in taken:
                assert f.name not in table, f"flat key {f.name} is ambiguous"
                table[f.name] = (sec, f.name)
    return table


FLAT_KEYS: dict[str, tuple[str, str]] = _flat_table()


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run (besides the data files themselves).

    Defaults are the CFF paper's network (3×500 ReLU, Adam 1e-3) with fewer epochs; the
    presets hold the published recipes.
    """

    data: DataConfig = field(default_factory=DataConfig)
    units: UnitsConfig = field(default_factory=UnitsConfig)
    cff: CFFConfig = field(default_factory=CFFConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)

    # -- checks ------------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        for sec in SECTIONS:
            getattr(self, sec).validate()
        if self.loop.negatives == "hard" and not self.inference.head:
            raise ConfigError("loop.negatives = 'hard' samples from the one-pass head's scores: enable "
                              "inference.head")
        n = self.units.n_units
        if self.units.loss == "cwc" and self.data.label_encoding not in ("auto", "none"):
            raise ConfigError(f"units.loss = 'cwc' takes the label in the loss, not the input: "
                              f"data.label_encoding must be auto or none, not {self.data.label_encoding!r}")
        if self.units.loss != "cwc" and self.data.label_encoding == "none":
            raise ConfigError("data.label_encoding = 'none' leaves the label out of the input: only "
                              "units.loss = 'cwc' (channel-wise competition) learns without it")
        if self.units.loss == "cwc" and (self.loop.algo == "cff" or self.loop.negatives == "hard"):
            raise ConfigError("units.loss = 'cwc' uses no negative data: it works with loop.algo = ff and "
                              "loop.negatives = random (unused)")
        if self.loop.unit_epochs and len(self.loop.unit_epochs) != n:
            raise ConfigError(f"loop.unit_epochs has {len(self.loop.unit_epochs)} entries for {n} units (one per unit)")
        if self.inference.layers is not None:
            bad = [i for i in self.inference.layers if not 1 <= i <= n]
            if bad or not self.inference.layers:
                raise ConfigError(f"inference.layers must be 1-based unit indices in 1..{n}, got {bad}")
        return self

    # -- edits -------------------------------------------------------------------------
    def replace(self, **sections: dict) -> "RunConfig":
        """A copy with fields changed per section: ``cfg.replace(optim={"lr": 3e-3})``."""
        changes = {}
        for sec, values in sections.items():
            cls = SECTIONS.get(sec)
            if cls is None:
                raise ConfigError(f"unknown config section {sec!r} (sections: {', '.join(SECTIONS)})")
            changes[sec] = dataclasses.replace(getattr(self, sec), **_coerce_section(sec, values))
        return dataclasses.replace(self, **changes).validate()

    def with_flat(self, **flat) -> "RunConfig":
        """A copy with fields changed by their flat names (``lr=3e-3, layers=(64,)``)."""
        return self.replace(**_nest(flat))

    def with_sets(self, assignments: list[str]) -> "RunConfig":
        """A copy with ``section.key=value`` assignments applied in order (``--set``)."""
        nested: dict[str, dict] = {}
        for a in assignments:
            sec, key, value = parse_assignment(a)
            nested.setdefault(sec, {})[key] = value
        return self.replace(**nested)

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {sec: dataclasses.asdict(getattr(self, sec)) for sec in SECTIONS}

    def flat(self) -> dict:
        """The config by flat key (the form run dirs written before sections hold)."""
        return {k: getattr(getattr(self, sec), name) for k, (sec, name) in FLAT_KEYS.items()}

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> "RunConfig":
        """From a nested dict (sections), or from the flat dict of an older run dir."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: a config must be a table of sections")
        if d and not any(isinstance(v, dict) for v in d.values()):
            return cls.from_flat(**d)
        unknown = sorted(set(d) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{source}: unknown config section {unknown[0]!r} (sections: {', '.join(SECTIONS)})")
        for sec, values in d.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: {sec} must be a table of keys, not {values!r}")
        return cls().replace(**d)

    @classmethod
    def from_flat(cls, **flat) -> "RunConfig":
        """From flat keys (``layers=(64,), lr=3e-3, algo="cff"``): older run dirs, bench
        files and quick scripts."""
        return cls().replace(**_nest(flat))

    @classmethod
    def from_toml(cls, path: Path) -> "RunConfig":
        return cls.from_dict(read_toml(path), source=str(path))


def _nest(flat: dict) -> dict[str, dict]:
    nested: dict[str, dict] = {}
    for k, v in flat.items():
        if k not in FLAT_KEYS:
            raise ConfigError(f"unknown config key {k!r}")
        sec, name = FLAT_KEYS[k]
        nested.setdefault(sec, {})[name] = v
    return nested


def field_of(sec: str, key: str) -> dataclasses.Field:
    cls = SECTIONS.get(sec)
    if cls is None:
        raise ConfigError(f"unknown config section {sec!r} (sections: {', '.join(SECTIONS)})")
    for f in fields(cls):
        if f.name == key:
            return f
    raise ConfigError(f"unknown key {sec}.{key} (keys of [{sec}]: {', '.join(f.name for f in fields(cls))})")


def _coerce_section(sec: str, values: dict) -> dict:
    return {k: coerce(sec, k, v) for k, v in values.items()}


def coerce(sec: str, key: str, value: Any) -> Any:
    """``value`` (from JSON, TOML or Python) as the type the field ``sec.key`` declares."""
    f = field_of(sec, key)
    kind = str(f.type)
    where = f"{sec}.{key}"
    if value is None:
        if "None" not in kind:
            raise ConfigError(f"{where} cannot be empty")
        return None
    if "LayerSpec" in kind:
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where} = {value!r} has the wrong type (expected a list of units)")
        try:
            return tuple(LayerSpec.from_value(v) for v in items)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    try:
        if kind.startswith("tuple"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in value):
                raise ValueError
            return tuple(int(v) for v in value)
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind.startswith("int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            return value
        if kind.startswith("float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return float(value)
        if kind.startswith("str"):
            if not isinstance(value, str):
                raise ValueError
            return value
    except ValueError:
        expected = type_name(f).replace("comma-separated integers", "a list of integers")
        raise ConfigError(f"{where} = {value!r} has the wrong type (expected {expected})") from None
    raise AssertionError(f"unhandled field type {kind}")


def type_name(f: dataclasses.Field) -> str:
    """A field's type as a user reads it."""
    kind = str(f.type)
    if "LayerSpec" in kind:
        return "comma-separated units KIND:SIZE[:option...]"
    base = ("comma-separated integers" if kind.startswith("tuple") else "true or false" if kind.startswith("bool")
            else "an integer" if kind.startswith("int") else "a number" if kind.startswith("float") else "a string")
    return base + (" or none" if "None" in kind else "")


def parse_value(sec: str, key: str, text: str) -> Any:
    """A ``--set`` value (always a string) as the field's type: numbers, true/false,
    comma-separated integers, ``none`` for an optional field."""
    f = field_of(sec, key)
    kind = str(f.type)
    t = text.strip()
    if "None" in kind and t.lower() in ("none", "null", ""):
        return None
    if "LayerSpec" in kind:
        return coerce(sec, key, t)
    try:
        if kind.startswith("tuple"):
            return tuple(int(v) for v in t.replace(" ", "").split(",") if v)
        if kind.startswith("bool"):
            low = t.lower()
            if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return low in ("true", "1", "yes", "on")
        if kind.startswith("int"):
            return int(t)
        if kind.startswith("float"):
            return float(t)
    except ValueError:
        raise ConfigError(f"{sec}.{key} = {text!r} is not {type_name(f)}") from None
    return t


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``"optim.lr=3e-3"`` → ("optim", "lr", 0.003)."""
    path, sep, value = text.partition("=")
    sec, dot, key = path.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. optim.lr=3e-3 "
                          f"(sections: {', '.join(SECTIONS)})")
    return sec, key, parse_value(sec, key, value)


def read_toml(path: Path) -> dict:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {' '.join(str(e).split())}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {' '.join(str(e).split())}") from None


# -- presets: TOML files shipped in ffneuro/config/presets/ ---------------------------
def preset_dir() -> Path:
    return Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.toml"))


def preset_dict(name: str) -> dict:
    """The nested overrides of a shipped preset."""
    path = preset_dir() / f"{name}.toml"
    if "/" in name or not path.is_file():
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(preset_names())})")
    return read_toml(path)


def preset(name: str) -> RunConfig:
    """The default config with a shipped preset applied."""
    return RunConfig.from_dict(preset_dict(name), source=f"preset {name}")
