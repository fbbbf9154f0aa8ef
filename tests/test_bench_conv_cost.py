"""scripts/bench_conv_cost.py at toy sizes: the timing and memory-child functions run and
report what the benchmark JSON needs (structure and signs only, no timing thresholds)."""

from __future__ import annotations


import pytest

from ffneuro.config.run import preset

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def bench(scripts):
    return scripts("bench_conv_cost")


def test_throughput_structure(bench):
    cfg = bench.stack_config(preset("cwcomp"), ["conv:10:k3:p1", "conv:10:k3:p1:g10:pool2"], batch=8)
    row = bench.throughput(cfg, SHAPE, steps=1, warmup=1, repeats=2, n_train=80)
    assert set(row["step_s"]) == set(bench.METHODS) == set(row["epoch_s"]) == set(row["all_step_s"])
    assert all(len(v) == 2 for v in row["all_step_s"].values())
    for m in bench.METHODS:
        assert row["step_s"][m] == min(row["all_step_s"][m]) > 0
        assert row["epoch_s"][m] == pytest.approx(row["step_s"][m] * 80 / 8)
    assert row["ratio"]["ff_over_bp"] == pytest.approx(row["step_s"]["ff"] / row["step_s"]["bp"])
    assert row["ratio"]["ff_nohead_over_bp"] > 0
    p = row["parameters"]
    assert p["ff_units"] > 0 and p["ff_head"] > 0 and p["bp"] > p["ff_units"]   # bp adds its linear output
    assert row["config"]["units"]["loss"] == "cwc" and row["batch"] == 8 and row["input_shape"] == list(SHAPE)


@pytest.mark.parametrize("method", ["ff", "ff+head", "backprop"])
def test_mem_child_structure(bench, method):
    r = bench.mem_child(method, 2, channels=10, batch=4, steps=1, shape=SHAPE)
    assert (r["method"], r["depth"], r["channels"], r["batch"]) == (method, 2, 10, 4)
    assert r["weight_bytes"] > 0 and r["peak_rss_bytes"] > 0 and r["base_rss_bytes"] > 0
    assert r["training_peak_over_base_bytes"] >= 0     # a toy step may fit in pages already resident
    assert r["peak_rss_bytes"] >= r["base_rss_bytes"] or not r["peak_reset_after_warmup"]


def test_memory_config(bench):
    cfg = bench.memory_config(3, 20, 16, head=False)
    assert [s.text() for s in cfg.units.stack] == ["conv:20:k3:p1"] * 3
    assert (cfg.units.loss, cfg.units.norm, cfg.units.batch_norm) == ("cwc", "none", True)
    assert cfg.loop.batch_size == 16 and not cfg.inference.head and cfg.loop.unit_epochs == ()
