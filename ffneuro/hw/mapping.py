"""On-chip memory of FF learning: bit-packed SRAM per unit, the cut of each unit into
per-core tiles and their packing onto cores, and what backprop would need on the same
chip (no torch; see ``sram_report``)."""

from __future__ import annotations

import math
from typing import Any, Sequence

# Per-weight optimizer state words, when the profile keeps optimizer state on chip.
OPTIMIZER_SLOTS: dict[str, int] = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
OPTIMIZER_STATE_BITS = 32


class EstimateError(ValueError):
    """Inputs the estimator cannot use (one-line message)."""



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


def map_conv_layer(
    channels: int,
    positions: int,
    kernel_inputs: int,
    *,
    bits_per_synapse: float,
    sram_bytes_per_core: float | None,
    neurons_per_core: int | None,
    max_fan_in_per_core: int | None,
    max_fan_out_per_core: int | None,
) -> dict[str, Any]:
    """Cut a weight-sharing (conv) layer of ``channels`` output channels × ``positions``
    output positions, each channel one kernel of ``kernel_inputs`` weights, into tiles.

    Model (channel-major): a core holds whole channels — their kernels once in its
    synaptic SRAM and their neurons at every position. 1. A kernel wider than a core's
    inputs or SRAM (``k_max`` as in :func:`map_layer`) is split into ``g_in`` input groups.
    2. If a channel's positions fit a core (``positions <= neurons_per_core``), a core
    takes ``c = min(⌊neurons_per_core / positions⌋, ⌊8·S / (bits·k_in)⌋, channels)``
    channels; else each channel is cut into ``bands = ⌈positions / neurons_per_core⌉``
    bands of positions and every band's core stores its own copy of the kernel (a core
    cannot read another core's SRAM), ``c = 1``. ``synaptic_copies`` counts the kernels
    stored (channels × bands), so replication shows in the synaptic bytes.
    """
    budget_bits = 8 * _limit(sram_bytes_per_core)
    k_max = min(_limit(max_fan_in_per_core), _fit(budget_bits, bits_per_synapse))
    cap = min(_limit(neurons_per_core), _limit(max_fan_out_per_core))
    if k_max < 1 or cap < 1:
        return {"tiles": None, "input_groups": None, "channels_per_core": 0, "bands": None, "inputs_per_core": 0}
    g_in = 1 if kernel_inputs <= k_max else math.ceil(kernel_inputs / k_max)
    k_in = math.ceil(kernel_inputs / g_in)
    if positions <= cap:
        bands = 1
        c = int(min(cap // positions, _fit(budget_bits, bits_per_synapse * k_in), channels))
    else:
        bands = math.ceil(positions / cap)
        c = 1
    if c < 1:
        return {"tiles": None, "input_groups": None, "channels_per_core": 0, "bands": None, "inputs_per_core": 0}
    tiles = g_in * math.ceil(channels / c) * bands
    return {"tiles": tiles, "input_groups": g_in, "channels_per_core": c, "bands": bands, "inputs_per_core": k_in,
            "synaptic_copies": channels * bands}


def _conv_tiles(layer: int, share: dict, mapping: dict, bits_per_synapse: float):
    """Yield (layer, input group, inputs, neurons, synaptic bytes) of a conv layer's tiles."""
    g_in, c, bands = mapping["input_groups"], mapping["channels_per_core"], mapping["bands"]
    channels, positions, kernel_inputs = share["channels"], share["positions"], share["fan_in"]
    per_band = math.ceil(positions / bands)
    for g in range(g_in):
        k = kernel_inputs // g_in + (1 if g < kernel_inputs % g_in else 0)
        for start in range(0, channels, c):
            chans = min(c, channels - start)
            for b in range(bands):
                neurons = chans * min(per_band, positions - b * per_band)
                yield layer, (g, start), k, neurons, _bytes(bits_per_synapse, k * chans)


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


def _core_mapping(sizes: list[int], bits_per_synapse: float, mem, sharing: list[dict | None]) -> dict[str, Any]:
    limits = dict(
        sram_bytes_per_core=mem.synaptic_sram_bytes_per_core,
        neurons_per_core=mem.neurons_per_core,
        max_fan_in_per_core=mem.max_fan_in_per_core,
        max_fan_out_per_core=mem.max_fan_out_per_core,
    )
    mappings = [map_layer(a, b, bits_per_synapse=bits_per_synapse, **limits) if share is None else
                map_conv_layer(share["channels"], share["positions"], share["fan_in"],
                               bits_per_synapse=bits_per_synapse, **limits)
                for a, b, share in zip(sizes[:-1], sizes[1:], sharing)]
    if any(mp["tiles"] is None for mp in mappings):
        return {"mappings": mappings, "cores_used": None, "layer_cores": [None] * len(mappings)}
    tiles = (t for i, (a, b, mp, share) in enumerate(zip(sizes[:-1], sizes[1:], mappings, sharing))
             for t in (_tiles(i, a, b, mp, bits_per_synapse) if share is None else
                       _conv_tiles(i, share, mp, bits_per_synapse)))
    cores_used, layer_cores = pack_tiles(tiles, **limits)
    return {"mappings": mappings, "cores_used": cores_used, "layer_cores": [len(c) for c in layer_cores]}


def sram_report(layer_sizes: Sequence[int], profile, *, optimizer_slots: int,
                learning_history_steps: int = 0, synapses: Sequence[int] | None = None,
                sharing: Sequence[dict] | None = None, shadow_bits: int = 0) -> dict[str, Any]:
    """On-chip memory of FF learning per layer, the core mapping, and backprop's need.

    Per layer (n_in → n_out), bit-packed (``ceil(bits × count / 8)`` bytes):

    * ``weight_sram_bytes``: n_in·n_out at ``weight_bits``, or at ``shadow_bits`` when the
      weights learn on a wider shadow (``hardware.shadow_bits``: the word widens and the
      datapath reads its top ``weight_bits``)
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
    T``, a unit's ``Resources.history_steps``) also hold, for the one layer being updated,
    every step's membrane and input spikes of both passes until the backward:
    ``learning_history_sram_bytes = max_l 2·max_batch·T·(n_out·state_bits +
    n_in·activation_bits) / 8``, in shared SRAM (even on a chip without any, like
    backprop's stored activations: a chip with no room for it cannot run BPTT). The
    eligibility rule keeps running sums only (the traces above), so it adds nothing.

    ``synapses``: the stored weights of each layer as its unit reports them
    (``units.base.Resources.synapses``; default n_in·n_out, all-to-all). Weight, optimizer
    and gradient bytes follow it.

    ``sharing``: each layer's ``Resources`` as a dict (``Unit.resources().to_dict()``);
    a layer with ``channels > 0`` shares weights (conv). Such a layer is cut by
    :func:`map_conv_layer` (whole channels per core, kernels copied onto every core that
    holds part of a channel), its biases are per channel, its state and traces per
    neuron (channels × conv positions; ``n_out`` is the pooled output handed on), and its
    ``synaptic_sram_bytes`` count the stored copies. Feature maps are buffered whole: FF's
    update needs the goodness of the whole output map before any weight changes, so the
    input map waits until then (``activation_buffer_sram_bytes`` as for dense layers). A
    streaming chip doing inference only could hold ``line_buffer_inputs`` per layer
    instead: reported as ``line_buffer_sram_bytes`` (the largest layer's, both passes,
    at ``activation_bits``), not counted in the totals.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise EstimateError(f"layer_sizes: need at least [D_in, h1] of positive ints, got {list(layer_sizes)}")
    p, mem = profile.precision, profile.memory
    batch = int(profile.streaming.max_batch)
    slots = optimizer_slots if profile.learning.optimizer_state else 0
    shared = mem.other_sram_bytes > 0
    word_bits = max(p.weight_bits, int(shadow_bits))
    ff_bits = word_bits + slots * OPTIMIZER_STATE_BITS
    bp_bits = ff_bits + p.weight_bits
    shares: list[dict | None] = [None] * (len(sizes) - 1)
    if sharing is not None:
        if len(sharing) != len(sizes) - 1:
            raise EstimateError(f"sharing: need one resources entry per layer of {sizes}, got {len(sharing)}")
        shares = [dict(r) if int(r.get("channels", 0)) > 0 else None for r in sharing]
        if synapses is None:
            synapses = [int(r["synapses"]) for r in sharing]
    ff_map = _core_mapping(sizes, ff_bits, mem, shares)
    bp_map = _core_mapping(sizes, bp_bits, mem, shares)
    core_bytes = _limit(mem.synaptic_sram_bytes_per_core)
    n_syns = [a * b for a, b in zip(sizes[:-1], sizes[1:])] if synapses is None else [int(n) for n in synapses]
    if len(n_syns) != len(sizes) - 1 or any(n < 1 for n in n_syns):
        raise EstimateError(f"synapses: need one positive count per layer of {sizes}, got {list(synapses)}")

    layers = []
    for i, (n_in, n_out, n_syn, share) in enumerate(zip(sizes[:-1], sizes[1:], n_syns, shares)):
        biases = n_out if share is None else int(share["channels"])
        neurons = n_out if share is None else int(share["neurons"])
        part = {
            "weight_sram_bytes": _bytes(word_bits, n_syn),
            "bias_sram_bytes": _bytes(p.accumulator_bits, biases),
            "state_sram_bytes": _bytes(p.state_bits, neurons),
            "trace_sram_bytes": _bytes(p.trace_bits, n_in + neurons),
            "optimizer_sram_bytes": _bytes(OPTIMIZER_STATE_BITS, slots * (n_syn + biases)),
        }
        cores = ff_map["layer_cores"][i]
        copies = 1 if share is None or ff_map["mappings"][i]["tiles"] is None else \
            ff_map["mappings"][i]["synaptic_copies"] / int(share["channels"])
        synaptic = _bytes(ff_bits, n_syn * copies)
        layers.append({
            "layer": i + 1,
            "fan_in": n_in,
            "fan_out": n_out,
            "synapses": n_syn,
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
    line_buffer = max((_bytes(p.activation_bits, 2 * int(sh["line_buffer_inputs"])) for sh in shares if sh),
                      default=0)
    steps = max(0, int(learning_history_steps))
    history = max(_bytes(p.state_bits, 2 * batch * steps * b) + _bytes(p.activation_bits, 2 * batch * steps * a)
                  for a, b in zip(sizes[:-1], sizes[1:])) if steps else 0
    other = (sum(layer["per_unit_sram_bytes"] for layer in layers) + act_buffer if shared else 0) + history
    ff_total = sum(layer["sram_bytes"] for layer in layers) + (act_buffer if shared else 0) + history

    grads = sum(_bytes(p.weight_bits, l["synapses"]) + l["bias_sram_bytes"] for l in layers)
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
        "weight_word_bits": word_bits,
        "per_unit_memory": "shared SRAM" if shared else "in cores (bounded by neurons_per_core)",
        "activation_buffer_sram_bytes": act_buffer if shared else 0,
        "line_buffer_sram_bytes": line_buffer,
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



def format_bytes(n: float | None) -> str:
    """Bytes in B / KiB / MiB / GiB."""
    if n is None:
        return "-"
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"



def text_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines



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
    lines += text_table(rows)
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


