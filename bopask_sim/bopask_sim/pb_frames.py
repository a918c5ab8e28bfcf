"""pybullet's physics step and its (position, xyzw quaternion) poses as 4x4 transforms.

Shared by the world and the robot (it was in ``world``, which made ``robot`` and ``world`` import each
other)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from bopask_vlm.geometry import make_transform

#: the physics step of every simulated world (pybullet's default, 240 Hz)
TIME_STEP = 1.0 / 240.0


def pose_from_pb(pos: Any, orn: Any) -> NDArray[np.float64]:
    """pybullet's (position, xyzw quaternion) as a 4x4 transform."""
    return make_transform(Rotation.from_quat(orn).as_matrix(), np.asarray(pos, float))


def pb_from_pose(T: NDArray[np.float64]) -> tuple[list[float], list[float]]:
    """A 4x4 transform as pybullet's (position, xyzw quaternion) lists."""
    return np.asarray(T[:3, 3], float).tolist(), Rotation.from_matrix(T[:3, :3]).as_quat().tolist()
