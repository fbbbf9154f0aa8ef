"""ffneuro's NIR export read by other NIR consumers (scripts/bench_nir_consumers.py at toy
size; docs/hdf5-schema.md#checked-consumers). snntorch replays the file spike for spike;
norse, sinabs and rockpool discretise NIR's LIF differently, and each difference is
checked twice: the consumer's spikes equal ffneuro's weights run under the consumer's
stated dynamics, and with the stated cause corrected the consumer matches ffneuro.

rockpool comes with the ``nir-consumers`` extra (part of ``test``, so CI runs it); sinabs and
norse cannot be installed with their dependencies here (sinabs pins nir ≤ 1.0.4, norse
pulls torchvision and a CUDA torch) and skip unless installed with ``--no-deps``."""

from __future__ import annotations

import dataclasses
import math
import warnings

import nir
import pytest

from ffneuro.export.nir import NIRExportError, export_nir
from ffneuro.runs.load import load_run
from ffneuro.units.lif import NIR_DT



@pytest.fixture(scope="module")
def bench(scripts):
    return scripts("bench_nir_consumers")


def _exported(bench, tmp_path_factory, digits, sets: list[str], samples: int):
    """A tiny spiking run trained one epoch, exported by ffneuro and read back (a
    subtract-reset run, which ffneuro refuses, as the graph it would otherwise write);
    its input spikes and ffneuro's spikes per layer."""
    tmp = tmp_path_factory.mktemp("nir")
    small = dataclasses.replace(digits, x_train=digits.x_train[:300], y_train=digits.y_train[:300],
                                x_test=digits.x_test[:40], y_test=digits.y_test[:40])
    run = bench.build_run(sets, tmp / "run", small, epochs=1)
    _, _, net = load_run(run)
    if "units.reset=subtract" in sets:
        with pytest.raises(NIRExportError, match="NIR's LIF resets to zero"):
            export_nir(run, tmp / "m.nir")
        graph = bench.graph_ignoring_reset(net)
        assert net.layers[0].lif_spec.reset == "subtract"               # restored after the export
    else:
        export_nir(run, tmp / "m.nir")
        graph = nir.read(tmp / "m.nir")
    s_in = bench.input_spikes(net, digits, samples)
    ours = bench.ffneuro_spikes(net, s_in)
    assert all(s.sum() > 0 for s in ours)          # every layer spikes: the comparisons are not vacuous
    return graph, net, s_in, ours


@pytest.fixture(scope="module")
def dense(bench, tmp_path_factory, digits):
    return _exported(bench, tmp_path_factory, digits, ["units.neuron=lif", "units.layers=24,16", "optim.lr=0.003"], 12)


@pytest.fixture(scope="module")
def subtract(bench, tmp_path_factory, digits):
    return _exported(bench, tmp_path_factory, digits,
                     ["units.neuron=lif", "units.layers=24,16", "optim.lr=0.003", "units.reset=subtract"], 12)


@pytest.fixture(scope="module")
def conv(bench, tmp_path_factory, digits):
    return _exported(bench, tmp_path_factory, digits,
                     ["units.neuron=lif", "units.stack=conv:4:k3:p1,dense:12", "optim.lr=0.003", "units.steps=3"], 6)


def _exact(bench, ours, theirs) -> bool:
    return all(row["exact"] for row in bench.compare(ours, theirs))


def test_simulate_with_ffneuro_parameters_is_ffneuro(bench, dense, conv):
    """The reference the explanations are checked against reproduces ffneuro itself, and
    changing one convention changes the spikes (it is not a copy of the input)."""
    for _, net, s_in, ours in (dense, conv):
        assert _exact(bench, ours, bench.simulate(net, s_in))
    _, net, s_in, ours = dense
    assert not _exact(bench, ours, bench.simulate(net, s_in, reset="subtract", multi=True))


def test_snntorch_replays_the_export_exactly(bench, dense, conv):
    for graph, _, s_in, ours in (dense, conv):
        assert _exact(bench, ours, bench.run_snntorch(graph, s_in))


def test_norse_drops_r_and_matches_once_the_synapses_carry_it(bench, dense, conv):
    pytest.importorskip("norse", reason="norse not installed (pip install --no-deps norse: "
                                        "its torchvision dependency pulls a CUDA torch)")
    for graph, net, s_in, ours in (dense, conv):
        tau = float(graph.nodes["lif0"].tau.min())
        as_imported = bench.run_norse(graph, s_in)                 # at the exporter's dt
        assert not _exact(bench, ours, as_imported)
        assert sum(s.sum() for s in as_imported) < sum(s.sum() for s in ours) / 10
        # Euler step at dt with r dropped: U' = (1 − dt/τ) U + (dt/τ) I
        assert _exact(bench, bench.simulate(net, s_in, decay=1 - NIR_DT / tau, input_scale=NIR_DT / tau),
                      as_imported)
        model = bench.load_norse(graph)
        bench.scale_synapses(model, graph, tau / NIR_DT)               # r = τ/dt put back
        assert _exact(bench, ours, bench.run_norse(graph, s_in, model))
    graph, net, s_in, ours = dense                                     # norse's default dt = 1e-3 = τ: no leak
    assert _exact(bench, bench.simulate(net, s_in, decay=0.0),
                  bench.run_norse(graph, s_in, bench.load_norse(graph, dt=bench.NORSE_DEFAULT_DT)))


def test_norse_subtract_reset_reaches_lif_cells_only_when_set_on_them(bench, subtract):
    pytest.importorskip("norse", reason="norse not installed (pip install --no-deps norse: "
                                        "its torchvision dependency pulls a CUDA torch)")
    graph, net, s_in, ours = subtract
    tau = float(graph.nodes["lif0"].tau.min())
    runs = {}
    for how in ("argument", "cells"):
        model = bench.load_norse(graph, subtract=how)
        bench.scale_synapses(model, graph, tau / NIR_DT)
        runs[how] = bench.run_norse(graph, s_in, model)
    # from_nir(reset_method=...) reaches CubaLIF nodes only: LIF cells still reset to zero
    assert not _exact(bench, ours, runs["argument"])
    assert _exact(bench, bench.simulate(net, s_in, reset="zero"), runs["argument"])
    assert _exact(bench, ours, runs["cells"])


def test_sinabs_reads_tau_in_steps_and_fires_multi_spikes(bench, dense, conv):
    pytest.importorskip("sinabs", reason="sinabs not installed (pip install --no-deps sinabs pbr: "
                                         "its own requirements downgrade nir to 1.0.4)")
    graph, net, s_in, ours = dense
    tau = float(graph.nodes["lif0"].tau.min())
    as_imported = bench.run_sinabs(graph, s_in)
    assert not _exact(bench, ours, as_imported)
    assert _exact(bench, bench.simulate(net, s_in, decay=math.exp(-1 / tau), reset="subtract", multi=True),
                  as_imported)
    model = bench.load_sinabs(graph, s_in.shape[1])
    bench.sinabs_like_ffneuro(model, graph, [unit.lif_spec.beta for unit in net.layers])
    assert _exact(bench, ours, bench.run_sinabs(graph, s_in, model))
    with pytest.raises(ValueError, match="truth value of an array"):   # LIF nodes with (C, H, W) parameters
        bench.load_sinabs(conv[0], 1)


def test_sinabs_runs_a_subtract_reset_run(bench, subtract):
    pytest.importorskip("sinabs", reason="sinabs not installed (pip install --no-deps sinabs pbr: "
                                         "its own requirements downgrade nir to 1.0.4)")
    graph, net, s_in, ours = subtract
    model = bench.load_sinabs(graph, s_in.shape[1])
    bench.sinabs_like_ffneuro(model, graph, [unit.lif_spec.beta for unit in net.layers], subtract=True)
    assert _exact(bench, ours, bench.run_sinabs(graph, s_in, model))


def test_rockpool_needs_an_alias_subtracts_and_reads_dt_from_r(bench, dense, conv):
    pytest.importorskip("rockpool", reason="rockpool not installed (pip install -e '.[nir-consumers]')")
    from rockpool.nn.modules import from_nir

    graph, net, s_in, ours = dense
    with pytest.raises(AttributeError, match="tau_mem"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_nir(graph)                                                 # rockpool 3.1 reads CubaLIF's field name
    r = float(graph.nodes["lif0"].r.min())
    as_imported = bench.run_rockpool(graph, s_in)
    assert not _exact(bench, ours, as_imported) and max(s.max() for s in as_imported) > 1
    assert _exact(bench, bench.simulate(net, s_in, decay=math.exp(-1 / (1 + r)), reset="subtract", multi=True),
                  as_imported)
    model = bench.load_rockpool(graph)
    bench.rockpool_like_ffneuro(model, graph, [unit.lif_spec.beta for unit in net.layers])
    adjusted = bench.run_rockpool(graph, s_in, model)
    assert not _exact(bench, ours, adjusted)                            # its reset stays a subtraction
    assert _exact(bench, bench.simulate(net, s_in, reset="subtract", fire="ge"), adjusted)
    with pytest.raises(NotImplementedError, match="Conv2d"):
        bench.load_rockpool(conv[0])


def test_rockpool_runs_a_subtract_reset_run(bench, subtract):
    pytest.importorskip("rockpool", reason="rockpool not installed (pip install -e '.[nir-consumers]')")
    graph, net, s_in, ours = subtract
    model = bench.load_rockpool(graph)
    bench.rockpool_like_ffneuro(model, graph, [unit.lif_spec.beta for unit in net.layers])
    assert _exact(bench, ours, bench.run_rockpool(graph, s_in, model))
