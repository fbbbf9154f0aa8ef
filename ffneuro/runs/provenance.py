"""Where a measured number came from: the commit of the ffneuro code that produced it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_commit() -> str:
    """The short commit of the checkout the ffneuro package is imported from (so a
    benchmark run with ``PYTHONPATH=OLD_CHECKOUT`` reports the old commit), or
    "unknown" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
