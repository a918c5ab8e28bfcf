"""The ROS-free task pipeline: the oracle through every stage, and every failure returned, not raised."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from _eval_helpers import cached_dataset

from bopask_ros.perception.tf_buffer import TransformBuffer
from bopask_ros.pipeline import Frame, Goal, PlanOutcome, ResultStatus, Stage, TaskPipeline
from bopask_ros.replay.bag_reader import read_bag
from bopask_vlm.answers.types import Task


@pytest.fixture(scope="module")
def bagdata():
    _, _, bag, _ = cached_dataset()
    data = read_bag(bag)
    assert data.complete and data.records
    return data


def _oracle():
    from bopask_vlm.clients import OracleClient

    return OracleClient()


def _frame(data, rec):
    return next(bf.frame for bf in data.frames if bf.im_id == int(rec.im_id))


def _goal(rec, **kw):
    return Goal(task=rec.task, objects=[o.description for o in rec.objects], question=rec.question, record=rec, **kw)


def _first(data, task):
    return next(r for r in data.records if r.task == Task(task))


class RecordingPlanner:
    """Stands in for MoveIt (not installable here): records what it was given and answers as told."""

    def __init__(self, outcome: PlanOutcome) -> None:
        self.outcome = outcome
        self.calls = []

    def plan(self, result, goal, cancel):
        self.calls.append(result)
        return self.outcome


def test_oracle_through_every_stage(bagdata):
    from bopask_vlm.answers import answer_from_record

    pipe = TaskPipeline(_oracle(), bagdata.tf)
    seen = set()
    for rec in bagdata.records:
        res = pipe.run(_frame(bagdata, rec), _goal(rec))
        gt = answer_from_record(rec)
        if rec.task.is_yes_no:
            assert res.status == ResultStatus.SUCCEEDED and res.answer == gt
        else:
            # the oracle answers in the text format (integer pixels): exact up to rounding
            assert np.all(np.abs(res.answer.points - gt.points) <= 0.5 + 1e-9)
            if res.status == ResultStatus.SUCCEEDED:
                assert res.points_base.shape == (len(gt.points), 3) and np.all(np.isfinite(res.points_base))
                assert res.T_base_cam is not None
                for s in ("snapshot", "query", "validate", "lift", "transform", "total"):
                    assert s in res.timings
            else:  # the oracle's 2D answer is right; only lifting may refuse it, with a reason
                assert res.status == ResultStatus.LIFT_FAILED and res.reason
        if res.status == ResultStatus.SUCCEEDED:
            seen.add(rec.task)
    assert {Task.POSE, Task.TRAJECTORY, Task.SPATIAL, Task.DEPTH} <= seen
    grasps = [pipe.run(_frame(bagdata, r), _goal(r)) for r in bagdata.records if r.task == Task.GRASP]
    ok = [g for g in grasps if g.ok]
    assert ok, [g.reason for g in grasps]
    for g in ok:
        assert g.grasp_pose_base.shape == (4, 4) and 0 < g.grasp_width <= 0.08 + 1e-9


def test_base_frame_points_are_on_or_above_the_table(bagdata):
    pipe = TaskPipeline(_oracle(), bagdata.tf, waypoint_height=0.07)
    recs = sorted((r for r in bagdata.records if r.task == Task.TRAJECTORY), key=lambda r: -len(r.answer_text))
    res = pipe.run(_frame(bagdata, recs[0]), _goal(recs[0]))
    assert res.ok, res.reason
    # the start lies on the table under A, the lift-off 2 cm straight above it, the other inner waypoints
    # carried at least waypoint_height up, the end 2 cm above B's top (the datagen's convention, inverted)
    assert res.points_base[0, 2] == pytest.approx(pipe.start_height, abs=0.01)
    path = np.asarray(recs[0].gt["path_cam"]) @ res.T_base_cam[:3, :3].T + res.T_base_cam[:3, 3]
    assert np.linalg.norm(res.points_base[1] - path[1]) < 0.01
    assert np.all(res.points_base[2:-1, 2] >= 0.07 - 0.01)
    assert res.points_base[-1, 2] > 0.0
    assert np.linalg.norm(res.points_base[0] - path[0]) < 0.02  # A's base point, recovered
    assert np.linalg.norm(res.points_base[-1] - path[-1]) < 0.02  # the placement on B (was 0.1: B's surface)


def test_table_plane_from_tf_matches_the_fitted_plane(bagdata):
    rec = _first(bagdata, "pose")
    a = TaskPipeline(_oracle(), bagdata.tf).run(_frame(bagdata, rec), _goal(rec))
    b = TaskPipeline(_oracle(), bagdata.tf, table_height=0.0).run(_frame(bagdata, rec), _goal(rec))
    assert a.ok and b.ok
    assert np.abs(a.points_base - b.points_base).max() < 0.01  # RANSAC on noisy depth vs the known table
    c = TaskPipeline(_oracle(), bagdata.tf, table_height=0.05).run(_frame(bagdata, rec), _goal(rec))
    assert c.points_base[:4, 2] == pytest.approx([0.05] * 4, abs=1e-6)  # bottom corners on the given table


def test_feedback_order_and_cancel(bagdata):
    rec = _first(bagdata, "pose")
    stages = []
    pipe = TaskPipeline(_oracle(), bagdata.tf, planner=RecordingPlanner(PlanOutcome(True, "ok")))
    res = pipe.run(_frame(bagdata, rec), _goal(rec, plan_only=False), feedback=stages.append)
    assert res.ok, res.reason
    assert stages == [Stage.SNAPSHOT, Stage.QUERY, Stage.VALIDATE, Stage.LIFT, Stage.TRANSFORM, Stage.PLAN,
                      Stage.EXECUTE, Stage.DONE]
    calls = {"n": 0}

    def cancel_after_query():
        calls["n"] += 1
        return calls["n"] > 2  # checked before each stage: snapshot, query pass; validate is canceled

    res = pipe.run(_frame(bagdata, rec), _goal(rec), cancel=cancel_after_query)
    assert res.status == ResultStatus.CANCELED and "validate" in res.reason


def test_missing_tf_and_missing_depth(bagdata):
    rec = _first(bagdata, "pose")
    frame = _frame(bagdata, rec)
    res = TaskPipeline(_oracle(), TransformBuffer()).run(frame, _goal(rec))
    assert res.status == ResultStatus.TF_FAILED and "base_link" in res.reason
    # with a known table height the plane comes from TF, so TF is needed already for lifting
    res = TaskPipeline(_oracle(), TransformBuffer(), table_height=0.0).run(frame, _goal(rec))
    assert res.status == ResultStatus.TF_FAILED and "lift" not in res.timings
    pipe = TaskPipeline(_oracle(), bagdata.tf)
    res = pipe.run(dataclasses.replace(frame, depth_m=None), _goal(rec))
    assert res.status == ResultStatus.LIFT_FAILED and "depth" in res.reason
    empty = np.full_like(frame.depth_m, np.nan)
    res = pipe.run(dataclasses.replace(frame, depth_m=empty), _goal(rec))
    assert res.status == ResultStatus.LIFT_FAILED
    # yes/no questions need neither depth nor TF
    yn = _first(bagdata, "spatial")
    res = TaskPipeline(_oracle(), TransformBuffer()).run(dataclasses.replace(_frame(bagdata, yn), depth_m=None),
                                                          _goal(yn))
    assert res.ok


def test_invalid_answer_outside_image(bagdata):
    from bopask_vlm.answers import answer_from_record, answer_to_json, answer_to_text

    rec = copy.deepcopy(_first(bagdata, "trajectory"))
    gt = answer_from_record(rec)
    moved = gt.with_points(gt.points + [5000.0, 0.0])
    rec.answer, rec.answer_text = answer_to_json(moved), answer_to_text(moved)
    res = TaskPipeline(_oracle(), bagdata.tf).run(_frame(bagdata, rec), _goal(rec))
    assert res.status == ResultStatus.INVALID_ANSWER and "outside" in res.reason


def test_unreachable_server_is_a_vlm_error(bagdata):
    from bopask_vlm.clients import make_client

    # a real client against a closed local port: the transport error becomes a status, not an exception
    client = make_client({"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout_s": 2,
                          "retries": 0})
    rec = _first(bagdata, "pose")
    res = TaskPipeline(client, bagdata.tf).run(_frame(bagdata, rec), _goal(rec))
    assert res.status == ResultStatus.VLM_ERROR and res.reason


def test_safety_rejection_never_reaches_the_planner(bagdata):
    from bopask_ros.motion.safety import SafetyEnvelope

    rec = _first(bagdata, "trajectory")
    planner = RecordingPlanner(PlanOutcome(True))
    tiny = SafetyEnvelope(workspace_min=[5.0, 5.0, 5.0], workspace_max=[5.1, 5.1, 5.1], min_height_above_table=0.0,
                          table_height=0.0, max_approach_angle_deg=90.0)
    res = TaskPipeline(_oracle(), bagdata.tf, safety=tiny, planner=planner).run(_frame(bagdata, rec), _goal(rec))
    assert res.status == ResultStatus.SAFETY_REJECTED and res.reason
    assert planner.calls == []
    wide = SafetyEnvelope(workspace_min=[-5, -5, -1], workspace_max=[5, 5, 5], min_height_above_table=0.0,
                          table_height=0.0, max_approach_angle_deg=180.0, max_reach=10.0)
    res = TaskPipeline(_oracle(), bagdata.tf, safety=wide, planner=planner).run(_frame(bagdata, rec), _goal(rec))
    assert res.ok, res.reason
    assert len(planner.calls) == 1 and np.array_equal(planner.calls[0].points_base, res.points_base)


def test_plan_and_execution_failures(bagdata):
    rec = _first(bagdata, "pose")
    frame = _frame(bagdata, rec)
    res = TaskPipeline(_oracle(), bagdata.tf, planner=RecordingPlanner(PlanOutcome(False, "no IK"))).run(
        frame, _goal(rec))
    assert res.status == ResultStatus.PLAN_FAILED and res.reason == "no IK"
    res = TaskPipeline(_oracle(), bagdata.tf, planner=RecordingPlanner(PlanOutcome(False, "collision", True))).run(
        frame, _goal(rec, plan_only=False))
    assert res.status == ResultStatus.EXECUTION_FAILED


def test_planner_exception_is_a_plan_failure(bagdata):
    class Crashing:
        """Stands in for a MoveIt adapter whose planning call throws."""

        def plan(self, result, goal, cancel):
            raise RuntimeError("move_group died")

    rec = _first(bagdata, "pose")
    res = TaskPipeline(_oracle(), bagdata.tf, planner=Crashing()).run(_frame(bagdata, rec), _goal(rec))
    assert res.status == ResultStatus.PLAN_FAILED and "move_group died" in res.reason


def test_bad_frame_is_a_programming_error(bagdata):
    rec = _first(bagdata, "pose")
    frame = _frame(bagdata, rec)
    with pytest.raises(TypeError, match="uint8"):
        TaskPipeline(_oracle(), bagdata.tf).run(Frame(frame.rgb.astype(float), frame.depth_m, frame.camera, 0.0),
                                                _goal(rec))


def test_path_start_clears_the_table_and_every_waypoint_is_checked(bagdata):
    from bopask_ros.motion.motion_steps import trajectory_steps
    from bopask_ros.motion.safety import SafetyEnvelope
    from bopask_vlm.gripper import hand_to_skeleton, keypoints_3d

    rec = _first(bagdata, "trajectory")
    safety = SafetyEnvelope(workspace_min=[-5, -5, -1], workspace_max=[5, 5, 5], max_reach=10.0,
                            max_approach_angle_deg=180.0, min_height_above_table=0.005)
    pipe = TaskPipeline(_oracle(), bagdata.tf, safety=safety, table_height=0.0)
    res = pipe.run(_frame(bagdata, rec), _goal(rec))
    assert res.ok, res.reason
    # the start is lifted (the table is known: exactly), so the finger tips of the gripper there clear the table
    assert res.points_base[0, 2] == pytest.approx(pipe.start_height, abs=1e-6)
    first = trajectory_steps(res.points_base)[0].pose
    tips = keypoints_3d(hand_to_skeleton(first))[3:]
    assert tips[:, 2].min() >= safety.min_height_above_table
    # the first waypoint is checked too: a clearance it does not have rejects the path, naming point 0
    strict = SafetyEnvelope(workspace_min=[-5, -5, -1], workspace_max=[5, 5, 5], max_reach=10.0,
                            max_approach_angle_deg=180.0, min_height_above_table=0.05)
    planner = RecordingPlanner(PlanOutcome(True))
    res = TaskPipeline(_oracle(), bagdata.tf, safety=strict, planner=planner, table_height=0.0,
                       start_height=0.02).run(_frame(bagdata, rec), _goal(rec))
    assert res.status == ResultStatus.SAFETY_REJECTED and "waypoint point 0" in res.reason
    assert planner.calls == []


def test_canceled_plan_ends_canceled_and_the_planner_gets_the_support_plane(bagdata):
    rec = _first(bagdata, "pose")
    frame = _frame(bagdata, rec)
    planner = RecordingPlanner(PlanOutcome(False, "canceled during approach", executed=True, canceled=True))
    res = TaskPipeline(_oracle(), bagdata.tf, planner=planner).run(frame, _goal(rec, plan_only=False))
    assert res.status == ResultStatus.CANCELED and res.reason == "canceled during approach"
    n, d = planner.calls[0].support_plane_base
    assert n[2] > 0.99 and abs(d) < 0.01  # the fitted plane, in the base frame: the table (z = 0)
    assert TaskPipeline(_oracle(), bagdata.tf).run(frame, _goal(rec)).support_plane_base is None
