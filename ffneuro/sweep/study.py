"""A sweep on Optuna: where the study is stored, what one trial does, and the workers.

Optuna does the searching (samplers, pruning, the shared storage); this module turns a
:class:`~ffneuro.sweep.space.SearchSpace` into trials. It needs nothing of the trainer:
the function that trains (or estimates) one trial is handed in by ``ffneuro.api``, which
keeps this package at the bottom of the import layering and lets tests hand in a fake.

A training trial is a run dir ``OUT/trial-NNNN``. Trials are numbered by the storage, so
workers on several machines against one storage never share a run dir. A trial that
raises is recorded as failed with its one-line error (user attribute ``error``) and the
study goes on; a trial that is interrupted (Ctrl-C, or a worker that died: an RDB
storage's heartbeat notices it) is retried when the study is run again, in its own run
dir, which the retry resumes from its last checkpoint.

``study.trials`` is the budget of the whole study, shared by all its workers: a worker
stops when that many trials are done or running. Two workers may take the last slot at
the same moment; the later one (by trial number) is then recorded as failed with the
attribute ``over_budget`` and left out of every table.

Optuna is imported inside the functions: ``ffneuro`` starts without it.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ffneuro.config import ConfigError
from ffneuro.sweep.space import (PROFILE_PREFIX, SearchSpace, base_config, check_for_grid,
                                 check_for_training, load_space)

INSTALL_HINT = "pip install 'ffneuro[sweep]' (or pip install optuna)"
TRIAL_DIR = "trial-{:04d}"
SQLITE_TIMEOUT_S = 120          # a writer waits this long for SQLite's lock (several local workers)
HEARTBEAT_S = 30                # RDB storages: a running trial's heartbeat ...
GRACE_S = 120                   # ... and how long without one before it counts as died


class SweepError(ConfigError):
    """A sweep that cannot run as asked (one line)."""


class TrialError(Exception):
    """What a failed trial raised, reduced to its one line (recorded as the trial's error)."""


def require_optuna():
    """The optuna module, quiet (ffneuro reports trials itself), or one line saying how to
    install it."""
    try:
        import optuna
    except ImportError:
        raise SweepError(f"ffneuro sweep needs optuna, which is not installed: {INSTALL_HINT}") from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def one_line(e: BaseException) -> str:
    """The one line a failure is recorded as: a user-input error (ValueError) as its first
    line, anything else with its type (``RuntimeError: boom``)."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    first = text.splitlines()[0]
    return first if isinstance(e, (ValueError, TrialError)) else f"{type(e).__name__}: {first}"


# -- storage ---------------------------------------------------------------------------------
def storage_url(text: str) -> str:
    """The storage a ``--storage`` value means: a database URL as given
    (``postgresql+psycopg2://user@host/db``, ``sqlite:///x.db``); ``journal:PATH`` or a
    path ending in ``.journal``/``.log``: Optuna's journal file; any other path: an SQLite
    file (created on first use).

    >>> storage_url("postgresql+psycopg2://ff@db/sweeps")
    'postgresql+psycopg2://ff@db/sweeps'
    >>> storage_url("/tmp/s.journal"), storage_url("/tmp/sweep.db")
    ('journal:/tmp/s.journal', 'sqlite:////tmp/sweep.db')
    """
    text = str(text).strip()
    if not text:
        raise SweepError("--storage is empty (a file such as sweep.db, or a database URL)")
    if "://" in text:
        return text
    if text.startswith("journal:"):
        return "journal:" + str(Path(text[len("journal:"):]).expanduser().absolute())
    path = Path(text).expanduser().absolute()
    if path.suffix in (".journal", ".log"):
        return f"journal:{path}"
    return f"sqlite:///{path}"


def open_storage(text: str):
    """An Optuna storage for ``--storage`` (see :func:`storage_url`). SQLite waits up to
    SQLITE_TIMEOUT_S for its write lock, so several local workers share one file; RDB
    storages keep a heartbeat per running trial so a dead worker's trial is noticed."""
    optuna = require_optuna()
    url = storage_url(text)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:"):])
            if not path.parent.is_dir():
                raise SweepError(f"--storage {text}: folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            folder = Path(url[len("sqlite:///"):]).parent
            if not folder.is_dir():
                raise SweepError(f"--storage {text}: folder {folder} does not exist")
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                          grace_period=GRACE_S)
    except SweepError:
        raise
    except ModuleNotFoundError as e:
        raise SweepError(f"--storage {text}: the database driver {e.name} is not installed "
                         f"(PostgreSQL: pip install psycopg2-binary)") from None
    except Exception as e:
        raise SweepError(f"--storage {text}: cannot open it: {one_line(e)}") from None


# -- the study -------------------------------------------------------------------------------
def sampler_seed(seed: int | None, salt: str = "") -> int | None:
    """The seed of one worker's sampler: ``seed`` itself in a lone in-process worker (the
    sweep then repeats exactly), else mixed with the worker's ``salt`` (host and process):
    workers with one seed would draw the same values.

    >>> sampler_seed(3), sampler_seed(None, "h:1"), sampler_seed(3, "h:1") == sampler_seed(3, "h:2")
    (3, None, False)
    """
    if seed is None or not salt:
        return seed
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{salt}".encode()).digest()[:4], "little")


def _sampler(optuna, space: SearchSpace, grid: dict | None = None, salt: str = ""):
    seed = sampler_seed(space.seed, salt)
    if grid is not None:
        return optuna.samplers.GridSampler(grid, seed=seed)
    kind = space.sampler
    if kind == "auto":
        kind = "nsga2" if space.multi_objective else "tpe"
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(optuna, space: SearchSpace):
    """Median pruning on each epoch's validation error. Optuna prunes single-objective
    studies only, so a multi-objective study never prunes."""
    if space.multi_objective or space.pruner == "none":
        return optuna.pruners.NopPruner()
    # a trial runs pruner_warmup_epochs epochs before it may be pruned (steps are epochs, from 1)
    return optuna.pruners.MedianPruner(n_startup_trials=space.pruner_startup_trials,
                                       n_warmup_steps=space.pruner_warmup_epochs + 1)


def open_study(space: SearchSpace, storage, kind: str, grid: dict | None = None, salt: str = ""):
    """Create the study, or load it if it exists; a study made from another search space
    (or another kind: train or grid) is refused rather than mixed. ``salt``: see
    :func:`sampler_seed`."""
    optuna = require_optuna()
    try:
        study = optuna.create_study(study_name=space.name, storage=storage, load_if_exists=True,
                                    directions=list(space.directions),
                                    sampler=_sampler(optuna, space, grid, salt),
                                    pruner=_pruner(optuna, space))
    except ValueError as e:
        raise SweepError(f"study {space.name!r}: {one_line(e)}") from None
    want = {"kind": kind, "space": {k: v for k, v in space.to_dict().items() if k != "trials"}}   # the budget may grow
    have = {k: study.user_attrs.get(k) for k in want}
    if have["space"] is None:
        for k, v in want.items():
            study.set_user_attr(k, v)
        study.set_user_attr("objectives", list(space.objectives))
    elif have != want:
        diff = sorted(k for k in set(have["space"] or {}) | set(want["space"])
                      if (have["space"] or {}).get(k) != want["space"].get(k))
        what = f"a {have['kind']} sweep" if have["kind"] != kind else f"another search space (differs in {', '.join(diff)})"
        raise SweepError(f"study {space.name!r} in this storage was made by {what}: give the study another "
                         f"study.name, or use another --storage")
    return study


def load_study(name: str, storage):
    optuna = require_optuna()
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SweepError(f"no study {name!r} in this storage (studies: {', '.join(names) or 'none'})") from None


# -- the budget ------------------------------------------------------------------------------
def superseded(trials) -> set[int]:
    """Numbers of trials that a retry replaces (they no longer count)."""
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


def counted(trials) -> list:
    """The trials that make up the study: not replaced by a retry, not over the budget."""
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone and not t.user_attrs.get("over_budget")]


def retry_interrupted(study) -> list[int]:
    """Queue a retry of every trial that was interrupted (Ctrl-C) or whose worker died
    (RDB heartbeat); each retry trains in the interrupted trial's run dir, resuming it.
    Returns the numbers queued for retry. Call it from one process before the workers."""
    optuna = require_optuna()
    optuna.storages.fail_stale_trials(study)      # RDB: trials whose worker stopped beating
    trials = study.get_trials(deepcopy=False)
    gone = superseded(trials)
    queued = []
    for t in trials:
        if (t.state == optuna.trial.TrialState.FAIL and t.number not in gone
                and not t.user_attrs.get("over_budget")
                and t.user_attrs.get("error", "interrupted") == "interrupted"):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number,
                                                      "resumes": t.user_attrs.get("resumes", t.number)})
            queued.append(t.number)
    return queued


def done_and_running(study) -> tuple[int, int]:
    optuna = require_optuna()
    s = optuna.trial.TrialState
    mine = counted(study.get_trials(deepcopy=False))
    return (sum(t.state in (s.COMPLETE, s.PRUNED, s.FAIL) for t in mine),
            sum(t.state == s.RUNNING for t in mine))          # a WAITING (queued) trial is yet to be run


# -- one trial -------------------------------------------------------------------------------
def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's value of every param, drawn by the study's sampler."""
    out = {}
    for p in space.params:
        if p.kind == "choice":
            out[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), step=p.step, log=p.log)
    return out


def derived_profile(base: str, changes: dict[str, Any], folder: Path) -> Path:
    """A profile file that extends ``base`` with ``changes`` ("precision.weight_bits": 4),
    each cited as set by the sweep; written once into ``folder`` and named by its content,
    so trials with equal changes share it. ``ffneuro profiles validate`` accepts it."""
    from ffneuro.runs.files import atomic_write_bytes

    stem = Path(base).stem if base.endswith(".toml") else base
    tag = "+".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(changes.items()))
    path = Path(folder) / f"{stem}+{tag}.toml"
    parent = str(Path(base).resolve()) if base.endswith(".toml") or "/" in base else base
    lines = [f'name = "{stem}+{tag}"', f'extends = "{parent}"',
             f'description = "{stem} with {tag} (an ffneuro sweep point)"']
    for sec in sorted({k.split(".")[0] for k in changes}):
        lines.append(f"\n[{sec}]")
        for key, value in sorted(changes.items()):
            if key.split(".")[0] == sec:
                v = ("true" if value else "false") if isinstance(value, bool) else (
                    f'"{value}"' if isinstance(value, str) else repr(value))
                lines.append(f'{key.split(".", 1)[1]} = {{ value = {v}, source = "ffneuro sweep parameter '
                             f'{PROFILE_PREFIX}{key}", confidence = "assumed" }}')
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        Path(folder).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text.encode())
    return path


def trial_config(space: SearchSpace, values: dict[str, Any], profiles: Path):
    """The RunConfig of a trial with these values (a changed profile written into ``profiles``)."""
    cfg, changes = base_config(space, values)
    if changes:
        cfg = cfg.replace(hardware={"profile": str(derived_profile(cfg.hardware.profile, changes, profiles))})
    return cfg


def objective_values(space: SearchSpace, metrics: dict) -> list[float]:
    """The study's objectives read off a training run's metrics."""
    out = []
    for name in space.objectives:
        if name == "val_error":
            errors = metrics.get("val_error") or {}
            if space.val_mode not in errors:
                raise TrialError(f"no {space.val_mode} validation error in the run (have: "
                                 f"{', '.join(errors) or 'none'}); set study.val_mode")
            out.append(float(errors[space.val_mode]))
        elif name == "train_s":
            out.append(float(metrics["wall_s"]))
        else:
            out.append(estimate_value(name, metrics.get("estimate")))
    return out


def estimate_value(name: str, report: dict | None) -> float:
    if report is None:
        raise TrialError(f"objective {name} needs an estimate: the run has no hardware.profile")
    return float({"inference_energy_pj": lambda: report["inference"]["energy_pj_per_sample"],
                  "training_energy_pj": lambda: report["training"]["energy_pj_per_sample"],
                  "sram_bytes": lambda: report["ff_sram_bytes"],
                  "cores": lambda: report["cores_used"]}[name]())


def _over_budget(trial, total: int) -> bool:
    before = [t for t in counted(trial.study.get_trials(deepcopy=False)) if t.number < trial.number]
    return len(before) >= total


def train_objective(space: SearchSpace, out: Path, train_fn: Callable) -> Callable:
    """Optuna's objective for a training sweep. ``train_fn(cfg, run_dir, resume=, on_epoch=)``
    trains one run and returns its metrics (``ffneuro.api`` hands in the trainer)."""
    optuna = require_optuna()

    def objective(trial):
        if _over_budget(trial, space.trials):
            trial.set_user_attr("over_budget", True)
            trial.study.stop()
            raise TrialError("over the study's budget (another worker took the last trial)")
        number = int(trial.user_attrs.get("resumes", trial.number))
        run_dir = Path(out) / TRIAL_DIR.format(number)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            values = suggest(trial, space)
            cfg = trial_config(space, values, Path(out) / "profiles")
            trial.set_user_attr("config", cfg.to_dict())
            resume = "resumes" in trial.user_attrs and _is_run_dir(run_dir)
            metrics = train_fn(cfg, run_dir, resume=resume, on_epoch=_pruning(trial, space))
            result = objective_values(space, metrics)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted")
            raise
        except Exception as e:
            trial.set_user_attr("error", one_line(e))
            raise TrialError(one_line(e)) from None
        trial.set_user_attr("test_error", metrics.get("test_error", {}))
        trial.set_user_attr("val_error", metrics.get("val_error", {}))
        trial.set_user_attr("epochs", metrics.get("epochs"))
        if "sram_fits" in metrics:
            trial.set_user_attr("fits", bool(metrics["sram_fits"]))
        return result if space.multi_objective else result[0]

    return objective


def _is_run_dir(path: Path) -> bool:
    from ffneuro.runs.files import is_run_dir

    return is_run_dir(path)


def _pruning(trial, space: SearchSpace):
    """The trainer's per-epoch hook: report the epoch's validation error to Optuna and stop
    the run (``TrialPruned``) when the pruner says so. None for a multi-objective study."""
    if space.multi_objective or space.pruner == "none":
        return None
    optuna = require_optuna()

    def on_epoch(record: dict) -> None:
        errors = record.get("val_error")
        if not errors or space.val_mode not in errors:
            return
        err = float(errors[space.val_mode])
        trial.report(err, record["epoch"])
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", record["epoch"])
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}: val_error {err:.2f} %")

    return on_epoch


# -- workers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs (picklable: plain data and a module-level function)."""

    space_path: str
    storage: str
    out: str
    train_fn: Callable
    threads: int = 1
    salt: str = ""                  # "" in a lone in-process worker; see sampler_seed


def work(job: WorkerJob, on_trial: Callable | None = None) -> None:
    """One worker: trials of the study until its budget is used up."""
    space = load_space(job.space_path)
    check_for_training(space)
    storage = open_storage(job.storage)
    study = open_study(space, storage, "train", salt=job.salt)
    objective = train_objective(space, Path(job.out), job.train_fn)
    callbacks = [lambda study, t: on_trial(trial_row(study, t))] if on_trial else []
    while True:
        done, running = done_and_running(study)
        if done + running >= space.trials:
            return
        study.optimize(objective, n_trials=1, catch=(TrialError,), callbacks=callbacks)


def _worker_main(job: WorkerJob, error_file: str) -> None:
    """A worker process: set its torch threads, work, and leave a failure as one line."""
    import dataclasses

    os.environ.setdefault("OMP_NUM_THREADS", str(job.threads))
    try:
        work(dataclasses.replace(job, salt=f"{socket.gethostname()}:{os.getpid()}"))
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as e:       # noqa: BLE001 - the parent reports it in one line
        Path(error_file).write_text(one_line(e))
        sys.exit(1)


def run_workers(job: WorkerJob, n: int, study, on_trial: Callable | None = None, poll_s: float = 1.0) -> None:
    """Start ``n`` worker processes (spawned: each imports afresh, one torch thread by
    default) on the study, report each finished trial through ``on_trial`` while they run,
    and raise one line if a worker failed."""
    import multiprocessing as mp
    import signal
    import tempfile

    ctx = mp.get_context("spawn")
    errors = Path(tempfile.mkdtemp(prefix="ffneuro-sweep-"))
    procs = [ctx.Process(target=_worker_main, args=(job, str(errors / f"worker{i}.err")), daemon=False)
             for i in range(n)]
    seen: set[int] = set()
    try:
        for p in procs:
            p.start()
        while True:
            alive = any(p.is_alive() for p in procs)
            _report_new(study, seen, on_trial)
            if not alive:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too (one process group): let them record their trials
        # as interrupted; a worker still running after 5 s (the parent alone was signalled)
        # gets its own SIGINT, never a second one while it is handling the first
        for p in procs:
            p.join(5)
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
        raise
    failed = []
    for i, p in enumerate(procs):
        p.join()
        f = errors / f"worker{i}.err"
        if p.exitcode != 0:
            failed.append(f"worker {i + 1}: " + (f.read_text() if f.exists() else f"exit code {p.exitcode}"))
        f.unlink(missing_ok=True)
    errors.rmdir()
    if failed:
        raise SweepError("; ".join(failed))


def _report_new(study, seen: set[int], on_trial: Callable | None) -> None:
    optuna = require_optuna()
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    for t in counted(study.get_trials(deepcopy=False)):
        if t.state in finished and t.number not in seen:
            seen.add(t.number)
            if on_trial:
                on_trial(trial_row(study, t))


def trial_row(study, t) -> dict:
    """A finished trial as one flat row: number, state, objectives by name, params, error."""
    names = study.user_attrs.get("objectives") or [f"objective{i}" for i in range(len(study.directions))]
    row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower()}
    values = t.values or [None] * len(names)
    row.update({n: v for n, v in zip(names, values)})
    row.update({f"param:{k}": v for k, v in t.params.items()})
    for key in ("fits", "pruned_at_epoch", "epochs", "run_dir", "worker", "error", "retry_of"):
        if key in t.user_attrs:
            row[key] = t.user_attrs[key]
    if t.datetime_start and t.datetime_complete:
        row["duration_s"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return row


# -- the estimate-only grid ------------------------------------------------------------------
def grid_points(space: SearchSpace) -> dict[str, list]:
    check_for_grid(space)
    return {p.key: list(p.grid_values()) for p in space.params}


def grid_size(grid: dict[str, list]) -> int:
    return math.prod(len(v) for v in grid.values()) if grid else 1


def run_grid(space: SearchSpace, storage, out: Path, estimate_fn: Callable, on_trial: Callable | None = None):
    """Every point of the grid (profiles x widths x bits ...) estimated analytically, no
    training: ``estimate_fn(profile, layer_sizes, settings)`` returns the estimate report.
    Points already in the study are not estimated again. Returns the study."""
    optuna = require_optuna()
    grid = grid_points(space)
    study = open_study(space, storage, "grid", grid=grid)
    done = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)}
    todo = [c for c in itertools.product(*grid.values()) if tuple(sorted(zip(grid, c))) not in done]
    s = space.estimate

    def objective(trial):
        try:
            values = suggest(trial, space)
            cfg = trial_config(space, values, Path(out) / "profiles")
            if cfg.units.stack and any(u.kind != "dense" for u in cfg.units.stack):
                raise TrialError("the analytic estimate maps dense units only (units.stack has conv units)")
            sizes = [s.input_size] + [u.size for u in cfg.units.plan()]
            report = estimate_fn(cfg.hardware.profile, sizes, s)
            result = [estimate_value(o, report) for o in space.objectives]
        except Exception as e:
            trial.set_user_attr("error", one_line(e))
            raise TrialError(one_line(e)) from None
        trial.set_user_attr("fits", bool(report["fits"]))
        trial.set_user_attr("cores", int(report["cores_used"]))
        trial.set_user_attr("sram_bytes", int(report["ff_sram_bytes"]))
        trial.set_user_attr("inference_energy_pj", float(report["inference"]["energy_pj_per_sample"]))
        trial.set_user_attr("training_energy_pj", float(report["training"]["energy_pj_per_sample"]))
        return result if space.multi_objective else result[0]

    callbacks = [lambda study, t: on_trial(trial_row(study, t))] if on_trial else []
    if todo:
        study.optimize(objective, n_trials=len(todo), catch=(TrialError,), callbacks=callbacks)
    return study
