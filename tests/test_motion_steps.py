"""Motion steps per task and RViz marker content: the decisions the MoveIt adapter carries out."""

from __future__ import annotations

import numpy as np
import pytest

from bopask_ros.motion.motion_steps import (
    TOP_DOWN,
    grasp_steps,
    object_box_id,
    pose_steps,
    poses_to_check,
    trajectory_steps,
)
from bopask_ros.motion.safety import SafetyEnvelope
from bopask_ros.node_support.markers import LINE_LIST, LINE_STRIP, result_markers
from bopask_ros.pipeline import PipelineResult, ResultStatus
from bopask_vlm.answers import TrajectoryAnswer
from bopask_vlm.geometry import make_transform


def test_grasp_steps_order_and_geometry():
    T = make_transform(TOP_DOWN, [0.45, 0.0, 0.15])
    steps = grasp_steps(T, SafetyEnvelope(pre_grasp_distance=0.1), lift_distance=0.05)
    assert [s.kind for s in steps] == ["move", "gripper", "linear", "gripper", "attach", "linear"]
    pre, grasp, lift = steps[0].pose, steps[2].pose, steps[5].pose
    assert pre[2, 3] == pytest.approx(0.25)  # back along the downward approach = up
    assert np.allclose(grasp[:3, 3], T[:3, 3]) and lift[2, 3] == pytest.approx(0.20)
    # the hand closes along its y: that axis is the skeleton's closing axis (x), the approach is shared
    np.testing.assert_allclose(grasp[:3, 1], T[:3, 0], atol=1e-12)
    np.testing.assert_allclose(grasp[:3, 2], T[:3, 2], atol=1e-12)
    assert [s.named_state for s in steps if s.kind == "gripper"] == ["open", "close"]
    assert len(poses_to_check(steps)) == 3


def test_trajectory_steps_hold_the_tool_above_the_waypoints():
    pts = np.array([[0.4, 0.0, 0.1], [0.4, 0.2, 0.15], [0.3, 0.3, 0.05]])
    steps = trajectory_steps(pts)
    assert [s.kind for s in steps] == ["move", "linear", "linear", "detach"]
    for s, p in zip(steps, pts):
        tip = s.pose[:3, 3] + 0.1034 * s.pose[:3, 2]
        assert np.allclose(tip, p)


def test_pose_steps_add_a_box_per_object_only_when_asked():
    (s,) = pose_steps(np.eye(4), np.array([0.1, 0.2, 0.3]), "mug")
    assert s.kind == "add_box" and s.size == (0.1, 0.2, 0.3) and s.meta["id"] == object_box_id("mug")
    # one id per object: the same description (any spelling of case/spaces) names the same box
    assert object_box_id("The  red Mug") == object_box_id("the red mug") != object_box_id("the blue mug")
    assert object_box_id("!!!").startswith("bopask_box_")
    assert pose_steps(np.eye(4), np.array([0.1, 0.2, 0.3]), "mug", add_to_planning_scene=False) == []


def test_markers_draw_the_skeleton_of_the_grasp_pose():
    # the pipeline's grasp_pose_base is the M2T2 skeleton pose: the marker's finger tips are that skeleton's
    from bopask_vlm.gripper import keypoints_3d

    T = make_transform(TOP_DOWN, [0.4, 0.0, 0.2])
    (g,) = [m for m in result_markers(PipelineResult(ResultStatus.SUCCEEDED, grasp_pose_base=T)) if m.ns == "gripper"]
    k = keypoints_3d(T)
    assert any(np.allclose(p, k[3]) for p in g.points) and any(np.allclose(p, k[4]) for p in g.points)
    # the fingers open along the skeleton's x, i.e. the hand's y (skeleton_to_hand)
    np.testing.assert_allclose((k[4] - k[3]) / np.linalg.norm(k[4] - k[3]), -T[:3, 0], atol=2e-3)


def test_markers_separate_valid_and_invalid_points_and_draw_the_gripper():
    res = PipelineResult(ResultStatus.SUCCEEDED, answer=TrajectoryAnswer(np.array([[0.0, 0], [1, 1], [2, 2]])),
                         points_base=np.array([[0.4, 0, 0.1], [np.nan, 0, 0], [0.5, 0.1, 0.1]]),
                         valid=np.array([True, False, True]), grasp_pose_base=make_transform(TOP_DOWN, [0.4, 0, 0.2]))
    ms = {m.ns: m for m in result_markers(res)}
    assert len(ms["lifted_points"].points) == 2 and "invalid_points" not in ms  # NaN is not drawn
    assert ms["gripper"].type == LINE_LIST and len(ms["gripper"].points) % 2 == 0
    assert ms["waypoints"].type == LINE_STRIP


def test_grasp_alternatives_are_one_physical_grasp_for_a_parallel_jaw_gripper():
    from scipy.spatial.transform import Rotation

    from bopask_ros.motion.motion_steps import grasp_alternatives
    from bopask_vlm.gripper import keypoints_3d

    T = make_transform(Rotation.from_euler("xyz", [170, 10, 35], degrees=True).as_matrix(), [0.4, -0.1, 0.1])
    a, b = grasp_alternatives(T)
    np.testing.assert_allclose(a, T)
    ka, kb = keypoints_3d(a), keypoints_3d(b)
    np.testing.assert_allclose(kb[[0, 2, 1, 4, 3]], ka, atol=1e-12)  # the same contacts, fingers swapped
    np.testing.assert_allclose(b[:3, 2], a[:3, 2])  # the same approach
    assert not np.allclose(b, a)
