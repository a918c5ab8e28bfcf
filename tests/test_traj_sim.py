"""A carry in physics: its setup grasp falls back to the datagen's next grasp of A when the top one cannot be
executed (the setup is not what a trajectory episode measures), and the datagen's own path then places A."""

from __future__ import annotations

import copy

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim.backend import SimMotionBackend
from bopask_sim.evaluate import prepare_scene, trajectory_episode
from bopask_vlm.answers.types import Task


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    s = prepare_scene(0, tmp_path_factory.mktemp("traj_sim"))
    yield s
    s.world.close()


def test_an_unreachable_top_grasp_of_a_falls_back_to_the_next(prepared):
    recs = [r for r in prepared.by_task(Task.TRAJECTORY)
            if (g := prepared.grasp_record_of(int(r.gt["a_gt_index"]))) is not None
            and len(g.gt["grasps_T_cam_gripper"]) >= 2]
    assert recs, "scene 0 has a trajectory whose A has two grasps"
    rec = recs[0]
    a = int(rec.gt["a_gt_index"])
    grec = prepared.grasp_record_of(a)
    be = SimMotionBackend(prepared.world)
    base = trajectory_episode(prepared, be, None, rec)
    assert base.reason != "grasp_failed", base.detail
    # the top grasp moved 2 m away: nothing reaches it; the episode still starts holding A
    bad = copy.deepcopy(grec)
    far = np.asarray(bad.gt["T_cam_gripper"], float)
    far[:3, 3] += [0.0, 0.0, 2.0]
    bad.gt["T_cam_gripper"] = far.tolist()
    bad.gt["grasps_T_cam_gripper"] = [far.tolist(), *grec.gt["grasps_T_cam_gripper"][1:]]
    prepared.records[prepared.records.index(grec)] = bad
    try:
        ep = trajectory_episode(prepared, be, None, rec)
    finally:
        prepared.records[prepared.records.index(bad)] = grec
    assert ep.reason != "grasp_failed", ep.detail
    assert ep.measure.get("held_at_start", False)
    # and with no reachable grasp at all, the episode says so
    none = copy.deepcopy(grec)
    none.gt["T_cam_gripper"] = far.tolist()
    none.gt["grasps_T_cam_gripper"] = [far.tolist()]
    prepared.records[prepared.records.index(grec)] = none
    try:
        ep = trajectory_episode(prepared, be, None, rec)
    finally:
        prepared.records[prepared.records.index(none)] = grec
    assert ep.reason == "grasp_failed" and "setup grasp of A" in ep.detail
