"""Latency, throughput, power, static energy and EDP (the time model of ffneuro.hw.energy),
and the opt-in bit-scaled energy model: hand-computed expectations."""

from __future__ import annotations

import dataclasses
import re

import pytest

from ffneuro.hw.energy import _phase_report, estimate, event_energies_pj, layer_time_ns
from ffneuro.hw.estimate import estimate_from_layers
from ffneuro.hw.profiles import (
    Energy, EnergyModel, Learning, Memory, Precision, Profile, ProfileError, Streaming, Time, list_profiles,
    load_profile, profile_dir,
)


def profile(*, cores=8, lanes=1, static_mw=2.0, step_ns=0.0, times=None, model=None, weight_bits=8):
    """A hand-made profile: round energies and times."""
    return Profile(
        name="hand", description="", sources={}, path="<test>",
        precision=Precision(format="fixed", weight_bits=weight_bits, weight_signed=True, scale_rule="pow2",
                            activation_bits=8, state_bits=32, accumulator_bits=32, learning_bits=8,
                            trace_bits=7, rounding="nearest"),
        memory=Memory(cores=cores, synaptic_sram_bytes_per_core=1 << 20, neurons_per_core=1024,
                      max_fan_in_per_core=4096, max_fan_out_per_core=4096, other_sram_bytes=0),
        streaming=Streaming(max_batch=1, time_steps=1, store_activations=False),
        learning=Learning(optimizer="sgd", lr_power_of_two=True, optimizer_state=False),
        energy=Energy(synop_dense_pj=1.0, synop_sparse_pj=0.5, neuron_update_active_pj=10.0,
                      neuron_update_idle_pj=4.0, weight_read_pj=2.0, weight_write_pj=3.0,
                      learning_update_pj=3.0, state_access_pj=5.0, goodness_op_pj=0.25,
                      spike_route_pj=7.0, static_power_mw=static_mw, time_per_step_ns=step_ns),
        time=Time(**({"synop_sparse_ns": 1.0, "neuron_update_ns": 5.0} if times is None else times),
                  lanes_per_core=lanes),
        energy_model=model or EnergyModel(),
    )


# ----------------------------------------------------------------------------- one layer's time


def test_a_layers_time_is_its_events_over_its_cores_and_lanes():
    p = profile(cores=8, lanes=2, times={"synop_sparse_ns": 2.0, "neuron_update_ns": 5.0, "learning_update_ns": 3.0})
    counts = {"synop_sparse": 100, "neuron_update": 10, "learning_update": 20}    # 200 + 50 + 60 = 310 ns serial
    assert layer_time_ns(counts, p, 5) == 310 / (5 * 2)
    assert layer_time_ns(counts, p, 20) == 310 / (8 * 2)       # at most the chip's 8 cores (time-multiplexed)
    assert layer_time_ns(counts, p, None) == 310 / 2           # no mapping: one core
    assert layer_time_ns(counts, profile(times={}), 5) == 0.0  # no times: not modelled


# ----------------------------------------------------------------------------- a phase


LAYERS = [{"synop_sparse": 10, "neuron_update": 4}, {"synop_sparse": 8, "neuron_update": 2}]
SIZES = [5, 4, 2]


def test_phase_latency_power_static_and_edp_by_hand():
    r = _phase_report(LAYERS, SIZES, profile(), learning_steps=0.0, layer_cores=[1, 2])
    # layer 1: 10 × 0.5 + 4 × 10 = 45 pJ; 10 × 1 + 4 × 5 = 30 ns on 1 core; static 2 mW × 30 ns = 60 pJ
    # layer 2: 8 × 0.5 + 2 × 10 = 24 pJ; (8 + 10) / 2 cores = 9 ns; static 18 pJ
    l1, l2 = r["layers"]
    assert (l1["energy_pj"], l1["time_ns"], l1["static_energy_pj"]) == (45.0, 30.0, 60.0)
    assert (l2["energy_pj"], l2["time_ns"], l2["static_energy_pj"]) == (24.0, 9.0, 18.0)
    assert l1["latency_s"] == pytest.approx(30e-9) and l1["samples_per_s"] == pytest.approx(1 / 30e-9)
    assert l1["power_w"] == pytest.approx(105 / 30 * 1e-3)     # (45 + 60) pJ / 30 ns = 3.5 mW
    assert l1["edp_pj_s"] == pytest.approx(105 * 30e-9)
    # the phase: layers in sequence, 39 ns; static 2 × 39 = 78 pJ; 45 + 24 + 78 = 147 pJ
    assert r["time_ns_per_sample"] == r["event_time_ns_per_sample"] == 39.0
    assert r["step_time_ns_per_sample"] == 0.0
    assert r["static_energy_pj"] == r["static_energy_pj_per_sample"] == 78.0
    assert r["energy_pj_per_sample"] == 147.0
    assert r["latency_s"] == pytest.approx(39e-9)
    assert r["samples_per_s"] == pytest.approx(1 / 39e-9)
    assert r["power_w"] == pytest.approx(147 / 39 * 1e-3)
    assert r["edp_pj_s"] == pytest.approx(147 * 39e-9)
    assert r["pipelined_samples_per_s"] == pytest.approx(1e9 / 30)   # the slowest layer
    assert sum(layer["static_energy_pj"] for layer in r["layers"]) == r["static_energy_pj"]


def test_a_tick_longer_than_the_events_bounds_the_latency():
    # steps = layer 1's neuron updates / its width = 4 / 4 = 1; one 100 ns tick > 39 ns of events
    r = _phase_report(LAYERS, SIZES, profile(step_ns=100.0), learning_steps=0.0, layer_cores=[1, 2])
    assert r["step_time_ns_per_sample"] == 100.0 and r["event_time_ns_per_sample"] == 39.0
    assert r["time_ns_per_sample"] == 100.0 and r["static_energy_pj"] == 200.0
    assert r["energy_pj_per_sample"] == 45 + 24 + 200
    assert r["power_w"] == pytest.approx(269 / 100 * 1e-3)
    assert [layer["static_energy_pj"] for layer in r["layers"]] == [60.0, 18.0]   # their own events' time


def test_no_time_figures_means_latency_not_modelled():
    r = _phase_report(LAYERS, SIZES, profile(times={}), learning_steps=0.0, layer_cores=[1, 2])
    assert r["latency_s"] == 0.0 and r["static_energy_pj"] == 0.0 and r["edp_pj_s"] == 0.0
    assert r["samples_per_s"] is None and r["power_w"] is None and r["pipelined_samples_per_s"] is None
    assert all(layer["power_w"] is None for layer in r["layers"])


def test_estimate_divides_each_layer_over_the_cores_the_mapping_gives_it():
    p = profile(cores=128)
    p = dataclasses.replace(p, memory=dataclasses.replace(p.memory, synaptic_sram_bytes_per_core=16))
    # 16-byte cores of 8-bit weights: 16 synapses per core; layer 1 has 20, layer 2 has 8
    report = estimate(p, layer_sizes=SIZES, events={"train": LAYERS, "infer": LAYERS}, num_classes=2,
                      source="analytic")
    cores = [layer["cores"] for layer in report["layers"]]
    assert cores[0] >= 2
    for phase in ("training", "inference"):
        for layer, counts, n in zip(report[phase]["layers"], LAYERS, cores):
            serial = counts["synop_sparse"] * 1.0 + counts["neuron_update"] * 5.0
            assert layer["time_ns"] == serial / n
    assert report["time_table_ns"]["synop_sparse"] == 1.0 and report["time_table_ns"]["lanes_per_core"] == 1


def test_loihi_latency_by_hand():
    """784-500-500-500 on loihi-like, training layer 2 (500 → 500 on 2 cores): 250 000 spike
    ops × 3.5 ns + 250 000 weight updates × 7 ns + 1000 neuron updates and 1000 goodness terms
    × 8.4 ns = 2 641 800 ns, over 2 cores = 1 320 900 ns."""
    r = estimate_from_layers("loihi-like", [784, 500, 500, 500])
    assert r["layers"][1]["cores"] == 2
    layer = r["training"]["layers"][1]
    ev = layer["events"]
    assert (ev["synop_dense"], ev["learning_update"], ev["neuron_update"], ev["goodness_op"]) == (
        250000, 250000, 1000, 1000)
    assert layer["time_ns"] == pytest.approx(1320900.0)
    tr = r["training"]
    assert tr["latency_s"] == pytest.approx(sum(L["time_ns"] for L in tr["layers"]) * 1e-9)
    assert tr["power_w"] == pytest.approx(tr["energy_pj_per_sample"] / tr["latency_s"] * 1e-12)
    assert tr["samples_per_s"] == pytest.approx(1 / tr["latency_s"])


def test_every_shipped_profile_models_time_or_says_it_does_not():
    """#16's target: non-zero, cited time figures, or an explicit "not published" (assumed)."""
    for name in list_profiles():
        p = load_profile(name)
        time_keys = [k for k in p.sources if k.startswith("time.")]
        assert len(time_keys) == 10, name
        modelled = p.energy.time_per_step_ns > 0 or any(
            getattr(p.time, f.name) > 0 for f in dataclasses.fields(p.time) if f.name != "lanes_per_core")
        if not modelled:
            assert all(p.sources[k].confidence == "assumed" and p.sources[k].note for k in time_keys), name
        for key in ("energy.static_power_mw", *time_keys):
            assert p.sources[key].source != "not given in the profile", (name, key)   # written, not defaulted


def test_loihi_times_are_the_cited_ones():
    p = load_profile("loihi-like")
    assert (p.time.synop_sparse_ns, p.time.neuron_update_ns, p.time.spike_route_ns) == (3.5, 8.4, 2.1)
    assert "Table 2" in p.sources["time.synop_sparse_ns"].source
    assert p.sources["time.learning_update_ns"].confidence == "assumed"


# ----------------------------------------------------------------------------- optional sections


def test_a_profile_without_the_new_sections_loads_with_defaults(tmp_path):
    text = (profile_dir() / "loihi-like.toml").read_text()
    text = re.split(r"\n\[time\]", text)[0] + "\n"                  # drop [time] and [energy_model]
    path = tmp_path / "old.toml"
    path.write_text(text)
    p = load_profile(str(path))
    assert p.time == Time() and p.energy_model == EnergyModel()
    assert p.sources["time.synop_sparse_ns"].confidence == "assumed"
    r = estimate_from_layers(p, [20, 10])
    assert r["inference"]["latency_s"] == 0.0 and r["inference"]["power_w"] is None


# ----------------------------------------------------------------------------- bit-scaled energy


def bit_scaled(tmp_path):
    path = tmp_path / "bits.toml"
    path.write_text('name = "bits"\nextends = "cmos-45nm"\n[energy_model]\n'
                    'model = { value = "bit-scaled", source = "test", confidence = "assumed", note = "opt in" }\n')
    return load_profile(str(path))


def with_weight_bits(p, bits):
    return dataclasses.replace(p, precision=dataclasses.replace(p.precision, weight_bits=bits))


def test_bit_scaled_coefficients_by_hand(tmp_path):
    """Horowitz 45 nm coefficients at cmos-45nm's widths (w = a = 8, accumulator = state = 32)."""
    e = event_energies_pj(bit_scaled(tmp_path))
    assert e["synop_dense_pj"] == pytest.approx(0.0030273 * 8 * 8 + 0.003125 * 32)   # 0.2937 (table: 0.3)
    assert e["synop_sparse_pj"] == pytest.approx(0.1)
    assert e["weight_read_pj"] == pytest.approx(12.5) and e["weight_write_pj"] == pytest.approx(12.5)
    assert e["state_access_pj"] == pytest.approx(10.0)
    assert e["learning_update_pj"] == pytest.approx(0.0030273 * 64 + 0.003125 * 8)
    assert e["neuron_update_active_pj"] == 0.2                                        # from the table


def test_energy_per_synaptic_op_grows_with_weight_bits_only_when_bit_scaled(tmp_path):
    bits = [1, 2, 4, 8, 16]
    scaled, table = bit_scaled(tmp_path), load_profile("cmos-45nm")
    for kinds in (("synop_dense_pj",), ("synop_sparse_pj", "weight_read_pj")):
        per_op = [sum(event_energies_pj(with_weight_bits(scaled, b))[k] for k in kinds) for b in bits]
        assert all(a < b for a, b in zip(per_op, per_op[1:])), (kinds, per_op)
        flat = [sum(event_energies_pj(with_weight_bits(table, b))[k] for k in kinds) for b in bits]
        assert len(set(flat)) == 1, (kinds, flat)
    low, high = (estimate_from_layers(with_weight_bits(scaled, b), [784, 100, 100]) for b in (2, 16))
    assert low["inference"]["energy_pj_per_sample"] < high["inference"]["energy_pj_per_sample"]
    assert low["energy_model"] == "bit-scaled" and low["energy_table_pj"]["synop_dense"] < 0.2


def test_bit_scaled_without_coefficients_is_refused(tmp_path):
    path = tmp_path / "nocoef.toml"
    path.write_text('name = "nocoef"\nextends = "loihi-like"\n[energy_model]\n'
                    'model = { value = "bit-scaled", source = "test", confidence = "assumed" }\n')
    with pytest.raises(ProfileError, match=r"energy_model\.int_add_pj_per_bit"):
        load_profile(str(path))
