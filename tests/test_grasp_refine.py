"""Grasp refinement (issue 19): a model's grasp as an intent, made executable from depth, on synthetic RGB-D scenes."""

from __future__ import annotations

import numpy as np
import pytest
from _lifting_helpers import make_camera, render_scene
from scipy.spatial.transform import Rotation

from bopask_ros.grasp.grasp_fit import fit_grasp
from bopask_ros.grasp.refine import FailureKind, RefineParams, refine_grasp
from bopask_ros.perception.lifting import DepthLifter
from bopask_vlm.geometry import make_transform
from bopask_vlm.gripper import GRASP_DEPTH, canonical_for_view, keypoints_2d

BOX = {"kind": "box", "centre": (0.05, -0.05), "size": (0.05, 0.05, 0.06), "yaw": 0.4}
CYL = {"kind": "cylinder", "centre": (0.05, 0.15), "radius": 0.03, "height": 0.12}
WIDE = {"kind": "box", "centre": (-0.12, -0.05), "size": (0.14, 0.14, 0.05), "yaw": 0.0}


@pytest.fixture(scope="module")
def scene():
    return render_scene(make_camera(640, 480), objects=[BOX, CYL, WIDE])


@pytest.fixture(scope="module")
def lifter(scene):
    return DepthLifter(scene.camera, scene.depth_m, plane=scene.plane_cam)


def _top_down(scene, centre_xy, z, yaw):
    R = Rotation.from_euler("z", yaw).as_matrix() @ np.diag([1.0, -1.0, -1.0])  # approach down
    T = make_transform(R, np.array([*centre_xy, z]) - R @ [0.0, 0.0, GRASP_DEPTH])
    return canonical_for_view(scene.T_cam_world @ T, scene.camera)


def _gp_world(scene, T_cam):
    gp = T_cam[:3, :3] @ [0.0, 0.0, GRASP_DEPTH] + T_cam[:3, 3]
    return (np.linalg.inv(scene.T_cam_world) @ np.append(gp, 1.0))[:3]


def _answer_fit(scene, lifter, T_true, *, shift_px=(0.0, 0.0), turn_deg=0.0, scale=1.0):
    kp = keypoints_2d(T_true, scene.camera)
    c = kp[0]
    a = np.radians(turn_deg)
    Rz = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    kp = c + (kp - c) @ Rz.T * scale + np.asarray(shift_px)
    return fit_grasp(kp, lifter)


def test_a_precise_answer_is_kept(scene, lifter):
    T = _top_down(scene, BOX["centre"], 0.045, 0.4)
    fit = _answer_fit(scene, lifter, T)
    res = refine_grasp(fit.T_cam_gripper, lifter)
    assert res.ok and res.kept_answer, res.reason
    assert res.moved_m == 0.0 and res.moved_deg == 0.0 and res.candidates > 50
    np.testing.assert_allclose(res.T_cam_gripper, fit.T_cam_gripper)


@pytest.mark.parametrize("shift_px,turn_deg,scale", [((12, 0), 0.0, 1.0), ((0, 12), 15.0, 1.0), ((8, -8), 0.0, 1.1),
                                                      ((0, 0), 0.0, 0.9), ((-12, 0), -15.0, 1.05)])
def test_a_coherently_wrong_answer_moves_onto_the_object(scene, lifter, shift_px, turn_deg, scale):
    """Shifted 12 px (~1.5 cm), turned 15 deg, scaled 5-10 %: the chosen grasp closes on the box (its grasp point
    within 1.5 cm of the box's axis, across it, the box between the fingers), its approach within the parameters."""
    T = _top_down(scene, BOX["centre"], 0.045, 0.4)
    fit = _answer_fit(scene, lifter, T, shift_px=shift_px, turn_deg=turn_deg, scale=scale)
    assert fit.valid, fit.reason
    res = refine_grasp(fit.T_cam_gripper, lifter)
    assert res.ok, res.reason
    gw = _gp_world(scene, res.T_cam_gripper)
    assert np.linalg.norm(gw[:2] - np.asarray(BOX["centre"])) < 0.015, (gw, res.reason)
    assert 0.015 < gw[2] < 0.06
    assert res.moved_deg <= 30.0 + 1e-6 and 0.04 <= res.width <= 0.08


def test_an_answer_on_the_table_has_no_object(scene, lifter):
    T = _top_down(scene, (0.25, 0.3), 0.02, 0.0)
    fit = _answer_fit(scene, lifter, T)
    res = refine_grasp(fit.T_cam_gripper, lifter)
    assert not res.ok and res.failure == FailureKind.NO_OBJECT and "table or nothing" in res.reason, res.reason


def test_an_object_wider_than_the_opening_is_refused(scene, lifter):
    T = _top_down(scene, WIDE["centre"], 0.03, 0.0)
    res = refine_grasp(_answer_fit(scene, lifter, T).T_cam_gripper, lifter)
    assert not res.ok and res.failure == FailureKind.TOO_WIDE, res.reason


def test_a_grasp_into_the_table_is_moved_or_refused(scene, lifter):
    """The answer's fingers reach 2 cm into the table beside the cylinder: no chosen grasp keeps them there."""
    T = _top_down(scene, CYL["centre"], 0.0, 0.0)
    res = refine_grasp(T, lifter)
    if res.ok:
        from bopask_vlm.gripper import skeleton_points

        tips = skeleton_points()[3:5] @ res.T_cam_gripper[:3, :3].T + res.T_cam_gripper[:3, 3]
        assert float(np.min(scene.plane_cam.signed_distance(tips))) > 0.005
        assert not res.kept_answer
    else:
        assert res.counts["table"] > 0


def test_the_planner_refusing_names_the_failure(scene, lifter):
    """``accept`` (the pipeline's safety envelope and IK) refusing every candidate: failure kind and reason come
    from it; a refusal of only the best moves on to the next candidate."""
    T = _top_down(scene, BOX["centre"], 0.045, 0.4)
    fit = _answer_fit(scene, lifter, T, shift_px=(10, 0))
    seen = []

    def never(T_cam):
        seen.append(T_cam)
        return FailureKind.UNREACHABLE, "IK found no solution"

    res = refine_grasp(fit.T_cam_gripper, lifter, RefineParams(max_accept_checks=4), accept=never)
    assert not res.ok and res.failure == FailureKind.UNREACHABLE and "IK found no solution" in res.reason
    assert len(seen) == 4
    first = []

    def all_but_first(T_cam):
        first.append(T_cam)
        return (FailureKind.UNREACHABLE, "no") if len(first) == 1 else None

    res2 = refine_grasp(fit.T_cam_gripper, lifter, accept=all_but_first)
    assert res2.ok and not np.allclose(res2.T_cam_gripper, first[0])


def test_an_object_out_of_the_fingers_reach_is_no_object(scene, lifter):
    """A search radius of a millimetre: nothing of the object the ray meets lies within the fingers' reach of the
    answer's grasp point (10 cm above the box); a clear failure, not an error."""
    T = _top_down(scene, BOX["centre"], 0.16, 0.4)  # the grasp point 10 cm above the box's top
    res = refine_grasp(T, lifter, RefineParams(radius=0.001, seed_radius=0.2))
    assert not res.ok and res.failure == FailureKind.NO_OBJECT and "reach" in res.reason, res.reason
