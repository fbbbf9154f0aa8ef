"""Shared fixtures: the embedded digits dataset, and the real MNIST files (skipped with a
clear reason when absent), each loaded once per session (treat them as read-only); and
``scripts``, which imports a benchmark script of scripts/ as a module for its tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from ffneuro.data.loaders import Dataset, load_dataset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the real MNIST IDX files: $FFNEURO_MNIST_DIR, else <repo>/../shared/data/mnist."""
    env = os.environ.get("FFNEURO_MNIST_DIR")
    path = Path(env).expanduser() if env else REPO.parent / "shared" / "data" / "mnist"
    if not path.is_dir():
        pytest.skip("real MNIST not found: set FFNEURO_MNIST_DIR or place ../shared/data/mnist beside the repo")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> Dataset:
    """The real MNIST dataset, loaded once per test session (treat as read-only)."""
    return load_dataset(f"mnist:{mnist_dir}")


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """The embedded 8×8 digits (shipped with scikit-learn: always present)."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def scripts():
    """``scripts("NAME")``: scripts/NAME.py imported as a module (scripts/ is not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
