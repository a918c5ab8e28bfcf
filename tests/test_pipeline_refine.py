"""The pipeline with grasp refinement and re-asking (issue 19), on the recorded synthetic bag with the oracle."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _eval_helpers import cached_dataset

from bopask_ros.pipeline import Goal, PlanOutcome, ResultStatus, TaskPipeline
from bopask_ros.replay.bag_reader import read_bag
from bopask_vlm.answers.types import GraspAnswer, Task
from bopask_vlm.clients import OracleClient


@pytest.fixture(scope="module")
def bagdata():
    _, _, bag, _ = cached_dataset()
    return read_bag(bag)


def _grasp(data):
    frames = {bf.im_id: bf.frame for bf in data.frames}
    rec = next(r for r in data.records if r.task == Task.GRASP)
    return frames[int(rec.im_id)], Goal(Task.GRASP, [o.description for o in rec.objects], record=rec)


class WrongFirstClient:
    """Stands in for a model that answers the first ``wrong`` asks of a goal with the oracle's grasp moved by
    ``shift`` pixels, and the oracle's afterwards; it records every request (question, attempt, feedback)."""

    def __init__(self, shift: tuple[float, float], wrong: int = 1) -> None:
        self.inner = OracleClient()
        self.shift = np.asarray(shift, dtype=np.float64)
        self.wrong = wrong
        self.requests = []

    def ask(self, req):
        self.requests.append(req)
        resp = self.inner.ask(req)
        if len(self.requests) <= self.wrong:
            resp = dataclasses.replace(resp, answer=GraspAnswer(resp.answer.points + self.shift))
        return resp


def _table_shift(frame, goal):
    """A shift that puts the oracle's grasp centre on bare table (depth there lies on the fitted plane)."""
    from bopask_ros.perception.lifting import DepthLifter

    lf = DepthLifter(frame.camera, frame.depth_m)
    plane = lf.support_plane()
    c = OracleClient().ask(_request(frame, goal)).answer.points
    for d in [(a, b) for r in (100, 150, 200) for a, b in ((0, r), (0, -r), (r, 0), (-r, 0), (r, r), (-r, r), (r, -r), (-r, -r))]:
        p = c + np.asarray(d, float)
        if not (np.all(p[:3] >= 0) and np.all(p[:3, 0] < frame.camera.width) and np.all(p[:3, 1] < frame.camera.height)):
            continue
        uv = np.rint(p[0]).astype(int)
        win = frame.depth_m[uv[1] - 30:uv[1] + 31, uv[0] - 30:uv[0] + 31]
        ys, xs = np.mgrid[uv[1] - 30:uv[1] + 31, uv[0] - 30:uv[0] + 31]
        if win.shape != xs.shape:
            continue
        pts = frame.camera.rays(np.stack([xs.ravel(), ys.ravel()], 1).astype(float)) * win.reshape(-1, 1)
        h = plane.signed_distance(pts[np.isfinite(pts).all(axis=1)])
        if h.size > 100 and np.percentile(np.abs(h), 99) < 0.006:
            return d
    pytest.fail("no bare table near the grasp in this frame")


def _request(frame, goal):
    from bopask_vlm.clients import VLMRequest

    return VLMRequest(task=Task.GRASP, image=frame.rgb, objects=list(goal.objects), record=goal.record)


def test_oracle_grasp_is_kept_by_local_refinement(bagdata):
    frame, goal = _grasp(bagdata)
    plain = TaskPipeline(OracleClient(), bagdata.tf).run(frame, goal)
    res = TaskPipeline(OracleClient(), bagdata.tf, grasp_refine="local").run(frame, goal)
    assert res.ok and plain.ok, res.reason
    r = res.refinement
    assert r is not None and r.mode == "local" and r.candidates > 50 and r.range_source in ("pnp", "pnp+depth", "depth")
    # kept as it is, or moved (within 3 cm) only because the answer's own pose fails a check (here: the palm at
    # depth's range reaches into the object's top), which the reason names
    assert r.moved_m < 0.03 and np.linalg.norm(res.grasp_pose_base[:3, 3] - plain.grasp_pose_base[:3, 3]) < 0.03
    assert (not r.refined and r.moved_m == 0.0) or ("the answer's own: " in r.reason and "passes" not in r.reason), \
        r.reason
    np.testing.assert_allclose(r.answer_pose_base, plain.grasp_pose_base, atol=1e-9)
    assert len(res.attempts) == 1 and res.attempts[0].failure == "" and "refine" in res.timings
    assert plain.refinement.mode == "none" and plain.refinement.candidates == 0


def test_answer_on_the_table_is_asked_again_naming_the_failure(bagdata):
    frame, goal = _grasp(bagdata)
    client = WrongFirstClient(_table_shift(frame, goal))
    res = TaskPipeline(client, bagdata.tf, grasp_refine="local", max_attempts=3).run(frame, goal)
    assert res.ok, res.reason
    assert [a.failure for a in res.attempts] == ["no_object", ""], [(a.failure, a.reason) for a in res.attempts]
    assert "table or nothing" in res.attempts[0].reason
    assert len(client.requests) == 2
    second = client.requests[1]
    said = (getattr(second, "feedback", None) or "") + " " + (second.question or "")
    assert "not on an object" in said and f"({res.attempts[0].points[0, 0]:.0f}," in said
    assert getattr(client.requests[0], "feedback", None) is None and not client.requests[0].question


def test_attempts_end_at_max_attempts_with_every_failure(bagdata):
    frame, goal = _grasp(bagdata)
    client = WrongFirstClient(_table_shift(frame, goal), wrong=5)
    res = TaskPipeline(client, bagdata.tf, grasp_refine="local", max_attempts=3).run(frame, goal)
    assert res.status == ResultStatus.LIFT_FAILED and "grasp refinement" in res.reason
    assert len(res.attempts) == 3 and all(a.failure == "no_object" for a in res.attempts)
    assert len(client.requests) == 3


class RefusingPlanner:
    """Stands in for MoveIt (not installable here): refuses every plan before moving, as an IK failure would."""

    def __init__(self) -> None:
        self.calls = 0

    def plan(self, result, goal, cancel):
        self.calls += 1
        return PlanOutcome(False, "ik_failure: pre-grasp: no IK solution", executed=False)


def test_an_unreachable_grasp_is_asked_again_and_a_moved_robot_is_not(bagdata):
    frame, goal = _grasp(bagdata)
    planner = RefusingPlanner()
    res = TaskPipeline(OracleClient(), bagdata.tf, planner=planner, max_attempts=2).run(frame, goal)
    assert res.status == ResultStatus.PLAN_FAILED and planner.calls == 2
    assert [a.failure for a in res.attempts] == ["unreachable", "unreachable"]
    planner2 = RefusingPlanner()
    planner2.plan = lambda result, goal, cancel: PlanOutcome(False, "slipped", executed=True)
    res2 = TaskPipeline(OracleClient(), bagdata.tf, planner=planner2, max_attempts=3).run(frame, goal)
    assert res2.status == ResultStatus.EXECUTION_FAILED and len(res2.attempts) == 1


def test_bad_parameters_are_clear_errors(bagdata):
    with pytest.raises(ValueError, match="grasp_refine"):
        TaskPipeline(OracleClient(), bagdata.tf, grasp_refine="global")
    with pytest.raises(ValueError, match="max_attempts"):
        TaskPipeline(OracleClient(), bagdata.tf, max_attempts=0)


def test_markers_and_debug_image_show_the_answer_beside_the_executed_grasp(bagdata):
    """A refined grasp: RViz gets the executed skeleton (blue) and the answer's own (thin magenta); the debug image
    draws the executed grasp over the answer in another colour; an unrefined one shows only one skeleton."""
    from bopask_ros.node_support.debug_image import debug_image
    from bopask_ros.node_support.markers import result_markers
    from bopask_vlm.viz import draw_answer

    frame, goal = _grasp(bagdata)
    client = WrongFirstClient((6.0, 4.0), wrong=1)  # a few pixels off: refinement moves it back
    res = TaskPipeline(client, bagdata.tf, grasp_refine="local").run(frame, goal)
    assert res.ok, res.reason
    if not res.refinement.refined:
        res.refinement.refined = True  # the picture of a moved grasp, on real poses
        res.grasp_pose_cam = res.grasp_pose_cam.copy()
        res.grasp_pose_cam[:3, 3] += [0.01, 0.0, 0.0]
    ns = {m.ns: m for m in result_markers(res)}
    assert {"gripper", "answer_gripper"} <= set(ns)
    assert ns["gripper"].color != ns["answer_gripper"].color
    img = debug_image(frame.rgb, frame.camera, res)
    plain = draw_answer(frame.rgb, res.answer, label="answer")
    diff = np.any(img != plain, axis=2)
    assert diff.sum() > 50
    assert np.mean(img[diff][:, 2]) > np.mean(img[diff][:, 1])  # the executed grasp is drawn blue
    res.refinement.refined = False
    assert "answer_gripper" not in {m.ns for m in result_markers(res)}
    assert np.array_equal(debug_image(frame.rgb, frame.camera, res), plain)


def test_trajectory_with_local_refinement_reports_its_path_repair(bagdata):
    """grasp_refine local checks the path too: the result says how far it moved (0 when nothing is in the way) and
    the waypoints move only upwards, the ends stay."""
    frames = {bf.im_id: bf.frame for bf in bagdata.frames}
    done = 0
    for rec in [r for r in bagdata.records if r.task == Task.TRAJECTORY][:4]:
        frame = frames[int(rec.im_id)]
        goal = Goal(rec.task, [o.description for o in rec.objects], question=rec.question, record=rec)
        plain = TaskPipeline(OracleClient(), bagdata.tf).run(frame, goal)
        res = TaskPipeline(OracleClient(), bagdata.tf, grasp_refine="local").run(frame, goal)
        assert res.status == plain.status, (res.reason, plain.reason)
        if not res.ok:
            continue
        done += 1
        assert "path_repair" in res.timings and plain.path_moved_m == 0.0 and plain.path_repair == ""
        d = np.linalg.norm(res.points_cam - plain.points_cam, axis=1)
        assert d[0] < 1e-9 and d[-1] < 1e-9 and abs(d.max() - res.path_moved_m) < 1e-9
        assert (res.path_moved_m > 0) == bool(res.path_repair)
    assert done >= 1


class JitterClient:
    """Stands in for a model whose five keypoints each err independently by ``px`` pixels (not a rigid skeleton)."""

    def __init__(self, px: float, seed: int = 3) -> None:
        self.inner, self.px, self.rng = OracleClient(), px, np.random.default_rng(seed)

    def ask(self, req):
        resp = self.inner.ask(req)
        p = resp.answer.points
        return dataclasses.replace(resp, answer=GraspAnswer(p + self.rng.normal(0.0, self.px, p.shape)))


def test_a_non_rigid_skeleton_is_an_intent_with_refinement(bagdata):
    """Keypoints jittered 8 px each do not fit the gripper skeleton: refused as drawn (grasp_refine none), taken
    as the intent with local refinement, which puts a grasp on the asked object."""
    frame, goal = _grasp(bagdata)
    plain = TaskPipeline(JitterClient(8.0), bagdata.tf).run(frame, goal)
    assert plain.status == ResultStatus.LIFT_FAILED and "do not fit the gripper skeleton" in plain.reason
    res = TaskPipeline(JitterClient(8.0), bagdata.tf, grasp_refine="local").run(frame, goal)
    assert res.ok, res.reason
    assert res.refinement.refined and "do not fit" not in res.refinement.reason
    exact = TaskPipeline(OracleClient(), bagdata.tf).run(frame, goal)
    assert np.linalg.norm(res.grasp_pose_base[:3, 3] - exact.grasp_pose_base[:3, 3]) < 0.05
