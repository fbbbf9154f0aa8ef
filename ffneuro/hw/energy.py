"""Energy of on-chip FF learning from event counts (Accelergy style: counts and the
energy table are kept apart), latency and power, and the full estimate report (energy,
time, SRAM, fit). No torch; the counts come from ffneuro.hw.events, measured or analytic.

Latency model (per sample, per phase; stated assumptions, tested by hand in
``tests/hw/test_time_power.py``):

* A layer's events run on the cores the layer is mapped to (``cores`` of
  :func:`ffneuro.hw.mapping.sram_report`, at most the chip's ``memory.cores``: a layer too
  big for the chip is time-multiplexed onto the cores there are), divided evenly, each core
  overlapping ``time.lanes_per_core`` events::

      t_layer = Σ_kind count[layer, kind] × time.<kind>_ns / (cores_layer × lanes_per_core)

  Events of different kinds in one core do not overlap (no pipelining across kinds), and
  the work is spread evenly over the layer's cores (no load imbalance): a lower bound on
  the layer's time when the per-event times are right.
* Layers run one after the other for a sample (a sample is not pipelined through the
  layers), so ``t_events = Σ_layers t_layer``; a chip with a fixed time step (a tick,
  ``energy.time_per_step_ns``) takes at least ``steps × time_per_step_ns`` (steps as
  :func:`steps_per_sample`, training adding one learning step per applied update):
  ``latency = max(t_events, t_steps)``. With neither given the latency is 0 (not modelled).
* Samples do not overlap either: ``samples_per_s = 1 / latency`` (``pipelined_samples_per_s``
  = 1 / the slowest layer, if layers worked on successive samples at once).
* Static power ``energy.static_power_mw`` is the whole chip's and runs all the time:
  ``static_energy_pj = P × latency`` (mW × ns = pJ); a layer's is ``P × t_layer``, so the
  layers' static energies add up to the phase's unless the tick is longer than the events.
* ``power_w = (dynamic + static energy) / latency``; ``edp_pj_s = energy_pj × latency_s``.
  Undefined ratios (latency 0) are None.
"""

from __future__ import annotations

from typing import Any, Sequence

from ffneuro.hw.events import EVENT_KINDS
from ffneuro.hw.mapping import EstimateError, sram_report

# Energy reference table: event kind -> field of ``profile.energy`` (pJ per event).
ENERGY_FIELDS: dict[str, str] = {
    "synop_dense": "synop_dense_pj",
    "synop_sparse": "synop_sparse_pj",
    "neuron_update": "neuron_update_active_pj",  # idle units: neuron_update_idle_pj
    "weight_read": "weight_read_pj",
    "weight_write": "weight_write_pj",
    "learning_update": "learning_update_pj",
    "state_access": "state_access_pj",
    "goodness_op": "goodness_op_pj",
    "spike_route": "spike_route_pj",
}

# Time table: event kind -> field of ``profile.time`` (ns one event occupies a core).
TIME_FIELDS: dict[str, str] = {kind: field.removesuffix("_pj").removesuffix("_active") + "_ns"
                               for kind, field in ENERGY_FIELDS.items()}

# ----------------------------------------------------------------------------- energy


def event_energies_pj(profile) -> dict[str, float]:
    """pJ per event, keyed by the ``profile.energy`` field names (those of :data:`ENERGY_FIELDS`
    and ``neuron_update_idle_pj``).

    ``energy_model.model = "table"`` (the default): the ``[energy]`` table as it is.
    ``"bit-scaled"``: with ``w, a, c, s, l`` the weight, activation, accumulator, state and
    learning bits of ``[precision]`` and the coefficients ``add`` (pJ/bit), ``mult``
    (pJ/bit²), ``rd``, ``wr``, ``st`` (pJ/bit; ``st`` = ``rd`` when 0) of ``[energy_model]``::

        synop_dense_pj     = mult·w·a + add·c       (multiply weight × activation, accumulate)
        synop_sparse_pj    = add·c                  (accumulate a weight on a spike)
        weight_read_pj     = rd·w,  weight_write_pj = wr·w
        learning_update_pj = mult·l·a + add·max(l, w)   (Δw = δ·x, shifted, added)
        state_access_pj    = st·s
        goodness_op_pj     = mult·a·a + add·c       (square an activity, accumulate)

    Neuron updates, spike routing, static power and time stay the table's (they do not
    scale with an operand width in this model). A multiplier's energy grows with the
    product of its operand widths (array multiplier), an adder's and a memory access's
    linearly with the width.
    """
    e = profile.energy
    table = {f: getattr(e, f) for f in (*ENERGY_FIELDS.values(), "neuron_update_idle_pj")}
    m = getattr(profile, "energy_model", None)
    if m is None or m.model == "table":
        return table
    p = profile.precision
    w, a, c, s, lb = p.weight_bits, p.activation_bits, p.accumulator_bits, p.state_bits, p.learning_bits
    add, mult, rd, wr = m.int_add_pj_per_bit, m.int_mult_pj_per_bit2, m.sram_read_pj_per_bit, m.sram_write_pj_per_bit
    return table | {
        "synop_dense_pj": mult * w * a + add * c,
        "synop_sparse_pj": add * c,
        "weight_read_pj": rd * w,
        "weight_write_pj": wr * w,
        "learning_update_pj": mult * lb * a + add * max(lb, w),
        "state_access_pj": (m.state_access_pj_per_bit or rd) * s,
        "goodness_op_pj": mult * a * a + add * c,
    }


def energy_breakdown(events_per_layer: Sequence[dict[str, float]], profile) -> list[dict[str, float]]:
    """Dynamic energy in pJ per layer × event kind: ``count × profile.energy.<field>``.

    Returns one dict per layer with every kind of :data:`EVENT_KINDS`. ``neuron_update``
    uses ``neuron_update_active`` (if present) to charge idle units the idle energy.
    """
    e = event_energies_pj(profile)
    out = []
    for counts in events_per_layer:
        layer = {kind: counts.get(kind, 0.0) * e[ENERGY_FIELDS[kind]] for kind in EVENT_KINDS}
        updates = counts.get("neuron_update", 0.0)
        active = min(counts.get("neuron_update_active", updates), updates)
        layer["neuron_update"] = active * e["neuron_update_active_pj"] + (updates - active) * e["neuron_update_idle_pj"]
        out.append(layer)
    return out


def steps_per_sample(events_per_layer: Sequence[dict[str, float]], layer_sizes: Sequence[int]) -> float:
    """Forward steps per sample (passes × time steps) = layer 1's neuron updates / its width."""
    if not events_per_layer:
        return 0.0
    return events_per_layer[0].get("neuron_update", 0.0) / layer_sizes[1]


def layer_time_ns(counts: dict[str, float], profile, cores: int | None) -> float:
    """ns one layer's events of one sample take (module docstring): Σ count × time per
    event, divided over ``cores`` (None or 0: one core; at most the chip's cores) and the
    lanes of each core."""
    t = getattr(profile, "time", None)
    if t is None:
        return 0.0
    serial = sum(counts.get(kind, 0.0) * getattr(t, TIME_FIELDS[kind]) for kind in EVENT_KINDS)
    parallel = min(max(1, int(cores or 1)), int(profile.memory.cores)) * max(1, int(t.lanes_per_core))
    return serial / parallel


def _rates(energy_pj: float, time_ns: float) -> dict[str, float | None]:
    """latency_s, samples_per_s, power_w, edp_pj_s of ``energy_pj`` spent over ``time_ns``."""
    latency_s = time_ns * 1e-9
    return {"latency_s": latency_s,
            "samples_per_s": 1.0 / latency_s if latency_s > 0 else None,
            "power_w": energy_pj / time_ns * 1e-3 if time_ns > 0 else None,   # pJ/ns = mW
            "edp_pj_s": energy_pj * latency_s}


def _phase_report(events_per_layer, layer_sizes, profile, *, learning_steps: float,
                  layer_cores: Sequence[int | None] | None = None) -> dict:
    per_layer = energy_breakdown(events_per_layer, profile)
    by_kind = {k: sum(layer[k] for layer in per_layer) for k in EVENT_KINDS}
    dynamic = sum(by_kind.values())
    steps = steps_per_sample(events_per_layer, layer_sizes) + learning_steps
    cores = list(layer_cores) if layer_cores is not None else [None] * len(events_per_layer)
    layer_ns = [layer_time_ns(c, profile, k) for c, k in zip(events_per_layer, cores)]
    step_ns = steps * profile.energy.time_per_step_ns
    time_ns = max(sum(layer_ns), step_ns)
    power_mw = profile.energy.static_power_mw
    static = power_mw * time_ns  # mW × ns = pJ
    layers = []
    for i, (e, c, t) in enumerate(zip(per_layer, events_per_layer, layer_ns)):
        layer_dynamic = sum(e.values())
        layer_static = power_mw * t
        layers.append({"layer": i + 1, "energy_pj": layer_dynamic, "energy_pj_by_kind": e, "events": dict(c),
                       "static_energy_pj": layer_static, "time_ns": t}
                      | _rates(layer_dynamic + layer_static, t))
    slowest = max(layer_ns, default=0.0)
    return {
        "energy_pj_per_sample": dynamic + static,
        "dynamic_energy_pj_per_sample": dynamic,
        "static_energy_pj_per_sample": static,
        "steps_per_sample": steps,
        "time_ns_per_sample": time_ns,
        "event_time_ns_per_sample": sum(layer_ns),
        "step_time_ns_per_sample": step_ns,
        "static_energy_pj": static,
        **_rates(dynamic + static, time_ns),
        "pipelined_samples_per_s": 1e9 / slowest if slowest > 0 else None,
        "energy_pj_by_kind": by_kind,
        "layers": layers,
    }


def training_energy_pj_per_epoch(report: dict, n_train: int) -> float:
    """Training energy of one epoch over ``n_train`` samples, in pJ."""
    return report["training"]["energy_pj_per_sample"] * n_train



# ----------------------------------------------------------------------------- estimate


def estimate(
    profile,
    *,
    layer_sizes: Sequence[int],
    events: dict[str, list[dict[str, float]]],
    num_classes: int,
    source: str,
    optimizer_slots: int = 0,
    n_train: int | None = None,
    learning_history_steps: int = 0,
    synapses: Sequence[int] | None = None,
    sharing: Sequence[dict] | None = None,
    shadow_bits: int = 0,
) -> dict[str, Any]:
    """The full JSON-able report: energy per sample (training, inference), SRAM, fit.

    ``events``: ``{"train": [per-layer counts per sample], "infer": [...]}`` from
    :func:`ffneuro.hw.events.analytic_events` or ``EventLedger.per_sample``; ``source``:
    ``"measured"`` or ``"analytic"``. With ``n_train`` the report also carries the
    training energy of one epoch. ``learning_history_steps``, ``synapses``, ``sharing``,
    ``shadow_bits``: see :func:`sram_report`.
    """
    sizes = [int(s) for s in layer_sizes]
    if source not in ("measured", "analytic"):
        raise EstimateError(f"source: must be 'measured' or 'analytic', got {source!r}")
    for phase in ("train", "infer"):
        got = len(events.get(phase, []))
        if got != len(sizes) - 1:
            raise EstimateError(
                f"events[{phase!r}]: {got} layers but layer_sizes {sizes} has {len(sizes) - 1}"
            )
    memory = sram_report(sizes, profile, optimizer_slots=optimizer_slots,
                         learning_history_steps=learning_history_steps, synapses=synapses, sharing=sharing,
                         shadow_bits=shadow_bits)
    cores = [layer.get("cores") for layer in memory["layers"]]
    training = _phase_report(events["train"], sizes, profile,
                             learning_steps=1.0 / max(1, int(profile.streaming.max_batch)), layer_cores=cores)
    inference = _phase_report(events["infer"], sizes, profile, learning_steps=0.0, layer_cores=cores)
    if n_train is not None:
        training["n_train"] = int(n_train)
        training["energy_pj_per_epoch"] = training["energy_pj_per_sample"] * n_train
    table = event_energies_pj(profile)
    return {
        "profile": profile.name,
        "profile_description": profile.description,
        "source": source,
        "layer_sizes": sizes,
        "num_classes": int(num_classes),
        "units": {"energy": "pJ", "memory": "bytes", "time": "ns", "power": "mW"},
        "energy_model": getattr(getattr(profile, "energy_model", None), "model", "table"),
        "energy_table_pj": {kind: table[f] for kind, f in ENERGY_FIELDS.items()}
        | {"neuron_update_idle": table["neuron_update_idle_pj"]},
        "time_table_ns": {kind: getattr(profile.time, f) for kind, f in TIME_FIELDS.items()}
        | {"lanes_per_core": profile.time.lanes_per_core} if hasattr(profile, "time") else None,
        "training": training,
        "inference": inference,
        "layers": memory.pop("layers"),
        "memory": memory,
        "cores_used": memory["cores_used"],
        "fits": memory["fits"],
        "ff_sram_bytes": memory["ff_sram_bytes"],
        "backprop_sram_bytes": memory["backprop_sram_bytes"],
    }



def _resolve_profile(profile):
    if isinstance(profile, str):
        from ffneuro.hw.profiles import load_profile  # the profile engineer's module

        return load_profile(profile)
    return profile


