"""Spiking FF layers: LIF dynamics, encoders, goodness on rates, locality, events, NIR."""

import warnings

import pytest
import torch
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.config import TrainConfig
from ffneuro.data import load_dataset
from ffneuro.events import forward_events
from ffneuro.layers import UnitSpec
from ffneuro.spiking import FFSpiking, LIFSpec, direct_encode, latency_encode, rate_encode
from ffneuro.trainer import build_network, load_run, step_rows, train, train_step

runner = CliRunner()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def unit(n_in=1, n_out=1, beta=0.5, threshold=1.0, reset="zero"):
    u = FFSpiking(n_in, n_out, UnitSpec(theta=1.0), LIFSpec(beta, threshold, reset),
                  generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        u.weight.fill_(1.0)
        u.bias.zero_()
    return u


def test_lif_trajectory_matches_the_documented_equation():
    # U'[t] = 0.5 U[t-1] + I[t]: 0.6, 0.9, 1.05 (spike, reset to 0), 0, 1.2 (spike, 0), 0.3
    current = torch.tensor([0.6, 0.6, 0.6, 0.0, 1.2, 0.3]).view(6, 1, 1)
    assert unit()(current).view(-1).tolist() == [0, 0, 1, 0, 1, 0]
    # reset by subtraction keeps the excess: 1.05 -> 0.05, 0.025, 1.2125 (spike) -> 0.2125, 0.40625
    assert unit(reset="subtract")(current).view(-1).tolist() == [0, 0, 1, 0, 1, 0]
    assert unit(beta=1.0)(torch.full((4, 1, 1), 0.4)).view(-1).tolist() == [0, 0, 1, 0]   # 0.4, 0.8, 1.2 -> 0, 0.4


def test_encoders():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.2, 0.7, 0.0]])
    r = rate_encode(x, 4000, g)
    assert r.shape == (4000, 1, 3) and set(r.unique().tolist()) <= {0.0, 1.0}
    assert r.mean(0).view(-1).tolist() == pytest.approx([0.2, 0.7, 0.0], abs=0.02)
    lat = latency_encode(torch.tensor([[1.0, 0.5, 0.0]]), 5)
    assert lat.sum(0).view(-1).tolist() == [1, 1, 0]                     # one spike per non-zero input
    assert lat[:, 0, 0].argmax() == 0 and lat[:, 0, 1].argmax() == 2       # brighter fires earlier
    assert torch.equal(direct_encode(x, 3)[2], x)


def test_goodness_on_firing_rates_hand_computed():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).view(4, 1, 2)   # rates 0.5, 0.25
    assert unit(1, 2).goodness(s).item() == pytest.approx(0.5 ** 2 + 0.25 ** 2)


def test_training_is_local_and_streams(digits):
    cfg = TrainConfig(neuron="lif", layers=(20, 20, 20), batch_size=16, steps=4, algo="cff", gamma="all").validate()
    gen = torch.Generator().manual_seed(0)
    net = build_network(cfg, digits, gen)
    seen = []
    for i, layer in enumerate(net.layers):          # no unit may receive gradient from another's loss
        layer.weight.register_hook(lambda g, i=i: seen.append(i))
    before = [layer.weight.detach().clone() for layer in net.layers]
    train_step(net, cfg, net.prepare_input(digits.x_train[:16]), digits.y_train[:16], [0, 1, 2], gen)
    assert seen == [0, 1, 2]                         # each unit's hook fired once, for its own loss
    assert all(layer.weight.grad is None for layer in net.layers)
    assert all(not torch.equal(b, layer.weight) for b, layer in zip(before, net.layers))


def test_events_count_actual_spikes():
    g = torch.Generator().manual_seed(0)
    s = rate_encode(torch.rand(3, 10, generator=g), 5, g)       # (5, 3, 10) spikes
    out = torch.zeros(5, 3, 7)
    ev = forward_events(step_rows(s), step_rows(out), binary_input=True)
    assert ev["synop_sparse"] == s.sum().item() * 7 and ev["synop_dense"] == 0
    assert ev["neuron_update"] == 5 * 3 * 7                    # every neuron, every step


def test_short_digits_run_learns(digits):
    # measured: 6.9 % multi-pass, 10.8 % one-pass (chance: 90 %)
    m = train(TrainConfig(neuron="lif", layers=(200, 200), epochs=10, lr=3e-3, steps=8, entropy_probe=0).validate(),
              data=digits, progress=False)
    assert m["test_error"]["multi_pass"] < 15.0 and m["test_error"]["one_pass"] < 15.0


def test_nir_export_loads_in_snntorch_and_spikes_identically(tmp_path, digits):
    from snntorch.import_nir import import_from_nir
    import nir

    out = tmp_path / "run"
    train(TrainConfig(neuron="lif", layers=(40, 30), epochs=1, lr=3e-3, entropy_probe=0).validate(), out=out,
          data=digits, progress=False)
    r = runner.invoke(app, ["export", str(out), "--format", "nir", "-o", str(tmp_path / "m.nir")])
    assert r.exit_code == 0, r.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = import_from_nir(nir.read(tmp_path / "m.nir"))
    _, _, net = load_run(out)
    s_in = net.to_spikes(net.encoding.encode(digits.x_test[:20], digits.y_test[:20]), torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = s_in
        for layer in net.layers:
            h = layer(h)
        state, theirs = None, []
        for t in range(s_in.shape[0]):
            o, state = model(s_in[t], state)
            theirs.append(o)
    assert h.sum() > 0 and torch.equal(torch.stack(theirs), h)
    r = runner.invoke(app, ["analyze", str(out), "--probe", "100"])      # spiking runs add rasters
    assert r.exit_code == 0, r.output
    assert (out / "analysis" / "spikes.png").stat().st_size > 500


def test_cli_errors_for_what_spiking_runs_cannot_do(tmp_path, digits):
    r = runner.invoke(app, ["train", "--neuron", "lif", "--layers", "8", "--epochs", "1", "--profile", "loihi-like"])
    assert r.exit_code == 1 and "spiking layers cannot train under a fixed-point profile" in r.output
    out = tmp_path / "graded"
    train(TrainConfig(layers=(8,), epochs=1).validate(), out=out, data=digits, progress=False)
    r = runner.invoke(app, ["export", str(out), "--format", "nir", "-o", str(tmp_path / "x.nir")])
    assert r.exit_code == 1 and "NIR export needs a spiking run" in r.output


def test_eligibility_rule_equals_bptt_for_one_step():
    # With T = 1 the factorised traces are exact: ψ̄ = ψ(U' − θ), ε̄ = x, so the online
    # rule's update must equal autograd's through snntorch's fast-sigmoid surrogate.
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 8, 12, generator=g) < 0.5).float()
    units = []
    for learning in ("bptt", "eligibility"):
        spec = UnitSpec(theta=0.5, optimizer="sgd", lr=0.5, momentum=0.0)
        u = FFSpiking(12, 6, spec, LIFSpec(0.9, 0.3, "zero", "fast_sigmoid", learning),
                      generator=torch.Generator().manual_seed(3), steps=1)
        r = u.local_step(x)
        units.append((u, r))
    (a, ra), (b, rb) = units
    assert torch.equal(ra.h, rb.h) and ra.loss == pytest.approx(rb.loss)
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)
    assert not torch.equal(a.weight, FFSpiking(12, 6, UnitSpec(), LIFSpec(), generator=torch.Generator().manual_seed(3)).weight)


def test_eligibility_rule_learns_the_digits(digits):
    # measured: 6.4 % multi-pass, 8.1 % one-pass (BPTT: 6.9 %, 10.8 %)
    m = train(TrainConfig(neuron="lif", spike_learning="eligibility", layers=(200, 200), epochs=10, lr=3e-3,
                          entropy_probe=0).validate(), data=digits, progress=False)
    assert m["test_error"]["multi_pass"] < 15.0 and m["test_error"]["one_pass"] < 15.0
