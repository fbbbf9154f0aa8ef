"""The wheel carries every subpackage: pyproject.toml lists packages by hand, so a new
subpackage missing from the list would import from a clone but not from an install."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ffneuro").rglob("__init__.py")}
    assert found - listed == set(), f"subpackages missing from pyproject.toml: {sorted(found - listed)}"
