"""A sweep's search space: a TOML file read into frozen dataclasses, checked on load.

The file has three parts (docs/sweep.md has the full format and a worked example)::

    [study]                 # name, objectives, directions, trials, sampler, pruner, seed
    [fixed]                 # "section.key" = value: held fixed in every trial
    [params."optim.lr"]     # low/high (log, step) or choices: what the sampler varies

A key is a config field (``"optim.lr"``, ``"units.layers"``, ``"hardware.profile"``), the
recipe (``"preset"``: a shipped preset name) or a field of the chip profile
(``"profile.precision.weight_bits"``: the trial then runs under a profile that extends
``hardware.profile`` with that value). Every error names the file, the key and what is
allowed, in one line. No optuna and no torch here: a space is plain data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffneuro.config import ConfigError, RunConfig
from ffneuro.config.run import coerce, field_of, parse_value, preset_dict, preset_names, read_toml

# What a training trial can be judged on: name -> (unit, where it comes from).
TRAIN_OBJECTIVES = {
    "val_error": "% error on the held-out validation split (data.val_fraction)",
    "inference_energy_pj": "pJ per inference sample, measured on the run (needs a profile)",
    "training_energy_pj": "pJ per training sample, measured on the run (needs a profile)",
    "sram_bytes": "bytes of on-chip SRAM the FF network needs (needs a profile)",
    "train_s": "seconds of training wall time",
}
# What an estimate-only grid point can be judged on (analytic, no training).
GRID_OBJECTIVES = {
    "inference_energy_pj": "pJ per inference sample (analytic)",
    "training_energy_pj": "pJ per training sample (analytic)",
    "sram_bytes": "bytes of on-chip SRAM the FF network needs",
    "cores": "cores the network is mapped onto",
}
NEEDS_PROFILE = ("inference_energy_pj", "training_energy_pj", "sram_bytes", "cores")
DIRECTIONS = ("minimize", "maximize")
SAMPLERS = ("auto", "tpe", "nsga2", "random")
PRUNERS = ("median", "none")
VAL_MODES = ("one_pass", "multi_pass")
STUDY_KEYS = ("name", "objectives", "directions", "trials", "sampler", "seed", "pruner", "pruner_startup_trials",
              "pruner_warmup_epochs", "val_mode")
ESTIMATE_KEYS = ("input_size", "activity", "input_activity", "num_classes", "inference")
PROFILE_PREFIX = "profile."


class SpaceError(ConfigError):
    """A search space file that cannot be used (one-line message naming file and key)."""


@dataclass(frozen=True)
class Param:
    """One dimension of the search: a float or int range (``log``, ``step``) or a list of
    choices. ``kind``: "float", "int" or "choice"."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def grid_values(self) -> tuple:
        """The values a grid visits: the choices, or every step of an int range."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "int":
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise SpaceError(f"params.{_q(self.key)}: a grid needs choices (or an int range), not a float range")


@dataclass(frozen=True)
class EstimateSettings:
    """The analytic estimate's assumptions for ``sweep grid`` (those of ``ffneuro estimate``)."""

    input_size: int = 784
    activity: float = 0.5
    input_activity: float = 0.2
    num_classes: int = 10
    inference: str = "one-pass"


@dataclass(frozen=True)
class SearchSpace:
    path: str
    name: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    trials: int
    fixed: tuple[tuple[str, Any], ...]
    params: tuple[Param, ...]
    sampler: str = "auto"
    seed: int | None = None
    pruner: str = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 1
    val_mode: str = "one_pass"
    estimate: EstimateSettings = field(default_factory=EstimateSettings)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def to_dict(self) -> dict:
        """Plain data (stored with the study: a later run against it must use the same space)."""
        d = dataclasses.asdict(self)
        d.pop("path")
        d["fixed"] = [list(kv) for kv in self.fixed]
        return _plain(d)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _q(key: str) -> str:
    return f'"{key}"' if "." in key else key


# -- loading ---------------------------------------------------------------------------------
def load_space(path: Path | str) -> SearchSpace:
    """Read and check a search space file; raises SpaceError (one line) on anything wrong."""
    path = Path(path)
    try:
        raw = read_toml(path)
    except ConfigError as e:
        raise SpaceError(str(e).replace("config file", "search space file")) from None
    return parse_space(raw, str(path))


def parse_space(raw: dict, source: str) -> SearchSpace:
    def fail(msg: str):
        raise SpaceError(f"{source}: {msg}")

    unknown = sorted(set(raw) - {"study", "fixed", "params", "estimate"})
    if unknown:
        fail(f"unknown table [{unknown[0]}] (allowed: study, fixed, params, estimate)")
    study = _table(raw, "study", source)
    bad = sorted(set(study) - set(STUDY_KEYS))
    if bad:
        fail(f"unknown key study.{bad[0]} (allowed: {', '.join(STUDY_KEYS)})")
    name = study.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\\n"):
        fail(f"study.name = {name!r} must be a non-empty name without slashes")
    objectives = study.get("objectives", ["val_error"])
    known = {**TRAIN_OBJECTIVES, **GRID_OBJECTIVES}
    if (not isinstance(objectives, list) or not objectives
            or not all(isinstance(o, str) and o in known for o in objectives)):
        fail(f"study.objectives = {objectives!r} must be a list of: {', '.join(known)}")
    if len(set(objectives)) != len(objectives):
        fail(f"study.objectives = {objectives!r} names an objective twice")
    directions = study.get("directions", ["minimize"] * len(objectives))
    if (not isinstance(directions, list) or len(directions) != len(objectives)
            or not all(d in DIRECTIONS for d in directions)):
        fail(f"study.directions = {directions!r} must give one of {', '.join(DIRECTIONS)} per objective "
             f"({len(objectives)})")
    trials = study.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= 100_000:
        fail(f"study.trials = {trials!r} must be an integer in 1..100000")
    choice = {"sampler": SAMPLERS, "pruner": PRUNERS, "val_mode": VAL_MODES}
    for key, allowed in choice.items():
        if key in study and study[key] not in allowed:
            fail(f"study.{key} = {study[key]!r} is not allowed (choose from {', '.join(allowed)})")
    seed = study.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        fail(f"study.seed = {seed!r} must be an integer >= 0")
    for key in ("pruner_startup_trials", "pruner_warmup_epochs"):
        v = study.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            fail(f"study.{key} = {v!r} must be an integer >= 0")

    fixed = []
    for key, value in _table(raw, "fixed", source).items():
        fixed.append((key, _checked_value(key, value, f"{source}: fixed.{_q(key)}")))
    params = []
    for key, spec in _table(raw, "params", source).items():
        if not isinstance(spec, dict):
            fail(f"params.{_q(key)} must be a table (low/high/log/step, or choices)")
        if key in dict(fixed):
            fail(f"params.{_q(key)}: the key is also in [fixed] (give it in one place)")
        params.append(_param(key, spec, f"{source}: params.{_q(key)}"))
    est = _table(raw, "estimate", source)
    bad = sorted(set(est) - set(ESTIMATE_KEYS))
    if bad:
        fail(f"unknown key estimate.{bad[0]} (allowed: {', '.join(ESTIMATE_KEYS)})")
    estimate = _estimate_settings(est, source)
    space = SearchSpace(
        path=source, name=name.strip(), objectives=tuple(objectives), directions=tuple(directions), trials=trials,
        fixed=tuple(fixed), params=tuple(params), sampler=study.get("sampler", "auto"), seed=seed,
        pruner=study.get("pruner", "median"), pruner_startup_trials=study.get("pruner_startup_trials", 3),
        pruner_warmup_epochs=study.get("pruner_warmup_epochs", 1), val_mode=study.get("val_mode", "one_pass"),
        estimate=estimate)
    try:
        base_config(space, {})          # the fixed part alone must make a valid config
    except ConfigError as e:
        fail(f"[fixed]: {e}")
    return space


def _table(raw: dict, name: str, source: str) -> dict:
    t = raw.get(name, {})
    if not isinstance(t, dict):
        raise SpaceError(f"{source}: {name} must be a table [{name}]")
    return t


def _estimate_settings(est: dict, source: str) -> EstimateSettings:
    d = EstimateSettings()
    for key in ("input_size", "num_classes"):
        v = est.get(key, getattr(d, key))
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpaceError(f"{source}: estimate.{key} = {v!r} must be an integer >= 1")
    for key in ("activity", "input_activity"):
        v = est.get(key, getattr(d, key))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise SpaceError(f"{source}: estimate.{key} = {v!r} must be a number in [0, 1]")
    if est.get("inference", d.inference) not in ("one-pass", "multi-pass"):
        raise SpaceError(f"{source}: estimate.inference = {est['inference']!r} is not allowed "
                         "(choose from one-pass, multi-pass)")
    return EstimateSettings(**est)


def _key_kind(key: str, where: str) -> str:
    """"float", "int", "bool", "str" or "list": what a key's values are."""
    if key == "preset":
        return "str"
    if key.startswith(PROFILE_PREFIX):
        from ffneuro.hw.profiles import SCHEMA

        sec, _, name = key[len(PROFILE_PREFIX):].partition(".")
        if sec not in SCHEMA or name not in SCHEMA[sec]:
            raise SpaceError(f"{where}: unknown profile key {key[len(PROFILE_PREFIX):]!r} (profile keys: "
                             f"profile.SECTION.KEY with SECTION one of {', '.join(SCHEMA)})")
        return {"int": "int", "float": "float", "bool": "bool", "enum": "str"}[SCHEMA[sec][name][0]]
    sec, dot, name = key.partition(".")
    if not dot:
        raise SpaceError(f"{where}: {key!r} is not SECTION.KEY (a config field), preset or profile.SECTION.KEY")
    try:
        f = field_of(sec, name)
    except ConfigError as e:
        raise SpaceError(f"{where}: {e}") from None
    kind = str(f.type)
    return ("list" if kind.startswith("tuple") else "bool" if kind.startswith("bool") else
            "int" if kind.startswith("int") else "float" if kind.startswith("float") else "str")


def _checked_value(key: str, value: Any, where: str) -> Any:
    """``value`` for ``key`` as the sampler stores it (a list field as its text "500,500"),
    after checking it is a value the key accepts."""
    if key == "preset":
        if value not in preset_names():
            raise SpaceError(f"{where}: {value!r} is not a preset (choose from {', '.join(preset_names())})")
        return value
    if key.startswith(PROFILE_PREFIX):
        return _profile_value(key, value, where)
    sec, _, name = key.partition(".")
    _key_kind(key, where)
    if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        value = ",".join(str(v) for v in value)          # [500, 500] -> "500,500", as --set writes it
    try:
        coerced = parse_value(sec, name, value) if isinstance(value, str) else coerce(sec, name, value)
        section = dataclasses.replace(getattr(RunConfig(), sec), **{name: coerced})
        section.validate()
    except ConfigError as e:
        raise SpaceError(f"{where}: {e}") from None
    return value


def _profile_value(key: str, value: Any, where: str) -> Any:
    from ffneuro.hw.profiles import SCHEMA

    sec, _, name = key[len(PROFILE_PREFIX):].partition(".")
    kind, constraint = SCHEMA[sec][name]
    ok = {"int": isinstance(value, int) and not isinstance(value, bool) and (
              constraint is None or constraint[0] <= value <= constraint[1]),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and value >= 0,
          "bool": isinstance(value, bool),
          "enum": value in (constraint or ())}[kind]
    if not ok:
        allowed = (f"an integer in {constraint[0]}..{constraint[1]}" if kind == "int" else
                   "a finite number >= 0" if kind == "float" else "true or false" if kind == "bool" else
                   f"one of {', '.join(constraint)}")
        raise SpaceError(f"{where}: {value!r} is not allowed ({allowed})")
    return float(value) if kind == "float" else value


def _param(key: str, spec: dict, where: str) -> Param:
    kind = _key_kind(key, where)
    allowed = {"choices"} if kind in ("bool", "str", "list") else {"low", "high", "log", "step", "choices"}
    bad = sorted(set(spec) - allowed)
    if bad:
        raise SpaceError(f"{where}: unknown key {bad[0]!r} (a {kind} key takes {', '.join(sorted(allowed))})")
    if "choices" in spec:
        if len(spec) > 1:
            raise SpaceError(f"{where}: give either choices or low/high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: choices must be a non-empty list")
        values = tuple(_checked_value(key, c, f"{where}: choice {c!r}") for c in choices)
        if any(isinstance(v, list) for v in values):
            raise SpaceError(f"{where}: write a list value as text, e.g. \"500,500\"")
        if len(set(map(repr, values))) != len(values):
            raise SpaceError(f"{where}: choices {choices!r} repeat a value")
        return Param(key, "choice", choices=values)
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"{where}: give low and high (a range), or choices")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    num = (int,) if kind == "int" else (int, float)
    for name, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if isinstance(v, bool) or not isinstance(v, num) or not math.isfinite(v):
            raise SpaceError(f"{where}: {name} = {v!r} must be {'an integer' if kind == 'int' else 'a number'}")
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log = {log!r} must be true or false")
    if not low < high:
        raise SpaceError(f"{where}: low = {low} must be below high = {high}")
    if log and low <= 0:
        raise SpaceError(f"{where}: low = {low} must be > 0 with log = true")
    if step is not None and (step <= 0 or log):
        raise SpaceError(f"{where}: step = {step} must be > 0 and cannot go with log = true")
    for name, v in (("low", low), ("high", high)):
        _checked_value(key, v, f"{where}: {name}")
    return Param(key, kind, low=low, high=high, log=log, step=step)


# -- a trial's config ------------------------------------------------------------------------
def base_config(space: SearchSpace, values: dict[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """The config of a trial: defaults < preset < [fixed] < the trial's ``values`` (by key),
    validated; and the profile fields the trial changes ("precision.weight_bits": 4)."""
    merged = dict(space.fixed)
    merged.update(values)
    preset = merged.pop("preset", None)
    nested: dict[str, dict] = {}
    if preset is not None:
        nested = {sec: dict(kv) for sec, kv in preset_dict(preset).items()}
    profile: dict[str, Any] = {}
    for key, value in merged.items():
        if key.startswith(PROFILE_PREFIX):
            profile[key[len(PROFILE_PREFIX):]] = value
            continue
        sec, _, name = key.partition(".")
        nested.setdefault(sec, {})[name] = parse_value(sec, name, value) if isinstance(value, str) else value
    cfg = RunConfig.from_dict(nested, source="the trial's config") if nested else RunConfig()
    if profile and cfg.hardware.profile is None:
        raise ConfigError(f"{', '.join('profile.' + k for k in profile)} changes a chip profile: set "
                          "hardware.profile (in [fixed] or [params])")
    return cfg, profile


def check_for_training(space: SearchSpace) -> None:
    """A training sweep chooses trials on held-out data: val_error must be an objective and
    data.val_fraction > 0 in every trial; energy and SRAM need a profile in every trial."""
    if "val_error" not in space.objectives:
        raise SpaceError(f"{space.path}: study.objectives must include val_error for a training sweep "
                         f"(trials are chosen on validation error); `sweep grid` estimates without training")
    bad = [o for o in space.objectives if o not in TRAIN_OBJECTIVES]
    if bad:
        raise SpaceError(f"{space.path}: study.objectives: {bad[0]} is an estimate-grid objective "
                         f"(training objectives: {', '.join(TRAIN_OBJECTIVES)})")
    for value in _values_of(space, "data.val_fraction"):
        frac = RunConfig().data.val_fraction if value is None else float(value)
        if not frac > 0:
            raise SpaceError(f"{space.path}: data.val_fraction = {frac} holds out nothing: a training sweep "
                             f"chooses trials on validation error; set e.g. \"data.val_fraction\" = 0.1 in [fixed]")
    _check_profiles(space, TRAIN_OBJECTIVES)


def check_for_grid(space: SearchSpace) -> None:
    """An estimate grid: estimate objectives only, every param a finite list of values,
    a profile in every point."""
    bad = [o for o in space.objectives if o not in GRID_OBJECTIVES]
    if bad:
        raise SpaceError(f"{space.path}: study.objectives: {bad[0]} needs training; an estimate grid judges "
                         f"{', '.join(GRID_OBJECTIVES)}")
    for p in space.params:
        p.grid_values()
    _check_profiles(space, GRID_OBJECTIVES, always=True)


def _values_of(space: SearchSpace, key: str) -> list:
    """Every value ``key`` can take in the space (None: the default, maybe via a preset)."""
    for p in space.params:
        if p.key == key:
            return list(p.choices) if p.kind == "choice" else [p.low, p.high]
    fixed = dict(space.fixed)
    if key in fixed:
        return [fixed[key]]
    presets = [p for p in space.params if p.key == "preset"]
    names = list(presets[0].choices) if presets else [fixed["preset"]] if "preset" in fixed else []
    sec, _, name = key.partition(".")
    return [preset_dict(n).get(sec, {}).get(name) for n in names] or [None]


def _check_profiles(space: SearchSpace, objectives: dict, always: bool = False) -> None:
    need = always or any(o in NEEDS_PROFILE for o in space.objectives)
    if need and any(v is None or str(v).lower() == "none" for v in _values_of(space, "hardware.profile")):
        what = "an estimate grid" if always else f"objective {next(o for o in space.objectives if o in NEEDS_PROFILE)}"
        raise SpaceError(f"{space.path}: {what} needs a chip profile in every trial: set \"hardware.profile\" "
                         f"in [fixed] or give it choices in [params]")
