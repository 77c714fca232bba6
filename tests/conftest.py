"""Fixtures shared by every test module: the CIFAR-10 folder and the bundled models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantlens.zoo.bundled import bundled_models

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar-10-batches-py"


def cifar10_dir() -> Path | None:
    """Return the CIFAR-10 test folder: $QUANTLENS_CIFAR10_DIR, else the shared datasets copy."""
    candidates = [os.environ.get("QUANTLENS_CIFAR10_DIR"), str(SHARED_CIFAR10)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "test_batch").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The CIFAR-10 folder with test_batch; tests that need it skip when it is truly absent."""
    found = cifar10_dir()
    if found is None:
        pytest.skip(
            "CIFAR-10 test_batch not found: set QUANTLENS_CIFAR10_DIR or provide "
            f"{SHARED_CIFAR10}"
        )
    return found


@pytest.fixture(scope="session")
def bundled() -> dict[str, Path]:
    """Bundled model files by name; fails when the package ships none."""
    models = {model.name: model.path for model in bundled_models()}
    assert models, "no bundled models found in quantlens/models"
    return models
