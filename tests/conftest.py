"""Repo-wide fixtures. Area-specific helpers live in tests/_<area>_helpers.py, not here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
HAVE_RCLPY = importlib.util.find_spec("rclpy") is not None

requires_rclpy = pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy is not available (ROS 2 not sourced)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_frame_dir() -> Path:
    """The real LineMOD RGB-D frame in ../shared/data; tests using it skip where it is absent."""
    d = SHARED_DATA / "lm_real_frame"
    if not (d / "depth.png").exists():
        pytest.skip(f"real frame not found at {d}")
    return d
