"""SRAM and core mapping of weight-sharing (conv) units, by hand."""

from __future__ import annotations

import math

import pytest

from ffneuro.hw.mapping import map_conv_layer, sram_report
from tests.hw.test_estimate import make_profile

LIMITS = dict(sram_bytes_per_core=1000, neurons_per_core=25, max_fan_in_per_core=100, max_fan_out_per_core=100)


def test_whole_channels_share_a_core_when_their_positions_fit():
    # 4 channels × 10 positions, kernels of 9 weights at 8 bits: 2 channels (20 neurons) per core
    m = map_conv_layer(4, 10, 9, bits_per_synapse=8, **LIMITS)
    assert (m["tiles"], m["channels_per_core"], m["bands"], m["synaptic_copies"]) == (2, 2, 1, 4)


def test_a_channel_wider_than_a_core_is_cut_into_bands_with_kernel_copies():
    m = map_conv_layer(4, 30, 9, bits_per_synapse=8, **LIMITS)     # 30 positions > 25 neurons per core
    assert (m["tiles"], m["channels_per_core"], m["bands"], m["synaptic_copies"]) == (8, 1, 2, 8)


def test_a_kernel_wider_than_a_core_splits_into_input_groups():
    m = map_conv_layer(2, 4, 250, bits_per_synapse=8, **LIMITS)    # 250 inputs > 100 per core
    assert m["input_groups"] == 3 and m["inputs_per_core"] == 84 and m["tiles"] == 3


def test_sram_report_counts_kernels_per_channel_and_state_per_neuron():
    prof = make_profile(memory=dict(cores=100, synaptic_sram_bytes_per_core=1000, neurons_per_core=25,
                                    max_fan_in_per_core=100, other_sram_bytes=10 ** 6))
    # a conv layer: 2 input channels of 4×4 → 4 channels × 3×3 conv positions, pooled to 4×1×1; then dense 4 → 2
    conv = {"fan_in": 18, "fan_out": 4, "synapses": 4 * 18, "neurons": 36, "channels": 4, "positions": 9,
            "line_buffer_inputs": 2 * 3 * 4}
    dense = {"fan_in": 4, "fan_out": 2, "synapses": 8, "neurons": 2, "channels": 0}
    rep = sram_report([32, 4, 2], prof, optimizer_slots=0, sharing=[conv, dense])
    p = prof.precision
    l1, l2 = rep["layers"]
    assert l1["weight_sram_bytes"] == math.ceil(p.weight_bits * 72 / 8)
    assert l1["bias_sram_bytes"] == math.ceil(p.accumulator_bits * 4 / 8)          # one bias per channel
    assert l1["state_sram_bytes"] == math.ceil(p.state_bits * 36 / 8)              # per conv neuron
    assert l1["trace_sram_bytes"] == math.ceil(p.trace_bits * (32 + 36) / 8)
    assert l1["mapping"]["channels_per_core"] == 2 and l1["cores"] == 2
    assert l2["weight_sram_bytes"] == math.ceil(p.weight_bits * 8 / 8)
    assert rep["line_buffer_sram_bytes"] == math.ceil(p.activation_bits * 2 * 24 / 8)
    # without sharing information the same sizes would be mapped as all-to-all layers
    assert sram_report([32, 4, 2], prof, optimizer_slots=0)["layers"][0]["synapses"] == 32 * 4


def test_sharing_must_cover_every_layer():
    with pytest.raises(ValueError, match="one resources entry per layer"):
        sram_report([32, 4, 2], make_profile(), optimizer_slots=0, sharing=[{"channels": 0, "synapses": 8}])
