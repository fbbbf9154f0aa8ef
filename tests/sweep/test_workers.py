"""Real worker processes: two local Optuna workers on one SQLite storage finish one
study, each in its own process, within a bounded time; and `ffneuro sweep` without
optuna says how to install it in one line."""

from __future__ import annotations

import json
import subprocess
import sys

from ffneuro.sweep.study import storage_url


def test_two_worker_processes_finish_one_study_on_one_sqlite_file(tmp_path, space_file):
    path = space_file(name="pair", trials=4, study_extra='pruner = "none"')
    cmd = [sys.executable, "-m", "ffneuro.cli", "sweep", "run", str(path), "--storage", str(tmp_path / "s.db"),
           "--out", str(tmp_path / "trials"), "--workers", "2", "--format", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["n_trials"] == 4 and s["states"] == {"complete": 4}
    assert sorted(t["trial"] for t in s["trials"]) == [0, 1, 2, 3]
    assert len({t["worker"] for t in s["trials"]}) == 2             # both processes took trials
    assert len({t["param:optim.lr"] for t in s["trials"]}) == 4     # ... and drew different values
    assert r.stderr.count("trial ") == 4                            # a progress line per finished trial
    assert sorted(p.name for p in (tmp_path / "trials").glob("trial-*")) == [f"trial-000{i}" for i in range(4)]


def test_without_optuna_the_sweep_says_how_to_install_it(tmp_path):
    space = tmp_path / "s.toml"
    space.write_text('[study]\nname = "a"\n[fixed]\n"data.val_fraction" = 0.1\n')
    code = ("import sys\nsys.modules['optuna'] = None\nfrom ffneuro.cli import main\n"
            f"sys.argv = ['ffneuro', 'sweep', 'run', {str(space)!r}]\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ffneuro sweep needs optuna")
    assert "pip install 'ffneuro[sweep]'" in r.stderr


def test_storage_values():
    assert storage_url("journal:/x/s.log") == "journal:/x/s.log"
    assert storage_url("sqlite:///rel.db") == "sqlite:///rel.db"
