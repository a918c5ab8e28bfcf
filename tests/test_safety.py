"""Safety envelope: each check fails on what it guards and names itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bopask_ros.motion.safety import SafetyConfigError, SafetyEnvelope
from bopask_vlm.geometry import make_transform

ENV = SafetyEnvelope(workspace_min=(-0.2, -0.6, -0.05), workspace_max=(0.8, 0.6, 0.8), table_height=0.0,
                     min_height_above_table=0.01, max_approach_angle_deg=60.0)
TOP_DOWN = Rotation.from_euler("x", 180, degrees=True).as_matrix()  # approach +z of gripper = -z of base


def grasp_at(point, R=TOP_DOWN):
    # gripper origin GRASP_DEPTH above the grasp point along -approach
    T = make_transform(R, np.zeros(3))
    T[:3, 3] = np.asarray(point) - 0.1034 * T[:3, 2]
    return T


def test_points_inside_pass():
    assert ENV.check_points([[0.4, 0.0, 0.1], [0.5, 0.2, 0.3]]).ok


@pytest.mark.parametrize("pts,check", [
    ([[0.4, 0.0, 0.1], [1.5, 0.0, 0.1]], "workspace_box"),
    ([[0.4, 0.0, 0.005]], "min_height"),
    ([[0.4, np.nan, 0.1]], "finite"),
    ([[0.75, 0.55, 0.4]], "reach"),
    ([[0.4, 0.0]], "shape"),
])
def test_points_failures_name_their_check(pts, check):
    v = ENV.check_points(pts)
    assert not v.ok and v.check == check and v.reason


def test_top_down_grasp_passes_and_pre_grasp_is_above():
    T = grasp_at([0.45, 0.0, 0.05])
    assert ENV.check_grasp(T).ok
    assert ENV.pre_grasp(T)[2, 3] == pytest.approx(T[2, 3] + 0.10)


def test_side_grasp_rejected_by_approach_angle():
    side = Rotation.from_euler("y", 90, degrees=True).as_matrix()  # approach along +x
    v = ENV.check_grasp(grasp_at([0.45, 0.0, 0.1], side))
    assert not v.ok and v.check == "approach_angle"
    assert "90.0 deg" in v.reason


def test_grasp_whose_fingers_go_through_the_table_is_rejected():
    v = ENV.check_grasp(grasp_at([0.45, 0.0, -0.02]))
    assert not v.ok and v.check == "min_height"


def test_grasp_outside_workspace_and_non_rigid():
    assert ENV.check_grasp(grasp_at([0.45, 0.65, 0.1])).check == "workspace_box"
    T = grasp_at([0.45, 0.0, 0.1])
    T[:3, :3] *= 2
    assert ENV.check_grasp(T).check == "rigid"


def test_config_errors():
    with pytest.raises(SafetyConfigError, match="unknown safety parameters"):
        SafetyEnvelope.from_dict({"workspace_minn": [0, 0, 0]})
    with pytest.raises(SafetyConfigError, match="min < max"):
        SafetyEnvelope(workspace_min=(0, 0, 0), workspace_max=(1, -1, 1))
    with pytest.raises(SafetyConfigError, match="velocity_scaling"):
        SafetyEnvelope(velocity_scaling=0.0)
    env = SafetyEnvelope.from_dict({"workspace_min": [-1, -1, -1], "workspace_max": [1, 1, 1], "table_height": 0.02})
    assert env.table_height == 0.02 and env.workspace_min == (-1.0, -1.0, -1.0)


def test_hand_poses_check_the_finger_tips_below_the_waypoint():
    from bopask_ros.motion.motion_steps import trajectory_steps
    from bopask_vlm.gripper import FINGER_TIP_Z, GRASP_DEPTH

    # a waypoint just above the clearance passes as a point, but the finger tips reach below it
    p = np.array([[0.45, 0.0, ENV.min_height_above_table + 0.001]])
    assert ENV.check_points(p).ok
    (pose,) = [s.pose for s in trajectory_steps(p) if s.pose is not None]
    v = ENV.check_hand_poses([pose], "gripper at waypoint")
    assert not v.ok and v.check == "min_height" and "gripper at waypoint 0" in v.reason
    high = p + [0.0, 0.0, FINGER_TIP_Z - GRASP_DEPTH]
    assert ENV.check_hand_poses([s.pose for s in trajectory_steps(high) if s.pose is not None]).ok
    bad = np.eye(4)
    bad[0, 3] = np.nan
    assert ENV.check_hand_poses([bad]).check == "finite"
