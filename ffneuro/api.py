"""Library entry points behind the CLI: one function per command, plain data in and out.

The CLI only parses arguments and calls these; scripts and notebooks can call them too.
"""

from __future__ import annotations

import math
from pathlib import Path

from ffneuro.runs import files as runio
from ffneuro.config import ConfigError, RunConfig, preset as preset_config, preset_names as _preset_names
from ffneuro.config.sections import SECTIONS, LayerSpec


def preset_names() -> list[str]:
    return _preset_names()


def _int_list(name: str, value) -> tuple[int, ...] | None:
    if value is None or isinstance(value, (tuple, list)):
        return None if value is None else tuple(int(v) for v in value)
    try:
        return tuple(int(v) for v in str(value).replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')} must be comma-separated integers, got {value!r}") from None


def build_config(preset: str | None, overrides: dict) -> RunConfig:
    """Preset (if any), then every flat override that is not None, validated (scripts use
    this with the flat keys of ``RunConfig.flat()``; the CLI uses ``resolve_train_config``)."""
    base = preset_config(preset) if preset else RunConfig()
    values = {}
    for k, v in overrides.items():
        if v is None:
            continue
        if k in ("layers", "milestones", "inference_layers"):
            v = _int_list(k, v)
        values[k] = v
    return base.with_flat(**values)


# -- the configuration of `ffneuro train` ---------------------------------------------------
# The everyday flags of `ffneuro train` and the config field each one sets; every other
# field is reached with --set SECTION.KEY=VALUE or a --config TOML file.
TRAIN_FLAGS: dict[str, tuple[str, str]] = {
    "data": ("data", "name"), "profile": ("hardware", "profile"), "layers": ("units", "layers"),
    "epochs": ("loop", "epochs"), "seed": ("loop", "seed"), "simulate_anyway": ("hardware", "simulate_anyway"),
    "val_fraction": ("data", "val_fraction")}

Key = tuple[str, str]          # (section, field)


def replaced_flag(arg: str, value: str | None = None) -> str:
    """What to write instead of a command-line option `ffneuro train` does not have: the
    per-field flags it had before the config had sections (``--augment-shift 1``,
    ``--no-head``) map to ``--set section.key=value``; anything else is just unknown."""
    from ffneuro.config.run import FLAT_KEYS

    if not arg.startswith("--"):
        return f"unexpected argument {arg!r} (train takes options only; see ffneuro train --help)"
    name, eq, inline = arg[2:].partition("=")
    value = inline if eq else value
    key = name.replace("-", "_")
    if key not in FLAT_KEYS and key.startswith("no_") and key[3:] in FLAT_KEYS:
        key, value = key[3:], "false"
    if key not in FLAT_KEYS:
        return f"no such option {arg.split('=')[0]} (see ffneuro train --help)"
    sec, field = FLAT_KEYS[key]
    if value is None:
        value = "true" if "bool" in str(_field(sec, field).type) else "VALUE"
    return f"{arg.split('=')[0]} is now --set {sec}.{field}={value} (every option: ffneuro train --help)"


def _field(sec: str, key: str):
    from ffneuro.config.run import field_of

    return field_of(sec, key)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _checked(nested: dict, source: str) -> dict[Key, object]:
    """A nested ``{section: {key: value}}`` dict as coerced values by (section, key);
    unknown sections/keys and wrong types are a ConfigError naming ``source``."""
    from ffneuro.config.run import coerce

    out: dict[Key, object] = {}
    for sec, values in nested.items():
        if sec not in SECTIONS:
            raise ConfigError(f"{source}: unknown config section {sec!r} (sections: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {sec} must be a table of keys, not {values!r}")
        for key, value in values.items():
            try:
                out[(sec, key)] = coerce(sec, key, value)
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
    return out


def read_config_file(path: Path) -> tuple[dict, str | None]:
    """A ``--config`` TOML file: (its sections as a nested dict, the preset it names or None).

    The file has the sections of config.json's "config" (``[optim]`` ``lr = 3e-3`` …) and
    may name a preset at top level: ``preset = "hinton"``.
    """
    from ffneuro.config.run import FLAT_KEYS, read_toml

    d = read_toml(Path(path))
    preset = d.pop("preset", None)
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"{path}: preset = {preset!r} must be a preset name (one of {', '.join(preset_names())})")
    for k, v in d.items():
        if not isinstance(v, dict):
            hint = (f"; it belongs in [{FLAT_KEYS[k][0]}] as {FLAT_KEYS[k][1]} = …" if k in FLAT_KEYS else "")
            raise ConfigError(f"{path}: top-level key {k!r} is not a section (sections: "
                              f"{', '.join(SECTIONS)}; top level may only say preset = \"NAME\"){hint}")
    return d, preset


def _request(config_path: Path | None, preset: str | None, flags: dict | None,
             sets: list[str] | tuple[str, ...]) -> tuple[dict[Key, object], dict[Key, str]]:
    """Everything a `train` command line asks for, merged in precedence order (preset <
    config file < everyday flags < --set, in order): values by (section, key) and the
    option each value came from."""
    from ffneuro.config.run import coerce, parse_assignment, parse_value, preset_dict

    layers: list[tuple[str, dict[Key, object]]] = []
    file_values: dict[Key, object] = {}
    file_preset = None
    if config_path is not None:
        nested, file_preset = read_config_file(config_path)
        file_values = _checked(nested, str(config_path))
    name = preset if preset is not None else file_preset
    if name is not None:
        source = f"--preset {name}" if preset is not None else f"preset {name} of {config_path}"
        layers.append((source, _checked(preset_dict(name), f"preset {name}")))
    if file_values:
        layers.append((f"--config {config_path}", file_values))
    for flag, value in (flags or {}).items():
        if value is None:
            continue
        if flag not in TRAIN_FLAGS:
            raise ConfigError(f"{_flag(flag)}: not a flag of train (use --set SECTION.KEY=VALUE)")
        sec, key = TRAIN_FLAGS[flag]
        try:
            v = parse_value(sec, key, value) if isinstance(value, str) else coerce(sec, key, value)
        except ConfigError as e:
            raise ConfigError(f"{_flag(flag)}: {e}") from None
        layers.append((_flag(flag), {(sec, key): v}))
    for text in sets or ():
        try:
            sec, key, v = parse_assignment(text)
        except ConfigError as e:
            raise ConfigError(str(e) if str(e).startswith("--set") else f"--set {text}: {e}") from None
        layers.append((f"--set {sec}.{key}", {(sec, key): v}))
    values: dict[Key, object] = {}
    origin: dict[Key, str] = {}
    for source, layer in layers:
        values.update(layer)
        origin.update(dict.fromkeys(layer, source))
    return values, origin


def _overlay(cfg: RunConfig, values: dict[Key, object]) -> RunConfig:
    """``cfg`` with already coerced ``values`` applied, not validated (one validation of
    the end result; a half-applied request may not pass the cross-checks)."""
    import dataclasses

    by_section: dict[str, dict] = {}
    for (sec, key), v in values.items():
        by_section.setdefault(sec, {})[key] = v
    return dataclasses.replace(cfg, **{sec: dataclasses.replace(getattr(cfg, sec), **kv)
                                       for sec, kv in by_section.items()})


def _differences(a: RunConfig, b: RunConfig) -> list[str]:
    """``section.key`` of every field where two configs differ."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{sec}.{k}" for sec in da for k in da[sec] if da[sec][k] != db[sec][k]]


def saved_config(run_dir: Path) -> RunConfig:
    """The config a run dir was trained with. Run dirs written before the config had
    sections hold a flat "config" and the profile's name beside it ("profile_name")."""
    if not runio.is_run_dir(run_dir):
        raise ConfigError(f"{run_dir}: not an ffneuro run dir (nothing to resume)")
    saved = runio.read_json(Path(run_dir) / runio.CONFIG)
    if "config" not in saved:
        raise ConfigError(f"{Path(run_dir) / runio.CONFIG}: holds no \"config\" (not a run dir of ffneuro train)")
    cfg = RunConfig.from_dict(saved["config"], source=str(Path(run_dir) / runio.CONFIG))
    if cfg.hardware.profile is None and saved.get("profile_name"):
        cfg = cfg.replace(hardware={"profile": saved["profile_name"]})
    return cfg


def resolve_train_config(config_path: Path | None = None, preset: str | None = None, flags: dict | None = None,
                         sets: list[str] | tuple[str, ...] = (), *, resume: Path | None = None) -> RunConfig:
    """The config `ffneuro train` runs with: defaults < preset (``preset``, else the one
    the config file names) < ``config_path`` (TOML) < ``flags`` (everyday flags by name,
    see TRAIN_FLAGS; None: not given) < ``sets`` ("section.key=value", in order).

    ``resume``: a run dir to continue. The result is then its saved config, and anything
    asked for that would change it is refused in one line naming the keys (values equal
    to the saved ones pass).
    """
    values, origin = _request(Path(config_path) if config_path is not None else None, preset, flags, sets)
    if resume is None:
        return _overlay(RunConfig(), values).validate()
    cfg = saved_config(resume)
    asked = _overlay(cfg, values)
    changed = _differences(cfg, asked)
    if changed:
        where = ", ".join(f"{k} ({origin[tuple(k.split('.', 1))]})" for k in changed)
        raise ConfigError(f"--resume continues {resume} as saved in its config.json; these would change it: "
                          f"{where} (drop them, or train a new run with another --out)")
    return cfg


def train_run(cfg: RunConfig, *, out: Path | None = None, resume: bool = False, device: str = "auto",
              progress: bool = True, threads: int = 0, overwrite: bool = False, stages: int = 1) -> dict:
    """`ffneuro train`: train ``cfg`` (or resume the run in ``out``) and return the metrics.
    The profile and the memory check come from ``cfg.hardware``.

    ``threads``: CPU threads for torch; 0 picks one thread when the applied batch is
    small (≤ SMALL_BATCH, e.g. a chip's batch-1 learning), where a second thread cannot
    help and, if another process holds a core, slows each step several-fold (measured:
    the headline run took 440 s with 2 threads next to a busy core, 131 s with 1).

    ``out``: a new or empty folder, or an existing run with ``resume`` (continue it) or
    ``overwrite`` (replace it whole); a folder of the user's is never written into.

    ``stages`` > 1: pipeline-parallel training (``train/pipeline/``): that many local
    processes, one thread each unless ``threads`` says otherwise, or, inside a process
    group torchrun started, this process's stage of it.
    """
    import torch

    from ffneuro.train.loop import train

    cfg = cfg.validate()
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: give one")
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out RUN_DIR")
        if not runio.is_run_dir(out):
            raise ConfigError(f"{out}: not an ffneuro run dir (nothing to resume)")
        changed = _differences(saved_config(out), cfg)
        if changed:
            raise ConfigError(f"--resume continues {out} as saved in its config.json; this config differs in "
                              f"{', '.join(changed)}")
    if threads < 0:
        raise ConfigError(f"--threads {threads}: must be >= 0 (0: automatic)")
    if stages != 1:
        from ffneuro.train import pipeline

        pipeline.check_supported(cfg, stages, device)
        run = pipeline.run_stage if pipeline.launched() else pipeline.launch
        return run(cfg, stages, out=out, resume=resume, overwrite=overwrite, progress=progress, threads=threads or 1)
    if threads == 0 and applied_batch(cfg) <= SMALL_BATCH:
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    return train(cfg, out=out, resume=resume, progress=progress, profile=cfg.hardware.profile, device=device,
                 simulate_anyway=cfg.hardware.simulate_anyway, overwrite=overwrite)


SMALL_BATCH = 8


def applied_batch(cfg: RunConfig, profile: str | None = None) -> int:
    """The batch a run will use: the config's, capped at the profile's streaming limit
    (``profile``, else the config's own)."""
    profile = profile if profile is not None else cfg.hardware.profile
    if profile is None:
        return cfg.loop.batch_size
    from ffneuro.hw.profiles import load_profile

    return min(cfg.loop.batch_size, load_profile(profile).streaming.max_batch)


# -- describing the options: --help, --print-config and the README table --------------------
def option_rows() -> list[dict]:
    """One row per config field, in section order, from the fields' metadata: key
    ("section.key"), section, type, default (as --set would write it), choices, help."""
    from dataclasses import MISSING, fields

    from ffneuro.config.run import type_name

    rows = []
    for sec, cls in SECTIONS.items():
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()
            kind = type_name(f)
            rows.append({"key": f"{sec}.{f.name}", "section": sec, "section_help": (cls.__doc__ or "").strip(),
                         "type": kind.removeprefix("an ").removeprefix("a "), "default": value_text(default),
                         "choices": list(f.metadata.get("choices") or ()), "help": f.metadata.get("help", "")})
    return rows


def value_text(v) -> str:
    """A config value as ``--set`` takes it: none, true/false, 500,500,500."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v) if v else "(empty)"
    return str(v)


def options_help() -> str:
    """Every config field grouped by section: the epilog of `ffneuro train --help`."""
    lines = ["Config options (--set SECTION.KEY=VALUE, or KEY = VALUE under [SECTION] in a --config file):"]
    section = None
    for r in option_rows():
        if r["section"] != section:
            section = r["section"]
            lines += ["", f"{section}: {r['section_help']}"]
        allowed = f"one of {', '.join(r['choices'])}" if r["choices"] else r["type"]
        lines.append(f"  {r['key']} = {r['default']}   ({allowed})")
        lines.append(f"      {r['help']}")
    return "\n".join(lines)


def options_markdown() -> str:
    """The README's options table: one row per config field."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| key | type | default | allowed values | help |", "|---|---|---|---|---|"]
    for r in option_rows():
        lines.append(f"| `{r['key']}` | {cell(r['type'])} | `{cell(r['default'])}` | "
                     f"{cell(', '.join(r['choices']))} | {cell(r['help'])} |")
    return "\n".join(lines)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan" if math.isnan(v) else "inf" if v > 0 else "-inf"
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7f:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, LayerSpec):
        return _toml_value(v.text())
    raise TypeError(f"no TOML form for {v!r}")


def format_config_toml(cfg: RunConfig, *, comments: bool = True) -> str:
    """``cfg`` as a TOML file for ``ffneuro train --config`` (``RunConfig.from_toml`` reads
    it back to an equal config). An unset (none) field is written as a comment: TOML has
    no null, and every field that may be none is none by default."""
    from dataclasses import fields

    lines = []
    if comments:
        lines += ["# ffneuro run config: ffneuro train --config run.toml",
                  "# Later wins: defaults < preset < this file < --data/--layers/... < --set SECTION.KEY=VALUE.",
                  '# The top level may name a preset whose values this file then changes: preset = "hinton"',
                  f"# (presets: {', '.join(preset_names())})."]
    for sec, cls in SECTIONS.items():
        section = getattr(cfg, sec)
        if lines:
            lines.append("")
        lines.append(f"[{sec}]")
        if comments and cls.__doc__:
            lines.append(f"# {cls.__doc__.strip()}")
        for f in fields(cls):
            value = getattr(section, f.name)
            if comments:
                choices = f.metadata.get("choices")
                lines.append(f"# {f.metadata.get('help', '')}" + (f" (one of: {', '.join(choices)})" if choices else ""))
            lines.append(f"# {f.name} is unset (none)" if value is None else f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def format_config_json(cfg: RunConfig) -> str:
    """``cfg`` as config.json's "config" (nested sections; none is null)."""
    import json

    return json.dumps(cfg.to_dict(), indent=2)


def eval_run(run_dir: Path, *, data: str | None = None) -> dict:
    """`ffneuro eval`: rebuild the network from a run dir and evaluate it."""
    from ffneuro.evaluate import evaluate_run

    return evaluate_run(Path(run_dir), data=data)


def exit_thresholds(text: str) -> list[float]:
    """``--exit-threshold 0.05,0.1``: one or more thresholds >= 0."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"--exit-threshold {text!r}: give numbers >= 0 separated by commas, e.g. 0,0.05,0.1")
    return values


def exit_curve(run_dir: Path, thresholds: list[float], *, profile: str | None = None, data: str | None = None,
               split: str = "test") -> dict:
    """`ffneuro eval --exit-threshold`: early-exit error and inference energy per threshold."""
    from ffneuro.analysis.early_exit import exit_curve as curve

    return curve(Path(run_dir), thresholds, profile=profile, data=data, split=split)


def format_exit_curve(r: dict) -> str:
    from ffneuro.analysis.early_exit import format_curve

    return format_curve(r)


def metrics_summary(metrics: dict) -> dict:
    """Metrics without the per-epoch history (what `--json` prints)."""
    return {k: v for k, v in metrics.items() if k != "history"}


def format_metrics(m: dict) -> str:
    te = m.get("test_error", {})
    under = f" under profile {m['profile']}" if m.get("profile") else ""
    if "epochs" in m:
        n = m.get("parameters")
        n = n.get("total") if isinstance(n, dict) else n          # a backprop baseline records one number
        params = f", {n:,} trainable parameters" if n else ""
        lines = [f"dataset {m.get('dataset', '?')}: {m['epochs']} epochs in {m.get('wall_s', 0):.1f} s{under}{params}"]
    else:
        lines = [f"{m.get('run_dir', 'run')} on dataset {m.get('dataset', '?')} ({m.get('n_test', '?')} test samples){under}"]
    for mode, err in te.items():
        lines.append(f"  test error {mode:<10} {err:6.2f} %   (accuracy {100 - err:.2f} %)")
    for mode, err in m.get("val_error", {}).items():
        lines.append(f"  val error  {mode:<10} {err:6.2f} %   ({m['n_val']:,} held-out training samples)")
    if "per_layer_error" in m:
        lines.append("  layer alone      " + "  ".join(f"L{i + 1} {e:5.2f}%" for i, e in enumerate(m["per_layer_error"])))
        lines.append("  cumulative       " + "  ".join(f"1..{i + 1} {e:5.2f}%" for i, e in enumerate(m["cumulative_error"])))
    if "early_exit" in m:
        ee = m["early_exit"]
        lines.append(f"  early exit θ={ee['threshold']:g}: mean depth {ee['mean_depth']:.2f} of {len(ee['exit_fraction'])} "
                     "units; leaving after each unit " + " ".join(f"{f * 100:.1f}%" for f in ee["exit_fraction"]))
    if "estimate" in m:
        est = m["estimate"]
        lines.append(f"  energy ({est['profile']}): inference {est['inference']['energy_pj_per_sample'] / 1e3:.1f} nJ/sample,"
                     f" training {est['training']['energy_pj_per_sample'] / 1e3:.1f} nJ/sample;"
                     f" {est['cores_used']} cores, fits: {est['fits']}")
    return "\n".join(lines)


# -- output formats of the commands that print tables ------------------------------------
OUTPUT_FORMATS = ("text", "json", "csv")
ESTIMATE_FORMATS = (*OUTPUT_FORMATS, "accelergy")    # estimate also writes Accelergy's files


def output_format(fmt: str | None, as_json: bool = False, *, allowed: tuple[str, ...] = OUTPUT_FORMATS) -> str:
    """The output format a command was asked for: ``--format`` (text, json or csv, or one of
    the command's ``allowed``; default text), with ``--json`` a synonym of ``--format json``.
    Called before the command runs.

    >>> output_format(None), output_format(None, as_json=True), output_format("csv")
    ('text', 'json', 'csv')
    """
    if fmt is None:
        return "json" if as_json else "text"
    if fmt not in allowed:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(allowed)}")
    if as_json and fmt != "json":
        raise ConfigError(f"--json means --format json: it cannot go with --format {fmt}")
    return fmt


def csv_text(rows: list[dict]) -> str:
    """Rows (dicts with the same keys) as CSV text: a header of the keys, a line per row.
    Numbers are written as Python's repr, which reads back equal (full precision); None is
    an empty cell.

    >>> print(csv_text([{"layer": 1, "energy_pj": 0.1 + 0.2, "note": "a, b"}, {"layer": "total"}]), end="")
    layer,energy_pj,note
    1,0.30000000000000004,"a, b"
    total,,
    """
    import csv
    import io

    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _formatted(obj, fmt: str, text, rows) -> str:
    """``obj`` in ``fmt`` (see :func:`output_format`): its text (``text()``), itself as
    JSON, or its CSV rows (``rows()``)."""
    import json

    fmt = output_format(fmt)
    if fmt == "json":
        return json.dumps(obj, indent=2)
    return csv_text(rows()) if fmt == "csv" else text()


# -- estimation ---------------------------------------------------------------------------
def estimate_run(*, profile: str, run: Path | None = None, layers: str | None = None, activity: float = 0.5,
                 input_activity: float = 0.2, num_classes: int = 10, inference: str = "one-pass",
                 plot: Path | None = None, force: bool = False, fmt: str = "text", out: Path | None = None) -> dict:
    """`ffneuro estimate`: from a run dir's measured events, or analytically from sizes.
    ``plot``: a new PNG file (an existing one only with ``force``). ``fmt = "accelergy"``
    writes Accelergy's action counts, ERT and ffneuro's energies into the folder ``out``
    (:mod:`ffneuro.hw.accelergy`; a new or empty folder, one with files only with
    ``force``), and the report lists them under ``accelergy_files``."""
    from ffneuro.hw.estimate import estimate_from_layers, estimate_from_run, plot_report

    if (run is None) == (layers is None):
        raise ConfigError("give exactly one of --run RUN_DIR or --layers SIZES")
    if inference not in ("one-pass", "multi-pass"):
        raise ConfigError(f"--inference {inference!r}: choose one-pass or multi-pass")
    if fmt == "accelergy" and out is None:
        raise ConfigError("--format accelergy writes files: give their folder with -o DIR")
    if out is not None and fmt != "accelergy":
        raise ConfigError("-o DIR is the folder of --format accelergy's files: add --format accelergy")
    if plot is not None:
        runio.check_new_file(plot, force=force)
    if out is not None:
        runio.check_new_folder(Path(out), force=force)
    if run is not None:
        saved = runio.read_json(Path(run) / runio.CONFIG)
        report = estimate_from_run(run, profile, n_train=saved.get("n_train"))
    else:
        sizes = _int_list("layers", layers)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ConfigError("--layers needs the input size and at least one layer, e.g. 784,500,500")
        report = estimate_from_layers(profile, sizes, activity=activity, input_activity=input_activity,
                                      num_classes=num_classes, inference=inference)
    if plot is not None:
        plot_report(report, plot)
        report["plot"] = str(plot)
    if out is not None:
        from ffneuro.hw.accelergy import write_accelergy

        report["accelergy_files"] = [str(p) for p in write_accelergy(report, out)]
    return report


def format_estimate(report: dict, fmt: str = "text") -> str:
    """The report as text, JSON or CSV (``estimate_rows``: per phase, a row per layer and
    a total row; the columns are listed there), or for ``accelergy`` the files written."""
    from ffneuro.hw.estimate import estimate_rows, format_report

    plot = f"\nplot written to {report['plot']}" if report.get("plot") else ""
    if fmt == "accelergy":
        from ffneuro.hw.accelergy import ACTION_FIELDS, components

        names = [c.name for c in components(report)]
        return (f"wrote {', '.join(report['accelergy_files'])}: {len(names)} Accelergy components "
                f"({names[0]} … {names[-1]}) x {len(ACTION_FIELDS)} actions, counts per sample, energies in pJ"
                + plot)
    return _formatted(report, fmt, lambda: format_report(report) + plot, lambda: estimate_rows(report))


# -- profiles -----------------------------------------------------------------------------
def profile_rows() -> list[dict]:
    from ffneuro.hw.profiles import list_profiles, load_profile

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append({"name": name, "weight_bits": p.precision.weight_bits, "format": p.precision.format,
                     "rounding": p.precision.rounding, "cores": p.memory.cores,
                     "max_batch": p.streaming.max_batch, "optimizer": p.learning.optimizer,
                     "description": p.description})
    return rows


def format_profile_rows(rows: list[dict], fmt: str = "text") -> str:
    """The profiles as a text table, JSON or CSV (the JSON rows' columns)."""
    return _formatted(rows, fmt, lambda: _profile_table(rows), lambda: rows)


def _profile_table(rows: list[dict]) -> str:
    head = f"{'name':<18}{'format':<8}{'w bits':>7}  {'rounding':<11}{'cores':>7}{'batch':>9}  {'optimizer':<13}"
    body = [f"{r['name']:<18}{r['format']:<8}{r['weight_bits']:>7}  {r['rounding']:<11}{r['cores']:>7}"
            f"{r['max_batch']:>9}  {r['optimizer']:<13}" for r in rows]
    return "\n".join([head, *body])


def profile_dict(name_or_path: str) -> dict:
    from ffneuro.hw.profiles import load_profile, profile_to_dict

    return profile_to_dict(load_profile(name_or_path))


def format_profile(d: dict) -> str:
    lines = [f"{d['name']}: {d.get('description', '')}"]
    for section, values in d.items():
        if not isinstance(values, dict) or section == "sources":
            continue
        lines.append(f"[{section}]")
        for key, val in values.items():
            src = d.get("sources", {}).get(f"{section}.{key}", {})
            cite = f"  ({src.get('confidence', '?')}: {src.get('source', '')})" if src else ""
            lines.append(f"  {key:<28} {val!s:<14}{cite}")
    return "\n".join(lines)


# -- export / inspect / verify ------------------------------------------------------------
def export(run_dir: Path, out: Path, *, profile: str | None = None, vectors: int = 8, data: str | None = None,
           fmt: str = "hdf5", force: bool = False, exit_threshold: float | None = None) -> dict:
    """`ffneuro export`: the run's chip model as HDF5 integer tables (or NIR), written to
    a new file (an existing one only with ``force``; never one of the run's own files)."""
    if fmt not in ("hdf5", "nir"):
        raise ConfigError(f"--format {fmt!r}: choose hdf5 or nir")
    runio.check_new_file(Path(out), force=force)
    if fmt == "hdf5":
        from ffneuro.export.hdf5 import export_run

        return export_run(Path(run_dir), Path(out), profile=profile, vectors=vectors, data=data,
                          exit_threshold=exit_threshold)
    from ffneuro.export.nir import export_nir

    return export_nir(Path(run_dir), Path(out))


def inspect_export(path: Path) -> dict:
    """`ffneuro inspect`: a summary of an exported file."""
    from ffneuro.export.golden import inspect

    return inspect(Path(path))


def format_inspect(r: dict) -> str:
    lines = [f"{r['file']}: ffneuro chip export v{r['schema_version']} (ffneuro {r['ffneuro_version']}), "
             f"profile {r['profile']}, {r['quantisation']}, dataset {r['dataset']}",
             f"  input: label {r['label_mode']}, {r['num_classes']} classes; multi-pass layers "
             f"{r['multi_pass_layers']}; {r['vectors']} test vectors",
             f"  {'layer':<7}{'kind':<12}{'shape':<14}{'w bits':>7} {'dtype':<7}{'scale':>12}{'exp':>5}"
             f"{'in bits':>8}{'acc':>5}{'bytes':>10}"]
    for L in r["layers"]:
        exp = "" if L["weight_exponent"] is None else str(L["weight_exponent"])
        lines.append(f"  {L['layer']:<7}{L['kind']:<12}{'x'.join(map(str, L['shape'])):<14}{L['weight_bits']:>7} "
                     f"{L['weight_dtype']:<7}{L['weight_scale']:>12.4g}{exp:>5}{L['input_bits']:>8}"
                     f"{L['accumulator_bits']:>5}{L['bytes']:>10}")
    if r["head"]:
        h = r["head"]
        lines.append(f"  {'head':<7}{'linear':<12}{'x'.join(map(str, h['shape'])):<14}{h['weight_bits']:>7} "
                     f"{h['weight_dtype']:<7}{'':>12}{'':>5}{'':>8}{'':>5}{h['bytes']:>10}  (layers {h['layers']})")
    failed = list(r["checksum_failures"]) + (["content_sha256"] if r.get("digest_ok") is False else [])
    lines.append("  checksums: OK" if r["checksums_ok"] else f"  checksums: FAILED for {', '.join(failed)}")
    lines += [f"  note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)


def verify_export(path: Path, *, data: str | None = None, use_data: bool = True) -> dict:
    """`ffneuro verify`: golden integer replay of the stored vectors (and accuracy on a
    dataset: ``data``, else the one recorded in the file)."""
    from ffneuro.export import golden

    x = y = None
    if use_data:
        from ffneuro.data.loaders import load_dataset

        spec = data or _recorded_dataset(Path(path))
        if spec:
            ds = load_dataset(spec)
            x, y = ds.x_test.numpy(), ds.y_test.numpy()
    report = golden.verify(Path(path), x, y)
    if x is not None:
        report["data"] = spec
    return report


def _recorded_dataset(path: Path) -> str | None:
    """The dataset an export records in its provenance, or None when there is none or it
    cannot be read (a tampered config then shows up as the digest failure it is)."""
    from ffneuro.export import golden

    try:
        saved = golden.provenance(path).get("config")
        return RunConfig.from_dict(saved).data.name if saved else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def format_verify(r: dict) -> str:
    lines = [f"{r['file']}: {r['layers']} layers, {r['vectors']} test vectors replayed"]
    if r["checksum_failures"]:
        lines.append(f"  CHECKSUM FAILED: {', '.join(r['checksum_failures'])}")
    if r.get("digest_ok") is False:
        lines.append("  CONTENT DIGEST FAILED: content_sha256 does not match (an attribute or table was changed)")
    if r["mismatch"]:
        lines.append(f"  MISMATCH: {r['mismatch']}")
    elif r["vectors"] == 0:
        lines.append("  NO TEST VECTORS: nothing was replayed, only checksums were checked")
    else:
        lines.append("  every stored activity, goodness, score and prediction reproduced exactly")
    for mode, err in (r.get("test_error") or {}).items():
        lines.append(f"  golden replay on {r['data']} ({r['n_data']} samples): {mode} error {err:.2f} %")
    lines += [f"  note: {n}" for n in r.get("notes", [])]
    lines.append("  OK" if r["ok"] else f"  FAILED: {r['reason']}" if r.get("reason") else "  FAILED")
    return "\n".join(lines)


# -- analysis -------------------------------------------------------------------------------
def analyze(run_dir: Path, *, out: Path | None = None, probe: int = 2000, force: bool = False) -> dict:
    """`ffneuro analyze`: collaboration, entropy, plots and reports for a run dir.
    ``out``: a new or empty folder (one with files only with ``force``); the default,
    RUN_DIR/analysis, is the run's own and is rewritten."""
    from ffneuro.analysis.report import analyze_run

    if out is not None:
        runio.check_new_folder(Path(out), force=force)
    return analyze_run(Path(run_dir), out, probe=probe)


def format_analysis(r: dict) -> str:
    from ffneuro.analysis.report import format_analysis as fmt

    return fmt(r)


def spikes(run_dir: Path, *, out: Path | None = None, samples: int = 200, force: bool = False) -> dict:
    """`ffneuro spikes`: per-layer spike rasters, rates per step and firing-rate histograms.
    ``out`` as for ``analyze`` (default RUN_DIR/spikes)."""
    from ffneuro.analysis.report import spike_report

    if out is not None:
        runio.check_new_folder(Path(out), force=force)
    return spike_report(Path(run_dir), Path(out) if out is not None else Path(run_dir) / "spikes", samples)


def format_spikes(r: dict) -> str:
    from ffneuro.analysis.report import format_spike_report

    return format_spike_report(r)


def compare(run_dirs: list[Path], *, plot: Path | None = None, force: bool = False) -> dict:
    """`ffneuro compare`: one row per run dir (``plot``: a new PNG, an existing one only
    with ``force``)."""
    from ffneuro.analysis.report import compare_runs

    if plot is not None:
        runio.check_new_file(plot, force=force)
    return compare_runs([Path(r) for r in run_dirs], plot)


def format_compare(r: dict, fmt: str = "text") -> str:
    """The table as text, JSON or CSV (``compare_rows``: a row per run)."""
    from ffneuro.analysis.report import compare_rows, format_compare as text

    return _formatted(r, fmt, lambda: text(r), lambda: compare_rows(r))


# -- sweeps (Optuna) ------------------------------------------------------------------------
SWEEP_MARKER = ".ffneuro-sweep"          # in a sweep's --out folder: the study its trial dirs belong to


def _sweep_out(out: Path, study_name: str, *, claim: bool = True) -> Path:
    """A sweep's folder of trial run dirs: new, empty, or one this study made before (its
    marker names the study); a folder of the user's is never written into. ``claim``:
    write the marker (else only check)."""
    out = Path(out)
    marker = out / SWEEP_MARKER
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder")
    if marker.is_file():
        owner = marker.read_text().strip()
        if owner != study_name:
            raise ConfigError(f"--out {out}: holds the trials of study {owner!r}, not {study_name!r}")
        return out
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: folder is not empty and holds no sweep (give a new or empty folder)")
    if claim:
        runio.atomic_write_bytes(marker, (study_name + "\n").encode())
    return out


def sweep_train_trial(cfg: RunConfig, run_dir: Path, *, resume: bool, on_epoch, threads: int = 1) -> dict:
    """One training trial of a sweep: ``cfg`` trained into ``run_dir`` (resumed if asked),
    quietly, on ``threads`` torch threads; ``on_epoch`` is the pruning hook."""
    import torch

    from ffneuro.train.loop import train

    torch.set_num_threads(max(1, threads))
    return train(cfg, out=run_dir, resume=resume, progress=False, on_epoch=on_epoch, profile=cfg.hardware.profile,
                 simulate_anyway=cfg.hardware.simulate_anyway)


def sweep_estimate_point(profile: str, layer_sizes: list[int], settings) -> dict:
    """One point of an estimate-only grid: the analytic estimate of ``ffneuro estimate``."""
    from ffneuro.hw.estimate import estimate_from_layers

    return estimate_from_layers(profile, layer_sizes, activity=settings.activity,
                                input_activity=settings.input_activity, num_classes=settings.num_classes,
                                inference=settings.inference)


def sweep_run(space_path: Path, *, storage: str = "sweep.db", out: Path | None = None, workers: int = 1,
              threads: int = 1, on_trial=None) -> dict:
    """`ffneuro sweep run`: the training sweep SPACE describes, on ``workers`` local
    processes against ``storage`` (shared with any other machine running the same command).
    Trial run dirs go to ``out`` (default sweeps/STUDY). ``on_trial(row)`` hears of each
    finished trial. Returns the study's summary (best trial or Pareto front)."""
    import functools

    from ffneuro.sweep import study as sw
    from ffneuro.sweep.report import study_summary
    from ffneuro.sweep.space import check_for_training, load_space

    if workers < 1 or threads < 1:
        raise ConfigError(f"--workers {workers} --threads {threads}: both must be >= 1")
    space = load_space(space_path)
    check_for_training(space)
    out = _sweep_out(Path(out) if out is not None else Path("sweeps") / space.name, space.name, claim=False)
    study = sw.open_study(space, sw.open_storage(storage), "train")
    _sweep_out(out, space.name)
    retried = sw.retry_interrupted(study)
    job = sw.WorkerJob(space_path=str(Path(space_path).absolute()), storage=sw.storage_url(storage),
                       out=str(out.absolute()), train_fn=functools.partial(sweep_train_trial, threads=threads),
                       threads=threads)
    if workers == 1:
        sw.work(job, on_trial)
    else:
        sw.run_workers(job, workers, study, on_trial)
    summary = study_summary(study)
    summary.update({"storage": sw.storage_url(storage), "out": str(out), "workers": workers, "retried": retried})
    return summary


def sweep_grid(space_path: Path, *, storage: str = "sweep.db", out: Path | None = None, on_trial=None) -> dict:
    """`ffneuro sweep grid`: every point of SPACE's params (profiles x widths x bits …)
    estimated analytically, no training, recorded in ``storage`` like a training sweep
    (``sweep show`` reads both). Changed profiles are written to ``out``/profiles."""
    from ffneuro.sweep import study as sw
    from ffneuro.sweep.report import study_summary
    from ffneuro.sweep.space import load_space

    space = load_space(space_path)
    sw.grid_points(space)
    out = _sweep_out(Path(out) if out is not None else Path("sweeps") / space.name, space.name, claim=False)
    opened = sw.open_storage(storage)
    _sweep_out(out, space.name)
    study = sw.run_grid(space, opened, out, sweep_estimate_point, on_trial)
    summary = study_summary(study)
    summary.update({"storage": sw.storage_url(storage), "out": str(out)})
    return summary


def sweep_show(study_name: str, *, storage: str = "sweep.db", out: Path | None = None, force: bool = False) -> dict:
    """`ffneuro sweep show`: the study's best trial or Pareto front; with ``out``, also
    trials.csv, study.json and the PNGs (Pareto fronts, importances) in that folder (a new
    or empty one, one with files only with ``force``)."""
    from ffneuro.sweep.report import study_summary, write_files

    if out is not None:
        runio.check_new_folder(Path(out), force=force)
    study = _existing_study(study_name, storage)
    summary = study_summary(study)
    if out is not None:
        summary = write_files(study, summary, Path(out), csv_text)
    return summary


def _existing_study(study_name: str, storage: str):
    """A study in a storage that exists (a file storage is never created by reading it)."""
    from ffneuro.sweep import study as sw

    url = sw.storage_url(storage)
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and not Path(url[len(prefix):]).is_file():
            raise ConfigError(f"--storage {storage}: no such file (run a sweep first)")
    return sw.load_study(study_name, sw.open_storage(storage))


def format_sweep(summary: dict, fmt: str = "text") -> str:
    """A sweep's summary as text, JSON (everything) or CSV (a row per trial)."""
    from ffneuro.sweep.report import format_summary

    return _formatted(summary, fmt, lambda: format_summary(summary), lambda: summary["trials"])


def sweep_rerun(study_name: str, *, storage: str = "sweep.db", trial: int | None = None, out: Path | None = None,
                keep_val: bool = False, progress: bool = True, threads: int = 0, overwrite: bool = False) -> dict:
    """`ffneuro sweep rerun`: train the chosen trial's config again (the best trial, or
    ``trial``, which must be on the Pareto front of a multi-objective study unless given
    explicitly) on the whole training set (``keep_val``: with the trial's validation split)
    and report its test error."""
    from ffneuro.sweep.report import study_summary

    study = _existing_study(study_name, storage)
    if study.user_attrs.get("kind") != "train":
        raise ConfigError(f"study {study_name!r} is an estimate grid: nothing was trained to re-run")
    summary = study_summary(study)
    if trial is None:
        if not summary["best"]:
            raise ConfigError(f"study {study_name!r} has no completed trial yet")
        if len(summary["best"]) > 1:
            front = ", ".join(str(r["trial"]) for r in summary["best"])
            raise ConfigError(f"study {study_name!r} has a Pareto front of trials {front}: pick one with --trial N")
        trial = summary["best"][0]["trial"]
    chosen = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
    if not chosen or "config" not in chosen[0].user_attrs or chosen[0].state.name != "COMPLETE":
        raise ConfigError(f"study {study_name!r}: no completed trial {trial}")
    cfg = RunConfig.from_dict(chosen[0].user_attrs["config"], source=f"trial {trial} of study {study_name}")
    if not keep_val:
        cfg = cfg.replace(data={"val_fraction": 0.0})
    metrics = train_run(cfg, out=out, progress=progress, threads=threads, overwrite=overwrite)
    metrics["sweep_trial"] = {"study": study_name, "trial": trial, "values": dict(zip(summary["objectives"],
                                                                                       chosen[0].values))}
    return metrics


def neurobench_run(run: Path, *, data: str | None = None, samples: int | None = None) -> dict:
    """`ffneuro neurobench`: NeuroBench's own harness (the ``neurobench`` extra) on a run
    dir's network and test samples, beside ffneuro's figures of the same samples
    (:mod:`ffneuro.hw.neurobench_run`)."""
    from ffneuro.hw.neurobench_run import run_benchmark

    return run_benchmark(run, data=data, samples=samples)


def format_neurobench(result: dict) -> str:
    """The text of `ffneuro neurobench`: NeuroBench's figure, ffneuro's and their ratio per metric."""
    from ffneuro.hw.neurobench_run import format_benchmark

    return format_benchmark(result)
