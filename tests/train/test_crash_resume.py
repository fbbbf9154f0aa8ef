"""A training process killed with SIGKILL at many points (inside a batch, and at every
stage of a checkpoint write) and resumed each time ends bit-identical to a run that was
never interrupted.

Each kill point is reached by a child process that wraps one of the trainer's own
functions and kills itself there, so the points are exact and the test deterministic; a
few extra kills come from the parent at seeded random times.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from ffneuro.runs import files as runio

pytestmark = pytest.mark.slow

ARGS = ["--layers", "32,32", "--epochs", "8", "--set", "loop.batch_size=128", "--no-progress"]

CHILD = r"""
import os, signal, sys
import safetensors.torch as st
from ffneuro.runs import files as runio
from ffneuro.train import loop

kind, n = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def counted(fn, before=None, after=None):
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        hit = calls["n"] == n
        if hit and before:
            before(*args, **kwargs)
        out = fn(*args, **kwargs)
        if hit and after:
            after(*args, **kwargs)
        return out
    return wrapper

def half_written(tensors, tmp, metadata=None):
    save(tensors, tmp, metadata=metadata)
    size = os.path.getsize(tmp)
    with open(tmp, "r+b") as f:
        f.truncate(size // 2)
    die()

save = st.save_file
if kind == "step":            # inside the n-th training batch of this process
    loop.train_step = counted(loop.train_step, before=lambda *a, **k: die())
elif kind == "partial":       # the n-th checkpoint half written to its temporary file
    st.save_file = counted(save, before=half_written)
elif kind == "written":       # the n-th checkpoint complete in its temporary file, not yet renamed
    runio._keep_previous = counted(runio._keep_previous, before=lambda *a, **k: die())
elif kind == "linked":        # the previous checkpoint kept, the new one not yet renamed
    runio._keep_previous = counted(runio._keep_previous, after=lambda *a, **k: die())
elif kind == "json":          # the n-th small file (marker, config.json, metrics.json) half written
    def half_json(path, data):
        with runio.atomic_output(path) as tmp, open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            die()
    runio.atomic_write_bytes = counted(runio.atomic_write_bytes, before=half_json)

from ffneuro.cli import main
sys.argv = ["ffneuro", "train", *sys.argv[3:]]
main()
"""

# (kind, n): 20 exact kill points, counted within each (resumed) process. The run has 8
# epochs of 12 batches; the points before the last advance it by 5 epochs in all, so each
# is reached; the last kills the write of metrics.json after the final epoch.
KILL_POINTS = [("step", 3), ("partial", 1), ("step", 12), ("written", 1), ("linked", 1),
               ("step", 1), ("json", 1), ("partial", 2), ("step", 7), ("written", 2),
               ("step", 13), ("linked", 2), ("json", 1), ("step", 20), ("partial", 1),
               ("written", 1), ("step", 2), ("linked", 1), ("step", 24), ("json", 2)]


def _child(kind: str, n: int, out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, kind, str(n), *ARGS, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final(out) -> tuple[dict, dict]:
    tensors, _ = runio.load_checkpoint(out / runio.CHECKPOINT)
    metrics = json.loads((out / runio.METRICS).read_text())
    return tensors, metrics


def test_killed_and_resumed_runs_end_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    p = _child("none", 0, reference)
    assert p.wait(timeout=600) == 0, p.stderr.read()
    want_tensors, want_metrics = _final(reference)

    out = tmp_path / "killed"
    killed, rng = 0, random.Random(0)
    randoms = [("random", int(rng.uniform(1.5, 4.0) * 1000)) for _ in range(3)]
    points = KILL_POINTS[:10] + randoms + KILL_POINTS[10:]
    for i, (kind, n) in enumerate(points):
        resume = ["--resume"] if (out / runio.MARKER).exists() else []
        if kind == "random":                       # the parent kills at a seeded random time
            p = _child("none", 0, out, *resume)
            time.sleep(n / 1000)
            p.send_signal(signal.SIGKILL)
        else:
            p = _child(kind, n, out, *resume)
        code = p.wait(timeout=600)
        err = p.stderr.read()
        assert "Traceback" not in err, err
        if kind == "random":
            assert code in (0, -signal.SIGKILL), err
            continue
        assert code == -signal.SIGKILL, f"kill point {i} ({kind} {n}) not reached: exit {code}: {err}"
        killed += 1
    assert killed == len(KILL_POINTS) >= 20
    p = _child("none", 0, out, "--resume")
    assert p.wait(timeout=600) == 0, p.stderr.read()
    got_tensors, got_metrics = _final(out)
    assert got_tensors.keys() == want_tensors.keys()
    for name in want_tensors:
        assert torch.equal(got_tensors[name], want_tensors[name]), name
    for key in ("test_error", "per_layer_error", "cumulative_error", "epochs"):
        assert got_metrics[key] == want_metrics[key]
    assert [h["loss"] for h in got_metrics["history"]] == [h["loss"] for h in want_metrics["history"]]
    assert not [p.name for p in out.glob(".*.tmp")]                # debris of the kills removed
