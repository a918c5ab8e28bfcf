"""The answer-error model (bopask_vlm.clients.answer_error): calibration to the bench's own metrics,
determinism, what each component does, validity of every answer, and ``bopask bench --answer-error``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from _datagen_helpers import built

from bopask_vlm.answers import GraspAnswer, PoseAnswer, Task, TrajectoryAnswer, YesNoAnswer, answer_from_record
from bopask_vlm.answers.bounds import outside_points
from bopask_vlm.clients import OracleClient, VLMRequest
from bopask_vlm.clients.answer_error import (
    PRESETS,
    AnswerErrorClient,
    ErrorContext,
    ErrorLevel,
    GraspError,
    LevelError,
    PoseError,
    RearrangementError,
    TrajectoryError,
    YesNoError,
    calibrate,
    evaluate_level,
    parse_level,
    resolve_level,
)
from bopask_vlm.clients.answer_error.grasp import grasp_candidates, perturb_grasp
from bopask_vlm.clients.answer_error.model import perturb_answer
from bopask_vlm.eval.metrics import grasp_nce

W, H = 640, 480


@pytest.fixture(scope="module")
def data():
    b = built()
    return b.records, b.out


def _of(records, task):
    return [r for r in records if r.task is Task(task)]


def _request(r, attempt=0):
    img = np.zeros((r.height, r.width, 3), np.uint8)
    return VLMRequest(task=r.task, image=img, objects=[o.description for o in r.objects], question=r.question,
                      record=r, attempt=attempt)


# --- calibration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.5, 1.0, 1.4])
def test_calibration_reaches_grasp_nce(data, target):
    records, root = data
    rep = calibrate(records, {"grasp_nce": target}, seed=0, dataset_root=root)
    cal = rep.tasks["grasp_nce"]
    assert cal.within_tol and abs(cal.achieved - target) <= 0.05 * target, rep.table()
    assert cal.multiplier > 0 and cal.oracle < 0.05
    # measured again, independently of the search, with the level it chose
    again = evaluate_level(records, rep.level, seed=0, dataset_root=root)
    assert again["grasp_nce"] == pytest.approx(cal.achieved)
    assert abs(again["grasp_nce"] - target) <= 0.05 * target
    # only the grasp task was asked about: the others stay exact
    assert again["spatial_acc"] == 1.0 and again["traj_success"] == 1.0


def test_calibration_reaches_pose_iou(data):
    records, root = data
    rep = calibrate(records, {"pose_iou": 0.6}, seed=0, dataset_root=root)
    cal = rep.tasks["pose_iou"]
    assert cal.oracle > 0.8  # the oracle's integer corners through PnP
    assert abs(cal.achieved - 0.6) <= 0.03, rep.table()
    assert abs(evaluate_level(records, rep.level, dataset_root=root)["pose_iou"] - 0.6) <= 0.03


def test_pose_calibration_without_the_scene_uses_the_records_boxes(data):
    records, root = data
    with_scene = evaluate_level(_of(records, "pose"), PRESETS["nvila15b-sft"], dataset_root=root)["pose_iou"]
    from_records = evaluate_level(_of(records, "pose"), PRESETS["nvila15b-sft"])["pose_iou"]
    assert from_records == pytest.approx(with_scene, abs=1e-6)


def test_preset_calibrates_every_reachable_metric_and_says_which_are_not(data):
    records, root = data
    level = resolve_level("nvila15b-sft", records, seed=0, dataset_root=root)
    assert level.calibrated and level.name == "nvila15b-sft"
    got = evaluate_level(records, level, dataset_root=root)
    for name in ("grasp_nce", "pose_iou", "traj_success", "spatial_acc"):
        assert abs(got[name] - level.targets[name]) <= 0.05 * level.targets[name], (name, got)
    # no rearrangement record of this scene has anything to move: recall is 1 whatever the answer
    from bopask_vlm.clients.answer_error import resolve_level_report

    rep = resolve_level_report("nvila15b-sft", records, seed=0, dataset_root=root)
    assert not rep.tasks["rearr_recall"].within_tol and "cannot reach" in rep.tasks["rearr_recall"].note


def test_unreachable_and_bad_requests(data):
    records, root = data
    rep = calibrate(records, {"grasp_nce": 0.0001}, dataset_root=root)  # better than the oracle's rounding
    assert rep.tasks["grasp_nce"].multiplier == 0.0 and not rep.tasks["grasp_nce"].within_tol
    with pytest.raises(LevelError, match="needs records"):
        resolve_level("grasp_nce=1.0", [], 0)
    assert resolve_level("nvila15b-sft", [], 0) == PRESETS["nvila15b-sft"]  # uncalibrated mix


def test_parse_level():
    assert parse_level("oracle").is_oracle
    assert parse_level("NVILA15B-SFT").targets["grasp_nce"] == 1.40
    q = parse_level("qwen25vl3b-sft").targets
    assert (q["pose_iou"], q["traj_success"], q["grasp_nce"], q["spatial_acc"], q["depth_acc"], q["rearr_recall"]) \
        == (0.482, 0.225, 1.5, 0.926, 0.941, 0.434)
    lv = parse_level("grasp_nce=1.4, pose_iou=73")
    assert lv.targets == {"grasp_nce": 1.4, "pose_iou": 0.73}
    assert lv.grasp.shift_w > 0 and lv.pose.shift_r > 0 and lv.spatial.p_flip == 0 and lv.trajectory.end_off == 0
    for bad in ("nvila", "grasp_nce=abc", "foo=1", "pose_iou=150", "grasp_nce=1,grasp_nce=2"):
        with pytest.raises(LevelError):
            parse_level(bad)


# --- determinism ---------------------------------------------------------------------------------------


def test_same_question_same_answer_reask_fresh(data):
    records, _ = data
    level = PRESETS["nvila15b-sft"]
    a = AnswerErrorClient(OracleClient(), level, seed=7, records=records)
    b = AnswerErrorClient(OracleClient(), level, seed=7, records=records)
    c = AnswerErrorClient(OracleClient(), level, seed=8, records=records)
    pts = [r for r in records if not r.task.is_yes_no and r.task is not Task.REARRANGEMENT]
    first = [a.ask(_request(r)).answer for r in pts]
    assert first == [b.ask(_request(r)).answer for r in pts]
    assert [a.ask(_request(r)).raw_text for r in pts] == [b.ask(_request(r)).raw_text for r in pts]
    reask = [a.ask(_request(r, attempt=1)).answer for r in pts]
    other_seed = [c.ask(_request(r)).answer for r in pts]
    assert sum(x != y for x, y in zip(first, reask)) >= 0.9 * len(pts)
    assert sum(x != y for x, y in zip(first, other_seed)) >= 0.9 * len(pts)
    assert reask == [b.ask(_request(r, attempt=1)).answer for r in pts]


# --- components ----------------------------------------------------------------------------------------


def _grasp(records):
    r = _of(records, "grasp")[0]
    return r, np.asarray(answer_from_record(r).points, float)


def _apply(comp_level, answer, seed=0, ctx=None, record=None):
    rng = np.random.default_rng(seed)
    return perturb_answer(answer, comp_level, rng, ctx or ErrorContext(W, H, record))


def test_grasp_shift_is_in_finger_widths(data):
    records, _ = data
    r, p = _grasp(records)
    w = np.linalg.norm(p[1] - p[2])
    for k in (0.5, 1.0):
        out, info = _apply(ErrorLevel(grasp=GraspError(shift_w=k)), GraspAnswer(p))
        shift = np.asarray(info["shift_px"])
        np.testing.assert_allclose(out.points - p, np.tile(shift, (5, 1)), atol=1e-9)  # rigid
        z = shift / (k * w)  # the same standard normal draw at every scale
        if k == 0.5:
            z0 = z
        np.testing.assert_allclose(z, z0)
        assert grasp_nce(out.points, p) == pytest.approx(np.linalg.norm(shift) / w)


def test_grasp_rotation_scale_mirror(data):
    records, _ = data
    r, p = _grasp(records)
    out, info = _apply(ErrorLevel(grasp=GraspError(rot_deg=20.0)), GraspAnswer(p), seed=1)
    q = out.points
    np.testing.assert_allclose(q[0], p[0])
    np.testing.assert_allclose(np.linalg.norm(q - q[0], axis=1), np.linalg.norm(p - p[0], axis=1))
    turn = np.degrees(np.arctan2(*(q[2] - q[1])[::-1]) - np.arctan2(*(p[2] - p[1])[::-1]))
    assert (turn - info["rot_deg"] + 180) % 360 - 180 == pytest.approx(0, abs=1e-6) and abs(info["rot_deg"]) > 0.1
    out, info = _apply(ErrorLevel(grasp=GraspError(scale_log=0.2)), GraspAnswer(p), seed=2)
    assert np.linalg.norm(out.points[1] - out.points[2]) == pytest.approx(info["scale"] * np.linalg.norm(p[1] - p[2]))
    out, info = _apply(ErrorLevel(grasp=GraspError(p_mirror=1.0)), GraspAnswer(p))
    assert info["mirrored"]
    np.testing.assert_array_equal(out.points, p[[0, 2, 1, 4, 3]])
    assert grasp_nce(out.points, p) == 0.0  # the metric forgives a mirror; the robot's hand sees it


def test_grasp_replacements(data):
    records, _ = data
    r, p = _grasp(records)
    cands = grasp_candidates(r)
    assert len(cands) >= 2
    out, info = _apply(ErrorLevel(grasp=GraspError(p_other_grasp=1.0)), GraspAnswer(p), record=r)
    assert info["replaced"] == "other_grasp"
    assert any(np.allclose(out.points, c) for c in cands) and grasp_nce(out.points, p) > 0.2
    others = np.array([[500.0, 100.0], [100.0, 400.0]])
    out, info = _apply(ErrorLevel(grasp=GraspError(p_other_object=1.0)), GraspAnswer(p),
                       ctx=ErrorContext(W, H, r, others))
    assert info["replaced"] == "other_object"
    assert min(np.linalg.norm(others - out.points[0], axis=1)) < 1e-9
    np.testing.assert_allclose(out.points - out.points[0], p - p[0])  # the same skeleton, moved
    out, info = _apply(ErrorLevel(grasp=GraspError(p_background=1.0)), GraspAnswer(p),
                       ctx=ErrorContext(W, H, r, others))
    assert info["replaced"] == "background"
    assert min(np.linalg.norm(np.vstack([others, p[:1]]) - out.points[0], axis=1)) > 100


def test_pose_components(data):
    records, _ = data
    p = np.asarray(answer_from_record(_of(records, "pose")[0]).points, float)
    out, info = _apply(ErrorLevel(pose=PoseError(p_order=1.0)), PoseAnswer(p))
    assert info["order_error"] is not None
    assert sorted(map(tuple, out.points)) == sorted(map(tuple, p)) and out != PoseAnswer(p)
    out, info = _apply(ErrorLevel(pose=PoseError(shift_r=0.3)), PoseAnswer(p))
    np.testing.assert_allclose(out.points - p, np.tile(info["shift_px"], (8, 1)), atol=1e-9)
    out, info = _apply(ErrorLevel(pose=PoseError(scale_log=0.3)), PoseAnswer(p), seed=3)
    c = p.mean(axis=0)
    np.testing.assert_allclose(out.points - c, (p - c) * info["scale"], atol=1e-9)


def test_trajectory_components():
    p = np.array([[100.0, 100.0], [200.0, 80.0], [300.0, 90.0], [400.0, 100.0]])
    out, _ = _apply(ErrorLevel(trajectory=TrajectoryError(end_off=0.3)), TrajectoryAnswer(p))
    np.testing.assert_array_equal(out.points[:-1], p[:-1])
    assert np.linalg.norm(out.points[-1] - p[-1]) > 1
    out, _ = _apply(ErrorLevel(trajectory=TrajectoryError(start_off=0.3)), TrajectoryAnswer(p))
    np.testing.assert_array_equal(out.points[1:], p[1:])
    out, _ = _apply(ErrorLevel(trajectory=TrajectoryError(drift=0.3)), TrajectoryAnswer(p))
    d = out.points - p
    np.testing.assert_array_equal(d[0], 0)
    assert np.linalg.norm(d[-1]) > np.linalg.norm(d[1]) > 0  # grows along the path
    out, _ = _apply(ErrorLevel(trajectory=TrajectoryError(offset=0.2)), TrajectoryAnswer(p))
    np.testing.assert_allclose(out.points - p, np.tile((out.points - p)[0], (4, 1)))
    assert len(_apply(ErrorLevel(trajectory=TrajectoryError(p_fewer=1.0)), TrajectoryAnswer(p))[0].points) == 3
    assert len(_apply(ErrorLevel(trajectory=TrajectoryError(p_more=1.0)), TrajectoryAnswer(p))[0].points) == 5
    two = TrajectoryAnswer(p[[0, -1]])
    assert len(_apply(ErrorLevel(trajectory=TrajectoryError(p_fewer=1.0)), two)[0].points) == 2


def test_rearrangement_and_yes_no():
    from bopask_vlm.answers import RearrangementAnswer

    p = np.array([[100.0, 100.0], [300.0, 200.0]])
    assert len(_apply(ErrorLevel(rearrangement=RearrangementError(p_miss=1.0)), RearrangementAnswer(p))[0].points) == 0
    ctx = ErrorContext(W, H, None, np.array([[500.0, 400.0]]))
    out, info = _apply(ErrorLevel(rearrangement=RearrangementError(p_extra=1.0)), RearrangementAnswer(p), ctx=ctx)
    np.testing.assert_array_equal(out.points, np.vstack([p, [[500.0, 400.0]]]))
    for task in (Task.SPATIAL, Task.DEPTH):
        for v in (True, False):
            flipped, _ = _apply(ErrorLevel(spatial=YesNoError(1.0), depth=YesNoError(1.0)), YesNoAnswer(v, task))
            kept, _ = _apply(ErrorLevel(), YesNoAnswer(v, task))
            assert flipped == YesNoAnswer(not v, task) and kept == YesNoAnswer(v, task)


def test_clipped_to_the_tasks_bounds():
    p = np.array([[630.0, 470.0], [620.0, 470.0], [639.0, 470.0], [620.0, 479.0], [639.0, 479.0]])
    out, _ = perturb_grasp(p, GraspError(shift_w=50.0), np.random.default_rng(0), ErrorContext(W, H))
    assert outside_points(Task.GRASP, np.rint(out), W, H) == []


def test_every_answer_is_valid_even_at_extreme_levels(data):
    records, _ = data
    base = PRESETS["qwen25vl3b-sft"]
    huge = base
    for t in Task:
        huge = huge.with_multiplier(t, 30.0, base=base)
    client = AnswerErrorClient(OracleClient(), huge, seed=3, records=records)
    for r in records:
        for attempt in range(3):
            resp = client.ask(_request(r, attempt))
            if not r.task.is_yes_no:
                assert outside_points(r.task, resp.answer.points, r.width, r.height) == []
            from bopask_vlm.answers import parse_answer_text

            assert parse_answer_text(r.task, resp.raw_text) == replace(resp.answer) or r.task.is_yes_no


# --- the bench ----------------------------------------------------------------------------------------


def test_bench_cli_answer_error(data, tmp_path, capsys):
    from bopask_vlm.cli import main

    records, root = data
    rc = main(["bench", "--data", str(root / "shards"), "--root", str(root), "--tasks", "grasp", "pose",
               "--answer-error", "grasp_nce=1.0,pose_iou=0.6", "--out", str(tmp_path / "b"), "--no-progress",
               "--overlays", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "answer-error level" in out and "| grasp_nce | 1.000 |" in out
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    ae = m["answer_error"]["metrics"]
    # the bench's own scores of the wrapped oracle's answers are the calibrated ones
    assert ae["grasp_nce"]["achieved"] == pytest.approx(ae["grasp_nce"]["calibrated"])
    assert ae["grasp_nce"]["achieved"] == pytest.approx(m["tasks"]["grasp"]["metrics"]["nce"])
    assert abs(ae["grasp_nce"]["achieved"] - 1.0) <= 0.05 and ae["grasp_nce"]["within_tol"]
    assert ae["pose_iou"]["achieved"] == pytest.approx(ae["pose_iou"]["calibrated"])
    assert "oracle+answer_error" in m["model"]
    assert (tmp_path / "b" / "answer_error.png").stat().st_size > 1000
    rc = main(["bench", "--data", str(root / "shards"), "--root", str(root), "--answer-error", "nce=abc",
               "--out", str(tmp_path / "c"), "--no-progress"])
    assert rc == 2


def _blocked_rearrangement_records(records, root):
    """Rearrangement records of the test scene made to have objects to move: our synthetic scenes have none
    (every recall is 1 whatever the answer). Each asks about one object and names up to two others of the
    same image, a point on each one's visible mask, as the objects to move."""
    from bopask_vlm.answers import RearrangementAnswer, answer_to_json, answer_to_text
    from bopask_vlm.eval.scoring import scene_for_record

    out = []
    for r in _of(records, "rearrangement"):
        scene = scene_for_record(r, root)
        pts, ks = [], []
        for k in range(len(scene.instances(r.im_id))):
            m = scene.mask(r.im_id, k, (r.height, r.width))
            if k == r.objects[0].gt_index or m is None or m.sum() < 200:
                continue
            v, u = np.nonzero(m)
            i = np.argmin((u - u.mean()) ** 2 + (v - v.mean()) ** 2)
            pts.append([float(u[i]), float(v[i])])
            ks.append(k)
        pts, ks = pts[:1 + len(out) % 2], ks[:1 + len(out) % 2]
        a = RearrangementAnswer(np.array(pts))
        out.append(replace(r, id=r.id + "/blocked", answer=answer_to_json(a, 0), answer_text=answer_to_text(a),
                           gt={**r.gt, "blocking_gt_indices": ks, "blocked": True}))
    return out


def test_calibration_reaches_rearrangement_recall_and_yes_no(data):
    records, root = data
    blocked = _blocked_rearrangement_records(records, root)
    assert evaluate_level(blocked, PRESETS["oracle"], dataset_root=root)["rearr_recall"] == 1.0
    rep = calibrate(blocked + _of(records, "spatial"), {"rearr_recall": 0.6, "spatial_acc": 0.9}, dataset_root=root)
    for name, target in (("rearr_recall", 0.6), ("spatial_acc", 0.9)):
        cal = rep.tasks[name]
        assert cal.within_tol and abs(cal.achieved - target) <= 0.05 * target, rep.table()
    got = evaluate_level(blocked + _of(records, "spatial"), rep.level, dataset_root=root)
    assert abs(got["rearr_recall"] - 0.6) <= 0.03 and abs(got["spatial_acc"] - 0.9) <= 0.045


def test_calibration_cached_on_disk(data, tmp_path):
    from bopask_vlm.clients.answer_error import resolve_level_report
    from bopask_vlm.clients.answer_error.calibrate import _CACHE

    records, root = data
    grasps = _of(records, "grasp")
    rep = resolve_level_report("grasp_nce=0.8", grasps, 5, dataset_root=root, cache_dir=tmp_path)
    files = list(tmp_path.glob("calibration_*.json"))
    assert len(files) == 1
    _CACHE.clear()
    again = resolve_level_report("grasp_nce=0.8", grasps, 5, dataset_root=root, cache_dir=tmp_path)
    assert again.level == rep.level and again.tasks["grasp_nce"].achieved == rep.tasks["grasp_nce"].achieved
    d = json.loads(files[0].read_text())  # the file is what is read: a changed multiplier comes back
    d["multipliers"]["grasp"] = 0.0
    files[0].write_text(json.dumps(d))
    _CACHE.clear()
    assert resolve_level_report("grasp_nce=0.8", grasps, 5, dataset_root=root, cache_dir=tmp_path).level.grasp \
        == GraspError()
    files[0].write_text("{not json")  # a broken cache file is calibrated again, not trusted
    _CACHE.clear()
    assert resolve_level_report("grasp_nce=0.8", grasps, 5, dataset_root=root, cache_dir=tmp_path).level == rep.level
