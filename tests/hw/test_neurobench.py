"""NeuroBench interchange: ffneuro's NeuroBench-named figures (from its own counts) against
NeuroBench's own metric code run on the same network and samples, and the hand-computed
figures of a network with known zeros."""

from __future__ import annotations

import sys

import pytest
import torch
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.hw.estimate import estimate_from_layers, estimate_from_run, format_report
from ffneuro.hw.neurobench_run import count_figures
from ffneuro.network import FFNetwork
from ffneuro.train.loop import train

REL = 1e-3          # the target: ffneuro and NeuroBench agree to 0.1 %


def tiny_net() -> tuple[FFNetwork, torch.Tensor, torch.Tensor]:
    """A 6-3-2 multi-pass net (concat code of 2 classes + 4 features) with signed weights
    that fix which outputs are zero, two zero weights, and one sample x = [1, 0, 2, 0]."""
    cfg = RunConfig.from_flat(layers=(3, 2), head=False)
    net = FFNetwork.from_config(cfg, 4, 2, "concat", generators=torch.Generator().manual_seed(0)).eval()
    w1 = torch.tensor([[1.0] * 6, [-1.0] * 6, [1.0] * 6])
    w1[0, 5] = 0.0                  # meets the input 0 in column 5 (data feature 4): costs nothing either way
    w2 = torch.tensor([[0.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])   # w2[0, 0] meets the non-zero h1[0]
    with torch.no_grad():
        for unit, w in zip(net.layers, (w1, w2)):
            unit.weight.copy_(w)
            unit.bias.zero_()
    return net, torch.tensor([[1.0, 0.0, 2.0, 0.0]]), torch.tensor([0])


def test_count_figures_hand_computed():
    """Per pass the first unit sees the code's one non-zero and 2 data non-zeros (3 × 3
    synops), outputs h1 = [+, 0, +]; the second sees 2 non-zeros (2 × 2), outputs [+, 0].
    Two passes (one per label)."""
    net, x, _ = tiny_net()
    nb = count_figures(net, net.prepare_input(x))
    assert nb["SynapticOperations"] == {"Effective_MACs": 2 * (9 + 4), "Effective_ACs": 0.0,
                                        "Dense": 2 * (6 * 3 + 3 * 2)}
    assert nb["ActivationSparsity"] == pytest.approx(1 - (2 + 1) / (3 + 2))
    assert nb["ConnectionSparsity"] == pytest.approx(2 / (18 + 6))
    assert nb["Footprint"] == 4 * (18 + 3 + 6 + 2)                   # float32 weights and biases
    assert nb["MembraneUpdates"] is None and nb["NeuronOperations"] is None      # no spiking unit


def test_analytic_estimate_reports_what_its_assumptions_define():
    rep = estimate_from_layers("loihi-like", [784, 500, 500, 500], activity=0.5, input_activity=0.2)
    nb = rep["neurobench"]
    head = 10 * (500 + 500)                                          # one-pass: the head reads layers 2..3
    assert nb["SynapticOperations"]["Dense"] == 784 * 500 + 2 * 500 * 500 + head
    assert nb["SynapticOperations"]["Effective_MACs"] == pytest.approx(
        0.2 * 784 * 500 + 2 * 0.5 * 500 * 500 + 0.5 * head)
    assert nb["ActivationSparsity"] == 0.5 and nb["ConnectionSparsity"] is None
    assert nb["Footprint"] == 4 * (784 * 500 + 2 * 500 * 500 + 1500 + head)
    assert "NeuroBench metrics (analytic" in format_report(rep)


def test_neurobench_command_without_neurobench_is_one_error_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "neurobench", None)             # import neurobench → ImportError
    r = CliRunner().invoke(app, ["neurobench", str(tmp_path)])
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "Traceback" not in r.output
    assert "pip install 'ffneuro[neurobench]'" in r.output


# -- against NeuroBench's own code ---------------------------------------------------------
RUNS = {
    "relu-one-pass": ["units.layers=32,32"],
    "relu-multi-pass": ["units.layers=32,32", "inference.head=false"],
    "lif": ["units.neuron=lif", "units.layers=32,32", "units.spike_encoding=latency", "units.steps=4"],
    "conv": ["units.stack=conv:8:k3:p1:pool2,dense:32"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    """Run dirs of one epoch on the digits, with their inference events counted."""
    out = {}
    for name, sets in RUNS.items():
        cfg = RunConfig().with_sets(["loop.epochs=1", "loop.entropy_probe=0", *sets])
        out[name] = tmp_path_factory.mktemp(name)
        train(cfg, data=digits, out=out[name], progress=False, count_events=True, overwrite=True)
    return out


def _close(ours, theirs, rel=REL):
    return ours == pytest.approx(theirs, rel=rel, abs=1e-9)


@pytest.mark.parametrize("name", list(RUNS))
def test_ffneuro_and_neurobench_agree(runs, name):
    pytest.importorskip("neurobench")
    from ffneuro.hw.neurobench_run import run_benchmark

    r = run_benchmark(runs[name])
    ours, theirs = r["ffneuro"], r["neurobench"]
    assert r["n_test"] == 360                                        # the digits' whole test split, as events.json
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert _close(ours["SynapticOperations"][key], theirs["SynapticOperations"][key]), key
    assert _close(ours["ActivationSparsity"], theirs["ActivationSparsity"])
    assert ours["ConnectionSparsity"] == pytest.approx(theirs["ConnectionSparsity"], abs=5e-5)  # NB rounds to 4 places
    assert ours["ClassificationAccuracy"] == pytest.approx(theirs["ClassificationAccuracy"], abs=1e-6)  # same predictions
    mirror_mem = 0
    if name == "lif":
        # Definitional differences, quantified: NeuroBench counts snntorch's membrane buffer
        # (as shaped by the last batch its neuron saw: the mirror's 16-sample check) in the
        # footprint, and a membrane update only where the membrane changed after the first step.
        mirror_mem = 2 * 16 * 32 * 4
        assert ours["MembraneUpdates"] == 2 * 4 * 32                 # every neuron, every step
        assert 0.9 * ours["MembraneUpdates"] < theirs["MembraneUpdates"] <= ours["MembraneUpdates"]
        assert theirs["SynapticOperations"]["Effective_ACs"] > 0 and theirs["SynapticOperations"]["Effective_MACs"] > 0
    assert ours["Footprint"] + mirror_mem == theirs["Footprint"]

    # The estimate of the run dir reads events.json (the same 360 samples, counted by the trainer).
    est = estimate_from_run(runs[name], "float32")["neurobench"]
    for key in ("Effective_MACs", "Effective_ACs"):
        assert _close(est["SynapticOperations"][key], theirs["SynapticOperations"][key]), key
    assert est["Footprint"] == ours["Footprint"] and est["ConnectionSparsity"] == ours["ConnectionSparsity"]
    if name == "conv":
        # Dense from fan-ins counts the zero padding of the 3×3 conv on the 8×8 maps (1 data + 10
        # label planes, 8 output channels): 64 positions × 9 window entries vs the 22² = 484 in bounds.
        conv_pad = 8 * 11 * (64 * 9 - 22 * 22)
        assert est["SynapticOperations"]["Dense"] - theirs["SynapticOperations"]["Dense"] == conv_pad
    else:
        assert _close(est["SynapticOperations"]["Dense"], theirs["SynapticOperations"]["Dense"])
    # every unit's outputs (graded or spikes, after pooling) are counted into events.json
    assert _close(est["ActivationSparsity"], theirs["ActivationSparsity"])


def test_neurobench_skips_zero_weights_ffneuro_does_not():
    """The one synaptic-operation difference: NeuroBench counts a MAC only where input and
    weight are both non-zero; ffneuro counts every weight a non-zero input reads (an
    event-driven core fetches the row before it knows the weight is zero)."""
    pytest.importorskip("neurobench")
    from ffneuro.hw.neurobench_run import benchmark

    net, x, y = tiny_net()
    theirs = benchmark(net, [0, 1], x, y)
    ours = count_figures(net, net.prepare_input(x))
    assert ours["SynapticOperations"]["Effective_MACs"] == 26
    assert theirs["SynapticOperations"]["Effective_MACs"] == 26 - 2     # w2[0, 0] × h1[0], once per pass
    assert theirs["SynapticOperations"]["Dense"] == ours["SynapticOperations"]["Dense"] == 48
    assert theirs["ActivationSparsity"] == pytest.approx(ours["ActivationSparsity"])
    assert theirs["Footprint"] == ours["Footprint"]
    assert theirs["ConnectionSparsity"] == round(ours["ConnectionSparsity"], 4)


def test_a_unit_the_mirror_cannot_reproduce_is_refused(digits):
    pytest.importorskip("neurobench")
    from ffneuro.hw.neurobench_run import NeuroBenchError, benchmark

    cfg = RunConfig().with_sets(["units.neuron=lif", "units.layers=16", "units.reset=subtract",
                                 "units.spike_encoding=latency", "units.steps=4"])
    net = FFNetwork.from_config(cfg, 64, 10, "overlay", generators=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        net.layers[0].weight.mul_(4.0)                              # spikes, so the resets differ
    with pytest.raises(NeuroBenchError, match="unit 1: NeuroBench's modules"):
        benchmark(net, [0], digits.x_test[:16], digits.y_test[:16])
