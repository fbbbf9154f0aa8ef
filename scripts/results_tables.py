"""Render the benchmark JSON files in bench/ as the Markdown tables of the README.

    python scripts/results_tables.py > bench/RESULTS.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> dict | None:
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


def pct(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def mnist_rows() -> list[str]:
    rows = ["| run | recipe | MNIST test error % (multi-pass / one-pass) | each layer alone | cumulative {1}, {1,2}, … | "
            "train time |", "|---|---|---|---|---|---|"]
    for name, label, paper in (("ff_layer.json", "FF, layer schedule", "paper 3.3"),
                               ("ff_network.json", "FF, network schedule", "paper 3.4"),
                               ("cff_network_tau100.json", "CFF, γ all, network, τ = 100 (`--preset cff-paper-cff`)",
                                "paper 2.1"),
                               ("cff_network_tau100_lindecay.json", "CFF, γ all, network, τ = 100, linear-decay lr",
                                "paper 2.1"),
                               ("cff_network.json", "CFF, γ all, network, τ = 1 (Hinton's logit)", "paper 2.1"),
                               ("cff_network_own_theta.json", "CFF, γ all, network, own θ", "paper 2.1"),
                               ("cff_network_peer.json", "CFF, γ all, network, + peer normalisation 0.03", "paper 2.1"),
                               ("hinton.json", "Hinton recipe, 60 epochs", "loeweX 1.45"),
                               ("hinton100.json", "Hinton recipe (3×1000, peer norm, hard negatives)", "loeweX 1.45"),
                               ("hinton_jitter.json", "Hinton recipe + 1-pixel jitter (`--preset hinton-jitter`)",
                                "target ≤ 1.4")):
        d = load(name)
        if d is None:
            continue
        f, c = d["final"], d["config"]
        rec = f"{'×'.join(map(str, c['layers']))}, {c['optimizer']} {c['lr']:g}, batch {c['batch_size']}, " \
              f"{d['final']['epochs']} epochs"
        rows.append(f"| {label} ({paper}) | {rec} | **{pct(f['test_error']['multi_pass'])}** / "
                    f"{pct(f['test_error'].get('one_pass'))} | {', '.join(pct(e) for e in f['per_layer_error'])} | "
                    f"{', '.join(pct(e) for e in f['cumulative_error'])} | {f['wall_s'] / 60:.1f} min |")
    return rows


def time_to_rows() -> list[str]:
    rows = []
    for name in ("ff_layer.json", "cff_network_tau100.json", "cff_network.json", "hinton100.json",
                 "hinton_jitter.json"):
        d = load(name)
        if d is None:
            continue
        for mode, ts in d["time_to"].items():
            for thr, hit in ts.items():
                if hit:
                    rows.append(f"| {name[:-5]} | {mode} | ≤ {thr} % | epoch {hit['epoch']} | {hit['train_s']:.0f} s |")
    return ["| run | inference | target | first reached | training wall time |", "|---|---|---|---|---|", *rows]


def memory_rows() -> list[str]:
    d = load("memory.json")
    if d is None:
        return []
    by = {}
    for r in d["rows"]:
        by.setdefault(r["depth"], {})[r["method"]] = r
    rows = ["| depth (width 1000, batch 200) | weights MiB | FF working MiB | FF + one-pass head MiB | "
            "backprop working MiB |", "|---|---|---|---|---|"]
    mib = lambda b: f"{b / 2**20:.1f}"
    for depth in sorted(by):
        m = by[depth]
        rows.append(f"| {depth} | {mib(m['ff']['weight_bytes'])} | {mib(m['ff']['training_peak_over_base_bytes'])} | "
                    f"{mib(m['ff+head']['training_peak_over_base_bytes'])} | "
                    f"{mib(m['backprop']['training_peak_over_base_bytes'])} |")
    return rows


def throughput_rows() -> list[str]:
    d = load("throughput.json")
    if d is None:
        return []
    e = d["epoch"]
    rows = [f"MNIST epoch, {'×'.join(map(str, d['layers']))}, batch {d['batch']}, {d['torch_threads']} threads: "
            f"backprop {e['backprop_s']:.1f} s, FF {e['ff_s']:.1f} s (**{e['ff_over_backprop']:.2f}×**), "
            f"FF + one-pass head {e['ff_head_s']:.1f} s ({e['ff_head_over_backprop']:.2f}×).", "",
            "| profile | batch | float step ms | chip step ms | chip / float | event counting overhead |",
            "|---|---|---|---|---|---|"]
    for name, r in d["step"].items():
        rows.append(f"| {name} | {r['batch']} | {r['float_step_s'] * 1e3:.2f} | {r['chip_step_s'] * 1e3:.2f} | "
                    f"{r['chip_over_float']:.2f}× | {100 * r['counting_overhead']:+.0f} % |")
    return rows


def profile_rows() -> list[str]:
    d = load("profiles.json")
    if d is None:
        return []
    rows = [f"3×{d['config']['layers'][0]} FF on the first {d['train_samples']} MNIST training digits, "
            f"{d['config']['epochs']} epochs; test on all 10,000.", "",
            "| run | batch | test error % multi / one-pass | inference µJ/sample | training µJ/sample | fits |",
            "|---|---|---|---|---|---|"]
    uj = lambda x: "–" if x is None else f"{x / 1e6:.2f}"
    for group in ("references", "profiles"):
        for name, r in d[group].items():
            rows.append(f"| {name} | {r['batch']} | {pct(r['test_error']['multi_pass'])} / "
                        f"{pct(r['test_error'].get('one_pass'))} | {uj(r['inference_energy_pj'])} | "
                        f"{uj(r['training_energy_pj'])} | {'–' if r['fits'] is None else ('yes' if r['fits'] else 'no')} |")
    sweeps = {"cmos-45nm (batch 16)": d.get("bits", {}), "loihi-like (batch 1)": {}}
    for part in ("bits_loihi_a.json", "bits_loihi_b.json"):
        sweeps["loihi-like (batch 1)"].update((load(part) or {}).get("bits", {}))
    bits = sorted({int(b) for sweep in sweeps.values() for b in sweep})
    if bits:
        names = [name for name, sweep in sweeps.items() if sweep]
        rows += ["", "Weight bits (learning bits equal; stochastic rounding), test error % multi / one-pass:", "",
                 "| weight bits | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for b in bits:
            cells = []
            for name in names:
                r = sweeps[name].get(str(b))
                cells.append("–" if r is None else f"{pct(r['test_error']['multi_pass'])} / "
                                                   f"{pct(r['test_error'].get('one_pass'))}")
            rows.append(f"| {b} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    out = []
    for title, fn in (("MNIST accuracy", mnist_rows), ("Time to accuracy", time_to_rows), ("Memory", memory_rows),
                      ("Throughput", throughput_rows), ("Hardware profiles", profile_rows)):
        rows = fn()
        if rows:
            out += [f"### {title}", "", *rows, ""]
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
