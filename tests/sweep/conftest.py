"""Helpers of the sweep tests: optuna is required (the test extra installs it)."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep tests need optuna: pip install -e '.[test]'")

TINY = """
[study]
name = "{name}"
trials = {trials}
seed = 0
{study_extra}
[fixed]
"data.name" = "digits"
"data.val_fraction" = 0.2
"loop.epochs" = {epochs}
"loop.entropy_probe" = 0
"loop.batch_size" = 64
{fixed_extra}
[params."optim.lr"]
low = 1e-4
high = 1e-2
log = true
[params."units.layers"]
choices = ["16", "24,16"]
"""


@pytest.fixture
def space_file(tmp_path):
    """Write a small training space; returns its path."""
    def make(name="tiny", trials=3, epochs=1, study_extra="", fixed_extra=""):
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY.format(name=name, trials=trials, epochs=epochs, study_extra=study_extra,
                                    fixed_extra=fixed_extra))
        return path
    return make
