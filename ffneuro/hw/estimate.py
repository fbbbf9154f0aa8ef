"""What would on-chip FF learning cost on this chip, and does the model fit?

Energy (Accelergy style: counts and the energy table are kept apart)::

    E_dynamic[layer, kind] = count[layer, kind] × e[kind]            (pJ)
    E_static               = P_static × t,  t = steps × t_step        (mW × ns = pJ)

Counts come from :mod:`ffneuro.hw.events` (measured on a real run, or analytic from assumed
activities); ``e[kind]`` from the profile's energy table (:data:`ENERGY_FIELDS`).
``neuron_update`` is split as the profiles define it: units that received input in the
step (the auxiliary count ``neuron_update_active``) pay ``neuron_update_active_pj``, the
others ``neuron_update_idle_pj``; counts without the split are charged as all active.
Per-event energies are exclusive of each other (profiles set to 0 what an all-in figure
already includes), so summing over kinds does not double count.

Time model (latency, throughput, power, static energy, EDP; the full statement is in
:mod:`ffneuro.hw.energy`): each layer's events, priced in time by the profile's ``[time]``
table (ns per event), are divided over the cores the SRAM mapping gives the layer and the
``lanes_per_core`` of each; layers run one after the other for a sample, so the latency is
the layers' sum, or ``steps × time_per_step_ns`` if the chip has a longer fixed tick (forward
steps per sample are read off the counts: the first layer's ``neuron_update`` divided by its
width, = passes × time steps; training adds one learning step per applied update, i.e.
``1 / max_batch`` per sample). Static energy is the chip's static power over that latency.
A profile with neither event times nor a tick has latency 0: time not modelled, no static
energy, power and throughput None. The latency follows the memory-minimal mapping (a layer
on as few cores as hold it), so a chip that spreads a layer wider runs faster.

Energy model: ``[energy_model] model = "table"`` (default) uses the per-event energies as
they are; ``"bit-scaled"`` prices the arithmetic and memory events from the operand widths
(:func:`ffneuro.hw.energy.event_energies_pj`), so a weight-bit sweep prices 2-bit and
16-bit synaptic ops differently.

Memory: :func:`sram_report` bit-packs each layer's weights at ``weight_bits``, cuts the
layer into per-core tiles (:func:`map_layer`) and packs the tiles onto cores
(:func:`pack_tiles`); see its docstring for where each part lives and for the
side-by-side backprop figure.

Sanity check against KerasSpiking ``ModelEnergy`` (tested): for a spiking dense net on
"loihi" it computes ``e_synop × connections × rate × dt × steps + e_neuron × neurons ×
steps``; ffneuro reproduces it to the digit when both use the same per-event energies,
because ``connections × rate × dt`` is exactly the number of non-zero (spike) inputs ×
fan_out that we count. Differences in the default numbers: KerasSpiking's Loihi synop
is ``(23.6 + 3.5) pJ`` (adding a 3.5 ns *time* to the energy), ours 23.6 pJ; it charges
every neuron update as active (so do we for a dense layer, unless a sample's whole input
is zero); it counts inference only, we also count both training passes, the goodness and
the weight update.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from ffneuro.hw.energy import _resolve_profile, estimate
from ffneuro.hw.events import EVENT_KINDS, EventLedger, analytic_events
from ffneuro.hw.mapping import EstimateError, format_bytes, format_memory, optimizer_slots, text_table
from ffneuro.hw.neurobench import analytic_figures, format_lines as neurobench_lines

def estimate_from_layers(
    profile,
    layer_sizes: Sequence[int],
    activity: float | Sequence[float] = 0.5,
    input_activity: float = 0.2,
    num_classes: int = 10,
    inference: str = "one-pass",
    *,
    binary_input: bool = False,
    n_train: int | None = None,
) -> dict[str, Any]:
    """Analytic estimate: assumed activities, no run needed (< 1 ms for 784-2000×4).

    ``profile``: a name for ``load_profile`` or a Profile. ``input_activity`` defaults to
    0.2, roughly MNIST's fraction of non-zero pixels (~19 %). The applied batch size and
    optimizer slots come from the profile, and so do the time steps when
    ``binary_input`` (a spiking net; a graded net takes one step per pass).
    """
    prof = _resolve_profile(profile)
    slots = optimizer_slots(prof)
    events = analytic_events(
        layer_sizes,
        activity=activity,
        input_activity=input_activity,
        num_classes=num_classes,
        inference=inference,
        binary_input=binary_input,
        time_steps=max(1, int(prof.streaming.time_steps)) if binary_input else 1,
        batch_size=max(1, int(prof.streaming.max_batch)),
        optimizer_slots=slots,
    )
    report = estimate(prof, layer_sizes=layer_sizes, events=events, num_classes=num_classes,
                      source="analytic", optimizer_slots=slots, n_train=n_train)
    report["assumptions"] = {"activity": activity, "input_activity": input_activity,
                             "inference": inference, "binary_input": binary_input}
    report["neurobench"] = analytic_figures(layer_sizes, events["infer"], activity=activity, inference=inference,
                                            num_classes=num_classes, binary=binary_input)
    return report


def memory_args(saved: dict) -> dict:
    """The SRAM mapping's view of a run's units (stored weights per unit, the most time
    steps of learning state any keeps): from the resources its config.json records; for
    run dirs written before units reported them, all-to-all weights and the history of
    the units its config describes."""
    shadow = {"shadow_bits": int(((saved.get("config") or {}).get("hardware") or {}).get("shadow_bits", 0))}
    res = saved.get("resources")
    if res:
        return {"learning_history_steps": max(int(r.get("history_steps", 0)) for r in res),
                "synapses": [int(r["synapses"]) for r in res], "sharing": res, **shadow}
    sizes = [int(s) for s in saved["layer_sizes"]]
    steps = 0
    if saved.get("config"):
        import dataclasses

        from ffneuro.config import RunConfig
        from ffneuro.units.stack import stack_resources

        units = dataclasses.replace(RunConfig.from_dict(saved["config"]).units, layers=tuple(sizes[1:]))
        steps = max(r.history_steps for r in stack_resources(units, sizes[0]))
    return {"learning_history_steps": steps, "synapses": [a * b for a, b in zip(sizes[:-1], sizes[1:])], **shadow}


def estimate_from_run(run_dir: str | Path, profile, *, n_train: int | None = None) -> dict[str, Any]:
    """Estimate from a finished run: ``config.json`` ("layer_sizes", "num_classes") and
    ``events.json`` (``EventLedger.to_dict()``); counts are per sample as measured."""
    from ffneuro.runs.files import read_json

    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    for key in ("layer_sizes", "num_classes"):
        if key not in config:
            raise EstimateError(f"{run_dir / 'config.json'}: missing key {key!r}")
    events_path = run_dir / "events.json"
    ledger = EventLedger.from_dict(read_json(events_path), source=str(events_path))
    sizes = [int(s) for s in config["layer_sizes"]]
    if ledger.num_layers != len(sizes) - 1:
        raise EstimateError(
            f"{events_path}: counts for {ledger.num_layers} layers but config layer_sizes has {len(sizes) - 1}"
        )
    prof = _resolve_profile(profile)
    slots = optimizer_slots(prof)
    events = {"train": ledger.per_sample("train"), "infer": ledger.per_sample("infer")}
    report = estimate(prof, layer_sizes=sizes, events=events, num_classes=int(config["num_classes"]),
                      source="measured", optimizer_slots=slots, n_train=n_train,
                      **memory_args(config))
    report["samples"] = dict(ledger.samples)
    report["run_dir"] = str(run_dir)
    from ffneuro.hw.neurobench_run import run_figures

    report["neurobench"] = run_figures(run_dir, config, events["infer"])
    return report



# ----------------------------------------------------------------------------- rows

PHASES = ("training", "inference")
# The per-layer memory columns of estimate_rows, as the report's "layers" name them.
LAYER_MEMORY_COLUMNS = ("fan_in", "fan_out", "synapses", "weight_sram_bytes", "bias_sram_bytes",
                        "state_sram_bytes", "trace_sram_bytes", "optimizer_sram_bytes")
# Shared-SRAM parts of the FF total that belong to no layer (in the total rows only).
SHARED_MEMORY_COLUMNS = ("activation_buffer_sram_bytes", "learning_history_sram_bytes")
# Per-layer counts that add up over the layers (summed in the total rows).
ADDITIVE_MEMORY_COLUMNS = ("synapses", "weight_sram_bytes", "bias_sram_bytes", "state_sram_bytes",
                           "trace_sram_bytes", "optimizer_sram_bytes", "synaptic_sram_bytes")


def estimate_rows(report: dict) -> list[dict[str, Any]]:
    """The report as flat rows for a spreadsheet (``ffneuro estimate --format csv``): per
    phase (training, then inference) one row per layer (1..n), then a ``total`` row. Every
    energy is per sample; numbers are the report's own, unrounded; a value a row lacks is
    None. The columns are the same for every profile and for measured and analytic reports:

    * ``profile``, ``source`` (measured | analytic), ``phase``, ``layer`` (1..n | total)
    * ``energy_pj``: a layer's dynamic energy; in the total row the phase's energy per
      sample, i.e. the layers' sum plus ``static_energy_pj``
    * ``energy_pj_<kind>``, one per event kind of the report (all of them, zeros kept):
      the layer's energy of that kind; in the total row the sum over the layers
    * ``static_energy_pj``, ``time_ns``: static power × time and the time per sample; in a
      layer row the layer's share (its events' time, the chip's static power over it), in
      the total row the phase's (see :mod:`ffneuro.hw.energy` for the latency model)
    * ``fan_in``, ``fan_out``, ``synapses`` and the layer's SRAM by part:
      ``weight_sram_bytes``, ``bias_sram_bytes``, ``state_sram_bytes``,
      ``trace_sram_bytes``, ``optimizer_sram_bytes``; then ``sram_bytes`` (their sum),
      ``synaptic_sram_bytes`` (what its cores hold) and ``cores``. Memory is the
      layer's, so training and inference rows repeat it. In the total row the counts and
      bytes are summed over the layers, except ``sram_bytes``: the FF total (the layers'
      sum plus ``activation_buffer_sram_bytes`` and ``learning_history_sram_bytes``, which
      belong to no layer and are filled in the total row only), and ``cores``: the cores
      used (layers small enough share a core, so not the layers' sum)
    * ``latency_s``, ``samples_per_s``, ``power_w``, ``edp_pj_s`` (last, added with the time
      model): the layer's or the phase's latency per sample, throughput, average power
      (dynamic + static energy over the latency) and energy-delay product; None where the
      latency is 0 (time not modelled)
    """
    kinds = list(dict.fromkeys(k for ph in PHASES for k in report[ph]["energy_pj_by_kind"]))
    memory = report["memory"]
    mem_layers = report["layers"]
    mem_total = {c: _sum_or_none(layer.get(c) for layer in mem_layers) for c in ADDITIVE_MEMORY_COLUMNS}
    mem_total |= {c: memory.get(c) for c in SHARED_MEMORY_COLUMNS}
    mem_total |= {"sram_bytes": memory["ff_sram_bytes"], "cores": memory["cores_used"]}
    rows = []
    for ph in PHASES:
        phase = report[ph]
        head = {"profile": report["profile"], "source": report["source"], "phase": ph}
        for layer, mem in zip(phase["layers"], mem_layers):
            rows.append(head | {"layer": layer["layer"], "energy_pj": layer["energy_pj"]}
                        | {f"energy_pj_{k}": layer["energy_pj_by_kind"].get(k) for k in kinds}
                        | {"static_energy_pj": layer.get("static_energy_pj"), "time_ns": layer.get("time_ns")}
                        | _memory_cells(mem) | _time_cells(layer))
        rows.append(head | {"layer": "total", "energy_pj": phase["energy_pj_per_sample"]}
                    | {f"energy_pj_{k}": phase["energy_pj_by_kind"].get(k) for k in kinds}
                    | {"static_energy_pj": phase["static_energy_pj_per_sample"],
                       "time_ns": phase["time_ns_per_sample"]}
                    | _memory_cells(mem_total) | _time_cells(phase))
    return rows


TIME_COLUMNS = ("latency_s", "samples_per_s", "power_w", "edp_pj_s")


def _time_cells(values: dict) -> dict:
    """The time and power columns of one row of :func:`estimate_rows` (None where absent)."""
    return {c: values.get(c) for c in TIME_COLUMNS}


def _memory_cells(values: dict) -> dict:
    """The memory columns of one row of :func:`estimate_rows`, in their order (None where
    ``values`` lacks one)."""
    order = (*LAYER_MEMORY_COLUMNS, *SHARED_MEMORY_COLUMNS, "sram_bytes", "synaptic_sram_bytes", "cores")
    return {c: values.get(c) for c in order}


def _sum_or_none(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


# ----------------------------------------------------------------------------- display


def format_energy(pj: float) -> str:
    """pJ with an engineering prefix: ``1.23 µJ``."""
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"



def format_time(seconds: float) -> str:
    """Seconds with an engineering prefix: ``1.23 ms``."""
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_power(watts: float) -> str:
    """Watts with an engineering prefix: ``12.3 mW``."""
    for scale, unit in ((1.0, "W"), (1e-3, "mW")):
        if abs(watts) >= scale:
            return f"{watts / scale:.3g} {unit}"
    return f"{watts / 1e-6:.3g} µW"


def format_report(report: dict) -> str:
    """A readable text report: energy per layer by kind, SRAM per layer vs budget, totals."""
    sizes = report["layer_sizes"]
    lines = [
        f"ffneuro estimate: profile {report['profile']} ({report['source']} counts), "
        f"net {'-'.join(map(str, sizes))}, {report['num_classes']} classes",
        "",
    ]
    kinds = [k for k in EVENT_KINDS
             if any(report[ph]["energy_pj_by_kind"][k] for ph in ("training", "inference"))]
    header = ["phase / layer", *kinds, "total"]
    rows = [header]
    for ph in ("training", "inference"):
        for layer in report[ph]["layers"]:
            rows.append([f"{ph} L{layer['layer']}", *(f"{layer['energy_pj_by_kind'][k]:.4g}" for k in kinds),
                         f"{layer['energy_pj']:.4g}"])
        rows.append([f"{ph} static", *([""] * len(kinds)), f"{report[ph]['static_energy_pj_per_sample']:.4g}"])
    lines.append("Energy per sample by event kind [pJ]")
    lines += text_table(rows)
    for ph in ("training", "inference"):
        r = report[ph]
        lines.append(
            f"{ph:<9} {format_energy(r['energy_pj_per_sample'])}/sample "
            f"(dynamic {format_energy(r['dynamic_energy_pj_per_sample'])}, static "
            f"{format_energy(r['static_energy_pj_per_sample'])}, {r['steps_per_sample']:.4g} steps/sample, "
            f"{r['time_ns_per_sample'] / 1e3:.4g} µs)"
        )
        if r.get("latency_s"):
            lines.append(f"{'':<9} latency {format_time(r['latency_s'])}, {r['samples_per_s']:.4g} samples/s, "
                         f"power {format_power(r['power_w'])}, EDP {r['edp_pj_s']:.4g} pJ·s")
        else:
            lines.append(f"{'':<9} latency not modelled (the profile gives no event times nor time step)")
    if "energy_pj_per_epoch" in report["training"]:
        lines.append(f"training epoch ({report['training']['n_train']} samples): "
                     f"{format_energy(report['training']['energy_pj_per_epoch'])}")

    lines += ["", *format_memory(report["layers"], report["memory"])]
    if "neurobench" in report:
        lines += ["", *neurobench_lines(report["neurobench"])]
    return "\n".join(lines)



def plot_report(report: dict, path: str | Path) -> Path:
    """Left: stacked energy per layer by event kind (training and inference bars side by
    side); right: SRAM per layer by part against the chip's synaptic budget. Written
    atomically; the format follows the file suffix (default png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ffneuro.runs.files import atomic_write_bytes

    path = Path(path)
    n = len(report["layers"])
    fig, (ax_e, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.get_cmap("tab10").colors
    width = 0.38
    peak_pj = max(layer["energy_pj"] for ph in ("training", "inference") for layer in report[ph]["layers"])
    scale, unit = next(((f, u) for f, u in ((1e6, "µJ"), (1e3, "nJ")) if peak_pj >= f), (1.0, "pJ"))
    labelled: set[str] = set()
    for offset, ph, hatch in ((-width / 2, "training", ""), (width / 2, "inference", "//")):
        bottom = [0.0] * n
        for c, kind in enumerate(EVENT_KINDS):
            vals = [layer["energy_pj_by_kind"][kind] / scale for layer in report[ph]["layers"]]
            if not any(vals):
                continue
            ax_e.bar([i + 1 + offset for i in range(n)], vals, width, bottom=bottom, color=colours[c % 10],
                     hatch=hatch, edgecolor="white", label=None if kind in labelled else kind)
            labelled.add(kind)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax_e.set_xticks(range(1, n + 1), [f"L{i}" for i in range(1, n + 1)])
    ax_e.set_ylabel(f"energy per sample [{unit}]")
    ax_e.set_title("energy by event kind (left: training, right/hatched: inference)", fontsize=9)
    ax_e.legend(fontsize=7)

    parts = ("weight_sram_bytes", "optimizer_sram_bytes", "bias_sram_bytes", "state_sram_bytes", "trace_sram_bytes")
    bottom = [0.0] * n
    for c, part in enumerate(parts):
        vals = [layer[part] / 1024 for layer in report["layers"]]
        if any(vals):
            ax_m.bar(range(1, n + 1), vals, 0.6, bottom=bottom, color=colours[c % 10],
                     label=part.replace("_sram_bytes", ""))
            bottom = [b + v for b, v in zip(bottom, vals)]
    mem = report["memory"]
    tallest = max(bottom)
    budgets = [(mem["synaptic_sram_bytes_per_core"], ":", "synaptic SRAM, one core")]
    if mem["cores_available"] > 1:
        budgets.insert(0, (mem["synaptic_sram_bytes_available"], "--",
                           f"synaptic SRAM, {mem['cores_available']} cores"))
    for nbytes, style, label in budgets:
        if nbytes is None:
            continue
        if nbytes / 1024 <= 50 * tallest:  # a budget far off scale would flatten the bars
            ax_m.axhline(nbytes / 1024, color="k", ls=style, label=label)
        else:
            ax_m.plot([], [], " ", label=f"{label}: {format_bytes(nbytes)} (off scale)")
    ax_m.set_xticks(range(1, n + 1), [f"L{i}" for i in range(1, n + 1)])
    ax_m.set_ylabel("SRAM [KiB]")
    ax_m.set_title(f"SRAM per layer, fits: {'yes' if report['fits'] else 'no'}", fontsize=9)
    ax_m.legend(fontsize=7)
    fig.suptitle(f"{report['profile']}: {'-'.join(map(str, report['layer_sizes']))} ({report['source']})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path

