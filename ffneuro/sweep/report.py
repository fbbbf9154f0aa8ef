"""A study's results: the trials as rows, the best trial or the Pareto front, and the
files ``ffneuro sweep show`` writes (trials.csv, study.json, Pareto and importance PNGs).

Trials are chosen on their objectives only (validation error for a training sweep). The
test error a training trial measured is shown for the chosen trials alone, labelled as
such: it plays no part in choosing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffneuro.sweep.study import counted, require_optuna, trial_row


def study_summary(study) -> dict[str, Any]:
    """Everything ``sweep show`` prints and writes, as plain data."""
    optuna = require_optuna()
    trials = counted(study.get_trials(deepcopy=False))
    names = study.user_attrs.get("objectives") or [f"objective{i}" for i in range(len(study.directions))]
    directions = [d.name.lower() for d in study.directions]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = best_trials(study, complete, directions)
    rows = [trial_row(study, t) for t in trials]
    best_rows = []
    for t in best:
        row = trial_row(study, t)
        if t.user_attrs.get("test_error"):
            row["test_error_of_chosen"] = t.user_attrs["test_error"]
        best_rows.append(row)
    return {"study": study.study_name, "kind": study.user_attrs.get("kind", "train"), "objectives": names,
            "directions": directions, "states": states, "n_trials": len(trials),
            "best_rule": "pareto front" if len(names) > 1 else "best",
            "best": best_rows, "trials": rows}


def best_trials(study, complete: list, directions: list[str]) -> list:
    """The best trial (one objective) or every trial on the Pareto front (several)."""
    if not complete:
        return []
    if len(directions) == 1:
        sign = 1.0 if directions[0] == "minimize" else -1.0
        return [min(complete, key=lambda t: (sign * t.values[0], t.number))]
    keep = pareto_front([t.values for t in complete], directions)
    return sorted((t for t, k in zip(complete, keep) if k), key=lambda t: t.number)


def pareto_front(points: list, directions: list[str]) -> list[bool]:
    """Whether each point is on the Pareto front: no other point is at least as good in
    every objective and better in one.

    >>> pareto_front([(1, 5), (2, 2), (3, 3), (1, 5)], ["minimize", "minimize"])
    [True, True, False, True]
    """
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    scaled = [[s * v for s, v in zip(signs, p)] for p in points]
    return [not any(all(b <= a for a, b in zip(p, q)) and any(b < a for a, b in zip(p, q)) for q in scaled)
            for p in scaled]


def format_summary(s: dict) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(s["states"].items())) or "no trials yet"
    lines = [f"study {s['study']} ({s['kind']}): {s['n_trials']} trials: {counts}",
             "objectives: " + ", ".join(f"{n} ({d})" for n, d in zip(s["objectives"], s["directions"]))]
    if not s["best"]:
        lines.append("no completed trial yet")
        return "\n".join(lines)
    lines.append(("Pareto front" if s["best_rule"] == "pareto front" else "best trial") + ":")
    params = sorted({k for r in s["best"] for k in r if k.startswith("param:")})
    head = ["trial", *s["objectives"], *[p[len("param:"):] for p in params]]
    table = [[str(r["trial"]), *[_num(r.get(o)) for o in s["objectives"]], *[str(r.get(p, "")) for p in params]]
             for r in s["best"]]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    tested = [r for r in s["best"] if r.get("test_error_of_chosen")]
    if tested:
        lines.append("test error of the chosen trials (measured once, after choosing on validation error):")
        for r in tested:
            lines.append(f"  trial {r['trial']}: " + ", ".join(f"{m} {e:.2f} %"
                                                               for m, e in r["test_error_of_chosen"].items()))
    failed = [r for r in s["trials"] if r["state"] == "fail"]
    for r in failed[:5]:
        lines.append(f"  failed trial {r['trial']}: {r.get('error', '')}")
    if len(failed) > 5:
        lines.append(f"  … and {len(failed) - 5} more failed trials (see the CSV)")
    if s.get("files"):
        lines.append("wrote " + ", ".join(s["files"]))
    for note in s.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# -- files -----------------------------------------------------------------------------------
def write_files(study, s: dict, out: Path, csv_text) -> dict:
    """trials.csv (a row per trial, as ``csv_text(rows)`` writes them), study.json (the
    summary), and PNGs: each objective against the first with the Pareto front marked
    (several objectives) or the objective per trial (one), and the parameter importances.
    Every file is written atomically."""
    import json

    from ffneuro.runs.files import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    atomic_write_bytes(out / "trials.csv", csv_text(s["trials"]).encode())
    files.append(out / "trials.csv")
    atomic_write_bytes(out / "study.json", (json.dumps(s, indent=2, default=str) + "\n").encode())
    files.append(out / "study.json")
    notes = []
    files += _plot_objectives(s, out)
    imp, note = importances(study, s)
    if note:
        notes.append(note)
    if imp:
        files.append(_plot_importances(imp, out / "importances.png"))
    s["importances"] = imp
    s["files"] = [str(f) for f in files]
    s["notes"] = notes
    atomic_write_bytes(out / "study.json", (json.dumps(s, indent=2, default=str) + "\n").encode())
    return s


def importances(study, s: dict) -> tuple[dict[str, dict[str, float]], str | None]:
    """Each objective's parameter importances (Optuna's default evaluator); empty with a
    note when there is too little to judge (fewer than two completed trials, or no
    parameter that varies)."""
    optuna = require_optuna()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    varying = [k for k in {k for t in complete for k in t.params}
               if len({repr(t.params.get(k)) for t in complete}) > 1]
    if len(complete) < 2 or not varying:
        return {}, "parameter importances need two or more completed trials with a varying parameter"
    import warnings

    out = {}
    for i, name in enumerate(s["objectives"]):
        sign = 1.0 if s["directions"][i] == "minimize" else -1.0     # the evaluator ranks low targets best
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                out[name] = {k: float(v) for k, v in optuna.importance.get_param_importances(
                    study, target=(lambda t, i=i, sign=sign: sign * t.values[i]), params=sorted(varying)).items()}
        except (RuntimeError, ValueError, ZeroDivisionError) as e:
            return {}, f"parameter importances not computed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return out, None


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from ffneuro.runs.files import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _plot_objectives(s: dict, out: Path) -> list[Path]:
    plt = _figure()
    names = s["objectives"]
    done = [r for r in s["trials"] if r["state"] == "complete" and all(r.get(n) is not None for n in names)]
    if not done:
        return []
    best = {r["trial"] for r in s["best"]}
    files = []
    if len(names) == 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["trial"] for r in done], [r[names[0]] for r in done], "o", color="tab:blue", label="complete")
        chosen = [r for r in done if r["trial"] in best]
        ax.plot([r["trial"] for r in chosen], [r[names[0]] for r in chosen], "*", ms=14, color="tab:red",
                label="best")
        ax.set_xlabel("trial")
        ax.set_ylabel(_label(names[0]))
        ax.set_title(f"{s['study']}: {names[0]} per trial")
        ax.legend()
        files.append(_save(fig, out / f"{names[0]}_per_trial.png"))
        plt.close(fig)
        return files
    x = "val_error" if "val_error" in names else names[0]          # error vs energy, error vs SRAM
    direction = dict(zip(names, s["directions"]))
    for y in [n for n in names if n != x]:
        # the front of this pair of objectives (a trial on the study's front may be dominated in 2-D)
        keep = pareto_front([(r[x], r[y]) for r in done], [direction[x], direction[y]])
        on = sorted((r for r, k in zip(done, keep) if k), key=lambda r: r[x])
        rest = [r for r, k in zip(done, keep) if not k]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r[x] for r in rest], [r[y] for r in rest], "o", color="0.6", label="dominated")
        ax.plot([r[x] for r in on], [r[y] for r in on], "o-", color="tab:red", label=f"Pareto front of {x}, {y}")
        ax.plot([r[x] for r in done if r["trial"] in best], [r[y] for r in done if r["trial"] in best], "o",
                mfc="none", mec="black", ms=10, label="on the study's front")
        labels: dict[tuple, list[str]] = {}
        for r in done:
            labels.setdefault((r[x], r[y]), []).append(str(r["trial"]))
        for (px, py), ids in labels.items():
            ax.annotate(",".join(ids), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y))
        if y.endswith(("_pj", "_bytes")) and min(r[y] for r in done) > 0:
            ax.set_yscale("log")
        ax.set_title(f"{s['study']}: {x} vs {y}")
        ax.legend()
        files.append(_save(fig, out / f"pareto_{x}_vs_{y}.png"))
        plt.close(fig)
    return files


def _label(name: str) -> str:
    return {"val_error": "validation error (%)", "inference_energy_pj": "inference energy (pJ/sample)",
            "training_energy_pj": "training energy (pJ/sample)", "sram_bytes": "SRAM (bytes)",
            "train_s": "training time (s)", "cores": "cores"}.get(name, name)


def _plot_importances(imp: dict[str, dict[str, float]], path: Path) -> Path:
    plt = _figure()
    fig, axes = plt.subplots(1, len(imp), figsize=(5 * len(imp), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], imp.items()):
        keys = sorted(values, key=values.get)
        ax.barh(keys, [values[k] for k in keys], color="tab:blue")
        ax.set_xlabel("importance")
        ax.set_title(name)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
