"""Nothing a real robot would not know reaches the motion of a sim-eval episode (issue 18, sec. 3): a carry starts
from the model's own grasp of A through the pipeline, its hand-to-object offset is perceived at the grasp, the
table is the pipeline's plane fit, and the pipeline's camera extrinsic is off by a calibration error per scene.
The proof: the same episode with the simulator's ground truth displaced everywhere but in physics commands the
arm exactly as before."""

from __future__ import annotations

import copy

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim.backend import SimMotionBackend, perceived_base_point
from bopask_sim.evaluate import CALIB_ERROR, calibration_error, make_pipeline, prepare_scene, trajectory_episode
from bopask_sim.world import SimWorld
from bopask_vlm.answers.types import Task
from bopask_vlm.clients import OracleClient
from bopask_vlm.gripper import GRASP_DEPTH


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    # scene 1: its carry succeeds with the oracle under the default calibration error (checked below)
    s = prepare_scene(1, tmp_path_factory.mktemp("nogt"), calib_error=CALIB_ERROR)
    yield s
    s.world.close()


def _carry_record(prep):
    recs = [r for r in prep.by_task(Task.TRAJECTORY) if prep.grasp_record_of(int(r.gt["a_gt_index"])) is not None]
    assert recs, "scene 1 has a trajectory whose A has a grasp question"
    return recs[0]


def _run(prep, rec):
    be = SimMotionBackend(prep.world)
    ep = trajectory_episode(prep, be, make_pipeline(prep, OracleClient(), be), rec)
    return ep, be.commanded


def test_an_episode_commands_the_same_motion_with_the_ground_truth_withheld(prepared, monkeypatch):
    rec = _carry_record(prepared)
    ep, commanded = _run(prepared, rec)
    assert ep.success, ep.detail
    assert len(commanded) == 2  # the model's grasp of A, then the carry
    grasp_poses = [s["pose"] for s in commanded[0] if s["pose"] is not None]
    assert grasp_poses
    # the simulator's ground truth, displaced 5 cm and turned: object poses, base points, rest poses, the
    # render pose, the ideal depth and segmentation, the records' 3D ground truth. Physics keeps the true state
    # (pybullet's), and the outcome measures differences (rise), so only a motion that read the truth changes.
    off = np.eye(4)
    off[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    off[:3, 3] = [0.05, -0.05, 0.05]
    true_pose, true_base = SimWorld.object_pose, SimWorld.base_point
    monkeypatch.setattr(SimWorld, "object_pose", lambda self, inst: off @ true_pose(self, inst))
    monkeypatch.setattr(SimWorld, "base_point", lambda self, inst: true_base(self, inst) + off[:3, 3])
    withheld = copy.copy(prepared)
    withheld.frame = copy.copy(prepared.frame)
    withheld.frame.T_base_camera = off @ prepared.frame.T_base_camera
    withheld.frame.T_world_camera = off @ prepared.frame.T_world_camera
    withheld.frame.depth_ideal_m = np.full_like(prepared.frame.depth_ideal_m, np.nan)
    withheld.frame.seg = np.zeros_like(prepared.frame.seg)
    withheld.records = copy.deepcopy(prepared.records)
    for r in withheld.records:
        for k in ("T_cam_gripper", "path_cam", "placement_cam"):
            if k in r.gt:
                r.gt[k] = (np.asarray(r.gt[k], float) + 0.05).tolist()
        if "grasps_T_cam_gripper" in r.gt:
            r.gt["grasps_T_cam_gripper"] = []
    saved_rest = [inst.rest_pose for inst in prepared.world.instances]
    try:
        for inst in prepared.world.instances:
            inst.rest_pose = off @ inst.rest_pose
        ep2, commanded2 = _run(withheld, next(r for r in withheld.records if r.id == rec.id))
    finally:
        for inst, T in zip(prepared.world.instances, saved_rest):
            inst.rest_pose = T
    assert len(commanded2) == len(commanded)
    for a, b in zip(commanded, commanded2):
        assert [s["label"] for s in a] == [s["label"] for s in b]
        for sa, sb in zip(a, b):
            if sa["pose"] is not None:
                np.testing.assert_allclose(sb["pose"], sa["pose"], atol=2e-4, err_msg=sa["label"])


def test_the_pipeline_sees_the_miscalibrated_extrinsic_and_measures_the_table(prepared):
    rec = prepared.grasp_record_of(int(_carry_record(prepared).gt["a_gt_index"]))
    be = SimMotionBackend(prepared.world)
    pipe = make_pipeline(prepared, OracleClient(), be)
    assert pipe.table_height is None  # measured: the plane fit of the frame's depth
    prepared.world.reset()
    from bopask_sim.evaluate import _goal

    res = pipe.run(prepared.frame.pipeline_frame(), _goal(rec))
    np.testing.assert_allclose(res.T_base_cam, prepared.T_base_camera_est)
    assert not np.allclose(res.T_base_cam, prepared.frame.T_base_camera, atol=1e-4)
    n, off = res.support_plane_base
    assert abs(off / np.linalg.norm(n)) < 0.012 and abs(n[2]) / np.linalg.norm(n) > 0.999  # the table, seen


def test_calibration_error_has_the_asked_size_and_is_drawn_per_scene():
    from scipy.spatial.transform import Rotation

    E = calibration_error(3, 0.003, 0.3)
    assert np.linalg.norm(E[:3, 3]) == pytest.approx(0.003)
    assert np.degrees(Rotation.from_matrix(E[:3, :3]).magnitude()) == pytest.approx(0.3)
    np.testing.assert_array_equal(E, calibration_error(3, 0.003, 0.3))  # deterministic per seed
    assert not np.allclose(E, calibration_error(4, 0.003, 0.3))
    np.testing.assert_allclose(calibration_error(3, 0.0, 0.0), np.eye(4), atol=1e-15)


def test_the_held_object_is_where_the_fingers_and_the_depth_saw_it():
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])  # top-down: approach -z
    T[:3, 3] = [0.4, 0.1, 0.02 + GRASP_DEPTH + 0.03]  # grasp point 3 cm above a table 2 cm up
    plane = (np.array([0.0, 0.0, 2.0]), -0.04)  # z = 0.02, unnormalised
    c = T[:3, 3] + T[:3, 2] * GRASP_DEPTH
    # no depth: straight down from the point between the pads onto the measured table
    np.testing.assert_allclose(perceived_base_point(T, plane), [0.4, 0.1, 0.02], atol=1e-12)
    np.testing.assert_allclose(perceived_base_point(T, None, table_height=0.0), [0.4, 0.1, 0.0], atol=1e-12)
    # the object seen between the fingers 6 mm off along the pads' width: the base point follows; along the
    # closing axis the coupled fingers centre it; points outside the fingers do not count
    rng = np.random.default_rng(0)
    inside = c + np.c_[0.006 + rng.uniform(-0.004, 0.004, 60), rng.uniform(-0.03, 0.03, 60), rng.uniform(-0.01, 0.01, 60)]
    outside = c + np.c_[rng.uniform(0.05, 0.1, 200), rng.uniform(-0.03, 0.03, 200), np.zeros(200)]
    got = perceived_base_point(T, plane, np.vstack([inside, outside]))
    np.testing.assert_allclose(got, [0.406, 0.1, 0.02], atol=1.5e-3)
    # too few points between the fingers: the pads' centre
    np.testing.assert_allclose(perceived_base_point(T, plane, inside[:5]), [0.4, 0.1, 0.02], atol=1e-12)
