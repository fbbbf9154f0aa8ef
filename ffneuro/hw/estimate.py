"""What would on-chip FF learning cost on this chip, and does the model fit?

Energy (Accelergy style: counts and the energy table are kept apart)::

    E_dynamic[layer, kind] = count[layer, kind] × e[kind]            (pJ)
    E_static               = P_static × t,  t = steps × t_step        (mW × ns = pJ)

Counts come from :mod:`ffneuro.events` (measured on a real run, or analytic from assumed
activities); ``e[kind]`` from the profile's energy table (:data:`ENERGY_FIELDS`).
``neuron_update`` is split as the profiles define it: units that received input in the
step (the auxiliary count ``neuron_update_active``) pay ``neuron_update_active_pj``, the
others ``neuron_update_idle_pj``; counts without the split are charged as all active.
Per-event energies are exclusive of each other (profiles set to 0 what an all-in figure
already includes), so summing over kinds does not double count.

Step model (for static energy and time): one step = one forward time step of the whole
network, all layers working in parallel on their own cores (layer pipelining), taking
``time_per_step_ns`` (0 in a profile: time not modelled, so no static energy). Forward
steps per sample are read off the counts: the first layer's ``neuron_update`` divided by
its width (= passes × time steps: 2·T to train, C·T or T to infer). Training adds one
learning step per applied update, i.e. ``1 / max_batch`` per sample. The time model
ignores the network's size, so for a sequential processor (an MCU) it understates time
and static energy.

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
import math
from pathlib import Path
from typing import Any, Sequence

from ffneuro.hw.events import (
    EVENT_KINDS,
    EventLedger,
    analytic_events,
)

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

# Per-weight optimizer state words, when the profile keeps optimizer state on chip.
OPTIMIZER_SLOTS: dict[str, int] = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
OPTIMIZER_STATE_BITS = 32


class EstimateError(ValueError):
    """Inputs the estimator cannot use (one-line message)."""


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


# ----------------------------------------------------------------------------- memory


def optimizer_slots(profile) -> int:
    """Per-weight optimizer words the profile keeps on chip (0 without optimizer_state)."""
    if not profile.learning.optimizer_state:
        return 0
    try:
        return OPTIMIZER_SLOTS[profile.learning.optimizer]
    except KeyError:
        raise EstimateError(
            f"profile {profile.name}: unknown optimizer {profile.learning.optimizer!r}"
        ) from None


def _bytes(bits: float, n: float) -> int:
    """Bit-packed storage: ``ceil(bits × n / 8)`` bytes."""
    return math.ceil(bits * n / 8)


def _limit(value) -> float:
    """A per-core limit; None or <= 0 means unlimited."""
    return math.inf if value is None or value <= 0 else value


def _fit(capacity: float, size: float) -> float:
    """How many items of ``size`` fit in ``capacity`` (inf if either is unlimited/zero)."""
    if size <= 0 or math.isinf(capacity):
        return math.inf
    return float(math.floor(capacity / size))


def map_layer(
    fan_in: int,
    fan_out: int,
    *,
    bits_per_synapse: float,
    sram_bytes_per_core: float | None,
    neurons_per_core: int | None,
    max_fan_in_per_core: int | None,
    max_fan_out_per_core: int | None,
) -> dict[str, Any]:
    """Cut one dense layer into tiles of ``k_in`` inputs × ``m`` outputs, one core each at most.

    1. Fan-in: a core accepts at most ``k_max = min(max_fan_in_per_core, ⌊8·S /
       bits_per_synapse⌋)`` inputs (S = synaptic bytes per core: at least one neuron's
       column must fit). A wider layer is split into ``g_in = ⌈fan_in / k_max⌉`` balanced
       input groups; each group computes partial sums for the same outputs (the extra
       compartments/routing that combine them are not counted).
    2. Fan-out: a tile holds ``m = min(neurons_per_core, max_fan_out_per_core, ⌊8·S /
       (bits_per_synapse·k_in)⌋)`` output units, so ``g_out = ⌈fan_out / m⌉`` groups.
    3. ``tiles = g_in × g_out``; :func:`pack_tiles` puts tiles onto cores. Limits given
       as None or <= 0 are unlimited. ``tiles`` is None if not one synapse fits a core.
    """
    budget_bits = 8 * _limit(sram_bytes_per_core)
    k_max = min(_limit(max_fan_in_per_core), _fit(budget_bits, bits_per_synapse))
    if k_max < 1 or _limit(neurons_per_core) < 1:
        return {"tiles": None, "input_groups": None, "output_groups": None, "inputs_per_core": 0,
                "neurons_per_core": 0}
    g_in = 1 if fan_in <= k_max else math.ceil(fan_in / k_max)
    k_in = math.ceil(fan_in / g_in)
    m = min(_limit(neurons_per_core), _limit(max_fan_out_per_core), _fit(budget_bits, bits_per_synapse * k_in))
    m = int(min(m, fan_out))
    g_out = math.ceil(fan_out / m)
    return {"tiles": g_in * g_out, "input_groups": g_in, "output_groups": g_out,
            "inputs_per_core": k_in, "neurons_per_core": m}


def _tiles(layer: int, fan_in: int, fan_out: int, mapping: dict, bits_per_synapse: float):
    """Yield (layer, input group, inputs, outputs, synaptic bytes) of a layer's tiles in order."""
    g_in, m = mapping["input_groups"], mapping["neurons_per_core"]
    for g in range(g_in):
        k = fan_in // g_in + (1 if g < fan_in % g_in else 0)
        for start in range(0, fan_out, m):
            outs = min(m, fan_out - start)
            yield layer, g, k, outs, _bytes(bits_per_synapse, k * outs)


def pack_tiles(tiles, *, sram_bytes_per_core, neurons_per_core, max_fan_in_per_core,
               max_fan_out_per_core) -> tuple[int, list[set[int]]]:
    """Next-fit packing of tiles onto cores, in layer order: a tile joins the current core
    if the core's synaptic bytes, neurons, outputs and distinct inputs (tiles of the same
    input group share their inputs) all stay within the per-core limits, else it opens a
    new core. So small layers share a core; a big layer's tiles fill cores of their own.
    Returns (cores used, for each layer the set of cores it occupies)."""
    limits = (_limit(sram_bytes_per_core), _limit(neurons_per_core), _limit(max_fan_in_per_core),
              _limit(max_fan_out_per_core))
    cores = 0
    per_layer: dict[int, set[int]] = {}
    used = [math.inf] * 4  # forces the first tile to open a core
    groups: set[tuple[int, int]] = set()
    for layer, group, k, outs, nbytes in tiles:
        new_inputs = 0 if (layer, group) in groups else k
        trial = (used[0] + nbytes, used[1] + outs, used[2] + new_inputs, used[3] + outs)
        if any(t > lim for t, lim in zip(trial, limits)):
            cores += 1
            used, groups = [nbytes, outs, k, outs], {(layer, group)}
        else:
            used = list(trial)
            groups.add((layer, group))
        per_layer.setdefault(layer, set()).add(cores)
    return cores, [per_layer.get(i, set()) for i in range(1 + max(per_layer, default=-1))]


def _core_mapping(sizes: list[int], bits_per_synapse: float, mem) -> dict[str, Any]:
    limits = dict(
        sram_bytes_per_core=mem.synaptic_sram_bytes_per_core,
        neurons_per_core=mem.neurons_per_core,
        max_fan_in_per_core=mem.max_fan_in_per_core,
        max_fan_out_per_core=mem.max_fan_out_per_core,
    )
    mappings = [map_layer(a, b, bits_per_synapse=bits_per_synapse, **limits) for a, b in zip(sizes[:-1], sizes[1:])]
    if any(mp["tiles"] is None for mp in mappings):
        return {"mappings": mappings, "cores_used": None, "layer_cores": [None] * len(mappings)}
    tiles = (t for i, (a, b, mp) in enumerate(zip(sizes[:-1], sizes[1:], mappings))
             for t in _tiles(i, a, b, mp, bits_per_synapse))
    cores_used, layer_cores = pack_tiles(tiles, **limits)
    return {"mappings": mappings, "cores_used": cores_used, "layer_cores": [len(c) for c in layer_cores]}


def sram_report(layer_sizes: Sequence[int], profile, *, optimizer_slots: int,
                learning_history_steps: int = 0) -> dict[str, Any]:
    """On-chip memory of FF learning per layer, the core mapping, and backprop's need.

    Per layer (n_in → n_out), bit-packed (``ceil(bits × count / 8)`` bytes):

    * ``weight_sram_bytes``: n_in·n_out at ``weight_bits``
    * ``bias_sram_bytes``: n_out at ``accumulator_bits`` (biases live at accumulator
      precision, as in int8 inference with int32 biases)
    * ``state_sram_bytes``: n_out at ``state_bits`` (membrane / activation state)
    * ``trace_sram_bytes``: (n_in + n_out) at ``trace_bits`` (pre and post learning traces)
    * ``optimizer_sram_bytes``: slots × (n_in·n_out + n_out) params at 32 bit, only if the
      profile has ``optimizer_state``

    Where it lives. Per-synapse words (weight + optimizer slots) go to the cores'
    synaptic SRAM: each layer is cut into tiles (:func:`map_layer`) and the tiles are
    packed onto cores (:func:`pack_tiles`). Per-unit words (bias, state, traces) and the
    FF streaming buffer go to the chip's shared ``other_sram_bytes``. FF streams: only one
    layer's input and output, for the positive and negative pass of a batch, are held at
    a time: ``max_l 2·(n_in + n_out)·max_batch`` activations at ``activation_bits``.
    A chip without shared SRAM (``other_sram_bytes = 0``, e.g. Loihi) keeps per-unit state
    and traces in its cores, bounded by ``neurons_per_core`` rather than by bytes, and the
    traces stand in for the activation buffer (activity travels as routed events), so
    FF needs no shared SRAM there. ``fits`` = every layer maps, cores used <= ``cores``
    and the shared-SRAM need <= ``other_sram_bytes``.

    Backprop on the same chip (side by side): the same weights, biases, state and
    optimizer, plus gradients the size of the weights and biases (per-synapse gradients
    join the weights in synaptic SRAM, so it needs more cores), plus the stored
    activations of every layer (input included) × ``max_batch`` in shared SRAM (even on a
    chip without any), and no traces.

    Spiking units trained by BPTT through their own T steps (``learning_history_steps =
    T``, see :func:`learning_history_steps`) also hold, for the one layer being updated,
    every step's membrane and input spikes of both passes until the backward:
    ``learning_history_sram_bytes = max_l 2·max_batch·T·(n_out·state_bits +
    n_in·activation_bits) / 8``, in shared SRAM (even on a chip without any, like
    backprop's stored activations: a chip with no room for it cannot run BPTT). The
    eligibility rule keeps running sums only (the traces above), so it adds nothing.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise EstimateError(f"layer_sizes: need at least [D_in, h1] of positive ints, got {list(layer_sizes)}")
    p, mem = profile.precision, profile.memory
    batch = int(profile.streaming.max_batch)
    slots = optimizer_slots if profile.learning.optimizer_state else 0
    shared = mem.other_sram_bytes > 0
    ff_bits = p.weight_bits + slots * OPTIMIZER_STATE_BITS
    bp_bits = ff_bits + p.weight_bits
    ff_map = _core_mapping(sizes, ff_bits, mem)
    bp_map = _core_mapping(sizes, bp_bits, mem)
    core_bytes = _limit(mem.synaptic_sram_bytes_per_core)

    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        n_syn = n_in * n_out
        part = {
            "weight_sram_bytes": _bytes(p.weight_bits, n_syn),
            "bias_sram_bytes": _bytes(p.accumulator_bits, n_out),
            "state_sram_bytes": _bytes(p.state_bits, n_out),
            "trace_sram_bytes": _bytes(p.trace_bits, n_in + n_out),
            "optimizer_sram_bytes": _bytes(OPTIMIZER_STATE_BITS, slots * (n_syn + n_out)),
        }
        cores = ff_map["layer_cores"][i]
        synaptic = _bytes(ff_bits, n_syn)
        layers.append({
            "layer": i + 1,
            "fan_in": n_in,
            "fan_out": n_out,
            **part,
            "sram_bytes": sum(part.values()),
            "synaptic_sram_bytes": synaptic,
            "per_unit_sram_bytes": part["bias_sram_bytes"] + part["state_sram_bytes"] + part["trace_sram_bytes"],
            "cores": cores,
            "mapping": ff_map["mappings"][i],
            "synaptic_utilisation": synaptic / (cores * core_bytes) if cores and math.isfinite(core_bytes) else None,
            "backprop_cores": bp_map["layer_cores"][i],
        })

    act_buffer = max(_bytes(p.activation_bits, 2 * (a + b) * batch) for a, b in zip(sizes[:-1], sizes[1:]))
    steps = max(0, int(learning_history_steps))
    history = max(_bytes(p.state_bits, 2 * batch * steps * b) + _bytes(p.activation_bits, 2 * batch * steps * a)
                  for a, b in zip(sizes[:-1], sizes[1:])) if steps else 0
    other = (sum(layer["per_unit_sram_bytes"] for layer in layers) + act_buffer if shared else 0) + history
    ff_total = sum(layer["sram_bytes"] for layer in layers) + (act_buffer if shared else 0) + history

    grads = sum(_bytes(p.weight_bits, l["fan_in"] * l["fan_out"]) + _bytes(p.accumulator_bits, l["fan_out"])
                for l in layers)
    stored = _bytes(p.activation_bits, sum(sizes) * batch)
    bp_common = sum(l["weight_sram_bytes"] + l["bias_sram_bytes"] + l["state_sram_bytes"]
                    + l["optimizer_sram_bytes"] for l in layers)
    bp_other = stored + (sum(2 * l["bias_sram_bytes"] + l["state_sram_bytes"] for l in layers) if shared else 0)

    reasons = _misfit_reasons(ff_map["cores_used"], mem.cores, other, mem.other_sram_bytes)
    bp_reasons = _misfit_reasons(bp_map["cores_used"], mem.cores, bp_other, mem.other_sram_bytes)
    budget = core_bytes * mem.cores
    cores_used = ff_map["cores_used"]
    return {
        "layers": layers,
        "optimizer_slots": slots,
        "per_unit_memory": "shared SRAM" if shared else "in cores (bounded by neurons_per_core)",
        "activation_buffer_sram_bytes": act_buffer if shared else 0,
        "learning_history_steps": steps,
        "learning_history_sram_bytes": history,
        "ff_sram_bytes": ff_total,
        "other_sram_bytes_used": other,
        "other_sram_bytes_available": mem.other_sram_bytes,
        "synaptic_sram_bytes_per_core": mem.synaptic_sram_bytes_per_core,
        "synaptic_sram_bytes_available": budget if math.isfinite(budget) else None,
        "cores_used": cores_used,
        "cores_available": mem.cores,
        "core_utilisation": cores_used / mem.cores if cores_used is not None else None,
        "fits": not reasons,
        "misfit_reasons": reasons,
        "backprop": {
            "sram_bytes": bp_common + grads + stored,
            "gradient_sram_bytes": grads,
            "stored_activation_sram_bytes": stored,
            "other_sram_bytes_used": bp_other,
            "cores_used": bp_map["cores_used"],
            "fits": not bp_reasons,
            "misfit_reasons": bp_reasons,
        },
        "backprop_sram_bytes": bp_common + grads + stored,
    }


def _misfit_reasons(cores_used, cores, other, other_available) -> list[str]:
    reasons = []
    if cores_used is None:
        reasons.append("a layer does not fit even one synapse column per core")
    elif cores_used > cores:
        reasons.append(f"needs {cores_used} cores, chip has {cores}")
    if other > other_available:
        reasons.append(f"needs {format_bytes(other)} of shared SRAM, chip has {format_bytes(other_available)}")
    return reasons


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
) -> dict[str, Any]:
    """The full JSON-able report: energy per sample (training, inference), SRAM, fit.

    ``events``: ``{"train": [per-layer counts per sample], "infer": [...]}`` from
    :func:`ffneuro.hw.events.analytic_events` or ``EventLedger.per_sample``; ``source``:
    ``"measured"`` or ``"analytic"``. With ``n_train`` the report also carries the
    training energy of one epoch. ``learning_history_steps``: see :func:`sram_report`.
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
                         learning_history_steps=learning_history_steps)
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
    return report


def learning_history_steps(run_config: dict) -> int:
    """Time steps of state a run's learning rule keeps per sample, from its RunConfig
    dict: T (``steps``) for spiking units trained by BPTT through their own T steps, else 0
    (graded units; spiking units with the eligibility rule, whose memory is independent of T).

    >>> learning_history_steps({"neuron": "lif", "steps": 16, "spike_learning": "bptt"})
    16
    """
    if run_config.get("neuron", "relu") != "lif" or run_config.get("spike_learning", "bptt") != "bptt":
        return 0
    return int(run_config.get("steps", 1))


def _flat_config(saved: dict) -> dict:
    from ffneuro.config import RunConfig

    return RunConfig.from_dict(saved).flat() if saved else {}


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
                      learning_history_steps=learning_history_steps(_flat_config(config.get("config", {}))))
    report["samples"] = dict(ledger.samples)
    report["run_dir"] = str(run_dir)
    return report


# ----------------------------------------------------------------------------- display


def format_energy(pj: float) -> str:
    """pJ with an engineering prefix: ``1.23 µJ``."""
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def format_bytes(n: float | None) -> str:
    """Bytes in B / KiB / MiB / GiB."""
    if n is None:
        return "-"
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


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
    lines += _table(rows)
    for ph in ("training", "inference"):
        r = report[ph]
        lines.append(
            f"{ph:<9} {format_energy(r['energy_pj_per_sample'])}/sample "
            f"(dynamic {format_energy(r['dynamic_energy_pj_per_sample'])}, static "
            f"{format_energy(r['static_energy_pj_per_sample'])}, {r['steps_per_sample']:.4g} steps/sample, "
            f"{r['time_ns_per_sample'] / 1e3:.4g} µs)"
        )
    if "energy_pj_per_epoch" in report["training"]:
        lines.append(f"training epoch ({report['training']['n_train']} samples): "
                     f"{format_energy(report['training']['energy_pj_per_epoch'])}")

    lines += ["", *format_memory(report["layers"], report["memory"])]
    return "\n".join(lines)


def format_memory(layers: list[dict], mem: dict) -> list[str]:
    """The SRAM table: each layer's bytes by part and cores against the chip's budget,
    then FF's total vs what backprop would need. ``layers``/``mem`` as from sram_report."""
    lines = [f"SRAM per layer (FF on-chip learning; per-core synaptic budget "
             f"{format_bytes(mem['synaptic_sram_bytes_per_core'])} x {mem['cores_available']} cores)"]
    rows = [["layer", "shape", "weights", "bias", "state", "traces", "optimizer", "total", "cores", "syn util"]]
    for layer in layers:
        util = layer["synaptic_utilisation"]
        rows.append([
            f"L{layer['layer']}", f"{layer['fan_in']}x{layer['fan_out']}",
            *(format_bytes(layer[k]) for k in ("weight_sram_bytes", "bias_sram_bytes", "state_sram_bytes",
                                               "trace_sram_bytes", "optimizer_sram_bytes", "sram_bytes")),
            "-" if layer["cores"] is None else str(layer["cores"]),
            "-" if util is None else f"{100 * util:.0f}%",
        ])
    lines += _table(rows)
    bp = mem["backprop"]
    if mem.get("learning_history_sram_bytes"):
        lines.append(f"BPTT history of the layer being updated ({mem['learning_history_steps']} steps of "
                     f"membrane and input spikes, shared SRAM): {format_bytes(mem['learning_history_sram_bytes'])}")
    lines += [
        f"bias, state, traces: {mem['per_unit_memory']}; activation buffer (one layer at a time): "
        f"{format_bytes(mem['activation_buffer_sram_bytes'])}",
        f"FF total {format_bytes(mem['ff_sram_bytes'])}; cores {mem['cores_used']} / "
        f"{mem['cores_available']}; shared SRAM {format_bytes(mem['other_sram_bytes_used'])} / "
        f"{format_bytes(mem['other_sram_bytes_available'])}; fits: {'yes' if mem['fits'] else 'NO'}"
        + (f" ({'; '.join(mem['misfit_reasons'])})" if mem["misfit_reasons"] else ""),
        f"backprop would need {format_bytes(bp['sram_bytes'])} (gradients {format_bytes(bp['gradient_sram_bytes'])}, "
        f"stored activations {format_bytes(bp['stored_activation_sram_bytes'])}); cores {bp['cores_used']}; "
        f"fits: {'yes' if bp['fits'] else 'NO'}"
        + (f" ({'; '.join(bp['misfit_reasons'])})" if bp["misfit_reasons"] else ""),
    ]
    return lines


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
