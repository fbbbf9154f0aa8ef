"""Energy of on-chip FF learning from event counts (Accelergy style: counts and the
energy table are kept apart), and the full estimate report (energy, SRAM, fit). No torch;
the counts come from ffneuro.hw.events, measured or analytic."""

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

# ----------------------------------------------------------------------------- energy


def energy_breakdown(events_per_layer: Sequence[dict[str, float]], profile) -> list[dict[str, float]]:
    """Dynamic energy in pJ per layer × event kind: ``count × profile.energy.<field>``.

    Returns one dict per layer with every kind of :data:`EVENT_KINDS`. ``neuron_update``
    uses ``neuron_update_active`` (if present) to charge idle units the idle energy.
    """
    e = profile.energy
    out = []
    for counts in events_per_layer:
        layer = {kind: counts.get(kind, 0.0) * getattr(e, ENERGY_FIELDS[kind]) for kind in EVENT_KINDS}
        updates = counts.get("neuron_update", 0.0)
        active = min(counts.get("neuron_update_active", updates), updates)
        layer["neuron_update"] = active * e.neuron_update_active_pj + (updates - active) * e.neuron_update_idle_pj
        out.append(layer)
    return out


def steps_per_sample(events_per_layer: Sequence[dict[str, float]], layer_sizes: Sequence[int]) -> float:
    """Forward steps per sample (passes × time steps) = layer 1's neuron updates / its width."""
    if not events_per_layer:
        return 0.0
    return events_per_layer[0].get("neuron_update", 0.0) / layer_sizes[1]


def _phase_report(events_per_layer, layer_sizes, profile, *, learning_steps: float) -> dict:
    per_layer = energy_breakdown(events_per_layer, profile)
    by_kind = {k: sum(layer[k] for layer in per_layer) for k in EVENT_KINDS}
    dynamic = sum(by_kind.values())
    steps = steps_per_sample(events_per_layer, layer_sizes) + learning_steps
    time_ns = steps * profile.energy.time_per_step_ns
    static = profile.energy.static_power_mw * time_ns  # mW × ns = pJ
    return {
        "energy_pj_per_sample": dynamic + static,
        "dynamic_energy_pj_per_sample": dynamic,
        "static_energy_pj_per_sample": static,
        "steps_per_sample": steps,
        "time_ns_per_sample": time_ns,
        "energy_pj_by_kind": by_kind,
        "layers": [
            {"layer": i + 1, "energy_pj": sum(e.values()), "energy_pj_by_kind": e, "events": dict(c)}
            for i, (e, c) in enumerate(zip(per_layer, events_per_layer))
        ],
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
) -> dict[str, Any]:
    """The full JSON-able report: energy per sample (training, inference), SRAM, fit.

    ``events``: ``{"train": [per-layer counts per sample], "infer": [...]}`` from
    :func:`ffneuro.hw.events.analytic_events` or ``EventLedger.per_sample``; ``source``:
    ``"measured"`` or ``"analytic"``. With ``n_train`` the report also carries the
    training energy of one epoch. ``learning_history_steps``, ``synapses``, ``sharing``: see
    :func:`sram_report`.
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
                         learning_history_steps=learning_history_steps, synapses=synapses, sharing=sharing)
    training = _phase_report(events["train"], sizes, profile,
                             learning_steps=1.0 / max(1, int(profile.streaming.max_batch)))
    inference = _phase_report(events["infer"], sizes, profile, learning_steps=0.0)
    if n_train is not None:
        training["n_train"] = int(n_train)
        training["energy_pj_per_epoch"] = training["energy_pj_per_sample"] * n_train
    return {
        "profile": profile.name,
        "profile_description": profile.description,
        "source": source,
        "layer_sizes": sizes,
        "num_classes": int(num_classes),
        "units": {"energy": "pJ", "memory": "bytes", "time": "ns", "power": "mW"},
        "energy_table_pj": {kind: getattr(profile.energy, f) for kind, f in ENERGY_FIELDS.items()}
        | {"neuron_update_idle": profile.energy.neuron_update_idle_pj},
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


