"""Library entry points behind the CLI: one function per command, plain data in and out.

The CLI only parses arguments and calls these; scripts and notebooks can call them too.
"""

from __future__ import annotations

from pathlib import Path

from ffneuro.runs import files as runio
from ffneuro.config import ConfigError, RunConfig, preset as preset_config, preset_names as _preset_names


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
    """Preset (if any), then every override that is not None, validated."""
    base = preset_config(preset) if preset else RunConfig()
    values = {}
    for k, v in overrides.items():
        if v is None:
            continue
        if k in ("layers", "milestones", "inference_layers"):
            v = _int_list(k, v)
        values[k] = v
    return base.with_flat(**values)


def train_run(*, preset: str | None = None, overrides: dict | None = None, profile: str | None = None,
              out: Path | None = None, resume: bool = False, device: str = "auto", progress: bool = True,
              simulate_anyway: bool = False, threads: int = 0) -> dict:
    """`ffneuro train`: build the config, train (or resume) and return the metrics.

    ``threads``: CPU threads for torch; 0 picks one thread when the applied batch is
    small (≤ SMALL_BATCH, e.g. a chip's batch-1 learning), where a second thread cannot
    help and, if another process holds a core, slows each step several-fold (measured:
    the headline run took 440 s with 2 threads next to a busy core, 131 s with 1).
    """
    import torch

    from ffneuro.train.loop import train

    if resume:
        if out is None:
            raise ConfigError("--resume needs --out RUN_DIR")
        saved = runio.read_json(Path(out) / runio.CONFIG)
        cfg = RunConfig.from_dict(saved["config"])
        refuse_changes_on_resume(cfg, saved.get("profile_name"), preset, overrides or {}, profile, out)
        profile = saved.get("profile_name")
    else:
        cfg = build_config(preset, overrides or {})
        if out is not None and (Path(out) / runio.CHECKPOINT).exists():
            raise ConfigError(f"{out}: already holds a run (use --resume to continue it, or another --out)")
    if threads < 0:
        raise ConfigError(f"--threads {threads}: must be >= 0 (0: automatic)")
    if threads == 0 and applied_batch(cfg, profile) <= SMALL_BATCH:
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    return train(cfg, out=out, resume=resume, progress=progress, profile=profile, device=device,
                 simulate_anyway=simulate_anyway)


SMALL_BATCH = 8


def refuse_changes_on_resume(cfg: RunConfig, saved_profile: str | None, preset: str | None, overrides: dict,
                             profile: str | None, out: Path) -> None:
    """`--resume` continues a run exactly as its config.json says; an option that would
    change it is an error, not silently ignored (options equal to the saved values pass)."""
    asked = {k: v for k, v in overrides.items() if v is not None}
    try:
        merged = cfg.with_flat(**{k: _int_list(k, v) if k in ("layers", "milestones", "inference_layers") else v
                                  for k, v in asked.items()})
        changed = sorted(k for k in asked if merged.flat()[k] != cfg.flat()[k])
    except ConfigError:
        changed = sorted(asked)
    if preset is not None:
        changed.insert(0, "preset")
    if profile is not None and profile != saved_profile:
        changed.append("profile")
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise ConfigError(f"--resume continues {out} as saved in its config.json; drop {flags} "
                          "(or train a new run with another --out)")


def applied_batch(cfg: RunConfig, profile: str | None) -> int:
    """The batch a run will use: the config's, capped at the profile's streaming limit."""
    if profile is None:
        return cfg.loop.batch_size
    from ffneuro.hw.profiles import load_profile

    return min(cfg.loop.batch_size, load_profile(profile).streaming.max_batch)


def eval_run(run_dir: Path, *, data: str | None = None) -> dict:
    """`ffneuro eval`: rebuild the network from a run dir and evaluate it."""
    from ffneuro.train.loop import evaluate_run

    return evaluate_run(Path(run_dir), data=data)


def metrics_summary(metrics: dict) -> dict:
    """Metrics without the per-epoch history (what `--json` prints)."""
    return {k: v for k, v in metrics.items() if k != "history"}


def format_metrics(m: dict) -> str:
    te = m.get("test_error", {})
    under = f" under profile {m['profile']}" if m.get("profile") else ""
    if "epochs" in m:
        lines = [f"dataset {m.get('dataset', '?')}: {m['epochs']} epochs in {m.get('wall_s', 0):.1f} s{under}"]
    else:
        lines = [f"{m.get('run_dir', 'run')} on dataset {m.get('dataset', '?')} ({m.get('n_test', '?')} test samples){under}"]
    for mode, err in te.items():
        lines.append(f"  test error {mode:<10} {err:6.2f} %   (accuracy {100 - err:.2f} %)")
    if "per_layer_error" in m:
        lines.append("  layer alone      " + "  ".join(f"L{i + 1} {e:5.2f}%" for i, e in enumerate(m["per_layer_error"])))
        lines.append("  cumulative       " + "  ".join(f"1..{i + 1} {e:5.2f}%" for i, e in enumerate(m["cumulative_error"])))
    if "estimate" in m:
        est = m["estimate"]
        lines.append(f"  energy ({est['profile']}): inference {est['inference']['energy_pj_per_sample'] / 1e3:.1f} nJ/sample,"
                     f" training {est['training']['energy_pj_per_sample'] / 1e3:.1f} nJ/sample;"
                     f" {est['cores_used']} cores, fits: {est['fits']}")
    return "\n".join(lines)


# -- estimation ---------------------------------------------------------------------------
def estimate_run(*, profile: str, run: Path | None = None, layers: str | None = None, activity: float = 0.5,
                 input_activity: float = 0.2, num_classes: int = 10, inference: str = "one-pass",
                 plot: Path | None = None) -> dict:
    """`ffneuro estimate`: from a run dir's measured events, or analytically from sizes."""
    from ffneuro.hw.estimate import estimate_from_layers, estimate_from_run, plot_report

    if (run is None) == (layers is None):
        raise ConfigError("give exactly one of --run RUN_DIR or --layers SIZES")
    if inference not in ("one-pass", "multi-pass"):
        raise ConfigError(f"--inference {inference!r}: choose one-pass or multi-pass")
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
    return report


def format_estimate(report: dict) -> str:
    from ffneuro.hw.estimate import format_report

    return format_report(report) + (f"\nplot written to {report['plot']}" if report.get("plot") else "")


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


def format_profile_rows(rows: list[dict]) -> str:
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
           fmt: str = "hdf5") -> dict:
    """`ffneuro export`: the run's chip model as HDF5 integer tables (or NIR)."""
    if fmt == "hdf5":
        from ffneuro.export.hdf5 import export_run

        return export_run(Path(run_dir), Path(out), profile=profile, vectors=vectors, data=data)
    if fmt == "nir":
        from ffneuro.export.nir import export_nir

        return export_nir(Path(run_dir), Path(out))
    raise ConfigError(f"--format {fmt!r}: choose hdf5 or nir")


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
    lines.append("  checksums: OK" if r["checksums_ok"] else
                 f"  checksums: FAILED for {', '.join(r['checksum_failures'])}")
    return "\n".join(lines)


def verify_export(path: Path, *, data: str | None = None, use_data: bool = True) -> dict:
    """`ffneuro verify`: golden integer replay of the stored vectors (and accuracy on a
    dataset: ``data``, else the one recorded in the file)."""
    from ffneuro.export import golden

    x = y = None
    if use_data:
        from ffneuro.data.loaders import load_dataset

        saved = golden.provenance(Path(path)).get("config")
        spec = data or (RunConfig.from_dict(saved).data.name if saved else None)
        if spec:
            ds = load_dataset(spec)
            x, y = ds.x_test.numpy(), ds.y_test.numpy()
    report = golden.verify(Path(path), x, y)
    if x is not None:
        report["data"] = spec
    return report


def format_verify(r: dict) -> str:
    lines = [f"{r['file']}: {r['layers']} layers, {r['vectors']} test vectors replayed"]
    if r["checksum_failures"]:
        lines.append(f"  CHECKSUM FAILED: {', '.join(r['checksum_failures'])}")
    lines.append(f"  MISMATCH: {r['mismatch']}" if r["mismatch"] else
                 "  every stored activity, goodness, score and prediction reproduced exactly")
    for mode, err in (r.get("test_error") or {}).items():
        lines.append(f"  golden replay on {r['data']} ({r['n_data']} samples): {mode} error {err:.2f} %")
    lines.append("  OK" if r["ok"] else "  FAILED")
    return "\n".join(lines)


# -- analysis -------------------------------------------------------------------------------
def analyze(run_dir: Path, *, out: Path | None = None, probe: int = 2000) -> dict:
    """`ffneuro analyze`: collaboration, entropy, plots and reports for a run dir."""
    from ffneuro.analysis.report import analyze_run

    return analyze_run(Path(run_dir), out, probe=probe)


def format_analysis(r: dict) -> str:
    from ffneuro.analysis.report import format_analysis as fmt

    return fmt(r)


def spikes(run_dir: Path, *, out: Path | None = None, samples: int = 200) -> dict:
    """`ffneuro spikes`: per-layer spike rasters, rates per step and firing-rate histograms."""
    from ffneuro.analysis.report import spike_report

    return spike_report(Path(run_dir), Path(out) if out is not None else Path(run_dir) / "spikes", samples)


def format_spikes(r: dict) -> str:
    from ffneuro.analysis.report import format_spike_report

    return format_spike_report(r)


def compare(run_dirs: list[Path], *, plot: Path | None = None) -> dict:
    """`ffneuro compare`: one row per run dir."""
    from ffneuro.analysis.report import compare_runs

    return compare_runs([Path(r) for r in run_dirs], plot)


def format_compare(r: dict) -> str:
    from ffneuro.analysis.report import format_compare as fmt

    return fmt(r)
