"""The ``ffneuro`` command line. Commands parse arguments and call one library function;
errors in user input become one ``error: …`` line and exit code 1, never a traceback."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ffneuro import api

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Forward-Forward on-chip learning simulator: train, evaluate, estimate energy and SRAM.")
profiles_app = typer.Typer(no_args_is_help=True, help="List, show and validate hardware profiles.")
app.add_typer(profiles_app, name="profiles")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class _Invocation:
    """Options of the root command that every command's error handling reads; set afresh
    by ``_root`` on every invocation."""

    debug = False


def os_error_text(e: OSError) -> str:
    """One line for a failed file operation: the path and what the system said.

    >>> os_error_text(OSError(30, "Read-only file system", "runs/a"))
    'runs/a: Read-only file system'
    """
    where = e.filename if e.filename is not None else None
    what = e.strerror or str(e) or type(e).__name__
    return f"{where}: {what}" if where is not None else what


def _run(fn, *args, **kwargs):
    """Call a library function, turning every failure into one ``error: …`` line and exit
    1 (``ffneuro --debug`` shows the traceback instead)."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:
        if _Invocation.debug:
            raise
        details = getattr(e, "details", None)
        if details:
            typer.echo(details, err=True)
        _fail(failure_text(e))


def failure_text(e: Exception) -> str:
    """The one line a user sees for ``e``."""
    first = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, ValueError):
        return first
    if isinstance(e, OSError):
        return os_error_text(e)
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "allocate" in first):
        return f"out of memory ({first}); use narrower units or a smaller loop.batch_size"
    return f"internal error: {type(e).__name__}: {first} (ffneuro --debug COMMAND … shows the traceback)"


def _emit(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else text)


def _print(text: str) -> None:
    """Print a command's output (text, JSON or CSV) ending in exactly one newline."""
    typer.echo(text, nl=not text.endswith("\n"))


def _format_option(rows: str):
    """The ``--format`` option of a command that prints a table; ``rows``: what a CSV row is."""
    return typer.Option("--format", metavar="text|json|csv",
                        help=f"Output: text (a table; the default), json, or csv for spreadsheets ({rows}; "
                             "numbers unrounded, units in the column names)")


def _help_text(text: str) -> str:
    """Help text shown as written: escaped for Rich markup (a ``[section]`` is not a style
    tag), or kept from click's re-wrapping when Rich is absent."""
    import typer.core

    if typer.core.HAS_RICH:
        from rich.markup import escape

        return escape(text)
    return "\n\n".join("\b\n" + para for para in text.split("\n\n"))


sweep_app = typer.Typer(no_args_is_help=True, help=_help_text(
    "Hyperparameter and architecture sweeps on Optuna (needs the sweep extra: pip install 'ffneuro[sweep]'); "
    "see docs/sweep.md."))
app.add_typer(sweep_app, name="sweep")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show a traceback instead of one error line "
                                                              "(for reporting a bug)")] = False) -> None:
    _Invocation.debug = debug


CONFIG_PANEL = "Configuration (later wins: preset < --config < flags < --set)"
RUN_PANEL = "Running"


@app.command(short_help="Train a network (or continue one), in float or as a chip would learn it.",
             epilog=_help_text(api.options_help()),
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option(
        "--config", metavar="FILE", rich_help_panel=CONFIG_PANEL,
        help="TOML file with the sections of config.json's \"config\" (data, units, cff, optim, loop, "
             "inference, hardware); may name a preset at top level: preset = \"NAME\"")] = None,
    preset: Annotated[Optional[str], typer.Option(
        rich_help_panel=CONFIG_PANEL,
        help="Named recipe: " + ", ".join(api.preset_names()) + " (replaces a preset the --config file names)")] = None,
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="SECTION.KEY=VALUE", rich_help_panel=CONFIG_PANEL,
        help="Set any config option (repeatable, applied in order), e.g. --set optim.lr=3e-3; lists as "
             "500,500; none clears an optional one. Every option is listed below")] = None,
    data: Annotated[Optional[str], typer.Option(
        rich_help_panel=CONFIG_PANEL, help="data.name: digits (embedded; the default) | mnist:DIR | "
                                           "fashion-mnist:DIR | cifar10:DIR | imagefolder:DIR|ZIP | npz:FILE")] = None,
    profile: Annotated[Optional[str], typer.Option(
        rich_help_panel=CONFIG_PANEL, help="hardware.profile: train as this chip would (name or TOML path; see "
                                           "`ffneuro profiles list`)")] = None,
    layers: Annotated[Optional[str], typer.Option(rich_help_panel=CONFIG_PANEL,
                                                  help="units.layers: widths, e.g. 500,500,500")] = None,
    epochs: Annotated[Optional[int], typer.Option(rich_help_panel=CONFIG_PANEL,
                                                  help="loop.epochs (per unit under the layer schedule)")] = None,
    seed: Annotated[Optional[int], typer.Option(rich_help_panel=CONFIG_PANEL,
                                                help="loop.seed (same seed, same metrics)")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(
        rich_help_panel=CONFIG_PANEL, help="data.val_fraction: hold out this stratified fraction of the training "
                                           "set (e.g. 0.1) and report its error beside the test error")] = None,
    simulate_anyway: Annotated[bool, typer.Option(
        "--simulate-anyway", rich_help_panel=CONFIG_PANEL,
        help="hardware.simulate_anyway=true: train even if the model does not fit the profile's memory")] = False,
    print_config: Annotated[bool, typer.Option(
        "--print-config", rich_help_panel=RUN_PANEL,
        help="Print the resolved config as TOML (as JSON with --json) and exit without training; "
             "a start for a --config file")] = False,
    out: Annotated[Optional[Path], typer.Option(rich_help_panel=RUN_PANEL,
                                                help="Run dir for config, checkpoint and metrics")] = None,
    resume: Annotated[bool, typer.Option(
        rich_help_panel=RUN_PANEL, help="Continue the run in --out from its last checkpoint, exactly as its "
                                        "config.json says (options that would change it are refused)")] = False,
    overwrite: Annotated[bool, typer.Option(
        rich_help_panel=RUN_PANEL, help="Replace the run already in --out (all its files; a folder that is "
                                        "not an ffneuro run is never written into)")] = False,
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=RUN_PANEL,
                                          help="Print metrics as JSON on stdout")] = False,
    device: Annotated[str, typer.Option(rich_help_panel=RUN_PANEL, help="auto | cpu | cuda")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", rich_help_panel=RUN_PANEL,
                                           help="Show a progress bar")] = True,
    threads: Annotated[int, typer.Option(
        rich_help_panel=RUN_PANEL, help="CPU threads (0: automatic — one thread for batches of 8 or fewer, "
                                        "e.g. a chip's batch-1 learning, else torch's default)")] = 0,
    stages: Annotated[int, typer.Option(
        rich_help_panel=RUN_PANEL, help="Pipeline-parallel training: N processes, each learning a balanced share of "
                                        "the units (one thread each unless --threads); under torchrun, this "
                                        "process's stage. See docs/pipeline.md")] = 1,
) -> None:
    """Train a network, or continue one (--resume). Example: ffneuro train --profile loihi-like.
    The run's configuration is built from, later wins: the defaults, a --preset, a --config
    TOML file, the flags --data --profile --layers --epochs --seed --simulate-anyway, then
    each --set SECTION.KEY=VALUE in order. Every option is listed below by section, with its
    default and type or allowed values; a config file says them as KEY = VALUE under a
    section table, and may name a preset at top level (preset = "hinton").

    Start a config file from any command line: ffneuro train --preset hinton --print-config > run.toml
    """
    if ctx.args:                    # e.g. a per-field flag of old: say which --set replaces it
        nxt = ctx.args[1] if len(ctx.args) > 1 and not ctx.args[1].startswith("--") else None
        _fail(api.replaced_flag(ctx.args[0], nxt))
    flags = {"data": data, "profile": profile, "layers": layers, "epochs": epochs, "seed": seed,
             "val_fraction": val_fraction,
             "simulate_anyway": True if simulate_anyway else None}
    if resume and out is None:
        _fail("--resume needs --out RUN_DIR")
    cfg = _run(api.resolve_train_config, config, preset, flags, sets or [], resume=out if resume else None)
    if print_config:
        typer.echo(api.format_config_json(cfg) if as_json else api.format_config_toml(cfg), nl=as_json)
        return
    metrics = _run(api.train_run, cfg, out=out, resume=resume, device=device, progress=progress, threads=threads,
                   overwrite=overwrite, stages=stages)
    _emit(api.metrics_summary(metrics), as_json, api.format_metrics(metrics))


@app.command("eval", short_help="Re-evaluate a trained run from its checkpoint.")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run dir written by `ffneuro train --out`")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on this dataset instead of the run's")] = None,
    exit_threshold: Annotated[Optional[str], typer.Option(
        "--exit-threshold", metavar="T[,T…]",
        help="Early exit: a sample leaves after units 1..k once its leading score beats the runner-up by T of "
             "the scores' spread (0..1). Prints error, mean depth, exits per layer and (under a profile) inference energy per "
             "threshold, beside full multi-pass and one-pass inference")] = None,
    profile: Annotated[Optional[str], typer.Option(
        help="With --exit-threshold: price inference on this profile (default: the run's); a fixed-point "
             "profile other than the run's quantises it post-training, as `ffneuro export` does")] = None,
    split: Annotated[str, typer.Option(help="With --exit-threshold: test, or val (the run's --val-fraction "
                                            "split: choose a threshold there, report it on test)")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON")] = False,
) -> None:
    """Re-evaluate a trained run from its checkpoint (all inference modes, per-layer errors).
    Example: ffneuro eval runs/a --exit-threshold 0,0.02,0.05,0.1 --profile loihi-like"""
    if exit_threshold is not None:
        thresholds = _run(api.exit_thresholds, exit_threshold)
        r = _run(api.exit_curve, run_dir, thresholds, profile=profile, data=data, split=split)
        _emit(r, as_json, api.format_exit_curve(r))
        return
    if profile is not None:
        _fail("--profile is used with --exit-threshold (to price early-exit inference)")
    metrics = _run(api.eval_run, run_dir, data=data)
    _emit(metrics, as_json, api.format_metrics(metrics))


@app.command(short_help="Energy per sample and SRAM of a network on a chip, measured or analytic.")
def estimate(
    profile: Annotated[str, typer.Option(help="Hardware profile name or TOML path")],
    run: Annotated[Optional[Path], typer.Option(help="A run dir: use its measured event counts")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Analytic mode: all layer sizes incl. the input, "
                                                       "e.g. 784,500,500")] = None,
    activity: Annotated[float, typer.Option(help="Analytic: fraction of non-zero hidden units")] = 0.5,
    input_activity: Annotated[float, typer.Option(help="Analytic: fraction of non-zero inputs")] = 0.2,
    num_classes: Annotated[int, typer.Option(help="Analytic: number of classes")] = 10,
    inference: Annotated[str, typer.Option(help="Analytic: one-pass | multi-pass")] = "one-pass",
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG: energy per layer by event kind, "
                                                      "SRAM per layer vs budget")] = None,
    fmt: Annotated[Optional[str], typer.Option(
        "--format", metavar="text|json|csv|accelergy",
        help="Output: text (a table; the default), json, csv for spreadsheets (a row per phase and layer, then "
             "the phase's total: energy_pj, energy_pj_<kind>, sram_bytes, cores, …; numbers unrounded, units in "
             "the column names), or accelergy: write Accelergy's action_counts.yaml and ERT.yaml (and "
             "ffneuro_energy.yaml) into -o DIR")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", metavar="DIR",
                                                help="Folder for --format accelergy's files")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON (= --format json)")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace existing output files")] = False,
) -> None:
    """Energy (pJ per sample, training and inference) and SRAM (bytes per layer vs budget)
    of an FF network on a chip, from a run's measured events or analytically.
    Example: ffneuro estimate --run runs/a --profile cmos-45nm --format accelergy -o acc"""
    fmt = _run(api.output_format, fmt, as_json, allowed=api.ESTIMATE_FORMATS)
    report = _run(api.estimate_run, profile=profile, run=run, layers=layers, activity=activity,
                  input_activity=input_activity, num_classes=num_classes, inference=inference, plot=plot,
                  force=force, fmt=fmt, out=out)
    _print(_run(api.format_estimate, report, fmt))


@app.command(short_help="Export a run's integer tables (HDF5) or its spiking graph (NIR).")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run dir written by `ffneuro train --out`")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output file (model.h5, or model.nir with --format nir)")],
    profile: Annotated[Optional[str], typer.Option(help="Integer profile to export for (default: the run's; a "
                                                        "float run is quantised post-training)")] = None,
    vectors: Annotated[int, typer.Option(help="Number of real test inputs stored with their expected integer "
                                              "activities, goodness and predictions")] = 8,
    data: Annotated[Optional[str], typer.Option(help="Take test vectors from this dataset instead of the run's")] = None,
    fmt: Annotated[str, typer.Option("--format", help="hdf5 (integer tables for bring-up) | nir (spiking "
                                                      "runs, for Lava/Rockpool/Sinabs/snntorch)")] = "hdf5",
    exit_threshold: Annotated[Optional[float], typer.Option(
        "--exit-threshold", help="Store early exit at this threshold (default: the run's "
                                 "inference.exit_threshold); the vectors then carry each one's exit layer")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file")] = False,
) -> None:
    """Export per-layer integer weight tables (HDF5, schema in the README) with test vectors
    a chip team can replay bit for bit. Example: ffneuro export runs/a --profile loihi-like -o model.h5"""
    r = _run(api.export, run_dir, out, profile=profile, vectors=vectors, data=data, fmt=fmt, force=force,
             exit_threshold=exit_threshold)
    _emit(r, as_json, f"wrote {r['file']} ({r.get('bytes', 0)} bytes): " +
          ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("file", "bytes")))


@app.command(short_help="Summarise an exported HDF5 file.")
def inspect(
    file: Annotated[Path, typer.Argument(help="An HDF5 file written by `ffneuro export`")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Summarise an export: layers, bit widths, bytes, checksums, provenance."""
    r = _run(api.inspect_export, file)
    _emit(r, as_json, api.format_inspect(r))
    if not r["checksums_ok"]:
        raise typer.Exit(1)


@app.command(short_help="Replay an export with the golden integer model; exit 1 on any mismatch.")
def verify(
    file: Annotated[Path, typer.Argument(help="An HDF5 file written by `ffneuro export`")],
    data: Annotated[Optional[str], typer.Option(help="Also report the replayed accuracy on this dataset "
                                                     "(default: the run's)")] = None,
    vectors_only: Annotated[bool, typer.Option("--vectors-only", help="Replay the stored vectors only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Replay inference from the file alone with the integer golden model (no training code):
    every stored vector must match exactly. Exit 1 on any mismatch, checksum or content-digest
    failure, and for a file with no test vectors (export --vectors 0): nothing to replay."""
    r = _run(api.verify_export, file, data=data, use_data=not vectors_only)
    _emit(r, as_json, api.format_verify(r))
    if not r["ok"]:
        raise typer.Exit(1)


@app.command(short_help="Layer collaboration, functional entropy and plots of a run.")
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="A run dir written by `ffneuro train --out`")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN_DIR/analysis)")] = None,
    probe: Annotated[int, typer.Option(help="Held-out samples for the goodness histograms and entropy")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a --out folder that already has files")] = False,
) -> None:
    """Layer collaboration (each layer alone, cumulative, marginal contribution), functional
    entropy, and plots: training curves, Figure-2 error bars, entropy over epochs, goodness
    histograms; writes PNGs, report.md and a self-contained report.html."""
    r = _run(api.analyze, run_dir, out=out, probe=probe, force=force)
    _emit(r, as_json, api.format_analysis(r))


@app.command(short_help="Spike rasters, rates and sparsity of a spiking run.")
def spikes(
    run_dir: Annotated[Path, typer.Argument(help="A spiking run dir (`ffneuro train --set units.neuron=lif --out`)")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN_DIR/spikes)")] = None,
    samples: Annotated[int, typer.Option(help="Test samples (with their true label) to record")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sparsity table as JSON")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a --out folder that already has files")] = False,
) -> None:
    """Spike rasters, population rate per time step and firing-rate histograms, one PNG per
    layer (input encoder included), and spikes.json with each layer's sparsity."""
    r = _run(api.spikes, run_dir, out=out, samples=samples, force=force)
    _emit(r, as_json, api.format_spikes(r))


@app.command(short_help="One table across runs: errors, time, energy.")
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run dirs (FF, CFF or bp baselines)")],
    plot: Annotated[Optional[Path], typer.Option("--plot", "--out",
                                                 help="Write a PNG of errors, training time (and energy)")] = None,
    fmt: Annotated[Optional[str], _format_option("a row per run: errors in %, wall_s, energy_pj")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON (= --format json)")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing plot file")] = False,
) -> None:
    """One table across runs: algorithm, data, epochs, time, test errors, energy if estimated."""
    fmt = _run(api.output_format, fmt, as_json)
    r = _run(api.compare, run_dirs, plot=plot, force=force)
    _print(_run(api.format_compare, r, fmt))


@profiles_app.command("list")
def profiles_list(
    fmt: Annotated[Optional[str], _format_option("a row per profile")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON (= --format json)")] = False,
) -> None:
    """List the shipped hardware profiles."""
    fmt = _run(api.output_format, fmt, as_json)
    rows = _run(api.profile_rows)
    _print(_run(api.format_profile_rows, rows, fmt))


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name or path to a TOML file")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show every figure of a profile with its source and confidence."""
    d = _run(api.profile_dict, name)
    _emit(d, as_json, api.format_profile(d))


@profiles_app.command("validate")
def profiles_validate(file: Annotated[Path, typer.Argument(help="A profile TOML file")]) -> None:
    """Validate a profile file (exit 1 with the offending key if invalid)."""
    d = _run(api.profile_dict, str(file))
    typer.echo(f"{file}: valid profile {d['name']!r}")


STORAGE_HELP = ("Where the study lives: a file (sweep.db: SQLite, nothing to start), a database URL "
                "(postgresql+psycopg2://USER@HOST/DB) or an Optuna journal file (PATH.journal); every machine "
                "running the same command against one storage works on one study")


def _trial_line(row: dict) -> None:
    """Progress of a sweep: one line on stderr per finished trial."""
    values = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "duration_s")
    extra = f" ({row['error']})" if row.get("error") else ""
    extra += f" (retry of interrupted trial {row['retry_of']})" if "retry_of" in row else ""
    took = f" in {row['duration_s']:.1f} s" if "duration_s" in row else ""
    typer.echo(f"trial {row['trial']}: {row['state']}{took}" + (f": {values}" if values else "") + extra, err=True)


@sweep_app.command("run", short_help="Run a training sweep: trials on validation error (and energy, SRAM), pruned, resumable.")
def sweep_run(
    space: Annotated[Path, typer.Argument(help=_help_text("The search space: a TOML file ([study], [fixed], "
                                                          "[params]; see docs/sweep.md)"))],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sweep.db",
    out: Annotated[Optional[Path], typer.Option(help="Folder of the trials' run dirs trial-NNNN (default "
                                                     "sweeps/STUDY)")] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes, each training one trial at a time")] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per worker")] = 1,
    fmt: Annotated[Optional[str], _format_option("a row per trial: objectives, param:KEY, state, error")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="A line per finished trial on "
                                                                           "stderr")] = True,
) -> None:
    """Run a training sweep: trials drawn by Optuna from SPACE, each a run dir trained and
    judged on validation error (and energy or SRAM), pruned early when its validation
    error lags, a failing trial recorded with its error. Start the same command on more
    machines against one --storage to share the study; run it again to continue it.
    Example: ffneuro sweep run space.toml --storage sweep.db --workers 2"""
    fmt = _run(api.output_format, fmt)
    s = _run(api.sweep_run, space, storage=storage, out=out, workers=workers, threads=threads,
             on_trial=_trial_line if progress else None)
    _print(_run(api.format_sweep, s, fmt))


@sweep_app.command("grid", short_help="Estimate a grid of profiles x widths x bits without training, in seconds.")
def sweep_grid(
    space: Annotated[Path, typer.Argument(help=_help_text("The grid: a TOML file whose [params] give choices "
                                                          "(profiles, widths, profile.precision.weight_bits, …)"))],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sweep.db",
    out: Annotated[Optional[Path], typer.Option(help="Folder for the derived profiles (default sweeps/STUDY)")] = None,
    fmt: Annotated[Optional[str], _format_option("a row per grid point")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="A line per point on stderr")] = False,
) -> None:
    """Estimate every point of a grid (profiles x widths x bits) analytically, without
    training, in seconds; recorded in --storage for `sweep show` like a training sweep.
    Example: ffneuro sweep grid arch.toml && ffneuro sweep show arch --out arch-report"""
    fmt = _run(api.output_format, fmt)
    s = _run(api.sweep_grid, space, storage=storage, out=out, on_trial=_trial_line if progress else None)
    _print(_run(api.format_sweep, s, fmt))


@sweep_app.command("show", short_help="Best trial or Pareto front; CSV, JSON and PNGs with --out.")
def sweep_show(
    study: Annotated[str, typer.Argument(help="The study's name (study.name of its space file)")],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sweep.db",
    out: Annotated[Optional[Path], typer.Option(help="Write trials.csv, study.json and PNGs (Pareto fronts, "
                                                     "importances) into this folder")] = None,
    fmt: Annotated[Optional[str], _format_option("a row per trial")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into an --out folder that already has files")] = False,
) -> None:
    """The best trial (one objective) or the Pareto front (several), the test error of
    those chosen trials only, and the failed trials' errors."""
    fmt = _run(api.output_format, fmt)
    s = _run(api.sweep_show, study, storage=storage, out=out, force=force)
    _print(_run(api.format_sweep, s, fmt))


@sweep_app.command("rerun", short_help="Train the chosen trial's config again and report its test error.")
def sweep_rerun(
    study: Annotated[str, typer.Argument(help="The study's name")],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sweep.db",
    trial: Annotated[Optional[int], typer.Option(help="The trial to re-run (default: the best; a Pareto front "
                                                      "needs one)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run dir of the re-run")] = None,
    keep_val: Annotated[bool, typer.Option("--keep-val", help="Keep the trial's validation split (default: "
                                                              "train on the whole training set)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads (0: automatic)")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out")] = False,
) -> None:
    """Train the chosen trial's config again, on the whole training set, and report its
    test error. Example: ffneuro sweep rerun mnist-recipes --out runs/best"""
    m = _run(api.sweep_rerun, study, storage=storage, trial=trial, out=out, keep_val=keep_val, progress=progress,
             threads=threads, overwrite=overwrite)
    t = m["sweep_trial"]
    head = f"re-run of trial {t['trial']} of study {t['study']} (chosen on " + ", ".join(
        f"{k} {v:.4g}" for k, v in t["values"].items()) + "); its test error:"
    _emit(api.metrics_summary(m), as_json, head + "\n" + api.format_metrics(m))


@app.command("neurobench", short_help="NeuroBench's own metrics on a run dir, beside ffneuro's figures.")
def neurobench(
    run_dir: Annotated[Path, typer.Argument(help="A trained run dir (float: not under a fixed-point profile)")],
    data: Annotated[Optional[str], typer.Option(help="Dataset spec whose test split to run (default: the run's)")] = None,
    samples: Annotated[Optional[int], typer.Option(help="The first N test samples (default: as many as the run's "
                                                        "events.json counted, else all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON")] = False,
) -> None:
    """Run NeuroBench's own harness (its Benchmark and metrics; needs pip install
    'ffneuro[neurobench]') on a run dir's network and test samples, and print its figures
    beside ffneuro's own counts of the same samples. Example: ffneuro neurobench runs/digits"""
    r = _run(api.neurobench_run, run_dir, data=data, samples=samples)
    _emit(r, as_json, _run(api.format_neurobench, r))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        app()
    except SystemExit as stop:
        pipeline = sys.modules.get("ffneuro.train.pipeline")
        if pipeline is not None and pipeline.launched() and isinstance(stop.code, (int, type(None))):
            pipeline.leave(stop.code or 0)                     # a torchrun stage: see pipeline.leave
        raise


if __name__ == "__main__":
    main()
