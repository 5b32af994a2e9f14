"""Shared fixtures: the real mini data in ../shared/data, located once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$HRPOSE_SHARED_DATA``."""
    return Path(os.environ.get("HRPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "coco-mini" / "person_keypoints.json").is_file():
        pytest.fail(
            f"the real test data is missing: expected {root}/coco-mini/person_keypoints.json. "
            "Check out the project beside its shared/ folder or set HRPOSE_SHARED_DATA."
        )
    return root


@pytest.fixture(scope="session")
def coco_mini(shared_data: Path) -> Path:
    return shared_data / "coco-mini"
