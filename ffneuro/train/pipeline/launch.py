"""Starting the stages: ``launch`` (local processes with an env rendezvous), ``run_stage``
(this process's stage, also under torchrun), and how a stage process reports and ends."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist

from ffneuro.config import RunConfig
from ffneuro.runs import files as runio
from ffneuro.train.pipeline.plan import PeerLost, PipelineError, check_supported
from ffneuro.train.pipeline.stage import Stage

log = logging.getLogger(__name__)

TIMEOUT_S = float(os.environ.get("FFNEURO_PIPELINE_TIMEOUT", 1800))   # a collective or recv waits this long
ERROR_FILE_ENV = "FFNEURO_PIPELINE_ERROR"                              # where a local stage writes its error


def launched() -> bool:
    """Whether this process is one of a group torchrun (or ``launch``) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def run_stage(cfg: RunConfig, stages: int, *, out: Path | None, resume: bool = False, overwrite: bool = False,
              progress: bool = True, threads: int = 1, count_events: bool = False) -> dict:
    """This process's stage of a pipeline whose rendezvous is in the environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT: torchrun's). Returns the run's metrics on every rank.
    Without ``out``, rank 0 trains into a temporary run dir it removes at the end."""
    world = int(os.environ["WORLD_SIZE"])
    if world != stages:
        raise PipelineError(f"--stages {stages}, but the launcher started {world} processes (give the same number)")
    check_supported(cfg, stages)
    torch.set_num_threads(max(1, threads))
    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world,
                            timeout=timedelta(seconds=TIMEOUT_S))
    tmp = tempfile.TemporaryDirectory(prefix="ffneuro-pipeline-") if out is None else None
    try:
        run_dir = Path(tmp.name) / "run" if tmp is not None else Path(out)
        try:
            metrics = Stage(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress,
                            count_events=count_events).run()
            dist.barrier()                 # no rank tears its connections down while another still uses them
            return metrics
        except RuntimeError as exc:        # gloo: a peer's connection closed or a wait timed out
            if isinstance(exc, PeerLost) or "Connection" in str(exc) or "Timed out" in str(exc) or "closed" in str(exc):
                raise PeerLost(f"stage {dist.get_rank() + 1} lost a peer stage ({str(exc).splitlines()[0][:160]})") \
                    from None
            raise
    finally:
        if tmp is not None:
            tmp.cleanup()
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cfg: RunConfig, stages: int, *, out: Path | None, resume: bool = False, overwrite: bool = False,
           progress: bool = True, threads: int = 1, count_events: bool = False, poll_s: float = 0.2) -> dict:
    """Run ``stages`` local stage processes (``python -m ffneuro.train.pipeline JOB``) with an
    env rendezvous on a free port, wait for them and return the metrics. When one fails,
    the others are stopped and its one-line error is raised as ``PipelineError``."""
    check_supported(cfg, stages)
    with tempfile.TemporaryDirectory(prefix="ffneuro-pipeline-") as tmp:
        tmp = Path(tmp)
        job = {"config": cfg.to_dict(), "stages": stages, "out": str(out) if out is not None else None,
               "resume": resume, "overwrite": overwrite, "progress": progress, "threads": threads,
               "count_events": count_events, "result": str(tmp / "metrics.json")}
        runio.write_json(tmp / "job.json", job)
        base = {**os.environ, "WORLD_SIZE": str(stages), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        procs, forwarders = [], []
        try:
            for r in range(stages):
                env = {**base, "RANK": str(r), "LOCAL_RANK": str(r), ERROR_FILE_ENV: str(tmp / f"error{r}.txt")}
                procs.append(subprocess.Popen([sys.executable, "-m", "ffneuro.train.pipeline", str(tmp / "job.json")],
                                              env=env, stderr=subprocess.PIPE))
                forwarders.append(threading.Thread(target=forward_stderr, args=(procs[-1].stderr, sys.stderr),
                                                   daemon=True, name=f"ffneuro-stage{r}-stderr"))
                forwarders[-1].start()
            while any(p.poll() is None for p in procs) and all(p.returncode in (None, 0) for p in procs):
                time.sleep(poll_s)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for t in forwarders:           # every stage's last words are out before the launcher's
                t.join(timeout=5)
        failed = [r for r, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise PipelineError(first_error(tmp, {r: procs[r].returncode for r in failed}))
        return json.loads((tmp / "metrics.json").read_text())


# What the C++ runtime prints when a stage's gloo threads are torn down while the stage
# exits on an error its launcher already reports in one line (seen about once in ten
# divergence runs): not a second error, so it is not passed on.
RUNTIME_NOISE = (b"terminate called without an active exception\n",)


def forward_stderr(source, target) -> None:
    """Copy a stage's stderr to ``target`` as it comes (raw chunks, so progress bars that
    redraw with \\r keep drawing), without the runtime's teardown noise."""
    out = getattr(target, "buffer", target)
    for chunk in iter(lambda: os.read(source.fileno(), 65536), b""):
        for noise in RUNTIME_NOISE:
            chunk = chunk.replace(noise, b"")
        if chunk:
            out.write(chunk)
            target.flush()


def first_error(tmp: Path, failed: dict[int, int]) -> str:
    """The error that stopped the pipeline: a stage's own failure before one that only
    lost its peer; a stage stopped without a word (killed) is named by its rank."""
    errors = []
    for r in failed:
        path = tmp / f"error{r}.txt"
        text = path.read_text().strip() if path.exists() else ""
        errors.append((text.startswith("peer:"), r, text.removeprefix("peer:")))
    errors.sort(key=lambda e: (e[0], not e[2], e[1]))
    _, r, text = errors[0]
    code = failed[r]
    how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
        else f"exited with code {code}"
    return text or f"stage {r + 1} of the pipeline {how} without an error message"


def leave(code: int) -> NoReturn:
    """End a stage process (ours or torchrun's) with ``code`` but without the interpreter's
    teardown. Everything a stage writes is fsynced before it returns; at teardown gloo's
    worker threads can still hold work objects, and destroying them while the interpreter
    finalises aborts a process whose run succeeded (SIGABRT, "terminate called without an
    active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """A local stage ends when the process that launched it is gone (killed, say), rather
    than train on as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="ffneuro-parent-watch").start()


def stage_main(job_path: str) -> int:
    """Entry of a local stage process: run the job, write rank 0's metrics, and on failure
    write one line for the launcher (``peer:`` first when another stage was the cause)."""
    job = json.loads(Path(job_path).read_text())
    err = os.environ.get(ERROR_FILE_ENV)
    _exit_with_parent()
    try:
        metrics = run_stage(RunConfig.from_dict(job["config"]), job["stages"],
                            out=Path(job["out"]) if job["out"] else None, resume=job["resume"],
                            overwrite=job["overwrite"], progress=job["progress"], threads=job["threads"],
                            count_events=job["count_events"])
        if int(os.environ["RANK"]) == 0:
            runio.write_json(Path(job["result"]), metrics)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:              # one line for the launcher, never a traceback
        line = (str(exc).splitlines() or [type(exc).__name__])[0]
        if os.environ.get("FFNEURO_DEBUG"):
            log.exception("stage failed")
        if err:
            Path(err).write_text(("peer:" if isinstance(exc, PeerLost) else "") + line + "\n")
        else:
            log.error("error: %s", line)     # no handler configured here: logging's last resort prints the line
        return 1
