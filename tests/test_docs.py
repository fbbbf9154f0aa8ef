"""The generated docs are up to date with what generates them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_results_doc_matches_the_committed_bench_files():
    """docs/results.md is generated from bench/*.json (scripts/results_doc.py); a new or
    changed bench file without the regenerated page fails here."""
    r = subprocess.run([sys.executable, "scripts/results_doc.py", "--check"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
