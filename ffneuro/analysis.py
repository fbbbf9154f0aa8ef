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

from ffneuro.goodness import entropy_decomposition

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


def probe_indices(n: int, size: int, seed: int) -> torch.Tensor:
    """A fixed subset of ``size`` of n samples (the same every epoch for a seed)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))[:min(size, n)]


def probe_goodness(net, x: torch.Tensor, y: torch.Tensor, y_neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Goodness (N, L) of every layer for the positive and the negative pairs of a probe
    set, in one streamed pass (the two label codes travel together, as in training)."""
    n = x.shape[0]
    with torch.no_grad():
        h = net.encoding.coded(x, [y, y_neg])
        if net.spiking:
            h = net.to_spikes(h.dense(), torch.Generator().manual_seed(0))
        gs = []
        for layer in net.layers:
            h = layer(h)
            gs.append(layer.goodness(h).float().cpu())
    g = torch.stack(gs, dim=1)
    return g[:n], g[n:]


def entropy_record(g_pos: torch.Tensor, g_neg: torch.Tensor) -> dict[str, dict[str, float]]:
    """The across/within decomposition of the positive, negative and pooled goodness.
    Goodness kinds that can be negative (neg-sumsq) are shifted by their minimum so that
    h ≥ 0 as the definition requires."""
    out = {}
    for kind, g in (("positive", g_pos), ("negative", g_neg), ("both", torch.cat([g_pos, g_neg]))):
        g = g.double()
        if float(g.min()) < 0:
            g = g - g.min()
        out[kind] = entropy_decomposition(g)
    return out


# ----------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from ffneuro.runio import atomic_write_bytes

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
def plot_spikes(net, x: torch.Tensor, y: torch.Tensor, path: Path) -> Path:
    """Spiking runs: a raster of every layer's spikes for one positive sample (top) and
    each layer's firing-rate histogram over the probe (bottom)."""
    plt = _plt()
    h = net.to_spikes(net.encoding.encode(x, y), torch.Generator().manual_seed(0))
    trains = [h]
    for layer in net.layers:
        h = layer(h)
        trains.append(h)
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
    return "–" if v is None else f"{v:+.{digits}f}" if isinstance(v, float) and v < 0 else (
        f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _markdown(summary: dict, images: dict[str, str]) -> str:
    lines = [f"# ffneuro analysis: {summary['run_dir']}", "",
             f"{summary['algo']} on {summary['dataset']}, layers {summary['layers']}, {summary['epochs']} epochs, "
             f"test error " + ", ".join(f"{k} {v:.2f} %" for k, v in summary["test_error"].items()), "",
             "## Layer collaboration", "",
             "| layer | error alone (%) | error of layers 1..k (%) | marginal contribution (points) |",
             "|---|---|---|---|"]
    for r in summary["collaboration"]:
        lines.append(f"| {r['layer']} | {r['alone']:.2f} | {r['cumulative']:.2f} | {_fmt(r['marginal'])} |")
    lines += ["", summary["finding"], ""]
    if summary.get("entropy"):
        lines += ["## Functional entropy (last epoch, probe of held-out data)", "",
                  "| pairs | total | across layers | within layers |", "|---|---|---|---|"]
        for kind in ENTROPY_KINDS:
            e = summary["entropy"][kind]
            lines.append(f"| {kind} | {e['total']:.4g} | {e['across']:.4g} | {e['within']:.4g} |")
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
    return (f"Layer {best_alone} is the best layer alone; the marginal contributions of layers 2..{len(table)} "
            f"are {sign} ({', '.join(_fmt(m) for m in margins)} points).")


def analyze_run(run_dir: Path, out: Path | None = None, probe: int = 2000) -> dict:
    """`ffneuro analyze`: collaboration table, entropy, plots and reports for a run dir."""
    from ffneuro import runio
    from ffneuro.data import load_dataset
    from ffneuro.encoding import random_wrong_labels
    from ffneuro.trainer import load_run

    run_dir = Path(run_dir)
    metrics = runio.read_json(run_dir / runio.METRICS)
    if "per_layer_error" not in metrics:
        raise ValueError(f"{run_dir}: metrics.json has no per-layer errors (a backprop baseline?): "
                         "nothing to analyse layer by layer")
    cfg, saved, net = load_run(run_dir)
    out = Path(out) if out is not None else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    table = collaboration_table(metrics)
    ds = load_dataset(cfg.data, seed=cfg.seed)
    idx = probe_indices(ds.x_test.shape[0], probe, cfg.seed)
    x, y = net.prepare_input(ds.x_test[idx]), ds.y_test[idx]
    y_neg = random_wrong_labels(y, net.num_classes, torch.Generator().manual_seed(cfg.seed))
    g_pos, g_neg = probe_goodness(net, x, y, y_neg)
    history = metrics.get("history", [])
    images = {"Training curves": plot_training_curves(history, out / "training_curves.png").name,
              "Per-layer and cumulative error (Figure 2)":
                  plot_collaboration(table, f"{cfg.algo} {saved.get('dataset', '')}", out / "collaboration.png").name}
    ent = plot_entropy(history, out / "entropy.png")
    if ent is not None:
        images["Functional entropy over epochs (Figure 4)"] = ent.name
    images["Goodness of positive vs negative pairs"] = plot_goodness_histograms(g_pos, g_neg, out / "goodness_hist.png").name
    if net.spiking:
        images["Spike rasters and firing rates"] = plot_spikes(net, x[:200], y[:200], out / "spikes.png").name
    summary = {"run_dir": str(run_dir), "algo": cfg.algo + (f" (γ {cfg.gamma})" if cfg.algo == "cff" else ""),
               "dataset": saved.get("dataset"), "layers": list(cfg.layers), "epochs": metrics.get("epochs"),
               "test_error": metrics.get("test_error", {}), "collaboration": table, "finding": finding(table),
               "entropy": entropy_record(g_pos, g_neg),
               "entropy_history": [{"epoch": r["epoch"], **r["entropy"]} for r in history if "entropy" in r],
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
    lines.append(f"  report: {s['files'].get('report_html')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Comparing runs
# ----------------------------------------------------------------------------------------
def compare_row(run_dir: Path) -> dict:
    from ffneuro import runio

    run_dir = Path(run_dir)
    saved = runio.read_json(run_dir / runio.CONFIG)
    m = runio.read_json(run_dir / runio.METRICS)
    cfg = saved["config"]
    est = None
    if (run_dir / "estimate.json").exists():
        est = runio.read_json(run_dir / "estimate.json")
    return {"run": str(run_dir), "algo": cfg["algo"] + (f"/{cfg['gamma']}" if cfg["algo"] == "cff" else ""),
            "schedule": cfg.get("schedule"), "layers": cfg["layers"], "dataset": saved.get("dataset"),
            "profile": saved.get("profile_name"), "epochs": m.get("epochs"), "wall_s": m.get("wall_s"),
            "test_error": m.get("test_error", {}),
            "inference_energy_pj": est["inference"]["energy_pj_per_sample"] if est else None,
            "training_energy_pj": est["training"]["energy_pj_per_sample"] if est else None}


def compare_runs(run_dirs: list[Path], plot: Path | None = None) -> dict:
    """`ffneuro compare`: one row per run, and a bar plot of test errors (and time)."""
    if not run_dirs:
        raise ValueError("give at least one run dir")
    rows = [compare_row(r) for r in run_dirs]
    if plot is not None:
        plt = _plt()
        modes = sorted({k for r in rows for k in r["test_error"]})
        fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(12, 4))
        w = 0.8 / max(len(modes), 1)
        for j, mode in enumerate(modes):
            ax_e.bar([i + j * w for i in range(len(rows))], [r["test_error"].get(mode, 0) for r in rows], w, label=mode)
        names = [Path(r["run"]).name for r in rows]
        ax_e.set_xticks([i + w * (len(modes) - 1) / 2 for i in range(len(rows))], names, rotation=20, fontsize=8)
        ax_e.set_ylabel("test error [%]")
        ax_e.legend(fontsize=8)
        ax_t.bar(names, [r["wall_s"] or 0 for r in rows])
        ax_t.set_ylabel("training wall time [s]")
        ax_t.tick_params(axis="x", rotation=20, labelsize=8)
        fig.tight_layout()
        _save(fig, Path(plot))
    return {"runs": rows, "plot": str(plot) if plot is not None else None}


def format_compare(c: dict) -> str:
    modes = sorted({k for r in c["runs"] for k in r["test_error"]})
    head = f"{'run':<24}{'algo':<14}{'schedule':<9}{'dataset':<14}{'epochs':>7}{'wall s':>9}" + \
        "".join(f"{m + ' %':>15}" for m in modes) + f"{'infer nJ':>10}"
    lines = [head]
    for r in c["runs"]:
        e = r["inference_energy_pj"]
        lines.append(f"{Path(r['run']).name[:23]:<24}{r['algo']:<14}{str(r['schedule']):<9}{str(r['dataset'])[:13]:<14}"
                     f"{str(r['epochs']):>7}{(r['wall_s'] or 0):>9.1f}" +
                     "".join(f"{r['test_error'][m]:>15.2f}" if m in r["test_error"] else f"{'–':>15}" for m in modes) +
                     (f"{e / 1e3:>10.1f}" if e else f"{'–':>10}"))
    if c.get("plot"):
        lines.append(f"plot written to {c['plot']}")
    return "\n".join(lines)

