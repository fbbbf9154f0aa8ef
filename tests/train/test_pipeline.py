"""Pipeline-parallel training (ffneuro/train/pipeline/): real stage processes on the
embedded digits, each test bounded by a timeout; the exact cases give the single-process
run's checkpoint bit for bit (one thread per process on both sides)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ffneuro import api
from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.runs import files as runio
from ffneuro.train.loop import train
from ffneuro.train.pipeline import Message, PipelineError, check_supported, launch, split_stages

BOUND_S = 240          # no pipeline test may run longer than this
SMALL = ["--layers", "32,24,16", "--epochs", "2", "--set", "loop.batch_size=64", "--set", "loop.entropy_probe=0",
         "--no-progress"]


def cli(*args: str, timeout: float = BOUND_S) -> subprocess.CompletedProcess:
    """`ffneuro ARGS` in its own process, killed after ``timeout`` (its stages end with it)."""
    return subprocess.run([sys.executable, "-c", "from ffneuro.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout)


def single(cfg: RunConfig, out: Path, **kw) -> dict:
    """The single-process reference, one thread like each stage."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg, out=out, progress=False, device="cpu", **kw)
    finally:
        torch.set_num_threads(threads)


def config(*sets: str) -> RunConfig:
    return RunConfig.from_flat(layers=(32, 24, 16), epochs=2, batch_size=64, entropy_probe=0).with_sets(list(sets))


def checkpoint(run: Path) -> dict[str, torch.Tensor]:
    return runio.load_checkpoint(run / runio.CHECKPOINT)[0]


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = checkpoint(a), checkpoint(b)
    assert set(ta) == set(tb)
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    ma, mb = runio.read_json(a / runio.METRICS), runio.read_json(b / runio.METRICS)
    for m in (ma, mb):
        m.pop("wall_s")
        m.pop("pipeline", None)
        for r in m["history"]:
            r.pop("train_s")
    assert ma == mb


# -- without processes ------------------------------------------------------------------
def test_stages_balance_the_weights_of_consecutive_units():
    # MNIST 4x1000 with its head: units 1-2 | 3-4 is the balanced split
    assert split_stages([785_000, 1_001_000, 1_001_000, 1_031_000], 2) == [range(0, 2), range(2, 4)]
    assert split_stages([100, 1, 1, 1, 100], 3) == [range(0, 1), range(1, 4), range(4, 5)]
    assert split_stages([5, 5, 5, 5], 4) == [range(i, i + 1) for i in range(4)]


def test_a_message_survives_encoding():
    g = torch.Generator().manual_seed(0)
    msg = Message(y=torch.tensor([3, 1, 4]), neutral=torch.rand(3, 5, generator=g),
                  head=[torch.rand(3, 5, generator=g)], train=torch.rand(6, 5, generator=g),
                  seen=[(torch.rand(3, generator=g), torch.rand(3, generator=g))])
    back = Message.decode(*msg.encode())
    assert torch.equal(back.y, msg.y) and torch.equal(back.neutral, msg.neutral)
    assert torch.equal(back.train, msg.train) and torch.equal(back.head[0], msg.head[0])
    assert torch.equal(back.seen[0][0], msg.seen[0][0]) and torch.equal(back.seen[0][1], msg.seen[0][1])
    empty = Message.decode(*Message(y=torch.tensor([0, 1])).encode())
    assert empty.neutral is None and empty.train is None and empty.head == [] and empty.seen == []


def test_the_refresh_interval_of_stale_copies_is_checked(monkeypatch):
    from ffneuro.train.pipeline import gamma_refresh
    assert gamma_refresh(3) == 3
    monkeypatch.setenv("FFNEURO_PIPELINE_GAMMA_REFRESH", "1")
    assert gamma_refresh(3) == 1
    for bad in ("0", "two"):
        monkeypatch.setenv("FFNEURO_PIPELINE_GAMMA_REFRESH", bad)
        with pytest.raises(PipelineError, match="whole number of batches"):
            gamma_refresh(3)


@pytest.mark.parametrize("sets, stages, message", [
    ((), 4, "--stages 4: must be between 1 and 3"),
    ((), 0, "--stages 0: must be between 1 and 3"),
    (("loop.schedule=layer",), 2, "loop.schedule = layer"),
    (("loop.negatives=hard",), 2, "loop.negatives = hard"),
    (("loop.algo=bp",), 2, "backprop baseline"),
    (("hardware.profile=loihi-like",), 2, "hardware profile"),
])
def test_what_cannot_be_pipelined_is_refused_in_one_line(sets, stages, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(")):
        check_supported(config(*sets), stages)


def test_the_cli_refuses_too_many_stages_before_starting_any(tmp_path):
    r = CliRunner().invoke(app, ["train", *SMALL, "--stages", "5", "--out", str(tmp_path / "run")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ["error: --stages 5: must be between 1 and 3 (the network has 3 units; "
                                             "a stage holds at least one)"]
    assert not (tmp_path / "run").exists()


# -- real stage processes ----------------------------------------------------------------
@pytest.mark.slow
def test_two_stages_give_the_single_process_run_bit_for_bit(tmp_path):
    cfg = config("data.val_fraction=0.1", "loop.entropy_probe=64")    # rank 0 also probes and validates
    single(cfg, tmp_path / "one", count_events=True)
    launch(cfg, 2, out=tmp_path / "two", progress=False, count_events=True)
    assert_same_run(tmp_path / "one", tmp_path / "two")
    # the event ledgers, counted by each stage for its own units and merged, agree exactly
    assert json.loads((tmp_path / "one" / "events.json").read_text()) == \
        json.loads((tmp_path / "two" / "events.json").read_text())
    # the run dir is an ordinary one: eval reads it unchanged
    assert api.eval_run(tmp_path / "two")["test_error"] == runio.read_json(tmp_path / "one" / runio.METRICS)["test_error"]


@pytest.mark.slow
def test_three_stages_of_cff_over_earlier_units_through_the_cli_are_exact(tmp_path):
    sets = ("loop.algo=cff", "cff.gamma=earlier", "loop.schedule=alternate", "loop.chunk=2")
    single(config(*sets), tmp_path / "one")
    t0 = time.monotonic()
    r = cli("train", *SMALL, *[a for s in sets for a in ("--set", s)], "--stages", "3", "--out", str(tmp_path / "three"))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < BOUND_S
    assert_same_run(tmp_path / "one", tmp_path / "three")


@pytest.mark.slow
def test_a_pipeline_resumes_a_single_process_run_exactly(tmp_path):
    cfg = config()
    single(cfg, tmp_path / "whole")
    single(cfg, tmp_path / "cut", stop_after=1)                 # interrupted after epoch 1
    r = cli("train", *SMALL, "--stages", "2", "--resume", "--out", str(tmp_path / "cut"))
    assert r.returncode == 0, r.stderr
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.slow
def test_cff_over_all_units_reads_later_stages_from_refreshed_copies(tmp_path, monkeypatch):
    cfg = config("loop.algo=cff", "cff.gamma=all")
    single(cfg, tmp_path / "one")
    a = checkpoint(tmp_path / "one")
    # R = 3 (the default for 3 stages): units 1 and 2 read later units 1 to 4 batches staler
    launch(cfg, 3, out=tmp_path / "stale", progress=False)
    b = checkpoint(tmp_path / "stale")
    assert not torch.allclose(a["model.layers.0.synapse.weight"], b["model.layers.0.synapse.weight"], atol=1e-4)
    # R = 1: the copies hold the weights after the previous batch, the single process's
    # frozen copy; the goodness then differs only by float reordering
    monkeypatch.setenv("FFNEURO_PIPELINE_GAMMA_REFRESH", "1")
    launch(cfg, 3, out=tmp_path / "fresh", progress=False)
    c = checkpoint(tmp_path / "fresh")
    assert all(torch.allclose(a[k], c[k], rtol=0, atol=1e-5) for k in a if a[k].is_floating_point())


def stage_pids(parent: int) -> list[int]:
    """The stage processes a CLI process started (its children)."""
    out = subprocess.run(["ps", "--ppid", str(parent), "-o", "pid="], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
def test_a_stage_killed_mid_run_ends_the_run_with_one_error_line(tmp_path):
    args = ["train", "--layers", "64,64,64", "--epochs", "500", "--no-progress", "--set", "loop.entropy_probe=0",
            "--stages", "2", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen([sys.executable, "-c", "from ffneuro.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(stage_pids(proc.pid)) < 2 or not (tmp_path / "run" / runio.CHECKPOINT).exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the stages did not start"
            time.sleep(0.2)
        stages = stage_pids(proc.pid)
        os.kill(stages[1], 9)                                    # the last stage dies without a word
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert err.strip().splitlines() == ["error: stage 2 of the pipeline was killed by signal SIGKILL without an "
                                        "error message"]
    time.sleep(0.5)
    assert all(not Path(f"/proc/{p}").exists() for p in stages)   # none left running


@pytest.mark.slow
def test_a_divergence_found_on_rank_0_stops_every_stage(tmp_path):
    r = cli("train", *SMALL, "--set", "optim.lr=1e38", "--set", "units.loss=symba", "--stages", "2",
            "--out", str(tmp_path / "run"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training diverged"), r.stderr


@pytest.mark.slow
def test_under_torchrun_each_process_is_a_stage_and_the_run_is_exact(tmp_path):
    from ffneuro.train.pipeline import free_port
    single(config(), tmp_path / "one")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "--no-python", sys.executable, "-c", "from ffneuro.cli import main; main()", "train", *SMALL,
           "--stages", "2", "--out", str(tmp_path / "two")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=BOUND_S)
    assert r.returncode == 0, r.stderr
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_stage_stderr_is_passed_on_without_the_runtime_teardown_noise():
    import io
    import os

    from ffneuro.train.pipeline import forward_stderr
    r, w = os.pipe()
    os.write(w, b"epoch 1/2: 50%\r" + b"terminate called without an active exception\n" + b"epoch 1/2: 100%\n")
    os.close(w)
    out = io.BytesIO()

    class Target:
        buffer = out

        def flush(self):
            pass
    with os.fdopen(r, "rb") as source:
        forward_stderr(source, Target())
    assert out.getvalue() == b"epoch 1/2: 50%\repoch 1/2: 100%\n"


def test_a_stage_leaves_with_its_code_and_its_output_flushed():
    # leave skips the interpreter's teardown (gloo can abort there), so it must flush itself
    code = "from ffneuro.train.pipeline import leave; print('last words', end=''); leave(3)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (3, "last words")
