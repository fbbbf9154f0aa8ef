"""Run-directory I/O: atomic JSON files and a checksummed checkpoint that never unpickles.

A run dir holds the marker ``.ffneuro-run`` (what lets ffneuro recognise a folder as its
own), ``config.json``, ``checkpoint.safetensors`` (tensors + JSON metadata + a SHA-256
over both), the previous epoch's ``checkpoint.prev.safetensors``, ``metrics.json`` and,
when estimated, ``events.json`` / ``estimate.json``.

Every file is written to a temporary name in the same directory, fsynced and renamed (and
the directory fsynced), so a crash never leaves a half-written file under a real name;
the temporary files a crash does leave are removed when the run is next started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

if TYPE_CHECKING:              # torch and safetensors.torch load when a checkpoint is read or written:
    import torch               # the commands that never touch one (estimate, profiles) start without them

CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
PREVIOUS = "checkpoint.prev.safetensors"
METRICS = "metrics.json"
MARKER = ".ffneuro-run"
RUN_FILES = (MARKER, CONFIG, CHECKPOINT, PREVIOUS, METRICS, "events.json", "estimate.json")
RUN_FOLDERS = ("analysis", "spikes")          # what `analyze` and `spikes` write by default

log = logging.getLogger(__name__)


class RunDirError(ValueError):
    """A run dir or checkpoint that cannot be used (one-line message)."""


class CorruptCheckpoint(RunDirError):
    """A checkpoint whose bytes do not match its checksum, or that cannot be parsed."""


@contextlib.contextmanager
def atomic_output(path: Path):
    """The one atomic writer: yields a temporary path in ``path``'s folder for the caller (or
    a library such as h5py or safetensors) to write; on success the file gets normal
    permissions and is renamed onto ``path``, on any failure it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())        # mkstemp makes 0600; give the file normal permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())                # the bytes are on disk before the name points at them
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename in (tmp, None):           # name the file the user asked for, not our temporary one
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def strict_json(obj):
    """``obj`` with every non-finite float replaced by None, so that the file is strict JSON
    (``NaN`` and ``Infinity`` are not JSON).

    >>> strict_json({"a": float("nan"), "b": [1.5, float("inf")]})
    {'a': None, 'b': [1.5, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    text = json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state_dict into named tensors and JSON-able scalars."""
    import torch

    sd = opt.state_dict()
    tensors, scalars = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v.detach().clone().contiguous()
            else:
                scalars["state"].setdefault(str(pid), {})[k] = v
    return tensors, scalars


def optimizer_from_flat(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor],
                        scalars: dict) -> None:
    state: dict[int, dict] = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            pid, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[key] = t
    for pid, st in scalars.get("state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def tensor_digest(tensors: dict[str, torch.Tensor], meta_text: str) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes, in name order) and the
    metadata text: what a checkpoint's ``ffneuro_sha256`` holds."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(meta_text.encode())
    return h.hexdigest()


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Tensors in safetensors format, ``meta`` as JSON in the file's metadata header with a
    SHA-256 over both. The checkpoint it replaces is kept as ``checkpoint.prev.safetensors``
    (a hard link, so the run always has a complete checkpoint under its real name)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    meta_text = json.dumps(strict_json(meta), allow_nan=False)
    header = {"ffneuro": meta_text, "ffneuro_sha256": tensor_digest(tensors, meta_text)}
    with atomic_output(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=header)
        except SafetensorError as e:            # e.g. a full disk, reported by the Rust writer
            raise RunDirError(f"{path}: could not write the checkpoint ({str(e).splitlines()[0]})") from None
        if path.exists():
            _keep_previous(path)


def _keep_previous(path: Path) -> None:
    previous = path.with_name(PREVIOUS)
    with atomic_output(previous) as tmp:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:                        # a file system without hard links
            shutil.copyfile(path, tmp)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a checkpoint whose checksum matches (checkpoints written before
    checksums existed load unchecked). Raises ``CorruptCheckpoint`` with one line."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise RunDirError(f"{path}: is a folder, not a checkpoint")
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        meta_text = header.get("ffneuro", "{}")
        meta = json.loads(meta_text)
    except (SafetensorError, OSError, json.JSONDecodeError, ValueError, RuntimeError) as e:
        raise CorruptCheckpoint(f"{path}: not a readable ffneuro checkpoint ({str(e).splitlines()[0]})") from None
    expected = header.get("ffneuro_sha256")
    if expected is not None and tensor_digest(tensors, meta_text) != expected:
        raise CorruptCheckpoint(f"{path}: corrupt checkpoint (its SHA-256 does not match its contents)")
    return tensors, meta


def load_resumable(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The newest good checkpoint of a run dir for ``--resume``: the checkpoint, or, when it
    is corrupt, the previous one (with a one-line warning); None when the run has none yet."""
    run_dir = Path(run_dir)
    newest, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    if not newest.exists() and not previous.exists():
        return None
    try:
        return load_checkpoint(newest)
    except RunDirError as e:
        if not previous.exists():
            raise
        tensors, meta = load_checkpoint(previous)
        epoch = meta.get("state", {}).get("epoch", "?")
        log.warning("warning: %s; resuming from %s (after epoch %s)", e, previous.name, epoch)
        return tensors, meta


# ----------------------------------------------------------------------------------------
# Whose folder is it
# ----------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    """A folder ffneuro wrote: it holds the marker, or (runs from before the marker) a
    config.json whose "config" entry is a table of sections."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    try:
        saved = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and isinstance(saved.get("config"), dict)


def prepare_run_dir(out: Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Check and claim ``out`` for a training run, before anything is computed.

    New or empty folder: created and marked. A folder of the user's (not empty, not a
    run): refused. An existing run: continued with ``resume``, replaced whole with
    ``overwrite`` (its files, including a stale ``estimate.json``, are removed first),
    else refused. Temporary files a crash left behind are removed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: is a file, not a folder (--out names a run dir)")
    if out.is_dir() and any(out.iterdir()):
        if not is_run_dir(out):
            raise RunDirError(f"{out}: folder is not empty and is not an ffneuro run dir "
                              "(nothing is written into a folder of your own; choose a new --out)")
        if not resume:
            if not overwrite:
                raise RunDirError(f"{out}: already holds a run (--resume continues it, --overwrite replaces it)")
            clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_debris(out)
    if not (out / MARKER).exists():
        atomic_write_bytes(out / MARKER, b'{"ffneuro": "run dir"}\n')
    return out


def clear_run(run_dir: Path) -> None:
    """Remove a run's own files and output folders (nothing else in the folder)."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        if name != MARKER:
            (run_dir / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
    remove_debris(run_dir)


def remove_debris(run_dir: Path) -> list[str]:
    """Delete the temporary files (``.NAME.*.tmp``) an interrupted write of a run file
    left behind; returns their names."""
    removed = []
    for p in Path(run_dir).glob(".*.tmp"):
        if any(p.name.startswith(f".{name}.") for name in RUN_FILES) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def check_new_file(path: Path, *, force: bool = False) -> Path:
    """An output file a command is about to write: never a folder, never one of a run
    dir's own files, and an existing file only with ``force``."""
    path = Path(path)
    if str(path) in ("", "."):
        raise RunDirError("the output file name is empty")
    if path.is_dir():
        raise RunDirError(f"{path}: is a folder (give a file name)")
    if path.name in RUN_FILES and is_run_dir(path.parent):
        raise RunDirError(f"{path}: is a file of the run dir {path.parent}; choose another name")
    if path.exists() and not force:
        raise RunDirError(f"{path}: exists (pass --force to replace it)")
    return path


def check_new_folder(path: Path, *, force: bool = False) -> Path:
    """An output folder: a new or empty one, or (with ``force``) one whose same-named files
    may be replaced; never a run dir itself."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: is a file, not a folder")
    if path.is_dir() and is_run_dir(path):
        raise RunDirError(f"{path}: is a run dir; write into a folder of its own")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RunDirError(f"{path}: folder is not empty (pass --force to replace the files in it)")
    return path
