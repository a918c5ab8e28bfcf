"""The parallel-jaw gripper skeleton BOP-ASK uses for grasp answers (NVlabs M2T2, Franka Panda).

Gripper frame (as M2T2 / Contact-GraspNet and ``panda_hand``): origin at the hand flange side of the
fingers, +z the approach direction (towards the object), x the closing axis between the fingers.
The 5 keypoints, in answer order: grasp center (midpoint of the finger bases), left finger base,
right finger base, left finger tip, right finger tip.

"Left" and "right" are image notions: a grasp and the same grasp turned 180 degrees about its
approach axis are the same physical grasp, so :func:`canonical_for_view` picks the one whose left
finger appears left (smaller u) in the image. Metrics still try the mirrored assignment.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bopask_vlm.geometry import CameraModel, GeometryError, transform_points

KEYPOINT_NAMES: tuple[str, ...] = (
    "Grasp center",
    "Left finger base",
    "Right finger base",
    "Left finger tip",
    "Right finger tip",
)

#: M2T2 Panda skeleton, metres, gripper frame.
FINGER_BASE_X = 0.05268743
FINGER_BASE_Y = 0.00005996
FINGER_BASE_Z = 0.059
FINGER_TIP_Z = 0.10527314
#: Panda hand: largest opening between the fingers, metres.
MAX_OPENING = 0.08
#: Depth of the grasp point (between the finger pads) below the gripper origin along +z.
GRASP_DEPTH = 0.1034

#: Flip about the approach axis: the same physical grasp with left and right fingers swapped.
FLIP_Z = np.diag([-1.0, -1.0, 1.0, 1.0])

#: The one transform between the two gripper frames: ``T_SKELETON_HAND`` is the pose of the robot's
#: ``panda_hand`` link (MoveIt, pybullet, franka_description: fingers close along its y,
#: ``panda_finger_joint1`` axis ``0 1 0``) in the M2T2 skeleton frame (fingers close along x). Origins
#: and +z (approach) agree, so it is a turn of -90 degrees about z: the hand's y is the skeleton's x.
#: ``T_base_hand = T_base_skeleton @ T_SKELETON_HAND``; use :func:`skeleton_to_hand` /
#: :func:`hand_to_skeleton`, never a local copy.
T_SKELETON_HAND = np.array([[0.0, 1.0, 0.0, 0.0],
                            [-1.0, 0.0, 0.0, 0.0],
                            [0.0, 0.0, 1.0, 0.0],
                            [0.0, 0.0, 0.0, 1.0]])


def skeleton_points() -> NDArray[np.float64]:
    """(5, 3) keypoints in the gripper frame, in :data:`KEYPOINT_NAMES` order."""
    lb = np.array([FINGER_BASE_X, -FINGER_BASE_Y, FINGER_BASE_Z])
    rb = np.array([-FINGER_BASE_X, FINGER_BASE_Y, FINGER_BASE_Z])
    lt = np.array([FINGER_BASE_X, -FINGER_BASE_Y, FINGER_TIP_Z])
    rt = np.array([-FINGER_BASE_X, FINGER_BASE_Y, FINGER_TIP_Z])
    return np.stack([(lb + rb) / 2.0, lb, rb, lt, rt])


def skeleton_to_hand(T_frame_skeleton: ArrayLike) -> NDArray[np.float64]:
    """The ``panda_hand`` pose of a grasp given as an M2T2 skeleton pose (both in the same frame)."""
    return np.asarray(T_frame_skeleton, dtype=np.float64) @ T_SKELETON_HAND


def hand_to_skeleton(T_frame_hand: ArrayLike) -> NDArray[np.float64]:
    """The M2T2 skeleton pose of a ``panda_hand`` pose (inverse of :func:`skeleton_to_hand`)."""
    return np.asarray(T_frame_hand, dtype=np.float64) @ T_SKELETON_HAND.T


def keypoints_3d(T_frame_gripper: ArrayLike) -> NDArray[np.float64]:
    """(5, 3) keypoints of a gripper pose, in the frame the pose is given in."""
    return transform_points(T_frame_gripper, skeleton_points())


def canonical_for_view(T_cam_gripper: ArrayLike, camera: CameraModel) -> NDArray[np.float64]:
    """The grasp, possibly turned 180 degrees about its approach axis, whose left finger base
    projects left of (or level with) its right finger base in ``camera``'s image."""
    T = np.asarray(T_cam_gripper, dtype=np.float64)
    uv = camera.project(keypoints_3d(T)[1:3])
    if not np.all(np.isfinite(uv)):
        raise GeometryError("grasp finger bases are behind the camera")
    return T @ FLIP_Z if uv[0, 0] > uv[1, 0] else T


def keypoints_2d(T_cam_gripper: ArrayLike, camera: CameraModel) -> NDArray[np.float64]:
    """(5, 2) pixel keypoints of a camera-frame grasp, left/right as seen in the image."""
    return camera.project(keypoints_3d(canonical_for_view(T_cam_gripper, camera)))


def finger_base_width() -> float:
    """Distance between the skeleton's finger bases (metres), the NCE normaliser in 3D."""
    p = skeleton_points()
    return float(np.linalg.norm(p[1] - p[2]))
