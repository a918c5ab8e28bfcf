"""Repo-wide fixtures. Area-specific helpers live in tests/_<area>_helpers.py, not here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _ros_missing() -> str:
    """Why the ROS tests cannot run here ("" when rclpy and the colcon-built bopask_msgs import)."""
    if importlib.util.find_spec("rclpy") is None:
        return "rclpy is not installed (the ROS 2 Jazzy wheels of requirements-ros.txt)"
    try:  # the source folder bopask_msgs/ in the working directory imports as an empty namespace package
        from bopask_msgs.action import Grasp  # noqa: F401
    except ImportError as e:
        return f"bopask_msgs is not built or not on the paths ({e})"
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``ros`` need real rclpy and bopask_msgs. They are never skipped: where ROS is missing
    they fail with what to do (``make test`` sets it up; deselect them with ``-m "not ros"``)."""
    if item.get_closest_marker("ros") is None:
        return
    why = _ros_missing()
    if why:
        pytest.fail(f"{why}: run `make ros` and `source scripts/ros_paths.sh` (what `make test` does), "
                    "or deselect the ROS tests with -m 'not ros'", pytrace=False)


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
