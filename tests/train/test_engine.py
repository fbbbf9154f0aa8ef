"""The FF engine: encoding, negatives, layer locality, CFF γ detachment, schedules,
determinism, resume, and a short run that must learn."""

import json

import pytest
import torch

from ffneuro.runs import files as runio
from ffneuro.config import ConfigError, RunConfig
from ffneuro.functional.encoding import LabelEncoding, choose_encoding, hard_wrong_labels, random_wrong_labels
from ffneuro.units.base import UnitSpec, unit_loss
from ffneuro.functional.cff import gamma_members
from ffneuro.rng import Streams
from ffneuro.network import FFNetwork, default_inference_layers
from ffneuro.train.loop import build_network, train
from ffneuro.train.step import scout_goodness, train_step


def small_cfg(**kw):
    base = dict(data="digits", layers=(64, 64, 64), epochs=2, batch_size=64, seed=3)
    base.update(kw)
    return RunConfig.from_flat(**base).validate()


# -- encoding and negatives --------------------------------------------------------------
def test_overlay_and_concat_encoding():
    x = torch.arange(12.0).view(2, 6)
    y = torch.tensor([2, 0])
    ov = LabelEncoding("overlay", 3, scale=5.0).encode(x, y)
    assert ov.tolist() == [[0, 0, 5, 3, 4, 5], [5, 0, 0, 9, 10, 11]]
    cc = LabelEncoding("concat", 3, scale=1.0).encode(x, y)
    assert cc.shape == (2, 9) and cc[0, :3].tolist() == [0, 0, 1] and torch.equal(cc[:, 3:], x)
    neutral = LabelEncoding("overlay", 3, scale=3.0).encode_neutral(x)
    assert neutral[:, :3].tolist() == [[1, 1, 1], [1, 1, 1]]


def test_auto_encoding_keeps_signal():
    blank_corner = torch.cat([torch.zeros(10, 3), torch.rand(10, 5)], dim=1)
    assert choose_encoding("auto", blank_corner, 3) == "overlay"
    assert choose_encoding("auto", torch.rand(10, 8), 3) == "concat"


def test_random_negatives_never_true_and_cover_all_wrong():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (20000,), generator=g)
    neg = random_wrong_labels(y, 10, g)
    assert not (neg == y).any()
    # every wrong label appears, roughly uniformly (1/9 each)
    counts = torch.bincount((neg - y) % 10, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 20000 / 9 * 0.85


def test_hard_negatives_never_true_even_when_model_is_sure():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (5000,), generator=g)
    scores = torch.full((5000, 5), -50.0)
    scores[torch.arange(5000), y] = 50.0           # model certain of the true class
    scores[torch.arange(5000), (y + 2) % 5] = 10.0  # and the hard negative is y+2
    neg = hard_wrong_labels(y, scores, g)
    assert not (neg == y).any()
    assert (neg == (y + 2) % 5).float().mean() > 0.99


# -- locality -----------------------------------------------------------------------------
def _net(cfg, data):
    return build_network(cfg, data, Streams(cfg.loop.seed, len(cfg.units.layers)))


@pytest.mark.parametrize("gamma", ["all", "earlier", "later"])
def test_cff_gamma_is_detached_and_no_gradient_crosses_layers(digits, gamma):
    cfg = small_cfg(algo="cff", gamma=gamma)
    net = _net(cfg, digits)
    x = net.prepare_input(digits.x_train[:32])
    y = digits.y_train[:32]
    h = net.encoding.coded(x, [y, (y + 1) % 10])
    gp, gn = scout_goodness(net, x, [y, (y + 1) % 10], torch.Generator().manual_seed(0))
    assert not gp.requires_grad and not gn.requires_grad
    reached = []
    for j, other in enumerate(net.layers):
        for name, p in other.named_parameters():
            p.register_hook(lambda grad, j=j, name=name: reached.append((j, name)))
    for i, layer in enumerate(net.layers):
        members = gamma_members(gamma, i, len(net.layers))
        gam_p = gp[members].sum(0) if members else None
        gam_n = gn[members].sum(0) if members else None
        before = {k: v.clone() for k, v in net.state_dict().items()}
        reached.clear()
        r = layer.local_step(h, gam_p, gam_n)
        # only this unit's parameters received a gradient and changed
        assert sorted(reached) == [(i, "synapse.bias"), (i, "synapse.weight")]
        assert all(p.grad is None for p in net.parameters())       # and no gradient is kept
        after = net.state_dict()
        for k in before:
            if k.startswith(f"layers.{i}.") or "running_mean" in k:
                continue
            assert torch.equal(before[k], after[k]), k
        assert r.h.grad_fn is None                                  # handed on without a graph
        h = r.h


def test_head_gets_no_gradient_into_layers(digits):
    cfg = small_cfg()
    net = _net(cfg, digits)
    x = net.prepare_input(digits.x_train[:16])
    acts = net.neutral_activities(x)
    reached = []
    for p in net.layers.parameters():
        p.register_hook(lambda grad: reached.append(grad))
    w0 = net.head.weight.clone()
    net.head.local_step(acts, digits.y_train[:16])
    assert reached == [] and all(p.grad is None for p in net.layers.parameters())
    assert not torch.equal(w0, net.head.weight)


def test_layer_schedule_updates_one_unit_at_a_time(digits):
    cfg = small_cfg(schedule="layer")
    net = _net(cfg, digits)
    before = [layer.weight.clone() for layer in net.layers]
    x = net.prepare_input(digits.x_train[:64])
    train_step(net, cfg, x, digits.y_train[:64], [1], Streams(0, 3))
    changed = [not torch.equal(b, layer.weight) for b, layer in zip(before, net.layers)]
    assert changed == [False, True, False]


def test_network_schedule_updates_every_unit(digits):
    cfg = small_cfg()
    net = _net(cfg, digits)
    before = [layer.weight.clone() for layer in net.layers]
    x = net.prepare_input(digits.x_train[:64])
    st = train_step(net, cfg, x, digits.y_train[:64], [0, 1, 2], Streams(0, 3))
    assert len(st["loss"]) == 3
    assert all(not torch.equal(b, layer.weight) for b, layer in zip(before, net.layers))


@pytest.mark.parametrize("mode,norm", [("overlay", "rms"), ("concat", "length"), ("overlay", "none")])
def test_factored_first_unit_matches_dense_path(mode, norm):
    """The first unit multiplies the shared data part once for all label codes: same
    activities and the same update as feeding it the dense encoded batch."""
    g = torch.Generator().manual_seed(0)
    cfg = RunConfig.from_flat(layers=(16,), norm=norm)
    make = lambda: FFNetwork.from_config(cfg, 20, 4, mode, 0.0, 1.0, generators=torch.Generator().manual_seed(1),
                             label_scale=2.0).layers[0]
    x = torch.rand(6, 20, generator=g)
    y, y_neg = torch.randint(0, 4, (6,), generator=g), torch.randint(0, 4, (6,), generator=g)
    enc = LabelEncoding(mode, 4, 2.0)
    coded = enc.coded(x, [y, y_neg])
    stacked = torch.cat([enc.encode(x, y), enc.encode(x, y_neg)])
    assert torch.equal(coded.dense(), stacked)
    a, b = make(), make()
    assert torch.allclose(a(coded), b(stacked), atol=1e-5)
    ra, rb = a.local_step(coded), b.local_step(stacked)
    assert torch.allclose(ra.h, rb.h, atol=1e-5) and ra.loss == pytest.approx(rb.loss, rel=1e-5)
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)


def test_cff_theta_rescaled_by_gamma_members_by_default_or_own():
    cfg = RunConfig.from_flat(layers=(10, 20, 30), algo="cff", gamma="earlier", cff_theta="own")
    net = FFNetwork.from_config(cfg, 64, 10, "concat", 0.0, 1.0, generators=torch.Generator().manual_seed(0))
    assert [layer.spec.theta for layer in net.layers] == [10.0, 20.0, 30.0]
    cfg = RunConfig.from_flat(layers=(10, 20, 30), algo="cff", gamma="earlier")
    net = FFNetwork.from_config(cfg, 64, 10, "concat", 0.0, 1.0, generators=torch.Generator().manual_seed(0))
    assert [layer.spec.theta for layer in net.layers] == [10.0, 30.0, 60.0]
    assert default_inference_layers(cfg) == [0, 1, 2]
    assert default_inference_layers(RunConfig.from_flat(layers=(10, 20, 30))) == [1, 2]


def sp(v: float) -> float:
    """softplus of a plain number, for hand-computed expectations."""
    return torch.log1p(torch.exp(torch.tensor(v))).item()


def test_temperature_divides_goodness_gamma_and_theta():
    # softplus((θ − g⁺ − γ⁺)/τ) + softplus((g⁻ + γ⁻ − θ)/τ), by hand: θ = 10, τ = 2
    g_pos, g_neg = torch.tensor([12.0]), torch.tensor([8.0])
    got = unit_loss(UnitSpec(theta=10.0, temperature=2.0), g_pos, g_neg)
    assert got.item() == pytest.approx(2 * sp(-1.0), rel=1e-6)            # 0.6265
    got = unit_loss(UnitSpec(theta=10.0, temperature=2.0), g_pos, g_neg, torch.tensor([2.0]), torch.tensor([1.0]))
    assert got.item() == pytest.approx(sp(-2.0) + sp(-0.5), rel=1e-6)
    assert unit_loss(UnitSpec(theta=10.0), g_pos, g_neg).item() == pytest.approx(2 * sp(-2.0), rel=1e-6)
    # SymBa: softplus(−α (g⁺ − g⁻)/τ); the entropy loss is scale-free
    assert unit_loss(UnitSpec(loss="symba", alpha=0.5, temperature=4.0), g_pos, g_neg).item() == \
        pytest.approx(sp(-0.5), rel=1e-6)
    ent = [unit_loss(UnitSpec(loss="entropy", temperature=t), g_pos, g_neg).item() for t in (1.0, 7.0)]
    assert ent[0] == pytest.approx(ent[1], rel=1e-6)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="temperature"):
            RunConfig.from_flat(temperature=bad).validate()


def test_cff_theta_mean_is_the_collective_mean_against_the_own_theta():
    # (g + γ)/k against θ_own, k = |{i} ∪ J(i)|: for γ = all over 3 layers, k = 3
    cfg = RunConfig.from_flat(layers=(10, 10, 10), algo="cff", gamma="all", cff_theta="mean", temperature=2.0)
    net = FFNetwork.from_config(cfg, 64, 10, "concat", 0.0, 1.0, generators=torch.Generator().manual_seed(0))
    spec = net.layers[1].spec
    g_pos, g_neg, gam_p, gam_n = torch.tensor([9.0]), torch.tensor([4.0]), torch.tensor([15.0]), torch.tensor([14.0])
    expect = sp((10.0 - (9 + 15) / 3) / 2) + sp(((4 + 14) / 3 - 10.0) / 2)      # θ_own = 10, τ = 2
    assert unit_loss(spec, g_pos, g_neg, gam_p, gam_n).item() == pytest.approx(expect, rel=1e-6)


def test_config_validation_errors():
    with pytest.raises(ConfigError, match="algo"):
        RunConfig.from_flat(algo="backprop").validate()
    with pytest.raises(ConfigError, match="inference.layers"):
        RunConfig.from_flat(layers=(5, 5), inference_layers=(3,)).validate()
    with pytest.raises(ConfigError, match="entropy"):
        RunConfig.from_flat(loss="entropy", goodness="neg-sumsq").validate()
    assert RunConfig.from_dict(RunConfig.from_flat().to_dict()) == RunConfig.from_flat()


# -- whole runs ------------------------------------------------------------------------
def test_same_seed_same_metrics(digits):
    a = train(small_cfg(), progress=False, data=digits)
    b = train(small_cfg(), progress=False, data=digits)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("wall_s", "history")}
    assert strip(a) == strip(b)
    c = train(small_cfg(seed=4), progress=False, data=digits)
    assert strip(c) != strip(a)


@pytest.mark.parametrize("kw", [dict(), dict(algo="cff", negatives="hard", schedule="layer", epochs=1)])
def test_resume_ends_where_uninterrupted_run_ends(tmp_path, digits, kw):
    cfg = small_cfg(**kw)
    full = train(cfg, out=tmp_path / "full", progress=False, data=digits)
    train(cfg, out=tmp_path / "cut", progress=False, data=digits, stop_after=1)
    assert RunConfig.from_dict(json.loads((tmp_path / "cut" / "config.json").read_text())["config"]) == cfg
    resumed = train(cfg, out=tmp_path / "cut", resume=True, progress=False, data=digits)
    assert resumed["test_error"] == full["test_error"]
    assert resumed["per_layer_error"] == full["per_layer_error"]
    t_full, _ = runio.load_checkpoint(tmp_path / "full" / runio.CHECKPOINT)
    t_cut, _ = runio.load_checkpoint(tmp_path / "cut" / runio.CHECKPOINT)
    assert t_full.keys() == t_cut.keys()
    for k in t_full:
        assert torch.equal(t_full[k], t_cut[k]), k


def test_run_dir_contents(tmp_path, digits):
    m = train(small_cfg(epochs=1), out=tmp_path / "r", progress=False, data=digits)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "checkpoint.safetensors", "metrics.json"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key in ("test_error", "per_layer_error", "epochs", "wall_s"):
        assert key in saved
    assert set(saved["test_error"]) == {"multi_pass", "one_pass"}
    assert saved["test_error"] == m["test_error"]


@pytest.mark.parametrize("loss,goodness", [("ff", "meansq"), ("symba", "sumsq"), ("entropy", "sumsq"),
                                           ("ff", "neg-sumsq")])
def test_every_loss_learns_on_digits(digits, loss, goodness):
    theta = {"meansq": 1.0}.get(goodness)
    m = train(small_cfg(loss=loss, goodness=goodness, theta=theta, epochs=5, layers=(128, 128),
                        lr_schedule="constant"),
              progress=False, data=digits)
    assert min(m["per_layer_error"]) < 40.0      # chance is 90 %


@pytest.mark.slow
def test_default_digits_run_reaches_90_percent(digits):
    """The embedded default: ffneuro train with no options must reach ≥ 90 % accuracy."""
    m = train(RunConfig.from_flat(), progress=False, data=digits)
    assert m["test_error"]["one_pass"] <= 10.0


@pytest.mark.slow
def test_short_real_mnist_run_learns(mnist):
    """Two epochs on the first 10,000 real MNIST digits: a 1×256 FF layer must reach ≤ 20 %
    on the first 2,000 test digits (measured: 16.2 %; chance is 90 %)."""
    import dataclasses

    small = dataclasses.replace(mnist, x_train=mnist.x_train[:10000], y_train=mnist.y_train[:10000],
                                x_test=mnist.x_test[:2000], y_test=mnist.y_test[:2000])
    m = train(RunConfig.from_flat(data="mnist", layers=(256,), epochs=2, batch_size=50, lr=3e-3, lr_schedule="constant"),
              progress=False, data=small)
    assert m["test_error"]["multi_pass"] <= 20.0, m["test_error"]
