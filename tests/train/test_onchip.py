"""Training under a fixed-point profile: weights stay on the chip's grid, updates follow
its precision and rounding, its batch limit holds, and no optimiser state exists."""


import pytest
import torch

from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.functional.fixed import chip_lr, fixed_update_
from ffneuro.hw.chip import ChipSpec, chip_spec
from ffneuro.hw.profiles import load_profile
from ffneuro.functional.quant import FixedPoint
from ffneuro.train.loop import train


def spec(**kw):
    base = dict(weight_bits=8, weight_signed=True, scale_rule="pow2", activation_bits=8, accumulator_bits=24,
                learning_bits=8, rounding="nearest", lr_power_of_two=True, optimizer_state=False, max_batch=1)
    base.update(kw)
    return ChipSpec(**base)


def test_chip_spec_from_profiles():
    assert chip_spec(load_profile("float32")) is None
    loihi = chip_spec(load_profile("loihi-like"))
    # binary spikes: a graded activity is a rate code over 32 steps -> floor(log2(33)) = 5 bits
    assert loihi.activation_bits == 5 and loihi.weight_bits == 8 and loihi.rounding == "stochastic"
    assert loihi.max_batch == 1 and not loihi.optimizer_state
    assert chip_lr(0.001, loihi) == 2.0 ** -10


def test_nearest_rounding_drops_sub_lsb_updates_stochastic_keeps_them_on_average():
    fmt = FixedPoint(8, True, 2.0 ** -6)
    w = torch.zeros(200, 200)
    grad = torch.full((200, 200), -0.3 * fmt.step)      # an update of +0.3 LSB at lr 1
    fixed_update_(w, grad, fmt, 1.0, spec(rounding="nearest"), None)
    assert torch.count_nonzero(w) == 0
    w = torch.zeros(200, 200)
    fixed_update_(w, grad, fmt, 1.0, spec(rounding="stochastic"), torch.Generator().manual_seed(0))
    assert set(torch.unique(w / fmt.step).tolist()) == {0.0, 1.0}
    assert (w / fmt.step).mean().item() == pytest.approx(0.3, abs=0.01)


def test_updates_saturate_and_respect_learning_precision():
    fmt = FixedPoint(4, True, 1.0)                        # integers in [-8, 7]
    w = torch.tensor([[6.0, -7.0, 0.0]])
    grad = torch.tensor([[-5.0, 5.0, -100.0]])           # +5, -5, +100 LSB
    fixed_update_(w, grad, fmt, 1.0, spec(weight_bits=4, learning_bits=3), None)
    # learning precision 3 bits: at most ±3 LSB per update; weights saturate at 7 / -8
    assert w.tolist() == [[7.0, -8.0, 3.0]]


def test_sparse_support_path_equals_dense_path():
    g = torch.Generator().manual_seed(0)
    fmt = FixedPoint(8, True, 2.0 ** -7)
    w0 = FixedPoint(8, True, 2.0 ** -7).fake_quant(torch.randn(50, 40, generator=g) * 0.1)
    dz = torch.randn(3, 50, generator=g) * (torch.rand(3, 50, generator=g) > 0.6)
    x = torch.randn(3, 40, generator=g) * (torch.rand(3, 40, generator=g) > 0.7)
    grad = dz.t() @ x
    rows = dz.ne(0).any(0).nonzero().view(-1)
    cols = x.ne(0).any(0).nonzero().view(-1)
    dense, sparse = w0.clone(), w0.clone()
    fixed_update_(dense, grad, fmt, 0.05, spec(), None)
    fixed_update_(sparse, grad, fmt, 0.05, spec(), None, rows, cols)
    assert rows.numel() * cols.numel() < 0.75 * grad.numel()   # the sparse path was taken
    assert torch.equal(dense, sparse) and not torch.equal(dense, w0)


def test_training_under_profile_keeps_weights_on_grid_and_honours_limits():
    data = load_dataset("digits")
    cfg = RunConfig.from_flat(layers=(32, 32), epochs=1, batch_size=64)
    metrics = train(cfg, data=data, progress=False, profile="cmos-45nm")
    assert metrics["batch_size_applied"] == 16           # cmos-45nm learns from 16 samples at a time
    assert metrics["estimate"]["training"]["energy_pj_per_sample"] > 0


@pytest.mark.slow
def test_trained_chip_network_is_integer(tmp_path):
    from ffneuro.runs.load import load_run

    data = load_dataset("digits")
    train(RunConfig.from_flat(layers=(32, 32), epochs=2, batch_size=64), data=data, progress=False,
          profile="loihi-like", out=tmp_path / "run")
    _, saved, net = load_run(tmp_path / "run")
    assert saved["profile_name"] == "loihi-like"
    for layer in net.layers:
        fmt = layer.weight_fmt()
        q = layer.weight / fmt.step
        assert torch.equal(q, torch.round(q)) and q.min() >= fmt.qmin and q.max() <= fmt.qmax
        assert fmt.exponent is not None                  # loihi-like: power-of-two weight exponent
        b = layer.bias / layer.bias_fmt().step
        assert torch.equal(b, torch.round(b))
        assert layer.optimizer.state_dict()["state"] == {}   # no optimiser state on the chip


def test_profile_run_without_event_counting_still_reports_the_memory_check():
    data = load_dataset("digits")
    m = train(RunConfig.from_flat(layers=(16,), epochs=1, batch_size=16).validate(), data=data, progress=False,
              profile="cmos-45nm", count_events=False)
    assert "estimate" not in m and m["sram_fits"] is True


def test_sparse_path_with_stochastic_rounding_and_int_table_equals_a_plain_fancy_index_update():
    """The block update (rows gathered and written back whole) draws the same random
    numbers, in the same order, as the plain 2-D fancy-index form of the rule, and keeps
    the integer table in step with the weights."""
    g = torch.Generator().manual_seed(1)
    fmt = FixedPoint(8, True, 2.0 ** -7)
    w0 = fmt.fake_quant(torch.randn(60, 30, generator=g) * 0.1)
    grad = torch.randn(60, 30, generator=g)
    rows, cols = torch.tensor([2, 5, 17, 40]), torch.tensor([0, 3, 29])
    chip = spec(rounding="stochastic", learning_bits=4)
    fast, table = w0.clone(), torch.round(w0 / fmt.step)
    fixed_update_(fast, grad, fmt, 0.3, chip, torch.Generator().manual_seed(7), rows, cols, table)
    plain = w0.clone()                       # the rule written out on the (rows × cols) block
    sub = (rows.view(-1, 1), cols.view(1, -1))
    u = torch.rand((4, 3), generator=torch.Generator().manual_seed(7))
    lsb = (grad[sub] * (-0.3 / fmt.step) + u).floor().clamp(-7, 7)
    plain[sub] = (torch.round(plain[sub] / fmt.step) + lsb).clamp(fmt.qmin, fmt.qmax) * fmt.step
    assert torch.equal(fast, plain)
    assert torch.equal(table * fmt.step, fast)
    assert not torch.equal(fast, w0)


@pytest.mark.parametrize("rule, factor", [("sum", 16), ("sqrt", 4)])
def test_batch_rule_scales_the_rate_of_a_held_batch_exactly(rule, factor, tmp_path):
    """batch_rule sum (sqrt) at rate r is the mean rule at r·B (r·√B): the same weights, bit
    for bit, after ten steps of a 16-sample chip (rates are powers of two: the chip shifts)."""
    import dataclasses

    from safetensors.torch import load_file

    full = load_dataset("digits")
    data = dataclasses.replace(full, x_train=full.x_train[:160], y_train=full.y_train[:160])
    base = RunConfig.from_flat(data="digits", layers=(32, 32), epochs=1, batch_size=16, eval_every=0, head=False)

    def weights(name, **flat):
        train(base.with_flat(**flat), data=data, progress=False, profile="cmos-45nm", out=tmp_path / name)
        return {k: v for k, v in load_file(tmp_path / name / "checkpoint.safetensors").items() if "synapse" in k}

    scaled = weights("scaled", batch_rule=rule, onchip_lr=2.0 ** -4)
    mean = weights("mean", batch_rule="mean", onchip_lr=2.0 ** -4 * factor)
    unscaled = weights("unscaled", batch_rule="mean", onchip_lr=2.0 ** -4)
    assert scaled and scaled.keys() == mean.keys()
    assert all(torch.equal(scaled[k], mean[k]) for k in scaled)
    assert not all(torch.equal(scaled[k], unscaled[k]) for k in scaled)


def test_shadow_weights_learn_below_the_weight_grid_and_the_chip_computes_with_them_rounded(tmp_path):
    """hardware.shadow_bits: updates land on a finer shadow; the forward, the export and
    the resumed run use the shadow rounded to the profile's weight format."""
    import numpy as np

    import dataclasses

    from ffneuro.export import golden
    from ffneuro.export.hdf5 import export_run
    from ffneuro.runs.load import load_run

    full = load_dataset("digits")
    data = dataclasses.replace(full, x_train=full.x_train[:200], y_train=full.y_train[:200])
    cfg = RunConfig.from_flat(data="digits", layers=(40, 40), epochs=1, batch_size=1, eval_every=0)
    m = train(cfg.with_flat(shadow_bits=10), data=data, progress=False, profile="akida-like", out=tmp_path / "run")
    _, saved, net = load_run(tmp_path / "run")
    chip = net.chip
    assert chip.shadow_bits == 10 and chip.weight_bits == 4
    for layer in net.layers:
        syn = layer.synapse
        fine = syn.learn_fmt(chip)
        assert fine.step == float(syn.w_step) / 2 ** 6                     # 10 − 4 bits finer, same range
        codes = syn.weight.detach() / fine.step                             # (per-layer step: float32 codes)
        assert float((codes - torch.round(codes)).abs().max()) < 1e-3       # on the shadow's grid …
        coarse = syn.weight.detach() / float(syn.w_step)
        assert float((coarse - torch.round(coarse)).abs().gt(0.01).float().mean()) > 0.1   # … and off the weights' grid
        table = layer.int_weight()
        assert torch.equal(table, torch.round(coarse).clamp(-8, 7))         # what the chip computes with
    # a 4-bit word widened to 10 bits: the weight SRAM grows 2.5×
    plain = train(cfg, data=data, progress=False, profile="akida-like")
    words = [layer["weight_sram_bytes"] for layer in m["estimate"]["layers"]]
    assert m["estimate"]["memory"]["weight_word_bits"] == 10
    assert words == [(a * b * 10 + 7) // 8 for a, b in zip([74, 40], [40, 40])]
    assert [layer["weight_sram_bytes"] for layer in plain["estimate"]["layers"]] == \
        [(a * b * 4 + 7) // 8 for a, b in zip([74, 40], [40, 40])]
    # the export holds the 4-bit tables, and the golden replay reproduces ffneuro's inference
    export_run(tmp_path / "run", tmp_path / "net.h5", vectors=4)
    model, bad = golden.read_model(tmp_path / "net.h5")
    assert bad == []
    for layer, unit in zip(model.layers, net.layers):
        assert np.array_equal(layer.weight, unit.int_weight().numpy().astype(np.int64))
        assert layer.weight.min() >= -8 and layer.weight.max() <= 7
    assert golden.verify(tmp_path / "net.h5")["ok"]


@pytest.mark.parametrize("bits", [4, 2, 25])
def test_shadow_narrower_than_the_weights_is_refused(bits):
    data = load_dataset("digits")
    cfg = RunConfig.from_flat(layers=(8,), epochs=1, shadow_bits=bits) if bits <= 24 else None
    if cfg is None:
        with pytest.raises(ValueError, match="shadow_bits"):
            RunConfig.from_flat(layers=(8,), epochs=1, shadow_bits=bits).validate()
        return
    with pytest.raises(ValueError, match="wider than the profile's 4-bit weights"):
        train(cfg, data=data, progress=False, profile="akida-like")


def test_shadow_without_a_profile_is_refused():
    with pytest.raises(ValueError, match="needs a fixed-point profile"):
        train(RunConfig.from_flat(layers=(8,), epochs=1, shadow_bits=8), data=load_dataset("digits"), progress=False)


@pytest.mark.parametrize("neuron, rule, batch, expected", [
    ("lif", "sqrt", 16, "multiplies it by √16"),
    ("lif", "sum", 8, "multiplies it by 8"),
    ("lif", "mean", 16, None),       # the rule its rate was tuned with
    ("lif", "sqrt", 1, None),        # a batch-1 chip: every rule is the same
    ("relu", "sqrt", 16, None),      # graded units were tuned under sqrt
])
def test_a_spiking_network_on_a_batch_holding_chip_is_warned_off_other_rules(neuron, rule, batch, expected):
    from ffneuro.units.lif import batch_rule_note
    note = batch_rule_note(neuron, rule, batch)
    assert note is None if expected is None else (expected in note and "hardware.batch_rule=mean" in note)


def test_train_logs_the_batch_rule_warning_once_for_a_spiking_chip_run(caplog):
    cfg = RunConfig.from_flat(neuron="lif", layers=(20,), batch_size=16, epochs=1, entropy_probe=0)
    with caplog.at_level("WARNING", logger="ffneuro.train.loop"):
        train(cfg, progress=False, profile="cmos-45nm", stop_after=0)
    warned = [r.getMessage() for r in caplog.records if "batch_rule" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("warning: spiking units on a chip holding 16 samples")
