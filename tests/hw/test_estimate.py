"""Estimator tests: hand-counted events, hand-computed energy and SRAM, KerasSpiking parity.

Every expected number below is worked out in the comment next to it, from a hand-made
profile (round per-event energies), so the tests do not depend on shipped profile numbers.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from ffneuro.hw.energy import energy_breakdown, estimate, training_energy_pj_per_epoch
from ffneuro.hw.estimate import estimate_from_layers, estimate_from_run, format_report, plot_report
from ffneuro.hw.mapping import EstimateError, map_layer, sram_report
from ffneuro.hw.events import (
    EVENT_KINDS,
    EventLedger,
    EventsError,
    analytic_events,
    forward_events,
    head_events,
    update_events,
)
from ffneuro.hw.profiles import Energy, Learning, Memory, Precision, Profile, Streaming


def make_profile(name="hand", *, precision=None, memory=None, streaming=None, learning=None, energy=None):
    """A profile with hand-picked round numbers (same schema as ffneuro.hw.profiles.Profile)."""
    sections = {
        "precision": dict(format="fixed", weight_bits=3, weight_signed=True, scale_rule="pow2",
                          activation_bits=8, state_bits=12, accumulator_bits=16, learning_bits=16,
                          trace_bits=7, rounding="nearest"),
        "memory": dict(cores=8, synaptic_sram_bytes_per_core=20, neurons_per_core=2, max_fan_in_per_core=2,
                       max_fan_out_per_core=4096, other_sram_bytes=44),
        "streaming": dict(max_batch=1, time_steps=1, store_activations=False),
        "learning": dict(optimizer="sgd_momentum", lr_power_of_two=True, optimizer_state=True),
        "energy": dict(synop_dense_pj=1.0, synop_sparse_pj=0.5, neuron_update_active_pj=10.0,
                       neuron_update_idle_pj=4.0, weight_read_pj=2.0, weight_write_pj=100.0,
                       learning_update_pj=3.0, state_access_pj=5.0, goodness_op_pj=0.25,
                       spike_route_pj=7.0, static_power_mw=2.0, time_per_step_ns=10.0),
    }
    for key, override in dict(precision=precision, memory=memory, streaming=streaming, learning=learning,
                              energy=energy).items():
        sections[key].update(override or {})
    return Profile(name=name, description="hand-made test profile", sources={}, path="<test>",
                   precision=Precision(**sections["precision"]), memory=Memory(**sections["memory"]),
                   streaming=Streaming(**sections["streaming"]), learning=Learning(**sections["learning"]),
                   energy=Energy(**sections["energy"]))


# ----------------------------------------------------------------------------- counting

X_IN = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.5, 0.0]])  # 3 non-zeros
H_OUT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 3.0]])          # 3 non-zeros, B=2, fan_out=3
X_SILENT = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # 2 non-zeros, row 2 silent


def test_forward_events_graded_and_binary():
    c = forward_events(X_IN, H_OUT, binary_input=False)
    # synops = nnz(x) × fan_out = 3 × 3; neuron updates = goodness ops = B × fan_out = 6
    assert c["synop_dense"] == 9 and c["synop_sparse"] == 0 and c["weight_read"] == 9
    assert c["neuron_update"] == 6 and c["neuron_update_active"] == 6 and c["goodness_op"] == 6
    assert c["spike_route"] == 0 and c["learning_update"] == c["weight_write"] == c["state_access"] == 0
    b = forward_events((X_IN != 0).float(), (H_OUT != 0).float(), binary_input=True)
    assert b["synop_sparse"] == 9 and b["synop_dense"] == 0 and b["spike_route"] == 3
    # spiking input, graded output: no routed spikes
    assert forward_events(X_IN, H_OUT, binary_input=True, binary_output=False)["spike_route"] == 0
    # a sample whose whole input is zero leaves its 3 units idle (no input received)
    assert forward_events(X_SILENT, H_OUT, binary_input=False)["neuron_update_active"] == 3


X_POS = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0]])  # nnz 3
X_NEG = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # nnz 1


def test_update_events_hand_counted():
    # one write per sample: row 0 touches columns {0,1,2}, row 1 {2} -> (3 + 1) × 3
    u1 = update_events(X_POS, X_NEG, 3, 1)
    assert u1["learning_update"] == (3 + 1) * 3
    assert u1["weight_write"] == (3 + 1) * 3
    assert u1["state_access"] == 4 + 2 * 2 * 3  # nnz + 2 passes × B × fan_out
    # one write for both samples: columns {0,1,2} -> 3 × 3; 2 Adam slots per written weight,
    # each read and written back: + 2 × 2 × 9
    u2 = update_events(X_POS, X_NEG, 3, 2, optimizer_slots=2)
    assert u2["weight_write"] == 9
    assert u2["state_access"] == 4 + 12 + 4 * 9
    assert all(u2[k] == 0 for k in ("synop_dense", "neuron_update", "goodness_op"))
    # a trailing partial chunk still writes once: batch_size 3 > B -> one chunk
    assert update_events(X_POS, X_NEG, 3, 3)["weight_write"] == 9


def test_head_events_and_bad_shapes():
    assert head_events(H_OUT, 10)["synop_dense"] == 30
    with pytest.raises(EventsError):
        forward_events(X_IN[0], H_OUT, binary_input=False)
    with pytest.raises(EventsError):
        update_events(X_POS, X_NEG[:1], 3, 1)


def test_ledger_per_sample_and_roundtrip():
    led = EventLedger()
    led.add("train", 0, forward_events(X_IN, H_OUT, binary_input=False))
    led.add("train", 1, {"weight_write": 4.0})
    led.add_samples("train", 2)
    ps = led.per_sample("train")
    assert len(ps) == 2 and ps[0]["synop_dense"] == 4.5 and ps[1]["weight_write"] == 2.0
    assert led.per_sample("infer")[0]["synop_dense"] == 0  # no samples: zeros, not a crash
    back = EventLedger.from_dict(json.loads(json.dumps(led.to_dict())))
    assert back.per_sample("train") == ps and back.samples == led.samples
    with pytest.raises(EventsError, match="events.json"):
        EventLedger.from_dict({"counts": {}}, source="events.json")
    with pytest.raises(EventsError):
        led.add("test", 0, {})


# Each row has 2 of 4 units on (activity 0.5); positive and negative rows overlap in one
# column, so a sample's pos ∪ neg covers 3 = 4·(1 − (1 − ½)²) columns: the analytic
# weight_write expectation holds exactly for batch_size = 1.
POS = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
NEG = torch.tensor([[0.0, 1.5, 2.0, 0.0], [4.0, 0.0, 0.0, 1.0]])


def _measure(sizes, *, num_classes, inference, binary, time_steps, slots):
    """Run the counters on tensors with activity ½ everywhere, as the trainer would."""
    pos, neg = (POS != 0).float() if binary else POS, (NEG != 0).float() if binary else NEG
    led = EventLedger()
    n_layers = len(sizes) - 1
    for layer in range(n_layers):
        for x in (pos, neg):
            for _ in range(time_steps):
                led.add("train", layer, forward_events(x, x, binary_input=binary))
        led.add("train", layer, update_events(pos, neg, sizes[layer + 1], 1, optimizer_slots=slots))
        passes = num_classes if inference == "multi-pass" else 1
        for c in range(passes):
            x = pos if c % 2 == 0 else neg
            for _ in range(time_steps):
                led.add("infer", layer, forward_events(x, x, binary_input=binary))
        if inference == "one-pass" and layer >= 1:
            led.add("infer", layer, head_events(pos, num_classes))
    led.add_samples("train", 2)
    led.add_samples("infer", 2)
    return led


@pytest.mark.parametrize("inference,binary,time_steps,slots", [
    ("multi-pass", False, 1, 0), ("one-pass", False, 1, 2), ("one-pass", True, 3, 1), ("multi-pass", True, 2, 0),
])
def test_analytic_equals_measured_at_equal_activity(inference, binary, time_steps, slots):
    sizes = [4, 4, 4, 4]
    led = _measure(sizes, num_classes=3, inference=inference, binary=binary, time_steps=time_steps, slots=slots)
    ana = analytic_events(sizes, activity=0.5, input_activity=0.5, num_classes=3, inference=inference,
                          binary_input=binary, time_steps=time_steps, batch_size=1, optimizer_slots=slots)
    for phase in ("train", "infer"):
        measured = led.per_sample(phase)
        assert len(measured) == len(ana[phase]) == 3
        for m, a in zip(measured, ana[phase]):
            assert m == pytest.approx(a, rel=1e-12, abs=0), phase


def test_analytic_per_layer_activity_and_dense_write():
    # [2, 4, 2] with layer activities [0.25, 1.0], dense input: per train sample, layer 2
    # reads 0.25·4 = 1 non-zero input × 2 outputs per pass -> 2 passes -> 4 synops
    ev = analytic_events([2, 4, 2], activity=[0.25, 1.0], input_activity=1.0, num_classes=2,
                         inference="one-pass", batch_size=4)
    assert ev["train"][1]["synop_dense"] == 4
    assert ev["train"][1]["neuron_update_active"] == 2 * 2  # input activity > 0: all 2 units, 2 passes
    # dense input (a=1): a batch of 4 writes all 2×4 weights once -> 8/4 per sample
    assert ev["train"][0]["weight_write"] == 2
    # layer 2's head share: a'·n_out·C = 1·2·2 dense MACs on top of 0.25·4·2 = 2 synops
    assert ev["infer"][1]["synop_dense"] == 2 + 4
    with pytest.raises(EventsError, match="activity"):
        analytic_events([2, 4, 2], activity=[0.5], input_activity=1.0, num_classes=2, inference="one-pass")
    with pytest.raises(EventsError, match="inference"):
        analytic_events([2, 4], activity=0.5, input_activity=1.0, num_classes=2, inference="two-pass")


# ----------------------------------------------------------------------------- energy


def test_energy_breakdown_hand_computed():
    prof = make_profile()
    fwd = forward_events(X_SILENT, H_OUT, binary_input=False)
    upd = update_events(X_POS, X_NEG, 3, 2, optimizer_slots=2)
    (e_fwd, e_upd) = energy_breakdown([fwd, upd], prof)
    # 2 non-zeros × 3 = 6 MACs × 1 + 6 reads × 2 + (3 active × 10 + 3 idle × 4) + 6 goodness × 0.25
    assert e_fwd["synop_dense"] == 6 and e_fwd["weight_read"] == 12
    assert e_fwd["neuron_update"] == 42 and e_fwd["goodness_op"] == 1.5
    assert sum(e_fwd.values()) == 61.5
    # 12 gradient terms × 3 + 9 writes × 100 + 52 state accesses × 5
    assert (e_upd["learning_update"], e_upd["weight_write"], e_upd["state_access"]) == (36, 900, 260)
    assert set(e_fwd) == set(EVENT_KINDS)
    # counts without the active/idle split are charged as all active
    assert energy_breakdown([{"neuron_update": 5.0}], prof)[0]["neuron_update"] == 50


def test_estimate_totals_hand_computed():
    prof = make_profile(memory=dict(other_sram_bytes=10**6))
    sizes = [4, 4, 4]
    kw = dict(activity=0.5, input_activity=0.5, num_classes=2, batch_size=1)
    multi = estimate(prof, layer_sizes=sizes, events=analytic_events(sizes, inference="multi-pass", **kw),
                     num_classes=2, source="analytic", n_train=1000)
    # training, per layer: 2 passes × (8 MAC·1 + 8 read·2 + 4 active units·10 + 4·0.25) = 2 × 65
    #   + learning 16·3 + writes 4·¾·4 = 12 × 100 + state 2·(2+4) = 12 × 5  -> 130 + 48 + 1200 + 60 = 1438
    assert multi["training"]["dynamic_energy_pj_per_sample"] == 2 * 1438
    # static: (2 forward steps + 1 learning step) × 10 ns × 2 mW = 60 pJ
    assert multi["training"]["steps_per_sample"] == 3
    assert multi["training"]["static_energy_pj_per_sample"] == 60
    assert multi["training"]["energy_pj_per_sample"] == 2936
    assert multi["training"]["energy_pj_per_epoch"] == 2936 * 1000 == training_energy_pj_per_epoch(multi, 1000)
    # multi-pass inference: C=2 passes × 65 per layer, 2 layers; 2 steps × 20 pJ static
    assert multi["inference"]["energy_pj_per_sample"] == 4 * 65 + 40
    one = estimate(prof, layer_sizes=sizes, events=analytic_events(sizes, inference="one-pass", **kw),
                   num_classes=2, source="analytic")
    # one pass: 65 + 65 + head on layer 2 (½·4·2 = 4 MACs × 1 + 4 reads × 2 = 12) + 1 step × 20 pJ
    assert one["inference"]["energy_pj_per_sample"] == 65 + 65 + 12 + 20
    assert one["inference"]["layers"][1]["energy_pj_by_kind"]["synop_dense"] == 8 + 4
    json.dumps(one)  # JSON-able


def test_keras_spiking_model_energy_reproduced():
    """KerasSpiking ModelEnergy (keras_spiking/model_energy.py) for a spiking dense net:

    synop_energy = energy_per_synop × connections × rate × dt × timesteps
    neuron_energy = energy_per_neuron × neurons × timesteps
    with its "loihi" device energy_per_synop = (23.6 + 3.5)e-12 J, energy_per_neuron = 81e-12 J.
    Net 784 -> 128 -> 64, input rate 250 Hz, hidden rate 500 Hz, dt = 1 ms, 8 steps:
      L1: 27.1e-12 × 100352 × 250 × 0.001 × 8 = 5.4390784e-6 J;  81e-12 × 128 × 8 = 82.944e-9 J
      L2: 27.1e-12 × 8192 × 500 × 0.001 × 8  = 888.0128e-9 J;   81e-12 × 64 × 8  = 41.472e-9 J
      total 6.4515072e-6 J = 6 451 507.2 pJ
    ffneuro counts non-zero inputs × fan_out, which for spikes is connections × rate × dt, so
    with the same energies (27.1 pJ per synop_sparse, 81 pJ for every neuron update, every
    other kind 0) it gives the same number. ffneuro's own reading of Loihi differs: 23.6 pJ
    per synop (the 3.5 is a time in ns, SPEC §5), and it adds the other event kinds
    (weight reads, goodness, spike routing, and for training the update).
    """
    def ks_total_j(sizes, rates_hz, dt, steps, e_synop, e_neuron):
        total = 0.0
        for n_in, n_out, rate in zip(sizes[:-1], sizes[1:], rates_hz):
            total += e_synop * n_in * n_out * rate * dt * steps + e_neuron * n_out * steps
        return total

    sizes = [784, 128, 64]
    ks_j = ks_total_j(sizes, [250.0, 500.0], 0.001, 8, (23.6 + 3.5) * 1e-12, 81e-12)
    assert ks_j == pytest.approx(6.4515072e-6, rel=1e-12)

    zero = {k: 0.0 for k in ("synop_dense_pj", "weight_read_pj", "weight_write_pj", "learning_update_pj",
                             "state_access_pj", "goodness_op_pj", "spike_route_pj", "static_power_mw",
                             "time_per_step_ns")}
    ks_like = make_profile(energy=dict(zero, synop_sparse_pj=23.6 + 3.5, neuron_update_active_pj=81.0,
                                       neuron_update_idle_pj=81.0))
    ev = analytic_events(sizes, activity=[0.5, 0.5], input_activity=0.25, num_classes=10,
                         inference="one-pass", binary_input=True, time_steps=8)
    ours = estimate(ks_like, layer_sizes=sizes, events=ev, num_classes=10, source="analytic")
    assert ours["inference"]["energy_pj_per_sample"] == pytest.approx(6451507.2, rel=1e-12)
    assert ours["inference"]["energy_pj_per_sample"] == pytest.approx(ks_j * 1e12, rel=1e-12)

    loihi_ours = make_profile(energy=dict(zero, synop_sparse_pj=23.6, neuron_update_active_pj=81.0,
                                          neuron_update_idle_pj=52.0))
    e = estimate(loihi_ours, layer_sizes=sizes, events=ev, num_classes=10, source="analytic")
    # (200704 + 32768) synops × 23.6 + (128 + 64) units × 8 steps, all receiving input, × 81
    assert e["inference"]["energy_pj_per_sample"] == pytest.approx(5509939.2 + 124416, rel=1e-12)


# ----------------------------------------------------------------------------- memory


def test_sram_bit_packing_and_core_mapping():
    prof = make_profile()
    rep = sram_report([4, 3, 2], prof, optimizer_slots=1)
    l1, l2 = rep["layers"]
    # weights: 12 × 3 bit = 36 bit -> 5 B; 6 × 3 = 18 bit -> 3 B
    assert (l1["weight_sram_bytes"], l2["weight_sram_bytes"]) == (5, 3)
    # bias at 16 bit: 3 -> 6 B, 2 -> 4 B; state at 12 bit: 36 bit -> 5 B, 24 bit -> 3 B
    assert (l1["bias_sram_bytes"], l1["state_sram_bytes"]) == (6, 5)
    assert (l2["bias_sram_bytes"], l2["state_sram_bytes"]) == (4, 3)
    # traces at 7 bit over inputs + outputs: 7·7 = 49 bit -> 7 B; 5·7 = 35 bit -> 5 B
    assert (l1["trace_sram_bytes"], l2["trace_sram_bytes"]) == (7, 5)
    # one momentum slot at 32 bit per parameter (weights + biases): (12+3)·4, (6+2)·4
    assert (l1["optimizer_sram_bytes"], l2["optimizer_sram_bytes"]) == (60, 32)
    assert (l1["sram_bytes"], l2["sram_bytes"]) == (83, 47)
    # mapping: 35 bit per synapse, 160 bit per core, fan-in ≤ 2, 2 neurons per core
    # L1: fan-in 4 > 2 -> 2 input groups of 2; min(2 neurons, ⌊160/70⌋ = 2) per core; 3 outputs -> 2 groups
    assert l1["mapping"] == {"tiles": 4, "input_groups": 2, "output_groups": 2, "inputs_per_core": 2,
                             "neurons_per_core": 2}
    assert l1["cores"] == 4 and l2["cores"] == 2 and l2["mapping"]["input_groups"] == 2
    # next-fit packing cannot share: every core is full in neurons (2) or fan-in (2)
    assert rep["cores_used"] == 6
    assert l1["synaptic_utilisation"] == pytest.approx(53 / 80)  # ⌈35·12/8⌉ B over 4 cores × 20 B
    # other SRAM: bias+state+traces (18 + 12) + buffer 2·(4+3)·1 activations × 8 bit = 14 B -> 44 = budget
    assert rep["activation_buffer_sram_bytes"] == 14 and rep["other_sram_bytes_used"] == 44
    assert rep["fits"] and rep["misfit_reasons"] == []
    # backprop: gradients (5+3 weight B, 6+4 bias B) + stored activations (4+3+2)·8 bit = 9 B
    bp = rep["backprop"]
    assert (bp["gradient_sram_bytes"], bp["stored_activation_sram_bytes"]) == (18, 9)
    assert bp["sram_bytes"] == rep["backprop_sram_bytes"] == (76 + 42) + 18 + 9
    assert rep["ff_sram_bytes"] == 83 + 47 + 14


def test_sram_does_not_fit():
    few_cores = sram_report([4, 3, 2], make_profile(memory=dict(cores=5)), optimizer_slots=1)
    assert not few_cores["fits"] and few_cores["misfit_reasons"] == ["needs 6 cores, chip has 5"]
    tight = sram_report([4, 3, 2], make_profile(memory=dict(other_sram_bytes=43)), optimizer_slots=1)
    assert not tight["fits"] and "shared SRAM" in tight["misfit_reasons"][0]
    # 4 B = 32 bit per core cannot hold one 35-bit synapse: the layer cannot be mapped at all
    tiny = sram_report([4, 3, 2], make_profile(memory=dict(synaptic_sram_bytes_per_core=4)), optimizer_slots=1)
    assert tiny["cores_used"] is None and not tiny["fits"]
    # without optimizer_state on chip the slots cost nothing
    no_opt = sram_report([4, 3, 2], make_profile(learning=dict(optimizer_state=False)), optimizer_slots=1)
    assert no_opt["layers"][0]["optimizer_sram_bytes"] == 0


def test_map_layer_splits_by_memory_alone():
    # 8-bit weights, 1 KiB per core, no fan-in/neuron limits: 1000 inputs fit in one column
    # group; ⌊8192 / (8·1000)⌋ = 1 neuron per core -> 10 cores for 10 outputs
    m = map_layer(1000, 10, bits_per_synapse=8, sram_bytes_per_core=1024, neurons_per_core=None,
                  max_fan_in_per_core=None, max_fan_out_per_core=None)
    assert (m["tiles"], m["input_groups"], m["neurons_per_core"]) == (10, 1, 1)
    # 2000 inputs: a column no longer fits (16000 bit > 8192) -> 2 input groups of 1000
    m = map_layer(2000, 10, bits_per_synapse=8, sram_bytes_per_core=1024, neurons_per_core=None,
                  max_fan_in_per_core=None, max_fan_out_per_core=None)
    assert (m["tiles"], m["input_groups"], m["inputs_per_core"]) == (20, 2, 1000)


def test_small_layers_share_a_core_and_loihi_style_state_lives_in_cores():
    # one big core (like an MCU): both layers' 12 + 6 weights (⌈35·12/8⌉ = 53 B, ⌈35·6/8⌉ = 27 B)
    # share core 1; 5 neurons, inputs 4 + 3 are within the limits
    mcu = make_profile(memory=dict(cores=1, synaptic_sram_bytes_per_core=80, neurons_per_core=5,
                                   max_fan_in_per_core=7, other_sram_bytes=1000))
    rep = sram_report([4, 3, 2], mcu, optimizer_slots=1)
    assert rep["cores_used"] == 1 and [l["cores"] for l in rep["layers"]] == [1, 1] and rep["fits"]
    # 79 B is one byte short of both blocks: the second layer opens a second core
    short = sram_report([4, 3, 2], make_profile(memory=dict(cores=1, synaptic_sram_bytes_per_core=79,
                                                            neurons_per_core=5, max_fan_in_per_core=7)),
                        optimizer_slots=1)
    assert short["cores_used"] == 2 and short["misfit_reasons"] == ["needs 2 cores, chip has 1"]
    # no shared SRAM (Loihi): bias/state/traces live with the neurons, no activation buffer;
    # FF fits, backprop does not (its 9 B of stored activations have nowhere to go)
    loihi = sram_report([4, 3, 2], make_profile(memory=dict(other_sram_bytes=0)), optimizer_slots=1)
    assert loihi["fits"] and loihi["other_sram_bytes_used"] == 0 and loihi["activation_buffer_sram_bytes"] == 0
    assert loihi["ff_sram_bytes"] == 83 + 47
    assert not loihi["backprop"]["fits"] and loihi["backprop"]["other_sram_bytes_used"] == 9


# ----------------------------------------------------------------------------- front ends


def test_large_net_analytic_is_fast_and_readable(tmp_path):
    prof = make_profile(memory=dict(cores=128, synaptic_sram_bytes_per_core=128 * 1024, neurons_per_core=1024,
                                    max_fan_in_per_core=4096, other_sram_bytes=4 * 2**20))
    t0 = time.perf_counter()
    rep = estimate_from_layers(prof, [784, 2000, 2000, 2000, 2000], activity=0.5, input_activity=0.19,
                               num_classes=10, inference="one-pass", n_train=60000)
    assert time.perf_counter() - t0 < 1.0
    assert rep["source"] == "analytic" and len(rep["layers"]) == 4
    assert rep["backprop_sram_bytes"] > rep["ff_sram_bytes"]
    text = format_report(rep)
    assert "pJ" in text and "KiB" in text and "fits" in text and "backprop" in text
    out = plot_report(rep, tmp_path / "estimate.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["estimate.png"]  # no temp file left


def test_estimate_from_run_matches_ledger(tmp_path):
    sizes = [4, 4, 4, 4]
    led = _measure(sizes, num_classes=3, inference="one-pass", binary=False, time_steps=1, slots=1)
    (tmp_path / "config.json").write_text(json.dumps({"layer_sizes": sizes, "num_classes": 3}))
    (tmp_path / "events.json").write_text(json.dumps(led.to_dict()))
    prof = make_profile(learning=dict(optimizer="sgd_momentum", optimizer_state=True))
    rep = estimate_from_run(tmp_path, prof)
    direct = estimate(prof, layer_sizes=sizes, num_classes=3, source="measured", optimizer_slots=1,
                      events={"train": led.per_sample("train"), "infer": led.per_sample("infer")})
    assert rep["source"] == "measured" and rep["samples"] == {"train": 2, "infer": 2}
    assert rep["training"] == direct["training"] and rep["layers"] == direct["layers"]
    (tmp_path / "config.json").write_text(json.dumps({"num_classes": 3}))
    with pytest.raises(EstimateError, match="config.json: missing key 'layer_sizes'"):
        estimate_from_run(tmp_path, prof)


def test_estimate_rejects_mismatched_events():
    ev = analytic_events([4, 3, 2], activity=0.5, input_activity=0.5, num_classes=2, inference="one-pass")
    with pytest.raises(EstimateError, match="layers"):
        estimate(make_profile(), layer_sizes=[4, 3, 2, 2], events=ev, num_classes=2, source="analytic")
    with pytest.raises(EstimateError, match="source"):
        estimate(make_profile(), layer_sizes=[4, 3, 2], events=ev, num_classes=2, source="guessed")


def test_sram_follows_the_units_reported_synapses():
    """A unit reports its stored weights (Resources.synapses): all-to-all gives the default
    figures; a weight-sharing unit that stores fewer pays for fewer weight bytes."""
    from ffneuro.hw.profiles import load_profile

    prof = load_profile("cmos-45nm")                          # 8-bit weights, no optimiser state
    dense = sram_report([64, 32, 10], prof, optimizer_slots=0)
    same = sram_report([64, 32, 10], prof, optimizer_slots=0, synapses=[64 * 32, 32 * 10])
    assert same == dense
    shared = sram_report([64, 32, 10], prof, optimizer_slots=0, synapses=[288, 32 * 10])
    assert [l["weight_sram_bytes"] for l in shared["layers"]] == [288, 320]      # 8 bits each
    assert shared["layers"][0]["synapses"] == 288
    assert shared["backprop"]["gradient_sram_bytes"] < dense["backprop"]["gradient_sram_bytes"]
    with pytest.raises(EstimateError, match="synapses"):
        sram_report([64, 32, 10], prof, optimizer_slots=0, synapses=[5])
