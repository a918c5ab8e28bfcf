"""The one named transform between the M2T2 skeleton frame (closes along x) and panda_hand (closes
along y): the finger bases of a skeleton pose lie on the hand's y axis once converted."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from bopask_vlm.geometry import invert_transform, transform_points
from bopask_vlm.gripper import (
    T_SKELETON_HAND,
    hand_to_skeleton,
    keypoints_3d,
    skeleton_points,
    skeleton_to_hand,
)


def test_hand_closing_axis_is_skeleton_x_and_approach_agrees():
    R = T_SKELETON_HAND[:3, :3]
    np.testing.assert_allclose(R[:, 1], [1.0, 0.0, 0.0])  # hand y (finger joint axis) = skeleton x
    np.testing.assert_allclose(R[:, 2], [0.0, 0.0, 1.0])  # approach is +z in both
    np.testing.assert_allclose(T_SKELETON_HAND[:3, 3], 0.0)
    assert np.isclose(np.linalg.det(R), 1.0)


def test_finger_bases_lie_on_hand_y_for_any_pose():
    rng = np.random.default_rng(3)
    for _ in range(5):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        T[:3, 3] = rng.normal(size=3)
        T_hand = skeleton_to_hand(T)
        in_hand = transform_points(invert_transform(T_hand), keypoints_3d(T))
        # left/right finger bases: |y| = half the opening, x ~ 0 (the skeleton's tiny y offset)
        assert abs(abs(in_hand[1, 1]) - skeleton_points()[1, 0]) < 1e-9
        assert abs(in_hand[1, 0]) < 1e-3 and abs(in_hand[2, 0]) < 1e-3
        np.testing.assert_allclose(hand_to_skeleton(T_hand), T, atol=1e-12)
