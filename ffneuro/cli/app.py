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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _run(fn, *args, **kwargs):
    """Call a library function, turning user-input errors into one line + exit 1."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        details = getattr(e, "details", None)
        if details:
            typer.echo(details, err=True)
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        _fail("interrupted")


def _emit(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else text)


@app.command()
def train(
    data: Annotated[Optional[str], typer.Option(help="digits (embedded default; the default) | mnist:DIR | "
                                                     "fashion-mnist:DIR | cifar10:DIR | npz:FILE")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Named recipe: " + ", ".join(api.preset_names()))] = None,
    layers: Annotated[Optional[str], typer.Option(help="Hidden widths, e.g. 500,500,500")] = None,
    algo: Annotated[Optional[str], typer.Option(help="ff | cff (collaborative FF) | bp (backprop MLP, "
                                                     "softmax output) | bp-pairwise (backprop pos/neg "
                                                     "discriminator); bp* are baselines")] = None,
    gamma: Annotated[Optional[str], typer.Option(help="CFF γ over: all | earlier | later layers")] = None,
    cff_theta: Annotated[Optional[str], typer.Option(help="CFF θ_i: sum (θs of i and J(i) added; default) | "
                                                          "own (the layer's θ; γ shifts it) | mean "
                                                          "(mean goodness of i and J(i) vs the own θ)")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="layer (one layer at a time) | network (Alg. 2)")] = None,
    label_encoding: Annotated[Optional[str], typer.Option(help="auto | overlay | concat")] = None,
    label_scale: Annotated[Optional[float], typer.Option(help="Value of the one-hot label entry")] = None,
    negatives: Annotated[Optional[str], typer.Option(help="random (wrong label) | hard (model's scores)")] = None,
    norm: Annotated[Optional[str], typer.Option(help="Normalisation between layers: length | rms | none")] = None,
    goodness: Annotated[Optional[str], typer.Option(help="sumsq | meansq | sum | neg-sumsq")] = None,
    loss: Annotated[Optional[str], typer.Option(help="ff (softplus, θ) | symba (α) | entropy")] = None,
    theta: Annotated[Optional[float], typer.Option(help="FF threshold θ (default: layer width)")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="SymBa α")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Logit temperature τ: the FF loss is "
                                                              "σ((g + γ − θ)/τ), SymBa α(g⁺ − g⁻)/τ (default 1: "
                                                              "Hinton's Σh² − θ)")] = None,
    peer_norm: Annotated[Optional[float], typer.Option(help="Peer normalisation weight (Hinton: 0.03)")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam | sgd (momentum)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate")] = None,
    onchip_lr: Annotated[Optional[float], typer.Option(help="Plain-SGD learning rate of a chip without "
                                                             "optimiser state (with --profile)")] = None,
    standardize: Annotated[Optional[bool], typer.Option("--standardize/--no-standardize",
                                                        help="Subtract the train mean, divide by its std")] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help="constant | linear-decay | multistep")] = None,
    milestones: Annotated[Optional[str], typer.Option(help="multistep epochs, e.g. 150,200")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (per layer under --schedule layer)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Mini-batch size")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (same seed, same metrics)")] = None,
    head: Annotated[Optional[bool], typer.Option("--head/--no-head", help="Train the one-pass head")] = None,
    inference_layers: Annotated[Optional[str], typer.Option(help="1-based layers summed by multi-pass "
                                                                 "inference, e.g. 2,3")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate every N epochs (0: at the end)")] = None,
    augment_shift: Annotated[Optional[int], typer.Option(help="Image data: translate each training sample "
                                                               "by up to N pixels per axis (Hinton's "
                                                               "jitter; 0: off)")] = None,
    neuron: Annotated[Optional[str], typer.Option(help="relu (graded units) | lif (spiking LIF units)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="lif: time steps T per sample")] = None,
    spike_encoding: Annotated[Optional[str], typer.Option(help="lif: input spike encoder rate | latency | "
                                                               "direct (not --label-encoding)")] = None,
    beta: Annotated[Optional[float], typer.Option(help="lif: membrane decay per step")] = None,
    spike_threshold: Annotated[Optional[float], typer.Option(help="lif: firing threshold")] = None,
    reset: Annotated[Optional[str], typer.Option(help="lif: zero (NIR) | subtract")] = None,
    spike_learning: Annotated[Optional[str], typer.Option(help="lif: bptt (through the unit's T steps) | "
                                                               "eligibility (online traces, memory independent of T)")] = None,
    spike_goodness: Annotated[Optional[str], typer.Option(help="lif: goodness on firing rates (rate) or spike "
                                                               "counts (count)")] = None,
    surrogate: Annotated[Optional[str], typer.Option(help="lif: surrogate gradient fast_sigmoid | atan")] = None,
    profile: Annotated[Optional[str], typer.Option(help="Hardware profile name or TOML path: train as the "
                                                        "chip would (see `ffneuro profiles list`)")] = None,
    simulate_anyway: Annotated[bool, typer.Option(help="Train even if the model does not fit the "
                                                       "profile's memory")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Run dir for config, checkpoint and metrics")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads (0: automatic — one thread for batches of 8 or "
                                               "fewer, e.g. a chip's batch-1 learning, else torch's default)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON on stdout")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar")] = True,
) -> None:
    """Train an FF network. Example: ffneuro train --profile loihi-like"""
    overrides = dict(data=data, layers=layers, algo=algo, gamma=gamma, cff_theta=cff_theta, schedule=schedule,
                     label_encoding=label_encoding, label_scale=label_scale, negatives=negatives, norm=norm,
                     goodness=goodness, loss=loss, theta=theta, alpha=alpha, temperature=temperature,
                     peer_norm=peer_norm,
                     optimizer=optimizer, lr=lr, onchip_lr=onchip_lr, standardize=standardize,
                     momentum=momentum, weight_decay=weight_decay,
                     lr_schedule=lr_schedule, milestones=milestones, epochs=epochs, batch_size=batch_size,
                     seed=seed, head=head, inference_layers=inference_layers, eval_every=eval_every,
                     augment_shift=augment_shift,
                     neuron=neuron, steps=steps, spike_encoding=spike_encoding, beta=beta,
                     spike_threshold=spike_threshold, reset=reset, spike_learning=spike_learning,
                     spike_goodness=spike_goodness, surrogate=surrogate)
    metrics = _run(api.train_run, preset=preset, overrides=overrides, profile=profile, out=out,
                   resume=resume, device=device, progress=progress, simulate_anyway=simulate_anyway,
                   threads=threads)
    _emit(api.metrics_summary(metrics), as_json, api.format_metrics(metrics))


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run dir written by `ffneuro train --out`")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on this dataset instead of the run's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON")] = False,
) -> None:
    """Re-evaluate a trained run from its checkpoint (all inference modes, per-layer errors)."""
    metrics = _run(api.eval_run, run_dir, data=data)
    _emit(metrics, as_json, api.format_metrics(metrics))


@app.command()
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON")] = False,
) -> None:
    """Energy (pJ per sample, training and inference) and SRAM (bytes per layer vs budget)
    of an FF network on a chip, from a run's measured events or analytically."""
    report = _run(api.estimate_run, profile=profile, run=run, layers=layers, activity=activity,
                  input_activity=input_activity, num_classes=num_classes, inference=inference, plot=plot)
    _emit(report, as_json, api.format_estimate(report))


@app.command()
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Export per-layer integer weight tables (HDF5, schema in the README) with test vectors
    a chip team can replay bit for bit. Example: ffneuro export runs/a --profile loihi-like -o model.h5"""
    r = _run(api.export, run_dir, out, profile=profile, vectors=vectors, data=data, fmt=fmt)
    _emit(r, as_json, f"wrote {r['file']} ({r.get('bytes', 0)} bytes): " +
          ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("file", "bytes")))


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="An HDF5 file written by `ffneuro export`")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Summarise an export: layers, bit widths, bytes, checksums, provenance."""
    r = _run(api.inspect_export, file)
    _emit(r, as_json, api.format_inspect(r))
    if not r["checksums_ok"]:
        raise typer.Exit(1)


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="An HDF5 file written by `ffneuro export`")],
    data: Annotated[Optional[str], typer.Option(help="Also report the replayed accuracy on this dataset "
                                                     "(default: the run's)")] = None,
    vectors_only: Annotated[bool, typer.Option("--vectors-only", help="Replay the stored vectors only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Replay inference from the file alone with the integer golden model (no training code):
    every stored vector must match exactly. Exit 1 on any mismatch or checksum failure."""
    r = _run(api.verify_export, file, data=data, use_data=not vectors_only)
    _emit(r, as_json, api.format_verify(r))
    if not r["ok"]:
        raise typer.Exit(1)


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="A run dir written by `ffneuro train --out`")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN_DIR/analysis)")] = None,
    probe: Annotated[int, typer.Option(help="Held-out samples for the goodness histograms and entropy")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON")] = False,
) -> None:
    """Layer collaboration (each layer alone, cumulative, marginal contribution), functional
    entropy, and plots: training curves, Figure-2 error bars, entropy over epochs, goodness
    histograms; writes PNGs, report.md and a self-contained report.html."""
    r = _run(api.analyze, run_dir, out=out, probe=probe)
    _emit(r, as_json, api.format_analysis(r))


@app.command()
def spikes(
    run_dir: Annotated[Path, typer.Argument(help="A spiking run dir (`ffneuro train --neuron lif --out`)")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN_DIR/spikes)")] = None,
    samples: Annotated[int, typer.Option(help="Test samples (with their true label) to record")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sparsity table as JSON")] = False,
) -> None:
    """Spike rasters, population rate per time step and firing-rate histograms, one PNG per
    layer (input encoder included), and spikes.json with each layer's sparsity."""
    r = _run(api.spikes, run_dir, out=out, samples=samples)
    _emit(r, as_json, api.format_spikes(r))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run dirs (FF, CFF or bp baselines)")],
    plot: Annotated[Optional[Path], typer.Option("--plot", "--out",
                                                 help="Write a PNG of errors, training time (and energy)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON")] = False,
) -> None:
    """One table across runs: algorithm, data, epochs, time, test errors, energy if estimated."""
    r = _run(api.compare, run_dirs, plot=plot)
    _emit(r, as_json, api.format_compare(r))


@profiles_app.command("list")
def profiles_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the shipped hardware profiles."""
    rows = _run(api.profile_rows)
    _emit(rows, as_json, api.format_profile_rows(rows))


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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    app()


if __name__ == "__main__":
    main()
