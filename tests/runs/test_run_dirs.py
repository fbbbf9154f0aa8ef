"""Run dirs: whose folder it is, checksummed checkpoints with a previous copy, crash
debris, output files that are never silently replaced, strict JSON."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from ffneuro.runs import files as runio


def _save(path, value: float, epoch: int = 1):
    runio.save_checkpoint(path, {"w": torch.full((3, 4), value), "b": torch.arange(5)},
                          {"state": {"epoch": epoch}})


# -- whose folder ------------------------------------------------------------------------------
def test_a_folder_of_the_users_is_never_claimed(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "config.json").write_text('{"my": "own config"}')
    for resume in (False, True):
        with pytest.raises(runio.RunDirError, match="not an ffneuro run dir"):
            runio.prepare_run_dir(mine, resume=resume, overwrite=True)
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt"]
    assert (mine / "config.json").read_text() == '{"my": "own config"}'
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(runio.RunDirError, match="is a file"):
        runio.prepare_run_dir(a_file)


def test_new_and_empty_folders_are_marked(tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "deep", tmp_path / "empty"):
        runio.prepare_run_dir(out)
        assert (out / runio.MARKER).is_file() and runio.is_run_dir(out)


def test_an_existing_run_needs_resume_or_overwrite(tmp_path):
    run = runio.prepare_run_dir(tmp_path / "run")
    runio.write_json(run / runio.CONFIG, {"ffneuro_version": "0", "config": {}})
    runio.write_json(run / "estimate.json", {"stale": True})
    (run / "analysis").mkdir()
    (run / "analysis" / "report.md").write_text("old")
    (run / "notes.txt").write_text("the user's")
    with pytest.raises(runio.RunDirError, match="already holds a run"):
        runio.prepare_run_dir(run)
    runio.prepare_run_dir(run, resume=True)
    assert (run / "estimate.json").exists()
    runio.prepare_run_dir(run, overwrite=True)                   # the whole run goes, the user's file stays
    assert sorted(p.name for p in run.iterdir()) == [runio.MARKER, "notes.txt"]


def test_runs_from_before_the_marker_are_recognised(tmp_path):
    (tmp_path / runio.CONFIG).write_text(json.dumps({"ffneuro_version": "0.1.0", "config": {}}))
    assert runio.is_run_dir(tmp_path)
    (tmp_path / runio.CONFIG).write_text(json.dumps({"config": "mine", "ffneuro_version": "x"}))
    assert not runio.is_run_dir(tmp_path)
    (tmp_path / runio.CONFIG).write_text("{not json")
    assert not runio.is_run_dir(tmp_path)


def test_crash_debris_is_removed_and_nothing_else(tmp_path):
    run = runio.prepare_run_dir(tmp_path / "run")
    ours = run / ".checkpoint.safetensors.k2j3h4.tmp"
    ours.write_bytes(b"half a checkpoint")
    theirs = run / ".notes.txt.tmp"
    theirs.write_text("x")
    runio.prepare_run_dir(run, resume=True)
    assert not ours.exists() and theirs.exists()


# -- output files ------------------------------------------------------------------------------
def test_output_files_are_new_unless_forced(tmp_path):
    run = runio.prepare_run_dir(tmp_path / "run")
    _save(run / runio.CHECKPOINT, 1.0)
    for name in (runio.CHECKPOINT, runio.CONFIG, runio.METRICS):
        with pytest.raises(runio.RunDirError, match="is a file of the run dir"):
            runio.check_new_file(run / name, force=True)
    existing = tmp_path / "model.h5"
    existing.write_bytes(b"user data")
    with pytest.raises(runio.RunDirError, match="exists \\(pass --force"):
        runio.check_new_file(existing)
    assert runio.check_new_file(existing, force=True) == existing
    with pytest.raises(runio.RunDirError, match="is a folder"):
        runio.check_new_file(tmp_path)
    with pytest.raises(runio.RunDirError, match="empty"):
        runio.check_new_file("")
    folder = tmp_path / "plots"
    folder.mkdir()
    runio.check_new_folder(folder)
    (folder / "a.png").write_bytes(b"x")
    with pytest.raises(runio.RunDirError, match="not empty"):
        runio.check_new_folder(folder)
    runio.check_new_folder(folder, force=True)
    with pytest.raises(runio.RunDirError, match="is a run dir"):
        runio.check_new_folder(run, force=True)


# -- checkpoints -------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_previous_copy(tmp_path):
    path = tmp_path / runio.CHECKPOINT
    _save(path, 1.0, epoch=1)
    assert not (tmp_path / runio.PREVIOUS).exists()
    _save(path, 2.0, epoch=2)
    tensors, meta = runio.load_checkpoint(path)
    assert torch.equal(tensors["w"], torch.full((3, 4), 2.0)) and meta == {"state": {"epoch": 2}}
    prev, prev_meta = runio.load_checkpoint(tmp_path / runio.PREVIOUS)
    assert torch.equal(prev["w"], torch.full((3, 4), 1.0)) and prev_meta["state"]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([runio.CHECKPOINT, runio.PREVIOUS])   # no debris


def _flip_last_tensor_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01                        # tensor data sit at the end of a safetensors file
    path.write_bytes(bytes(data))


def test_a_flipped_weight_byte_is_caught(tmp_path):
    path = tmp_path / runio.CHECKPOINT
    _save(path, 1.0)
    _flip_last_tensor_byte(path)
    with pytest.raises(runio.CorruptCheckpoint, match="SHA-256 does not match"):
        runio.load_checkpoint(path)


def test_altered_metadata_is_caught(tmp_path):
    path = tmp_path / runio.CHECKPOINT
    _save(path, 1.0, epoch=7)
    data = path.read_bytes()
    assert data.count(b'\\"epoch\\": 7') == 1
    path.write_bytes(data.replace(b'\\"epoch\\": 7', b'\\"epoch\\": 8'))
    with pytest.raises(runio.CorruptCheckpoint):
        runio.load_checkpoint(path)


def test_truncated_or_foreign_checkpoints_are_one_error(tmp_path):
    path = tmp_path / runio.CHECKPOINT
    _save(path, 1.0)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(runio.CorruptCheckpoint, match="not a readable"):
        runio.load_checkpoint(path)
    path.write_bytes(b"\x00" * 3)
    with pytest.raises(runio.CorruptCheckpoint):
        runio.load_checkpoint(path)


def test_resume_falls_back_to_the_previous_checkpoint(tmp_path, caplog):
    path = tmp_path / runio.CHECKPOINT
    _save(path, 1.0, epoch=1)
    _save(path, 2.0, epoch=2)
    _flip_last_tensor_byte(path)
    with caplog.at_level(logging.WARNING):
        tensors, meta = runio.load_resumable(tmp_path)
    assert meta["state"]["epoch"] == 1 and torch.equal(tensors["w"], torch.full((3, 4), 1.0))
    assert "resuming from checkpoint.prev.safetensors (after epoch 1)" in caplog.text
    _flip_last_tensor_byte(tmp_path / runio.PREVIOUS)
    with pytest.raises(runio.CorruptCheckpoint):
        runio.load_resumable(tmp_path)
    assert runio.load_resumable(tmp_path / "nothing-yet") is None


def test_checkpoints_without_a_checksum_still_load(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / runio.CHECKPOINT
    save_file({"w": torch.ones(2)}, str(path), metadata={"ffneuro": json.dumps({"state": {"epoch": 3}})})
    tensors, meta = runio.load_checkpoint(path)
    assert meta["state"]["epoch"] == 3 and torch.equal(tensors["w"], torch.ones(2))


def test_json_files_are_strict(tmp_path):
    runio.write_json(tmp_path / "m.json", {"error": float("nan"), "curve": [1.0, float("-inf")]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"error": None, "curve": [1.0, None]}
