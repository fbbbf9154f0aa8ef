"""`ffneuro sweep …` on bad input: one `error:` line, exit 1, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ffneuro.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args,needle", [
    (["sweep", "run", "{tmp}/nope.toml"], "nope.toml: no such search space file"),
    (["sweep", "run", "{tmp}/bad.toml"], "study.trials"),
    (["sweep", "run", "{tmp}/noval.toml"], "data.val_fraction = 0.0 holds out nothing"),
    (["sweep", "run", "{tmp}/noval.toml", "--workers", "0"], "--workers 0"),
    (["sweep", "run", "{tmp}/ok.toml", "--storage", "{tmp}/no/such/dir/s.db"], "does not exist"),
    (["sweep", "run", "{tmp}/ok.toml", "--storage", "mysql+nodriver://x@y/z"], "--storage mysql+nodriver"),
    (["sweep", "run", "{tmp}/ok.toml", "--out", "{tmp}/user"], "holds no sweep"),
    (["sweep", "grid", "{tmp}/ok.toml"], "needs training"),
    (["sweep", "show", "x", "--storage", "{tmp}/none.db"], "none.db: no such file"),
    (["sweep", "show", "x", "--format", "xml"], "--format 'xml'"),
    (["sweep", "rerun", "x", "--storage", "{tmp}/none.db"], "none.db: no such file"),
])
def test_bad_sweep_input_is_one_error_line(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)                 # the default storage and --out are relative to it
    (tmp_path / "bad.toml").write_text('[study]\nname = "a"\ntrials = -1\n')
    (tmp_path / "noval.toml").write_text('[study]\nname = "a"\n')
    (tmp_path / "ok.toml").write_text('[study]\nname = "a"\n[fixed]\n"data.val_fraction" = 0.1\n')
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    r = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error:") and r.output.count("\n") == 1 and "Traceback" not in r.output
    assert needle in r.output, r.output
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "noval.toml", "ok.toml", "user"]
