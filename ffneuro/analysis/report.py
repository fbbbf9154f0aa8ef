"""Why an FF network works or fails: layer collaboration and functional entropy (SPEC §2).

Pure functions first (the collaboration table, the entropy probe), then the report
(`analyze_run`: PNGs, a Markdown report and a self-contained HTML report) and the
cross-run comparison (`compare_runs`). Plots only display numbers computed here.

Functional entropy (SPEC §2): with h(x, y, i) = g_i(x, y) ≥ 0, the goodness of layer i
(without CFF's γ: the probe measures what each layer itself computes) and μ uniform over
probe samples × layers, ``Ent_μ[h] = Ent_i[E_x h] + E_i[Ent_x h]`` (across-layer +
within-layer). It is computed for the positive pairs (x, true label), the negative pairs
(x, a fixed random wrong label per probe sample) and both together, on a fixed subset of
held-out (test) data, after every epoch.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import torch

from ffneuro import rng
from ffneuro.train.probe import entropy_record, probe_goodness, probe_indices, silent_fraction

ENTROPY_KINDS = ("positive", "negative", "both")


# ----------------------------------------------------------------------------------------
# Pure analysis
# ----------------------------------------------------------------------------------------
def marginal_contributions(cumulative_error: list[float]) -> list[float | None]:
    """Error reduction (points) from adding layer k to layers 1..k−1: err(1..k−1) − err(1..k).
    Positive = the layer helps; None for the first layer (nothing to add it to)."""
    return [None] + [cumulative_error[k - 1] - cumulative_error[k] for k in range(1, len(cumulative_error))]


def collaboration_table(metrics: dict) -> list[dict]:
    """One row per layer: error alone, error of layers 1..k, marginal contribution."""
    alone, cum = metrics["per_layer_error"], metrics["cumulative_error"]
    return [{"layer": k + 1, "alone": alone[k], "cumulative": cum[k], "marginal": m}
            for k, m in enumerate(marginal_contributions(cum))]


# ----------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from ffneuro.runs.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_training_curves(history: list[dict], path: Path) -> Path:
    plt = _plt()
    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(11, 4))
    layers = sorted({k for r in history for k in r.get("loss", {})}, key=lambda k: int(k[5:]))
    for key in layers:
        pts = [(r["epoch"], r["loss"][key]) for r in history if key in r.get("loss", {})]
        ax_l.plot(*zip(*pts), label=key.replace("layer", "layer "))
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("local loss (mean over batches)")
    ax_l.set_yscale("log")
    ax_l.legend(fontsize=8)
    evals = [r for r in history if "test_error" in r]
    for mode in sorted({m for r in evals for m in r["test_error"]}):
        ax_e.plot([r["epoch"] for r in evals], [r["test_error"][mode] for r in evals], marker=".", label=mode)
    for i in range(len(evals[0]["per_layer_error"]) if evals else 0):
        ax_e.plot([r["epoch"] for r in evals], [r["per_layer_error"][i] for r in evals], ls=":", label=f"layer {i + 1} alone")
    ax_e.set_xlabel("epoch")
    ax_e.set_ylabel("test error [%]")
    ax_e.set_yscale("log")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_collaboration(table: list[dict], title: str, path: Path) -> Path:
    """Per-layer and cumulative error bars (the CFF paper's Figure 2)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    k = [r["layer"] for r in table]
    ax.bar([i - 0.2 for i in k], [r["alone"] for r in table], 0.4, label="layer alone")
    ax.bar([i + 0.2 for i in k], [r["cumulative"] for r in table], 0.4, label="layers 1..k together")
    for r in table:
        ax.text(r["layer"] + 0.2, r["cumulative"], f"{r['cumulative']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(k, [f"{i}" for i in k])
    ax.set_xlabel("layer k")
    ax.set_ylabel("test error [%]")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_entropy(history: list[dict], path: Path) -> Path | None:
    """Functional entropy over epochs (the CFF paper's Figure 4): total and its parts."""
    pts = [r for r in history if "entropy" in r]
    if not pts:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=False)
    for ax, kind in zip(axes, ENTROPY_KINDS):
        for part, style in (("total", "-"), ("across", "--"), ("within", ":")):
            ax.plot([r["epoch"] for r in pts], [r["entropy"][kind][part] for r in pts], style, label=part)
        ax.set_title(f"{kind} pairs", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("functional entropy of goodness")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_silent_units(history: list[dict], path: Path) -> Path | None:
    """Fraction of silent units per layer over epochs (logged with the entropy probe)."""
    pts = [r for r in history if "silent_units" in r]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i in range(len(pts[0]["silent_units"])):
        ax.plot([r["epoch"] for r in pts], [100 * r["silent_units"][i] for r in pts], label=f"layer {i + 1}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("silent units on the probe [%]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_goodness_histograms(g_pos: torch.Tensor, g_neg: torch.Tensor, path: Path) -> Path:
    plt = _plt()
    n_layers = g_pos.shape[1]
    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 3.5), squeeze=False)
    for i, ax in enumerate(axes[0]):
        lo = float(min(g_pos[:, i].min(), g_neg[:, i].min()))
        hi = float(max(g_pos[:, i].max(), g_neg[:, i].max()))
        bins = torch.linspace(lo, hi if hi > lo else lo + 1, 50).tolist()
        ax.hist(g_pos[:, i].tolist(), bins=bins, alpha=0.6, label="positive (true label)")
        ax.hist(g_neg[:, i].tolist(), bins=bins, alpha=0.6, label="negative (wrong label)")
        ax.set_title(f"layer {i + 1}", fontsize=9)
        ax.set_xlabel("goodness")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def spike_trains(net, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Spike trains (T, N, units) of the input encoder and of every layer of a spiking
    network for the positive pairs (x, y) (the encoder seeded as at inference)."""
    trains = []
    for p in net.stream(x, [y]):
        if p.index == 0:
            trains.append(p.h_in)
        trains.append(p.h_out)
    return trains


def has_spike_trains(net) -> bool:
    """Whether the network's units run over time steps (their activities are spike trains)."""
    return any(r.time_steps > 1 for r in net.resources())


def firing_stats(s: torch.Tensor) -> dict:
    """Sparsity of one spike train (T, N, units): the mean firing rate (spikes per unit and
    step), spikes per sample, the fraction of units silent on every sample, and the
    population rate at each step (mean over samples and units).

    >>> firing_stats(torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]]))["silent_fraction"]
    0.5
    """
    return {"units": int(s.shape[2]), "rate": float(s.mean()), "spikes_per_sample": float(s.sum() / s.shape[1]),
            "silent_fraction": silent_fraction(s),
            "rate_per_step": [float(v) for v in s.mean(dim=(1, 2))]}


def plot_layer_spikes(s: torch.Tensor, name: str, path: Path) -> Path:
    """One layer: raster of the first sample's spikes, population rate per time step,
    and the histogram of per-unit firing rates over all samples."""
    plt = _plt()
    st = firing_stats(s)
    fig, (ax_r, ax_t, ax_h) = plt.subplots(1, 3, figsize=(13, 3.8))
    t, n = s[:, 0].nonzero(as_tuple=True)
    ax_r.scatter(t.tolist(), n.tolist(), s=4, marker="|")
    ax_r.set(xlim=(-0.5, s.shape[0] - 0.5), ylim=(-0.5, s.shape[2] - 0.5), xlabel="time step", ylabel="unit",
             title=f"{name}: raster, sample 0")
    ax_t.plot(range(s.shape[0]), st["rate_per_step"], marker="o")
    ax_t.set(xlabel="time step", ylabel="spikes per unit", ylim=(0, None), title="population rate per step")
    ax_h.hist(s.mean(dim=(0, 1)).tolist(), bins=20)
    ax_h.set(xlabel="firing rate (spikes per step)", ylabel="units",
             title=f"mean {st['rate']:.3f}, silent {100 * st['silent_fraction']:.0f} %")
    for ax in (ax_r, ax_t, ax_h):
        ax.title.set_fontsize(9)
    for ax in (ax_r, ax_t):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path)


def spike_report(run_dir: Path, out: Path, samples: int = 200) -> dict:
    """`ffneuro spikes`: per layer (input encoder included) a PNG of raster, rate per step
    and firing-rate histogram, and ``spikes.json`` with the sparsity of each layer, for
    ``samples`` test samples with their true label."""
    from ffneuro.runs import files as runio
    from ffneuro.data.loaders import load_dataset
    from ffneuro.runs.load import load_run

    run_dir, out = Path(run_dir), Path(out)
    cfg, _, net = load_run(run_dir)
    if not has_spike_trains(net):
        raise ValueError(f"{run_dir}: not a spiking run (units.neuron = lif): it has no spikes to plot")
    if samples < 1:
        raise ValueError(f"--samples {samples}: must be >= 1")
    ds = load_dataset(cfg.data.name, seed=cfg.loop.seed)
    x, y = net.prepare_input(ds.x_test[:samples]), ds.y_test[:samples]
    out.mkdir(parents=True, exist_ok=True)
    layers = []
    for k, s in enumerate(spike_trains(net, x, y)):
        name = "input" if k == 0 else f"layer{k}"
        png = plot_layer_spikes(s, name, out / f"spikes_{name}.png")
        layers.append({"layer": name, **firing_stats(s), "png": str(png)})
    summary = {"run_dir": str(run_dir), "steps": net.resources()[0].time_steps,
               "spike_encoding": net.input_stage.export_attrs().get("spike_encoding"),
               "samples": int(x.shape[0]), "layers": layers}
    runio.write_json(out / "spikes.json", summary)
    return summary


def format_spike_report(r: dict) -> str:
    lines = [f"{r['run_dir']}: T = {r['steps']}, {r['spike_encoding']} encoding, {r['samples']} test samples",
             f"  {'layer':<8}{'units':>7}{'rate':>8}{'spikes/sample':>15}{'silent %':>10}  png"]
    for row in r["layers"]:
        lines.append(f"  {row['layer']:<8}{row['units']:>7}{row['rate']:>8.3f}{row['spikes_per_sample']:>15.1f}"
                     f"{100 * row['silent_fraction']:>10.1f}  {row['png']}")
    return "\n".join(lines)


@torch.no_grad()
def plot_spikes(net, x: torch.Tensor, y: torch.Tensor, path: Path) -> Path:
    """Spiking runs: a raster of every layer's spikes for one positive sample (top) and
    each layer's firing-rate histogram over the probe (bottom)."""
    plt = _plt()
    trains = spike_trains(net, x, y)
    fig, axes = plt.subplots(2, len(trains), figsize=(4 * len(trains), 6), squeeze=False)
    for k, s in enumerate(trains):
        name = "input" if k == 0 else f"layer {k}"
        t, n = s[:, 0].nonzero(as_tuple=True)
        axes[0][k].scatter(t.tolist(), n.tolist(), s=2, marker="|")
        axes[0][k].set_title(f"{name}: spikes of sample 0", fontsize=9)
        axes[0][k].set_xlabel("time step")
        axes[1][k].hist(s.mean(dim=0).flatten().tolist(), bins=20)
        axes[1][k].set_title(f"{name}: firing rates (mean {float(s.mean()):.3f})", fontsize=9)
        axes[1][k].set_xlabel("spikes per step")
    axes[0][0].set_ylabel("unit")
    fig.tight_layout()
    return _save(fig, path)


def _fmt(v, digits: int = 2) -> str:
    """A marginal contribution: signed (positive = the layer helps), '–' for none."""
    return "–" if v is None else f"{v:+.{digits}f}"


def entropy_rows(entropy_history: list[dict], max_rows: int = 20) -> list[dict]:
    """At most ``max_rows`` records of the entropy log, evenly spaced, first and last kept.

    >>> [r["epoch"] for r in entropy_rows([{"epoch": e} for e in range(1, 11)], 4)]
    [1, 4, 7, 10]
    """
    n = len(entropy_history)
    if n <= max_rows:
        return list(entropy_history)
    picks = sorted({round(k * (n - 1) / (max_rows - 1)) for k in range(max_rows)})
    return [entropy_history[i] for i in picks]


def _markdown(summary: dict, images: dict[str, str]) -> str:
    lines = [f"# ffneuro analysis: {summary['run_dir']}", "",
             f"{summary['algo']} on {summary['dataset']}, layers {summary['layers']}, {summary['epochs']} epochs, "
             f"test error " + ", ".join(f"{k} {v:.2f} %" for k, v in summary["test_error"].items()), "",
             "## Layer collaboration", "",
             "| layer | error alone (%) | error of layers 1..k (%) | marginal contribution (points) |",
             "|---|---|---|---|"]
    for r in summary["collaboration"]:
        lines.append(f"| {r['layer']} | {r['alone']:.2f} | {r['cumulative']:.2f} | {_fmt(r['marginal'])} |")
    lines += ["", summary["finding"], "",
              "Silent units (zero activity on every probe pair, positive and negative): " +
              ", ".join(f"layer {i + 1} {100 * f:.1f} %" for i, f in enumerate(summary["silent_units"])) + ".", ""]
    if summary.get("entropy"):
        lines += [f"## Functional entropy of the trained network ({summary['probe']} held-out samples)", "",
                  "| pairs | total | across layers | within layers |", "|---|---|---|---|"]
        for kind in ENTROPY_KINDS:
            e = summary["entropy"][kind]
            lines.append(f"| {kind} | {e['total']:.4g} | {e['across']:.4g} | {e['within']:.4g} |")
        lines.append("")
    rows = entropy_rows(summary.get("entropy_history", []))
    if rows:
        lines += ["## Functional entropy over epochs (logged during training)", "",
                  "total (across layers + within layers) on the run's fixed probe", "",
                  "| epoch | " + " | ".join(ENTROPY_KINDS) + " |", "|---|" + "---|" * len(ENTROPY_KINDS)]
        for r in rows:
            lines.append(f"| {r['epoch']} | " + " | ".join(
                f"{r[k]['total']:.4g} ({r[k]['across']:.3g} + {r[k]['within']:.3g})" for k in ENTROPY_KINDS) + " |")
        lines.append("")
    for title, name in images.items():
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines)


def _html(markdown_text: str, out: Path, images: dict[str, str]) -> str:
    """A self-contained HTML page: the Markdown's tables and text, images inlined as base64."""
    import html

    body, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[html.escape(c.strip()) for c in r.strip("|").split("|")] for r in rows]
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]) + "</table>")
            table.clear()

    for line in markdown_text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.rindex("](") + 2:-1]
            data = base64.b64encode((out / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>ffneuro analysis</title>" \
           f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def finding(table: list[dict]) -> str:
    """The paper's qualitative question, answered from the numbers."""
    margins = [r["marginal"] for r in table[1:]]
    best_alone = min(table, key=lambda r: r["alone"])["layer"]
    if not margins:
        return "One layer: no collaboration to analyse."
    sign = "all positive" if all(m > 0 for m in margins) else (
        "all negative or zero" if all(m <= 0 for m in margins) else "mixed")
    later = "layer 2" if len(table) == 2 else f"layers 2..{len(table)}"
    return (f"Layer {best_alone} is the best layer alone; the marginal contributions of {later} "
            f"are {sign} ({', '.join(_fmt(m) for m in margins)} points).")


def analyze_run(run_dir: Path, out: Path | None = None, probe: int = 2000) -> dict:
    """`ffneuro analyze`: collaboration table, entropy, plots and reports for a run dir."""
    from ffneuro.runs import files as runio
    from ffneuro.data.loaders import load_dataset
    from ffneuro.functional.encoding import random_wrong_labels
    from ffneuro.runs.load import load_run

    run_dir = Path(run_dir)
    if probe < 1:
        raise ValueError(f"--probe {probe}: must be >= 1 (held-out samples for the histograms and entropy)")
    metrics = runio.read_json(run_dir / runio.METRICS)
    if "per_layer_error" not in metrics:
        raise ValueError(f"{run_dir}: metrics.json has no per-layer errors (a backprop baseline?): "
                         "nothing to analyse layer by layer")
    cfg, saved, net = load_run(run_dir)
    out = Path(out) if out is not None else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    table = collaboration_table(metrics)
    ds = load_dataset(cfg.data.name, seed=cfg.loop.seed)
    g = rng.generator(cfg.loop.seed, "probe")          # the samples and negatives the training log probed
    idx = probe_indices(ds.x_test.shape[0], probe, g)
    x, y = net.prepare_input(ds.x_test[idx]), ds.y_test[idx]
    y_neg = random_wrong_labels(y, net.num_classes, g)
    g_pos, g_neg, silent = probe_goodness(net, x, y, y_neg)
    history = metrics.get("history", [])
    images = {"Training curves": plot_training_curves(history, out / "training_curves.png").name,
              "Per-layer and cumulative error (Figure 2)":
                  plot_collaboration(table, f"{cfg.loop.algo} {saved.get('dataset', '')}", out / "collaboration.png").name}
    ent = plot_entropy(history, out / "entropy.png")
    if ent is not None:
        images["Functional entropy over epochs (Figure 4)"] = ent.name
    dead = plot_silent_units(history, out / "silent_units.png")
    if dead is not None:
        images["Silent units over epochs"] = dead.name
    images["Goodness of positive vs negative pairs"] = plot_goodness_histograms(g_pos, g_neg, out / "goodness_hist.png").name
    if has_spike_trains(net):
        images["Spike rasters and firing rates"] = plot_spikes(net, x[:200], y[:200], out / "spikes.png").name
    summary = {"run_dir": str(run_dir), "algo": cfg.loop.algo + (f" (γ {cfg.cff.gamma})" if cfg.loop.algo == "cff" else ""),
               "dataset": saved.get("dataset"), "layers": list(cfg.units.layers), "epochs": metrics.get("epochs"),
               "test_error": metrics.get("test_error", {}), "collaboration": table, "finding": finding(table),
               "probe": int(x.shape[0]), "entropy": entropy_record(g_pos, g_neg),
               "entropy_history": [{"epoch": r["epoch"], **r["entropy"]} for r in history if "entropy" in r],
               "silent_units": silent,
               "files": {}}
    md = _markdown(summary, images)
    runio.atomic_write_bytes(out / "report.md", md.encode())
    runio.atomic_write_bytes(out / "report.html", _html(md, out, images).encode())
    runio.write_json(out / "analysis.json", summary)
    summary["files"] = {"report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
                        **{name: str(out / name) for name in images.values()}}
    return summary


def format_analysis(s: dict) -> str:
    lines = [f"{s['run_dir']}: {s['algo']}, {s['dataset']}, layers {s['layers']}",
             f"  {'layer':<7}{'alone %':>9}{'1..k %':>9}{'marginal':>10}"]
    for r in s["collaboration"]:
        lines.append(f"  {r['layer']:<7}{r['alone']:>9.2f}{r['cumulative']:>9.2f}{_fmt(r['marginal']):>10}")
    lines.append(f"  {s['finding']}")
    e = s["entropy"]
    lines.append("  entropy (probe): " + ", ".join(
        f"{k} {e[k]['total']:.3g} (across {e[k]['across']:.3g}, within {e[k]['within']:.3g})" for k in ENTROPY_KINDS))
    lines.append("  silent units (probe): " + ", ".join(f"L{i + 1} {100 * f:.1f} %"
                                                      for i, f in enumerate(s["silent_units"])))
    lines.append(f"  report: {s['files'].get('report_html')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Comparing runs
# ----------------------------------------------------------------------------------------
def compare_row(run_dir: Path) -> dict:
    from ffneuro.runs import files as runio

    run_dir = Path(run_dir)
    saved = runio.read_json(run_dir / runio.CONFIG)
    m = runio.read_json(run_dir / runio.METRICS)
    from ffneuro.config import RunConfig

    cfg = RunConfig.from_dict(saved["config"]).flat()
    est = None
    if (run_dir / "estimate.json").exists():
        est = runio.read_json(run_dir / "estimate.json")
    return {"run": str(run_dir), "algo": cfg["algo"] + (f"/{cfg['gamma']}" if cfg["algo"] == "cff" else ""),
            "schedule": cfg.get("schedule"), "layers": cfg["layers"], "dataset": saved.get("dataset"),
            "profile": saved.get("profile_name"), "epochs": m.get("epochs"), "wall_s": m.get("wall_s"),
            "test_error": m.get("test_error", {}),
            "inference_energy_pj": est["inference"]["energy_pj_per_sample"] if est else None,
            "training_energy_pj": est["training"]["energy_pj_per_sample"] if est else None}


def plot_compare(rows: list[dict], path: Path) -> Path:
    """Test error per inference mode and training time per run; a third panel with the
    energy per inference and per training sample when some run has an estimate."""
    plt = _plt()
    has_energy = any(r["inference_energy_pj"] for r in rows)
    fig, axes = plt.subplots(1, 3 if has_energy else 2, figsize=(18 if has_energy else 12, 4))
    names = [Path(r["run"]).name for r in rows]
    modes = sorted({k for r in rows for k in r["test_error"]})
    _grouped_bars(axes[0], names, {m: [r["test_error"].get(m, 0) for r in rows] for m in modes})
    axes[0].set_ylabel("test error [%]")
    axes[1].bar(names, [r["wall_s"] or 0 for r in rows])
    axes[1].set_ylabel("training wall time [s]")
    axes[1].tick_params(axis="x", rotation=20, labelsize=8)
    if has_energy:
        _grouped_bars(axes[2], names, {kind: [(r[f"{kind}_energy_pj"] or 0) / 1e3 for r in rows]
                                       for kind in ("inference", "training")})
        axes[2].set_yscale("log")
        axes[2].set_ylabel("energy per sample [nJ]")
    fig.tight_layout()
    return _save(fig, path)


def _grouped_bars(ax, names: list[str], series: dict[str, list[float]]) -> None:
    w = 0.8 / max(len(series), 1)
    for j, (label, values) in enumerate(series.items()):
        ax.bar([i + j * w for i in range(len(names))], values, w, label=label)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(names))], names, rotation=20, fontsize=8)
    ax.legend(fontsize=8)


def compare_runs(run_dirs: list[Path], plot: Path | None = None) -> dict:
    """`ffneuro compare`: one row per run, and a bar plot of test errors, time and energy."""
    if not run_dirs:
        raise ValueError("give at least one run dir")
    rows = [compare_row(r) for r in run_dirs]
    if plot is not None:
        plot_compare(rows, Path(plot))
    return {"runs": rows, "plot": str(plot) if plot is not None else None}


def compare_rows(c: dict) -> list[dict]:
    """`compare_runs`'s table as flat rows for a spreadsheet (``ffneuro compare --format
    csv``), one per run: ``run`` (the run dir as given), ``algo``, ``schedule``, ``layers``
    (widths joined by x), ``dataset``, ``profile``, ``epochs``, ``wall_s`` (training wall
    time), ``test_error_pct_<mode>`` per inference mode of any run (sorted, as the text
    table), ``inference_energy_pj`` and ``training_energy_pj`` (per sample, from the run's
    estimate.json). Numbers unrounded; None where a run lacks the value."""
    modes = sorted({k for r in c["runs"] for k in r["test_error"]})
    return [{"run": r["run"], "algo": r["algo"], "schedule": r["schedule"],
             "layers": "x".join(map(str, r["layers"])), "dataset": r["dataset"], "profile": r["profile"],
             "epochs": r["epochs"], "wall_s": r["wall_s"]}
            | {f"test_error_pct_{m}": r["test_error"].get(m) for m in modes}
            | {"inference_energy_pj": r["inference_energy_pj"], "training_energy_pj": r["training_energy_pj"]}
            for r in c["runs"]]


def format_compare(c: dict) -> str:
    modes = sorted({k for r in c["runs"] for k in r["test_error"]})
    head = f"{'run':<24}{'algo':<14}{'schedule':<9}{'layers':<16}{'dataset':<14}{'epochs':>7}{'wall s':>9}" + \
        "".join(f"{m + ' %':>15}" for m in modes) + f"{'infer nJ':>10}{'train nJ':>10}"
    lines = [head]
    for r in c["runs"]:
        energy = [r["inference_energy_pj"], r["training_energy_pj"]]
        lines.append(f"{Path(r['run']).name[:23]:<24}{r['algo']:<14}{str(r['schedule']):<9}"
                     f"{'x'.join(map(str, r['layers']))[:15]:<16}{str(r['dataset'])[:13]:<14}"
                     f"{str(r['epochs']):>7}{(r['wall_s'] or 0):>9.1f}" +
                     "".join(f"{r['test_error'][m]:>15.2f}" if m in r["test_error"] else f"{'–':>15}" for m in modes) +
                     "".join(f"{e / 1e3:>10.1f}" if e else f"{'–':>10}" for e in energy))
    if c.get("plot"):
        lines.append(f"plot written to {c['plot']}")
    return "\n".join(lines)

