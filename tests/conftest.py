"""Shared fixtures: the embedded digits dataset, and the real MNIST files (skipped with a
clear reason when absent), each loaded once per session (treat them as read-only)."""

from __future__ import annotations

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
