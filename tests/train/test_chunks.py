"""Seed 002's chunked local updates (``loop.schedule = chunks``): gradient flows inside a
chunk of consecutive units and never across its boundary; chunks of one unit are the
``network`` schedule exactly; the schedule is refused where it cannot run as documented."""

from __future__ import annotations

import pytest
import torch

from ffneuro.config import RunConfig
from ffneuro.rng import Streams
from ffneuro.train.loop import build_network, train
from ffneuro.train.pipeline import PipelineError, check_supported
from ffneuro.train.schedules import chunks_of
from ffneuro.train.step import train_step

CONV_STACK = "conv:10:k3:p1,conv:20:k3:p1:pool2,conv:20:k3:p1"
CWC = [f"units.stack={CONV_STACK}", "units.loss=cwc", "units.norm=none", "units.batch_norm=true",
       "loop.entropy_probe=0", "loop.batch_size=64"]
DENSE = ["units.layers=40,40,40", "loop.entropy_probe=0", "loop.batch_size=64"]


def _small(digits, n: int = 256):
    import dataclasses
    return dataclasses.replace(digits, x_train=digits.x_train[:n], y_train=digits.y_train[:n],
                               x_test=digits.x_test[:60], y_test=digits.y_test[:60])


@pytest.mark.parametrize("sets", [CWC, DENSE, DENSE + ["loop.batch_size=16"], DENSE + ["loop.algo=cff", "cff.gamma=all"]],
                         ids=["cwc", "ff", "ff-batch16", "cff"])
def test_chunks_of_one_unit_are_the_network_schedule_bit_for_bit(digits, sets):
    data = _small(digits)
    a = train(RunConfig().with_sets(sets + ["loop.epochs=2"]), data=data, progress=False)
    b = train(RunConfig().with_sets(sets + ["loop.epochs=2", "loop.schedule=chunks", "loop.chunk=1"]), data=data,
              progress=False)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]     # exact floats
    assert a["test_error"] == b["test_error"] and a["per_layer_error"] == b["per_layer_error"]


def _grads_seen(cfg: RunConfig, data, batch: int) -> tuple[set[str], list[list[int]]]:
    """For one train_step on batch index ``batch``: "into{i}" for every unit i whose input
    received gradient (a hook on each unit's input as it arrives)."""
    net = build_network(cfg, data, Streams(0, 3))
    active = [0, 1, 2]
    chunks = chunks_of(active, cfg.loop.chunk, batch)
    reached: set[str] = set()
    calls = {"n": 0}
    for i, unit in enumerate(net.layers):
        real = unit.local_loss

        def spy(x, *args, i=i, real=real, **kw):
            calls["n"] += 1
            if isinstance(x, torch.Tensor) and x.requires_grad:
                x.register_hook(lambda g, i=i: reached.add(f"into{i}"))
            return real(x, *args, **kw)
        unit.local_loss = spy
    x, y = net.prepare_input(data.x_train[:32]), data.y_train[:32]
    train_step(net, cfg, x, y, active, Streams(0, 3), None, 32, chunks)
    assert calls["n"] == 3
    return reached, chunks


def test_gradient_flows_inside_a_chunk_and_never_across_its_boundary(digits):
    data = _small(digits)
    cfg = RunConfig().with_sets(CWC + ["loop.schedule=chunks", "loop.chunk=2"])
    reached, chunks = _grads_seen(cfg, data, batch=0)
    assert chunks == [[0, 1], [2]]
    assert reached == {"into1"}                         # unit 2's loss reaches unit 1 through its input
    reached, chunks = _grads_seen(cfg, data, batch=1)                                  # boundaries shifted
    assert chunks == [[0], [1, 2]]
    assert reached == {"into2"}


def test_a_later_units_loss_changes_the_earlier_units_update_inside_a_chunk(digits):
    """Unit 1's weights after one batch differ between chunks of 2 (unit 2's loss reaches
    back) and the network schedule, though unit 1's own loss and input are the same."""
    data = _small(digits)
    after = {}
    for sets in (["loop.schedule=network"], ["loop.schedule=chunks", "loop.chunk=2"]):
        cfg = RunConfig().with_sets(DENSE + sets)
        net = build_network(cfg, data, Streams(0, 3))
        x, y = net.prepare_input(data.x_train[:32]), data.y_train[:32]
        chunks = chunks_of([0, 1, 2], cfg.loop.chunk, 0) if cfg.loop.schedule == "chunks" else None
        train_step(net, cfg, x, y, [0, 1, 2], Streams(0, 3), None, 32, chunks)
        after[sets[0]] = [u.weight.detach().clone() for u in net.layers]
    net_w, chunk_w = after["loop.schedule=network"], after["loop.schedule=chunks"]
    assert not torch.equal(net_w[0], chunk_w[0])          # unit 2's loss moved unit 1 too


def test_chunked_training_learns(digits):
    m = train(RunConfig().with_sets(DENSE + ["loop.epochs=3", "loop.schedule=chunks", "loop.chunk=2"]),
              data=_small(digits, 600), progress=False)
    assert m["test_error"]["one_pass"] < 50.0


def test_chunks_are_refused_on_a_chip_in_a_pipeline_and_with_eligibility_traces(digits):
    cfg = RunConfig().with_sets(DENSE + ["loop.epochs=1", "loop.schedule=chunks", "loop.chunk=2"])
    with pytest.raises(ValueError, match="chip's local learning rule"):
        train(cfg, data=_small(digits), progress=False, profile="cmos-45nm")
    with pytest.raises(PipelineError, match="loop.schedule = chunks"):
        check_supported(cfg, 2)
    spiking = RunConfig().with_sets(DENSE + ["loop.epochs=1", "loop.schedule=chunks", "loop.chunk=2",
                                             "units.neuron=lif", "units.spike_learning=eligibility"])
    with pytest.raises(ValueError, match="eligibility learns online"):
        train(spiking, data=_small(digits), progress=False)
