"""The unit contract (ffneuro/units/base.py), checked on every unit kind the package
builds and on a stub kind written here against the contract alone.

The stub is what a new kind looks like: it lives outside ffneuro.units' builder, yet the
network streams it, the trainer trains it and counts its events, the estimator maps its
resources and the exporter writes tables that the golden replay reproduces bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.config import RunConfig
from ffneuro.export import golden
from ffneuro.export.hdf5 import test_vectors as export_vectors, write_hdf5
from ffneuro.functional.fixed import (GAIN_FRAC_BITS, activation_format, int_goodness, int_matmul, int_normalize,
                                      norm_gain, weight_format)
from ffneuro.functional.goodness import normalize
from ffneuro.functional.quant import FixedPoint
from ffneuro.hw.chip import chip_spec
from ffneuro.hw.estimate import estimate_from_run
from ffneuro.hw.events import EVENT_KINDS, forward_events, update_events
from ffneuro.hw.profiles import load_profile, profile_to_dict
from ffneuro.network import FFNetwork, label_encoding
from ffneuro.rng import Streams
from ffneuro.train.loop import build_network, train
from ffneuro.units.base import (ExportTables, LocalLoss, PassThrough, Resources, StepResult, Unit, UnitSpec, dense_input,
                                format_attrs, unit_loss)


# ----------------------------------------------------------------------------------------
# A unit kind of one's own, written against the contract only
# ----------------------------------------------------------------------------------------
class StubUnit(nn.Module):
    """h = relu(W · rms(x) + b), its own Adam on its own FF loss; post-training
    quantisation to the chip's dense-relu datapath for export."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator, lr: float = 1e-2):
        super().__init__()
        self.in_features, self.out_features = n_in, n_out
        self.in_shape, self.out_shape = (n_in,), (n_out,)
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.spec = UnitSpec(theta=float(n_out))
        self.optimizer = torch.optim.Adam([self.weight, self.bias], lr=lr)
        self.chip = None
        self.register_buffer("w_step", torch.tensor(0.0))
        self.register_buffer("x_step", torch.tensor(0.0))

    @property
    def calibrated(self) -> bool:
        return self.chip is not None and float(self.w_step) > 0

    def _fmts(self):
        w = FixedPoint(self.chip.weight_bits, self.chip.weight_signed, float(self.w_step))
        return w, FixedPoint(self.chip.activation_bits, False, float(self.x_step))

    def _gain(self) -> int:
        return norm_gain(self.in_features, "rms", float(self.x_step))

    def _ints(self):
        wf, _ = self._fmts()
        out_step = float(self.w_step) * float(self.x_step)
        return wf.to_int(self.weight).float(), torch.round(self.bias.detach().double() / out_step), out_step

    def forward(self, x):
        x = dense_input(x)
        if self.calibrated:
            wf, xf = self._fmts()
            w, b, _ = self._ints()
            z = int_matmul(int_normalize(x, self._gain(), xf), w, 2 ** (self.chip.weight_bits - 1)) + b
            lim = 2 ** (self.chip.accumulator_bits - 1) - 1
            return z.clamp(-lim, lim).clamp_min(0)
        return F.relu(F.linear(normalize(x, "rms"), self.weight, self.bias))

    def goodness(self, h):
        if self.calibrated:
            return int_goodness(h, "sumsq").double() * self._ints()[2] ** 2
        return h.pow(2).sum(dim=1)

    def local_step(self, x, gamma_pos=None, gamma_neg=None, generator=None, targets=None) -> StepResult:
        r = self.local_loss(dense_input(x).detach(), gamma_pos, gamma_neg, targets)
        self.weight.grad, self.bias.grad = torch.autograd.grad(r.loss, [self.weight, self.bias])
        self.apply_update(generator)
        return StepResult(r.out.detach(), float(r.loss.detach()), r.g_pos, r.g_neg)

    def local_loss(self, x, gamma_pos=None, gamma_neg=None, targets=None) -> LocalLoss:
        x = dense_input(x)
        b = x.shape[0] // 2
        h = F.relu(F.linear(normalize(x, "rms"), self.weight, self.bias))
        g = h.pow(2).sum(dim=1)
        loss = unit_loss(self.spec, g[:b], g[b:], gamma_pos, gamma_neg)
        return LocalLoss(loss, h, g[:b].detach(), g[b:].detach())

    def apply_update(self, generator=None, samples=1) -> None:
        self.optimizer.step()
        self.weight.grad = self.bias.grad = None

    def calibrate(self, x) -> None:
        x = dense_input(x)
        self.x_step.fill_(activation_format(normalize(x.float(), "rms"), self.chip).step)
        self.w_step.fill_(weight_format(self.weight, self.chip).step)

    def set_lr(self, lr, onchip_lr=None) -> None:
        pass                                   # a fixed rate of its own: the run's schedule does not apply

    def head_activity(self, h):
        return h

    def begin_statistics(self):
        return False

    def end_statistics(self):
        pass

    def class_goodness(self, h, classes):
        return h.reshape(h.shape[0], classes, -1).pow(2).mean(dim=2)

    def integer_goodness(self, h):
        return int_goodness(h, "sumsq")

    def forward_events(self, x_in, h_out):
        return forward_events(dense_input(x_in), h_out, binary_input=False)

    def update_events(self, x_in, batch, update_batch):
        x = dense_input(x_in)
        return update_events(x[:batch], x[batch:], self.out_features, update_batch)

    def resources(self) -> Resources:
        return Resources(self.in_features, self.out_features, self.in_features * self.out_features,
                         self.out_features)

    def export_tables(self) -> ExportTables:
        wf, xf = self._fmts()
        w, b, out_step = self._ints()
        lim = 2 ** (self.chip.accumulator_bits - 1) - 1
        attrs = {"in_features": self.in_features, "out_features": self.out_features, **format_attrs("weight", wf),
                 **format_attrs("input", xf), "norm": "rms", "norm_gain": self._gain(),
                 "norm_gain_frac_bits": GAIN_FRAC_BITS, "accumulator_bits": self.chip.accumulator_bits,
                 "output_scale": out_step, "goodness": "sumsq", "goodness_scale": out_step ** 2}
        return ExportTables("dense-relu", attrs, {"weight": (w, wf.qmin, wf.qmax, "weights"),
                                                  "bias": (b, -lim, lim, "biases")})

    def nir_nodes(self, index):
        raise ValueError("the stub has no NIR form")


def stub_network(digits, widths=(24, 16), seed=0) -> FFNetwork:
    g = torch.Generator().manual_seed(seed)
    sizes = [digits.x_train.shape[1] + 10, *widths]
    units = [StubUnit(a, b, g) for a, b in zip(sizes, sizes[1:])]
    return FFNetwork(units, PassThrough(), label_encoding("concat", 10, 1.0, None), num_classes=10)


def package_network(kind: str, digits, widths=(24, 16)) -> FFNetwork:
    cfg = RunConfig.from_flat(layers=widths, neuron=kind, steps=4, head=False)
    return build_network(cfg, digits, Streams(0, len(widths)))


def network(kind: str, digits) -> FFNetwork:
    return stub_network(digits) if kind == "stub" else package_network(kind, digits)


KINDS = ("relu", "lif", "stub")


# ----------------------------------------------------------------------------------------
# The contract, for every kind
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_unit_satisfies_the_protocol(kind, digits):
    net = network(kind, digits)
    for unit in net.layers:
        assert isinstance(unit, Unit)
        r = unit.resources()
        assert (r.fan_in, r.fan_out, r.neurons) == (unit.in_features, unit.out_features, unit.out_features)


@pytest.mark.parametrize("kind", KINDS)
def test_local_step_reaches_only_its_own_parameters(kind, digits):
    net = network(kind, digits)
    x, y = net.prepare_input(digits.x_train[:16]), digits.y_train[:16]
    reached = []
    for j, unit in enumerate(net.layers):
        for name, p in unit.named_parameters():
            p.register_hook(lambda grad, j=j, name=name: reached.append(j))
    gen = torch.Generator().manual_seed(0)
    for i in range(len(net.layers)):
        before = [p.detach().clone() for p in net.parameters()]
        reached.clear()

        def learn(j, unit, h, i=i):
            if j != i:
                with torch.no_grad():
                    return unit(h)
            r = unit.local_step(h, None, None, gen)
            assert r.h.grad_fn is None and r.g_pos.shape == (16,) and r.g_neg.shape == (16,)
            return r.h

        for _ in net.stream(x, [y, (y + 1) % 10], generator=gen, through=learn, upto=i + 1):
            pass
        assert set(reached) <= {i}                           # hooks: no gradient crossed a unit boundary
        changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters())]
        own = [any(p is q for q in net.layers[i].parameters()) for p in net.parameters()]
        assert all(o for c, o in zip(changed, own) if c) and any(changed)
        assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_events_have_every_kind_and_count_synops_per_nonzero_input(kind, digits):
    net = network(kind, digits)
    x, y = net.prepare_input(digits.x_train[:8]), digits.y_train[:8]
    for p in net.stream(x, [y, (y + 1) % 10]):
        fwd = p.unit.forward_events(p.h_in, p.h_out)
        upd = p.unit.update_events(p.h_in, 8, 1)
        assert set(EVENT_KINDS) <= set(fwd) and set(EVENT_KINDS) <= set(upd)
        assert all(v >= 0 for v in (*fwd.values(), *upd.values()))
        nnz = float(torch.count_nonzero(dense_input(p.h_in)))
        assert fwd["synop_dense"] + fwd["synop_sparse"] == nnz * p.unit.out_features
        assert upd["weight_write"] > 0 and fwd["neuron_update"] > 0
        assert p.unit.goodness(p.h_out).shape == (16,)
        assert p.unit.head_activity(p.h_out).shape == (16, p.unit.out_features)


# ----------------------------------------------------------------------------------------
# The stub end to end: trains, counts, estimates, exports, replays
# ----------------------------------------------------------------------------------------
def test_a_stub_kind_trains_counts_estimates_and_exports(tmp_path, digits):
    cfg = RunConfig.from_flat(layers=(64, 48), epochs=4, batch_size=32, head=False, entropy_probe=50,
                              inference_layers=(1, 2))
    net = stub_network(digits, widths=(64, 48))
    out = tmp_path / "stub"
    m = train(cfg, data=digits, network=net, out=out, progress=False, count_events=True)
    assert m["test_error"]["multi_pass"] < 15.0                       # chance: 90 %
    est = estimate_from_run(out, "loihi-like")                      # from the stub's recorded resources
    assert est["training"]["energy_pj_per_sample"] > est["inference"]["energy_pj_per_sample"] > 0
    assert est["layer_sizes"] == [74, 64, 48] and est["memory"]["learning_history_steps"] == 0

    chip = chip_spec(load_profile("cmos-45nm"))                     # post-training quantisation
    for unit in net.layers:
        unit.chip = chip
    qnet = FFNetwork(list(net.layers), PassThrough(), label_encoding("concat", 10, 1.0, chip), num_classes=10,
                     chip=chip)
    x = qnet.prepare_input(digits.x_train[:256])
    qnet.calibrate(x, digits.y_train[:256])
    vec = export_vectors(qnet, digits.x_test[:16], digits.y_test[:16], [0, 1])
    path = tmp_path / "stub.h5"
    write_hdf5(path, qnet, cfg, {}, profile_to_dict(load_profile("cmos-45nm")), "post-training", [0, 1], vec, m)
    report = golden.verify(path, digits.x_test.numpy(), digits.y_test.numpy())
    assert report["ok"] and not report["mismatch"]
    assert report["test_error"]["multi_pass"] < 20.0


@pytest.mark.parametrize("kind", ("relu", "lif"))
def test_package_kinds_export_replays_exactly(tmp_path, digits, kind):
    from ffneuro.export.hdf5 import export_run

    out = tmp_path / kind
    cfg = RunConfig.from_flat(layers=(24, 16), neuron=kind, steps=4, epochs=1, batch_size=32, entropy_probe=0,
                              lr=3e-3)
    train(cfg, data=digits, out=out, progress=False)
    export_run(out, tmp_path / f"{kind}.h5", profile="cmos-45nm", vectors=8)
    report = golden.verify(tmp_path / f"{kind}.h5")
    assert report["ok"] and report["vectors"] == 8
    assert np.all(np.asarray(report.get("checksum_failures", [])) == [])


def test_a_state_dict_from_before_synapses_loads_into_the_current_layout(digits):
    from ffneuro.units.synapse import migrate_state

    net = package_network("relu", digits)
    state = net.state_dict()
    old = {k.replace(".synapse.", "."): v for k, v in state.items()}      # layers.i.weight, as written before
    assert "layers.0.weight" in old and "layers.0.synapse.weight" not in old
    assert migrate_state(old).keys() == state.keys()
    fresh = package_network("relu", digits)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(migrate_state(old))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), state.values()))


@pytest.mark.parametrize("kind", ("relu", "lif"))
def test_every_unit_reads_its_current_through_a_synapse(kind, digits):
    from ffneuro.units.synapse import DenseSynapse

    net = package_network(kind, digits)
    for unit in net.layers:
        assert isinstance(unit.synapse, DenseSynapse) and unit.weight is unit.synapse.weight
        assert [n for n, _ in unit.named_parameters()] == ["synapse.weight", "synapse.bias"]
        assert unit.resources().synapses == unit.synapse.synapses == unit.in_features * unit.out_features


def test_unit_optimisers_use_fused_kernels_on_the_cpu_only():
    from ffneuro.units.optim import fusable, make_optimizer

    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert fusable(cpu) and make_optimizer(cpu, "adam", 1e-3, 0.9, 0.0).defaults["fused"]
    meta = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not fusable(meta) and not make_optimizer(meta, "sgd", 1e-3, 0.9, 0.0).defaults["fused"]
    assert not fusable([torch.nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False)])


@pytest.mark.parametrize("b", [1, 40])
def test_dense_unit_learns_the_same_from_a_coded_batch_as_from_its_dense_form(b):
    """A coded batch (label codes factored from the data) is learned from densely when small
    (b = 1: 2 rows) and factored when large (b = 40: 80 rows); both give the update of the
    explicit encoded batch, up to float rounding."""
    from ffneuro.functional.encoding import CodedBatch
    from ffneuro.units.base import UnitSpec
    from ffneuro.units.dense import FFDense

    g = torch.Generator().manual_seed(0)
    rest = torch.rand(b, 20, generator=g)
    codes = torch.zeros(2, b, 4)
    codes[0, :, 1] = 1.0
    codes[1, :, 3] = 1.0
    coded = CodedBatch(rest, codes)
    units = [FFDense(24, 16, UnitSpec(theta=16.0, lr=0.01), generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    r_coded = units[0].local_step(coded)
    r_dense = units[1].local_step(coded.dense())
    assert r_coded.loss == pytest.approx(r_dense.loss, rel=1e-5)
    assert torch.allclose(units[0].weight, units[1].weight, atol=1e-6)
    assert not torch.equal(units[0].weight, FFDense(24, 16, UnitSpec(), generator=torch.Generator().manual_seed(1)).weight)
