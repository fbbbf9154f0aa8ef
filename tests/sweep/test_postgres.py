"""The PostgreSQL storage against a real server: a throwaway cluster is made with initdb
and started with pg_ctl in a temporary folder (a Unix socket only, no TCP port), used as
``--storage postgresql+psycopg2://…``, and stopped. It needs PostgreSQL's server binaries
(Debian: apt-get install postgresql; found on PATH or in /usr/lib/postgresql/*/bin) and
the driver (pip install psycopg2-binary, in the test extra). Without them the test is
skipped saying which is missing, unless FFNEURO_REQUIRE_POSTGRES=1 (then it fails)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ffneuro import api


def _missing(what: str):
    if os.environ.get("FFNEURO_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"FFNEURO_REQUIRE_POSTGRES=1 but {what}")
    pytest.skip(what)


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        _missing("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None:
        _missing("the PostgreSQL driver is not installed (pip install psycopg2-binary)")
    # initdb refuses to run as root: then the cluster belongs to the postgres user
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            _missing("running as root without a postgres user to own the throwaway cluster")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="ffneuro-pg-", dir="/tmp"))
    if prefix:
        shutil.chown(root, "postgres")
    data = root / "data"
    run = lambda *args: subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=60)  # noqa: E731
    r = run(initdb, "-D", str(data), "-A", "trust", "-U", "ffneuro", "--no-sync", "-E", "UTF8")
    assert r.returncode == 0, r.stderr
    r = run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "30",
            "-o", f"-p 55433 -k {root} -c listen_addresses='' -c fsync=off", "start")
    assert r.returncode == 0, r.stderr + (root / "log").read_text() if (root / "log").exists() else r.stderr
    try:
        yield f"postgresql+psycopg2://ffneuro@/postgres?host={root}&port=55433"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_a_study_on_a_real_postgresql_server(postgres_url, tmp_path, space_file):
    grid = tmp_path / "arch.toml"
    grid.write_text('[study]\nname = "arch"\nobjectives = ["sram_bytes"]\n[estimate]\ninput_size = 64\n'
                    '[params."hardware.profile"]\nchoices = ["loihi-like", "cmos-45nm"]\n'
                    '[params."units.layers"]\nchoices = ["100", "200,200"]\n')
    s = api.sweep_grid(grid, storage=postgres_url, out=tmp_path / "g")
    assert s["states"] == {"complete": 4} and s["storage"] == postgres_url
    # a training study beside it in the same database, then both read back by name
    s = api.sweep_run(space_file(trials=2), storage=postgres_url, out=tmp_path / "t")
    assert s["states"] == {"complete": 2}
    assert api.sweep_show("arch", storage=postgres_url)["n_trials"] == 4
    assert api.sweep_show("tiny", storage=postgres_url)["best"][0]["val_error"] >= 0
