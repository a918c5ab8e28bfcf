"""Benchmark runner and report: record loading, the oracle's scores, invalid answers, files, CLI."""

from __future__ import annotations

import json

import pytest
from _eval_helpers import cached_dataset

from bopask_vlm.eval.report import aggregate, to_markdown
from bopask_vlm.eval.runner import RunnerError, load_records, run_benchmark


@pytest.fixture(scope="module")
def dataset():
    _, _, _, root = cached_dataset()
    return root, root / "shards"


def test_load_records_filters_and_stratifies(dataset, tmp_path):
    _, shards = dataset
    allr = load_records([shards])
    assert len({r.task for r in allr}) >= 4
    only = load_records([shards], tasks=["pose"])
    assert only and {r.task.value for r in only} == {"pose"}
    sub = load_records([shards], limit=6, seed=1)
    assert len(sub) <= 6 and len({r.task for r in sub}) >= min(6, len({r.task for r in allr})) - 1
    assert [r.id for r in sub] == [r.id for r in load_records([shards], limit=6, seed=1)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(RunnerError, match="bad.jsonl:1"):
        load_records([bad])
    with pytest.raises(RunnerError, match="no QA records"):
        load_records([shards], split="no-such-split")


def test_oracle_benchmark_perfect_and_files(dataset, tmp_path):
    from bopask_vlm.clients import OracleClient

    root, shards = dataset
    recs = load_records([shards], limit=24)
    res = run_benchmark(recs, OracleClient(), root, tmp_path / "out", progress=False)
    s = res.summary
    assert s["n"] == len(recs) and s["invalid"] == 0
    for t, d in s["tasks"].items():
        m = d["metrics"]
        assert m["valid"] == 1.0
        if t == "pose":  # perfect up to the text format's integer pixels
            assert m["iou2d"] > 0.97 and m.get("iou3d", 1.0) > 0.8
        if t == "grasp":
            assert m["nce"] < 0.1
        if t == "trajectory":
            assert m["success"] == 1.0
        if t == "rearrangement":
            assert m["recall"] == 1.0
        if t in ("spatial", "depth"):
            assert m["correct"] == 1.0
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text())["n"] == len(recs)
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(recs)
    assert "| model |" in (out / "report.md").read_text()


def test_invalid_answers_are_failures_counted_apart(dataset, tmp_path):
    from bopask_vlm.clients import make_client

    root, shards = dataset
    recs = load_records([shards], limit=6)
    # a real OpenAI-compatible client against a closed local port: every answer is an error
    client = make_client({"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout_s": 2,
                          "retries": 0})
    res = run_benchmark(recs, client, root, tmp_path / "bad", progress=False, overlays=3)
    assert res.summary["invalid"] == len(recs)
    for s in res.samples:
        assert s["error"] and s["metrics"]["valid"] == 0.0
        assert s["metrics"].get("success", 0.0) == 0.0 and s["metrics"].get("correct", 0.0) == 0.0
        assert s["metrics"].get("nce", 10.0) == 10.0 and s["metrics"].get("iou2d", 0.0) == 0.0
    assert len(list((tmp_path / "bad" / "overlays").glob("*.png"))) <= 3


def test_aggregate_and_markdown_by_hand():
    samples = [
        {"task": "grasp", "metrics": {"valid": 1, "nce": 1.0, "success": 1.0}},
        {"task": "grasp", "metrics": {"valid": 0, "nce": 10.0, "success": 0.0}},
        {"task": "spatial", "metrics": {"valid": 1, "correct": 1.0}},
        {"task": "spatial", "metrics": {"valid": 1, "correct": 0.0}},
    ]
    s = aggregate(samples)
    assert s["tasks"]["grasp"] == {"n": 2, "invalid": 1, "metrics": {"valid": 0.5, "nce": 5.5, "success": 0.5}}
    assert s["headline"]["grasp NCE"] == 5.5 and s["headline"]["spatial %"] == 50.0
    assert s["headline"]["pose IoU3D %"] is None
    s["model"] = "m"
    md = to_markdown(s)
    assert "| m | - | - | - | 5.500 | 50.0 | - | - |" in md


def test_cli_oracle(dataset, tmp_path, capsys):
    from bopask_vlm.cli import main

    root, shards = dataset
    rc = main(["bench", "--data", str(shards), "--root", str(root), "--limit", "6",
               "--client", "oracle", "--out", str(tmp_path / "cli"), "--no-progress"])
    assert rc == 0
    assert "report:" in capsys.readouterr().out
    assert (tmp_path / "cli" / "metrics.json").is_file()


def test_wrong_answers_score_badly(dataset):
    from bopask_vlm.answers import answer_from_record
    from bopask_vlm.answers.types import Task, YesNoAnswer
    from bopask_vlm.eval.scoring import scene_for_record, score_answer

    root, shards = dataset
    recs = load_records([shards])
    by_task = {}
    for r in recs:
        by_task.setdefault(r.task, r)
    for task, r in by_task.items():
        gt = answer_from_record(r)
        scene = scene_for_record(r, root)
        assert scene is not None
        if task.is_yes_no:
            m = score_answer(r, YesNoAnswer(not gt.value, task), scene)
            assert m["correct"] == 0.0
            continue
        if task == Task.REARRANGEMENT and len(gt.points) == 0:
            m = score_answer(r, gt.with_points([[1.0, 1.0]]), scene)
            assert m["precision"] == 0.0
            continue
        far = gt.with_points(gt.points[::-1] + [r.width / 3, r.height / 3])
        m = score_answer(r, far, scene)
        if task == Task.POSE:
            assert m["iou2d"] < 0.5 and m["iou3d"] < 0.5
        elif task == Task.GRASP:
            assert m["nce"] > 2.0 and m["success"] == 0.0
        elif task == Task.TRAJECTORY:
            assert m["success"] == 0.0 and m["dist_px"] > 50
        elif task == Task.REARRANGEMENT:
            assert m["recall"] < 1.0


def test_grasp_matching_another_kept_grasp(dataset):
    """``nce_any`` scores a prediction against every kept grasp of the object, ``nce`` against the answer's."""
    from bopask_vlm.answers.types import GraspAnswer, Task
    from bopask_vlm.eval.scoring import score_answer
    from bopask_vlm.geometry import CameraModel
    from bopask_vlm.gripper import keypoints_2d

    _, shards = dataset
    recs = [r for r in load_records([shards], tasks=["grasp"]) if len(r.gt.get("grasps_T_cam_gripper", [])) > 1]
    if not recs:
        pytest.skip("no object with several kept grasps in this small scene")
    r = recs[0]
    cam = CameraModel(K=r.camera_K, width=r.width, height=r.height)
    other = keypoints_2d(r.gt["grasps_T_cam_gripper"][-1], cam)
    m = score_answer(r, GraspAnswer(other), None)
    assert r.task == Task.GRASP
    assert m["nce_any"] == pytest.approx(0.0, abs=1e-6) and m["nce_any"] <= m["nce"]
