"""Conv units (units/conv.py) and channel-wise competitive learning: hand-computed
maths, shapes, locality, mixed stacks, schedules, the competitive predictor and run-dir
round trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ffneuro.config import ConfigError, RunConfig
from ffneuro.config.run import preset
from ffneuro.config.sections import LayerSpec
from ffneuro.evaluate import evaluate_run
from ffneuro.functional.encoding import LabelEncoding
from ffneuro.functional.goodness import competitive_loss, competitive_split, group_goodness
from ffneuro.network import FFNetwork, default_inference_layers
from ffneuro.runs.load import load_run
from ffneuro.train.loop import train
from ffneuro.units.base import UnitSpec
from ffneuro.units.conv import FFConv
from ffneuro.units.stack import unit_shapes

CONV_STACK = "conv:10:k3:p1,conv:20:k3:p1:g10:pool2"
CWC = [f"units.stack={CONV_STACK}", "units.loss=cwc", "units.norm=none", "units.batch_norm=true",
       "optim.lr=0.01", "loop.entropy_probe=0"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- pure maths ---------------------------------------------------------------------------
def test_group_goodness_of_feature_maps_by_hand():
    h = torch.zeros(1, 4, 2, 2)
    h[0, 0] = 1.0            # group 0: channels 0, 1 → mean of 4 ones and 4 zeros = 0.5
    h[0, 3, 0, 0] = 4.0      # group 1: channels 2, 3 → 16 / 8 = 2
    assert torch.equal(group_goodness(h, 2), torch.tensor([[0.5, 2.0]]))
    with pytest.raises(ValueError, match="equal groups"):
        group_goodness(h, 3)


def test_competitive_loss_is_the_cross_entropy_of_group_goodness():
    g = torch.tensor([[1.0, 3.0, 0.5], [2.0, 0.0, 0.0]])
    y = torch.tensor([1, 2])
    by_hand = -(math.log(math.exp(3) / (math.exp(1) + math.exp(3) + math.exp(0.5)))
                + math.log(1 / (math.exp(2) + 2))) / 2
    assert float(competitive_loss(g, y)) == pytest.approx(by_hand, rel=1e-6)
    assert float(competitive_loss(2 * g, y, temperature=2.0)) == pytest.approx(by_hand, rel=1e-6)
    pos, neg = competitive_split(g, y)
    assert torch.equal(pos, torch.tensor([3.0, 0.0])) and torch.allclose(neg, torch.tensor([0.75, 1.0]))


def test_label_planes_spread_the_code_over_the_whole_image():
    enc = LabelEncoding("planes", 3, scale=2.0)
    x = torch.rand(2, 1, 4, 5)
    out = enc.encode(x, torch.tensor([2, 0]))
    assert out.shape == (2, 4, 4, 5) and torch.equal(out[:, :1], x)
    assert torch.all(out[0, 3] == 2.0) and torch.all(out[0, 1:3] == 0) and torch.all(out[1, 1] == 2.0)
    coded = enc.coded(x, [torch.tensor([2, 0]), torch.tensor([1, 1])])
    assert torch.equal(coded[:2], out) and torch.all(coded[2:, 2] == 2.0)
    assert torch.allclose(enc.encode_neutral(x)[:, 1:], torch.full((2, 3, 4, 5), 2.0 / 3))


# -- the unit -----------------------------------------------------------------------------
def test_conv_unit_forward_is_conv_relu_pool_batchnorm():
    unit = FFConv((3, 8, 8), 4, UnitSpec(norm="none", relu_grad="standard"), generator=gen(), kernel=3, padding=1,
                  groups=1, pool=2, batch_norm=True)
    unit.eval()
    with torch.no_grad():
        unit.bn.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        unit.bn.running_var.copy_(torch.tensor([1.0, 2.0, 0.5, 4.0]))
        unit.bn.weight.copy_(torch.tensor([1.0, -1.0, 2.0, 0.5]))
    x = torch.rand(2, 3, 8, 8, generator=gen(1))
    z = F.max_pool2d(F.relu(F.conv2d(x, unit.weight, unit.bias, padding=1)), 2)
    a = unit.bn.weight / torch.sqrt(unit.bn.running_var + unit.bn.eps)          # the folded per-channel scale
    b = unit.bn.bias - a * unit.bn.running_mean                                # and bias
    expected = z * a[None, :, None, None] + b[None, :, None, None]
    assert torch.allclose(unit(x), expected, atol=1e-6)
    assert unit.out_shape == (4, 4, 4) and unit(x.flatten(1)).shape == (2, 4, 4, 4)


def test_conv_unit_shapes_and_resources():
    unit = FFConv((10, 16, 16), 20, UnitSpec(), generator=gen(), kernel=3, stride=1, padding=0, groups=10, pool=2)
    assert unit.out_shape == (20, 7, 7) and unit.out_features == 20 * 49
    r = unit.resources()
    assert r.synapses == 20 * 1 * 9 and r.fan_in == 9 and r.neurons == 20 * 14 * 14
    assert unit_shapes((LayerSpec("conv", 20, kernel=3, groups=10, pool=2), LayerSpec("dense", 5)),
                       (10, 16, 16)) == [(10, 16, 16), (20, 7, 7), (5,)]


def test_competitive_local_step_touches_only_its_own_parameters():
    """Locality, proven with gradient hooks: the input carries no gradient and only the
    unit's own weights (and batch-norm scale and shift) change."""
    a = FFConv((3, 8, 8), 10, UnitSpec(loss="cwc", norm="none", lr=0.05), generator=gen(0), kernel=3, padding=1,
               batch_norm=True)
    b = FFConv((10, 8, 8), 20, UnitSpec(loss="cwc", norm="none", lr=0.05), generator=gen(1), kernel=3, padding=1,
               groups=10, pool=2, batch_norm=True)
    x = torch.rand(6, 3, 8, 8, generator=gen(2), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    seen = []
    x.register_hook(lambda g: seen.append("input"))
    for p in a.parameters():
        p.register_hook(lambda g: seen.append("a"))
    before_a = [p.detach().clone() for p in a.parameters()]
    before_b = [p.detach().clone() for p in b.parameters()]
    h = a(x)                                     # a graph from x through a into b's input...
    r = b.local_step(h, targets=y)               # ...which b's step must not use
    assert seen == [] and x.grad is None
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before_a))
    assert all(not torch.equal(p, q) for p, q in zip(b.parameters(), before_b))
    assert all(p.grad is None for p in b.parameters())
    assert r.h.requires_grad is False and r.h.shape == (6, 20, 4, 4)
    assert r.loss > 0 and r.g_pos.shape == (6,)


def test_competitive_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    unit = FFConv((1, 6, 6), 10, UnitSpec(loss="cwc", norm="none", lr=0.05), generator=gen(), kernel=3, padding=1,
                  batch_norm=True)
    x = torch.rand(20, 1, 6, 6, generator=gen(3))
    y = torch.arange(20) % 10
    losses = [unit.local_step(x, targets=y).loss for _ in range(60)]
    assert losses[-1] < 0.6 * losses[0] and losses[-1] < losses[30] < losses[0]


def test_ff_local_step_on_positives_and_negatives():
    unit = FFConv((2, 6, 6), 4, UnitSpec(theta=10.0, lr=0.01), generator=gen(), kernel=3, padding=1)
    r = unit.local_step(torch.rand(8, 2, 6, 6, generator=gen(4)))
    assert r.g_pos.shape == (4,) and r.g_neg.shape == (4,)


# -- config and stacks -----------------------------------------------------------------------
def test_stack_from_toml_tables_strings_and_errors():
    cfg = RunConfig.from_dict({"units": {"stack": [{"kind": "conv", "size": 8, "kernel": 5, "pool": 2},
                                                   "dense:32"]}})
    assert cfg.units.plan() == (LayerSpec("conv", 8, kernel=5, pool=2), LayerSpec("dense", 32))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig().units.plan() == tuple(LayerSpec("dense", 500) for _ in range(3))
    for bad, match in ((["units.stack=conv:8:x1"], "unknown option"),
                       (["units.stack=dense:8,conv:8"], "conv units must come before"),
                       (["units.stack=conv:9:g2"], "must divide"),
                       (["units.loss=cwc", "data.label_encoding=overlay"], "label in the loss"),
                       (["units.stack=conv:10,conv:10", "loop.unit_epochs=3"], "one per unit")):
        with pytest.raises(ConfigError, match=match):
            RunConfig().with_sets(bad)
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_dict({"units": {"stack": [{"kind": "conv", "size": 8, "kernal": 3}]}})


def test_ff_tiny_counts_its_parameters_layer_by_layer():
    """Trainable parameters by hand: conv weights + biases + the batch norm's scale and
    shift per channel; the head reads the last two units (no bias)."""
    net = FFNetwork.from_config(preset("ff-tiny"), (3, 32, 32), 10, "none", generators=gen())
    counts = net.trainable_parameters()
    assert counts["unit1"] == 50 * 3 * 9 + 50 + 2 * 50
    assert counts["unit2"] == counts["unit3"] == 50 * 50 * 9 + 50 + 2 * 50
    assert counts["unit4"] == 50 * 50 * 16 + 50 + 2 * 50
    assert [u.out_shape for u in net.layers] == [(50, 32, 32), (50, 16, 16), (50, 16, 16), (50, 7, 7)]
    assert counts["head"] == 10 * (50 * 16 * 16 + 50 * 7 * 7)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_cwcomp_preset_is_the_published_architecture():
    cfg = preset("cwcomp")
    assert [s.text() for s in cfg.units.plan()] == ["conv:20:k3:p1", "conv:80:k3:p1:g10:pool2",
                                                     "conv:240:k3:p1", "conv:480:k3:p1:g10:pool2"]
    assert default_inference_layers(cfg) == [2, 3]


# -- training -------------------------------------------------------------------------------
def test_mixed_stack_learns_competitively_on_digits(digits, tmp_path):
    cfg = RunConfig().with_sets(CWC + ["units.stack=conv:10:k3:p1,conv:20:k3:p1:g10:pool2,dense:40",
                                       "loop.epochs=3"])
    m = train(cfg, out=tmp_path / "run", data=digits, progress=False)
    assert m["test_error"]["one_pass"] < 15 and m["test_error"]["multi_pass"] < 60
    assert set(m["history"][-1]["loss"]) == {"layer1", "layer2", "layer3"}
    assert m["inference_layers"] == [2, 3]
    # the run dir rebuilds the same network: same errors from `ffneuro eval`
    again = evaluate_run(tmp_path / "run")
    assert again["test_error"] == pytest.approx(m["test_error"])
    _, saved, net = load_run(tmp_path / "run")
    assert saved["feature_shape"] == [8, 8] and net.data_shape == (1, 8, 8)
    assert saved["parameters"]["total"] == net.trainable_parameters()["total"]


def test_competitive_scores_are_the_group_goodness_of_one_pass(digits):
    cfg = RunConfig().with_sets(CWC + ["loop.epochs=1"])
    net = FFNetwork.from_config(cfg, (8, 8), 10, "none", generators=gen())
    net.eval()
    x = net.prepare_input(digits.x_test[:7])
    table = net.goodness_table(x, batch_size=3)
    with torch.no_grad():
        h1 = net.layers[0](x)
        h2 = net.layers[1](h1)
    assert torch.allclose(table[:, :, 0], group_goodness(h1, 10)) and torch.allclose(table[:, :, 1],
                                                                                     group_goodness(h2, 10))


def test_unit_epochs_freeze_a_unit_after_its_epochs(digits):
    cfg = RunConfig().with_sets(CWC + ["loop.unit_epochs=1,2", "loop.epochs=2", "loop.eval_every=0"])
    snapshots = []
    from ffneuro.rng import Streams
    from ffneuro.train.loop import build_network
    net = build_network(cfg, digits, Streams(0, 2))
    train(cfg, data=digits, progress=False, network=net,
          on_epoch=lambda r: snapshots.append([u.weight.detach().clone() for u in net.layers]))
    assert torch.equal(snapshots[0][0], snapshots[1][0])          # unit 1 learned in epoch 1 only
    assert not torch.equal(snapshots[0][1], snapshots[1][1])      # unit 2 in both


def test_alternate_schedule_updates_one_chunk_per_batch(digits):
    cfg = RunConfig().with_sets(CWC + ["loop.schedule=alternate", "loop.epochs=1", "loop.batch_size=1437",
                                       "loop.eval_every=0"])
    from ffneuro.rng import Streams
    from ffneuro.train.loop import build_network
    net = build_network(cfg, digits, Streams(0, 2))
    before = [u.weight.detach().clone() for u in net.layers]
    m = train(cfg, data=digits, progress=False, network=net)      # one batch: chunk 0 (unit 1) only
    assert not torch.equal(before[0], net.layers[0].weight) and torch.equal(before[1], net.layers[1].weight)
    assert set(m["history"][0]["loss"]) == {"layer1"}


def test_label_planes_conv_ff_trains(digits):
    cfg = RunConfig().with_sets([f"units.stack={CONV_STACK}", "loop.epochs=1", "loop.entropy_probe=0"])
    m = train(cfg, data=digits, progress=False)
    assert m["inference_layers"] == [2] and 0 <= m["test_error"]["multi_pass"] <= 100


def test_batch_norm_is_refused_under_a_profile(digits):
    cfg = RunConfig().with_sets([f"units.stack={CONV_STACK}", "units.batch_norm=true", "loop.epochs=1"])
    with pytest.raises(ConfigError, match="batch_norm has no fixed-point"):
        train(cfg, data=digits, progress=False, profile="cmos-45nm")


def _int_conv_by_hand(x, w, b, padding):
    """Integer convolution by explicit loops over positions (int64), stride 1, one group."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    out = torch.zeros(n, o, h + 2 * padding - k + 1, wd + 2 * padding - k + 1, dtype=torch.int64)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = xp[:, :, i:i + k, j:j + k].reshape(n, -1)
            out[:, :, i, j] = patch @ w.reshape(o, -1).t() + b
    return out


def test_chip_conv_forward_is_the_exact_integer_datapath():
    from ffneuro.functional.fixed import int_normalize
    from ffneuro.hw.chip import chip_spec
    from ffneuro.hw.profiles import load_profile
    chip = chip_spec(load_profile("cmos-45nm"))
    unit = FFConv((2, 6, 6), 4, UnitSpec(norm="rms", loss="cwc", classes=2), generator=gen(), kernel=3, padding=1,
                  pool=2, chip=chip)
    a = torch.randint(0, 256, (3, 2, 6, 6), generator=gen(5)).to(torch.float32)
    unit.calibrate(a)
    assert unit.calibrated
    xq = int_normalize(a.flatten(1), unit.norm_gain(), unit.input_fmt()).view(a.shape)
    w = unit.synapse.int_weight(unit.chip).to(torch.int64)
    b = unit.synapse.int_bias(unit.out_step).to(torch.int64)
    lim = 2 ** (chip.accumulator_bits - 1) - 1
    z = _int_conv_by_hand(xq, w, b, 1).clamp(-lim, lim).clamp_min(0)
    expected = torch.nn.functional.max_pool2d(z.to(torch.float64), 2)
    h = unit(a)
    assert h.dtype == torch.float64 and torch.equal(h, expected)
    assert torch.equal(unit.integer_goodness(h), (expected.to(torch.int64) ** 2).flatten(1).sum(1))
    assert torch.allclose(unit.goodness(h), unit.integer_goodness(h).double() * unit.out_step ** 2)
    # a chip step keeps the weights on the grid and the integer table in step with them
    r = unit.local_step(a, targets=torch.tensor([0, 1, 1]), generator=gen(6))
    assert torch.equal(r.h, h)                    # the step hands on the chip's own (pre-update) activity
    assert torch.equal(unit.synapse.int_weight(unit.chip), torch.round(unit.weight / unit.w_step))
    codes = unit.weight.detach() / unit.w_step
    assert float((codes - torch.round(codes)).abs().max()) < 1e-4


def test_conv_events_by_hand():
    from ffneuro.hw.events import conv_forward_events, conv_update_events
    x = torch.zeros(2, 2, 4, 4)
    x[0, 0, 0, 0] = 1.0          # a corner input: seen by the 4 windows (padding 1) that cover it
    x[1, 1, 2, 2] = 3.0          # an interior input: seen by 9 windows
    h = torch.zeros(2, 6, 2, 2)
    ev = conv_forward_events(x, h, out_channels=6, kernel=3, padding=1, groups=2)
    assert ev["synop_dense"] == (4 + 9) * 3 == ev["weight_read"]      # 3 output channels per group
    assert ev["neuron_update"] == 2 * 6 * 16 and ev["neuron_update_active"] == (4 + 9) * 3
    assert ev["goodness_op"] == 2 * 6 * 4
    up = conv_update_events(x, None, out_channels=6, kernel=3, padding=1, groups=2, neurons=6 * 16, batch_size=1)
    assert up["learning_update"] == (4 + 9) * 3
    assert up["weight_write"] == 2 * 3 * 9          # one input channel per sample touched: its 3×9 kernel entries
    assert up["state_access"] == 2 + 2 * 6 * 16


def test_conv_stack_trains_under_a_profile_and_is_estimated(digits):
    cfg = RunConfig().with_sets([f"units.stack={CONV_STACK}", "units.loss=cwc", "units.norm=rms",
                                 "hardware.onchip_lr=8", "hardware.batch_rule=mean", "loop.epochs=1", "loop.entropy_probe=0"])
    m = train(cfg, data=digits, progress=False, profile="cmos-45nm")
    assert m["test_error"]["one_pass"] < 15
    est = m["estimate"]
    assert est["training"]["energy_pj_per_sample"] > est["inference"]["energy_pj_per_sample"] > 0


def test_backprop_baseline_is_the_same_cnn(digits):
    from ffneuro.train.baselines import cnn
    cfg = RunConfig().with_sets(["units.stack=conv:10:k3:p1,conv:20:k3:p1:g10:pool2,dense:30", "units.batch_norm=true"])
    model = cnn(cfg.units, (1, 8, 8), 10)
    ff = FFNetwork.from_config(cfg.replace(inference={"head": False}), (8, 8), 10, "planes", generators=gen())
    # the same synapses and batch norms (the FF first unit also reads the 10 label planes)
    bp_params = sum(p.numel() for p in model.parameters())
    assert bp_params == ff.trainable_parameters()["total"] - 10 * 10 * 9 + (30 * 10 + 10)
    m = train(cfg.with_sets(["loop.algo=bp", "loop.epochs=2"]), data=digits, progress=False)
    assert m["test_error"]["bp"] < 15 and m["parameters"] == bp_params


# -- spiking conv units ------------------------------------------------------------------------
def test_spiking_conv_unit_pools_spikes_and_learns_locally():
    from ffneuro.units.lif import ConvGeometry, FFSpiking, LIFSpec
    unit = FFSpiking(2 * 6 * 6, 4, UnitSpec(loss="cwc", classes=2, lr=0.01), LIFSpec(), generator=gen(),
                     steps=4, conv=ConvGeometry((2, 6, 6), kernel=3, padding=1, pool=2))
    x = (torch.rand(4, 5, 2, 6, 6, generator=gen(1)) < 0.5).float()          # (T, N, C, H, W) spikes
    s = unit(x)
    assert s.shape == (4, 5, 4, 3, 3) and set(s.unique().tolist()) <= {0.0, 1.0}
    unit.pool = 1                                          # the same unit unpooled: its spikes at every position
    unpooled = unit(x)
    unit.pool = 2
    assert torch.equal(s, torch.nn.functional.max_pool2d(unpooled.view(20, 4, 6, 6), 2).view(s.shape))
    before = unit.weight.detach().clone()
    r = unit.local_step(x, targets=torch.tensor([0, 1, 0, 1, 0]))
    assert r.h.shape == s.shape and not torch.equal(before, unit.weight)
    assert unit.resources().channels == 4 and unit.resources().positions == 36


def test_a_dense_spiking_unit_after_a_conv_unit_counts_its_flattened_input_spikes():
    from ffneuro.units.lif import FFSpiking, LIFSpec
    unit = FFSpiking(2 * 3 * 3, 5, UnitSpec(lr=0.01), LIFSpec(), generator=gen(), steps=4)
    x = torch.zeros(4, 2, 2, 3, 3)                       # (T, N, C, H, W) maps of the conv unit before
    x[0, 0, 1, 2, 2] = x[3, 1, 0, 0, 1] = x[2, 1, 1, 1, 1] = 1.0
    s = unit(x)
    counts = unit.forward_events(x, s)
    assert counts["synop_sparse"] == 3 * 5               # 3 input spikes, each to 5 units
    assert unit.update_events(x, batch=1, update_batch=1)["weight_write"] > 0


def test_spiking_conv_stack_exports_to_nir_and_snntorch_spikes_identically(tmp_path, digits):
    import warnings

    import nir
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir

    from ffneuro.export.nir import export_nir
    out = tmp_path / "run"
    cfg = RunConfig().with_sets(["units.neuron=lif", "units.stack=conv:6:k3:p1,dense:20", "loop.epochs=1",
                                 "loop.entropy_probe=0", "optim.lr=0.003", "units.steps=4"])
    train(cfg, out=out, data=digits, progress=False)
    export_nir(out, tmp_path / "m.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = import_from_nir(nir.read(tmp_path / "m.nir"))
    _, _, net = load_run(out)
    x = net.prepare_input(digits.x_test[:10])
    s_in = net.input_stage(net.encoding.encode(x, digits.y_test[:10]), torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = s_in
        for layer in net.layers:
            h = layer(h)
        theirs = []
        for n in range(s_in.shape[1]):          # NIR's shapes are unbatched: one sample at a time
            snn_utils.reset(model)              # the imported LIF keeps its membrane between calls
            state, steps = None, []
            for t in range(s_in.shape[0]):
                o, state = model(s_in[t, n], state)
                steps.append(o)
            theirs.append(torch.stack(steps))
    assert h.sum() > 0 and torch.equal(torch.stack(theirs, dim=1), h)


def test_spiking_conv_with_pooling_has_no_nir_form(tmp_path, digits):
    from ffneuro.export.nir import NIRExportError, export_nir
    out = tmp_path / "run"
    cfg = RunConfig().with_sets(["units.neuron=lif", "units.stack=conv:6:k3:p1:pool2", "loop.epochs=1",
                                 "loop.entropy_probe=0", "units.steps=2"])
    train(cfg, out=out, data=digits, progress=False)
    with pytest.raises(NIRExportError, match="no max-pool node"):
        export_nir(out, tmp_path / "m.nir")


def test_batch_norm_statistics_are_re_estimated_after_every_epoch(digits):
    """The running statistics trail the weights during training; after each epoch they
    are re-estimated from training data as a plain average (one batch here: exactly that
    batch's mean and variance), and the exponential average resumes for training."""
    cfg = RunConfig().with_sets(CWC + ["loop.epochs=1"])
    net = FFNetwork.from_config(cfg, (8, 8), 10, "none", generators=gen())
    x = net.prepare_input(digits.x_train[:200])
    net.eval()
    assert net.refresh_statistics(x, digits.y_train[:200], batch_size=200)
    unit = net.layers[0]
    with torch.no_grad():
        pre = F.max_pool2d(F.relu(F.conv2d(x, unit.weight, unit.bias, padding=1)), 1)
    assert torch.allclose(unit.bn.running_mean, pre.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(unit.bn.running_var, pre.var(dim=(0, 2, 3)), atol=1e-5)
    assert unit.bn.momentum == 0.1 and not net.training
    plain = FFNetwork.from_config(RunConfig(), (8, 8), 10, "overlay", generators=gen())
    assert plain.refresh_statistics(plain.prepare_input(digits.x_train[:10]), digits.y_train[:10]) is False


# -- batch norm before the conv (seed 002's layer order) ---------------------------------------
def test_batch_norm_at_the_input_normalises_the_input_channels_before_the_conv():
    unit = FFConv((3, 8, 8), 20, UnitSpec(loss="cwc", norm="none", lr=0.05), generator=gen(1), kernel=3, padding=1,
                  pool=2, batch_norm="input")
    assert unit.bn.num_features == 3                              # the input's channels, not the output's
    x = torch.rand(6, 3, 8, 8, generator=gen(2)) * 5 + 2
    unit.train()
    mean, var = x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    by_hand = F.max_pool2d(F.relu(F.conv2d((x - mean) / torch.sqrt(var + unit.bn.eps), unit.weight, unit.bias,
                                           padding=1)), 2)
    h = unit(x)
    assert torch.allclose(h, by_hand, atol=1e-5) and bool((h >= 0).all())   # the goodness reads ReLU'd maps
    before = [p.detach().clone() for p in unit.bn.parameters()]
    unit.local_step(x, targets=torch.arange(6) % 10)
    assert all(not torch.equal(p, q) for p, q in zip(unit.bn.parameters(), before))   # its own parameters learn


def test_the_backprop_baseline_puts_batch_norm_where_the_units_do():
    from ffneuro.train.baselines import cnn
    sets = ["units.stack=conv:10:k3:p1,conv:20:k3:p1:pool2", "units.batch_norm=true"]
    out = [type(m).__name__ for m in cnn(RunConfig().with_sets(sets).units, (3, 8, 8), 10)]
    into = cnn(RunConfig().with_sets(sets + ["units.batch_norm_at=input"]).units, (3, 8, 8), 10)
    assert out[:3] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert [type(m).__name__ for m in into][:3] == ["BatchNorm2d", "Conv2d", "ReLU"]
    assert into[0].num_features == 3 and into[3].num_features == 10
    with pytest.raises(ConfigError, match="batch_norm_at"):
        RunConfig().with_sets(sets + ["units.batch_norm_at=middle"]).validate()
