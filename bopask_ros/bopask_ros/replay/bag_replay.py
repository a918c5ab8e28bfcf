"""Replay evaluation without ROS: read a bag with rosbags, run every QA record of its images through the
same :class:`TaskPipeline` as the node (client -> parse -> validate -> lift -> transform -> safety), and
score in 2D (image) and in 3D in the robot base frame, with per-stage latency (p50/p95).

3D metrics (base frame; ground-truth boxes from the BOP scene named in the bag's side file, carried
into the base frame with the recorded extrinsic):

- pose ``iou3d_lifted``: exact IoU of the box fitted to the 8 lifted corners and the true box;
- grasp ``trans_err_m`` / ``rot_err_deg``: lifted gripper pose vs the record's 3D grasp (when the record
  carries one: ``gt["T_cam_gripper"]``-like 4x4), the gripper's half-turn symmetry allowed for;
- trajectory ``dist_m``: Frechet distance of the lifted path and the true 3D path projected onto the
  table (base xy; the pipeline lifts waypoints at a fixed carrying height, so heights are not compared),
  and ``success3d``: the 2D success plus the lifted path clear of the other objects' boxes;
- rearrangement ``recall3d``: objects to move whose box (grown 1 cm) holds a lifted point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.pipeline import Goal, PipelineResult, ResultStatus, TaskPipeline
from bopask_ros.replay.bag_reader import BagData, read_bag
from bopask_vlm.answers.types import Task
from bopask_vlm.eval import metrics as M
from bopask_vlm.eval.scoring import SceneGT, gt_answer, rearrangement_objects, score_answer, trajectory_objects
from bopask_vlm.goal_fields import GoalFieldError, validate_goal_fields

__all__ = ["ReplayReport", "latency_stats", "replay_bag", "score_3d"]

_GRASP_KEYS = ("T_cam_gripper", "grasp_pose_cam", "T_cam_grasp", "grasp_cam", "pose_cam")
_PATH_KEYS = ("path_cam", "path_3d_cam", "waypoints_cam", "path_3d", "trajectory_cam")


@dataclass
class ReplayReport:
    summary: dict[str, Any]
    samples: list[dict[str, Any]]
    latency: dict[str, dict[str, float]]
    frames_read: int
    errors: list[str]
    complete: bool
    results: list[PipelineResult] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


def latency_stats(timings: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95 (ms) per stage over the runs that reached that stage."""
    keys: dict[str, list[float]] = {}
    for t in timings:
        for k, v in t.items():
            keys.setdefault(k, []).append(v)
    return {k: {"p50_ms": float(np.percentile(v, 50) * 1e3), "p95_ms": float(np.percentile(v, 95) * 1e3),
                "n": len(v)} for k, v in keys.items()}


def _find_matrix(gt: dict[str, Any], keys: tuple[str, ...], shape: tuple[int, int]) -> NDArray[np.float64] | None:
    """The first of ``keys`` in ``gt`` holding an array of ``shape`` (-1 = any length)."""
    for k in keys:
        if k not in gt:
            continue
        try:
            a = np.asarray(gt[k], dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if a.ndim == 2 and a.shape[1] == shape[1] and (shape[0] == -1 or a.shape[0] == shape[0]):
            return a
    return None


def _box_to(T: NDArray[np.float64], b: M.Box3D) -> M.Box3D:
    return M.Box3D(T[:3, :3] @ b.center + T[:3, 3], T[:3, :3] @ b.R, b.size)


def score_3d(record: Any, result: PipelineResult, scene: SceneGT | None, T_base_cam: NDArray[np.float64],
             metrics_2d: dict[str, float]) -> dict[str, float]:
    """3D metrics in the base frame of one pipeline result (failed lifting scores as failure)."""
    task = Task(record.task)
    im_id = int(record.im_id)
    lifted = result.status not in (ResultStatus.VLM_ERROR, ResultStatus.INVALID_ANSWER, ResultStatus.LIFT_FAILED,
                                   ResultStatus.TF_FAILED, ResultStatus.CANCELED)
    out: dict[str, float] = {}
    P = np.asarray(result.points_base, dtype=np.float64) if lifted else None
    if task == Task.POSE and scene is not None and record.objects:
        box = scene.box_cam(im_id, int(record.objects[0].gt_index))
        if box is not None:
            iou = 0.0
            if P is not None and P.shape == (8, 3) and np.all(np.isfinite(P)):
                try:
                    iou = M.box_iou_3d(M.box_from_corners_3d(P), _box_to(T_base_cam, box))
                except M.MetricError:
                    iou = 0.0
            out["iou3d_lifted"] = iou
    elif task == Task.GRASP:
        T_gt = _find_matrix(record.gt, _GRASP_KEYS, (4, 4))
        if T_gt is not None:
            if lifted and result.grasp_pose_base is not None:
                t, r = M.grasp_pose_error(result.grasp_pose_base, T_base_cam @ T_gt)
                out["trans_err_m"], out["rot_err_deg"] = t, r
            out["lift_ok"] = float(lifted and result.grasp_pose_base is not None)
    elif task == Task.TRAJECTORY:
        path_gt = _find_matrix(record.gt, _PATH_KEYS, (-1, 3))
        if path_gt is not None and len(path_gt) >= 1 and P is not None and len(P) >= 1:
            gb = path_gt @ T_base_cam[:3, :3].T + T_base_cam[:3, 3]
            out["dist_m"] = M.trajectory_distance(P[:, :2], gb[:, :2])
        obstacles = []
        if scene is not None:
            gt_pts = np.asarray(gt_answer(record).points, float)
            shape = (int(record.height), int(record.width))
            ends = set(trajectory_objects(record, scene, gt_pts, shape))
            for k in range(len(scene.instances(im_id))):
                if k in ends:
                    continue
                b = scene.box_cam(im_id, k)
                if b is not None:
                    obstacles.append(_box_to(T_base_cam, b))
        clear = P is not None and len(P) >= 2 and M.path_clear(P, obstacles)
        out["success3d"] = float(bool(metrics_2d.get("success")) and clear)
    elif task == Task.REARRANGEMENT and scene is not None:
        gt_pts = np.asarray(gt_answer(record).points, float)
        shape = (int(record.height), int(record.width))
        ks = set(rearrangement_objects(record, scene, gt_pts, shape)) - {None}
        boxes = [b for b in (scene.box_cam(im_id, k) for k in ks) if b is not None]
        if boxes:
            hit = [bool(P is not None and len(P) and np.any(_box_to(T_base_cam, b).contains(P, 0.01)))
                   for b in boxes]
            out["recall3d"] = float(np.mean(hit))
    return out


def replay_bag(bag: str | Path | BagData, client: Any, *, out_dir: str | Path | None = None, safety: Any = None,
               planner: Any = None, base_frame: str | None = None, scene_dir: str | Path | None = None,
               waypoint_height: float = 0.16, progress: bool = False, overlays: int = 12,
               on_result: Callable[[Any, PipelineResult], None] | None = None) -> ReplayReport:
    """Replay every QA record of the bag's images through the pipeline and score the results.

    ``bag``: a bag path or an already read :class:`BagData`. ``scene_dir``: the BOP scene (default:
    the one named in the bag's side file) for masks and 3D boxes.
    """
    from tqdm import tqdm

    from bopask_vlm.eval.report import aggregate, write_report

    t_read = time.perf_counter()
    data = bag if isinstance(bag, BagData) else read_bag(bag)
    read_s = time.perf_counter() - t_read
    base = base_frame or data.gt.get("base_frame", "base_link")
    sd = scene_dir or data.gt.get("scene_dir")
    scene = SceneGT(sd) if sd and Path(sd).is_dir() else None
    by_im = {bf.im_id: bf for bf in data.frames if bf.im_id is not None}
    T_by_im = {int(f["im_id"]): np.asarray(f["T_base_cam"], float) for f in data.gt.get("frames", [])}
    pipe = TaskPipeline(client, data.tf, base_frame=base, safety=safety, planner=planner,
                        waypoint_height=waypoint_height, table_height=data.gt.get("table_height_base"))
    samples, results, timings = [], [], []
    skipped = 0
    recs = sorted(data.records, key=lambda r: int(r.im_id))  # consecutive goals on one frame share its lifter
    for rec in tqdm(recs, desc="replay", unit="goal", disable=not progress):
        bf = by_im.get(int(rec.im_id))
        if bf is None:
            skipped += 1
            continue
        try:  # the same goal-field checks as the node's and bopask ask's
            fields = validate_goal_fields(rec.task, [o.description for o in rec.objects], None, rec.question)
        except GoalFieldError as e:
            data.errors.append(f"record {rec.id}: bad goal: {e}")
            continue
        goal = Goal(task=fields.task, objects=list(fields.objects), question=fields.question, record=rec)
        res = pipe.run(bf.frame, goal)
        if on_result is not None:
            on_result(rec, res)
        results.append(res)
        timings.append(res.timings)
        answered = res.status not in (ResultStatus.VLM_ERROR, ResultStatus.INVALID_ANSWER)
        m = score_answer(rec, res.answer if answered else None, scene)
        T_bc = res.T_base_cam if res.T_base_cam is not None else T_by_im.get(int(rec.im_id))
        if T_bc is not None:
            m.update(score_3d(rec, res, scene, T_bc, m))
        samples.append({"id": rec.id, "task": rec.task.value, "im_id": int(rec.im_id), "metrics": m,
                        "status": res.status.value, "reason": res.reason, "raw_text": res.raw_text,
                        "server_error": res.status == ResultStatus.VLM_ERROR,  # no answer came back
                        "timings_ms": {k: v * 1e3 for k, v in res.timings.items()},
                        "points_base": np.asarray(res.points_base).tolist()})
    if skipped:
        data.errors.append(f"{skipped} records refer to images that are not in the bag (or were lost)")
    summary = aggregate(samples)
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[s["status"]] = statuses.get(s["status"], 0) + 1
    lat = latency_stats(timings)
    summary.update({"model": getattr(client, "model", None) or type(client).__name__, "latency": lat,
                    "statuses": statuses, "frames_read": len(data.frames), "bag_complete": data.complete,
                    "bag_errors": list(data.errors), "bag_read_s": read_s, "base_frame": base})
    rep = ReplayReport(summary, samples, lat, len(data.frames), list(data.errors), data.complete, results)
    if out_dir is not None:
        rep.paths = write_report(summary, samples, out_dir, title="BOP-ASK rosbag replay")
        if overlays:
            rep.paths.update(_replay_overlays(data, recs, results, Path(out_dir) / "overlays", overlays))
    return rep


def _replay_overlays(data: BagData, recs: list[Any], results: list[PipelineResult], out: Path,
                     limit: int) -> dict[str, Path]:
    """One overlay per task (first few records): ground truth green, the pipeline's answer red."""
    from bopask_vlm.eval.runner import overlay_name, save_overlay

    out.mkdir(parents=True, exist_ok=True)
    by_im = {bf.im_id: bf for bf in data.frames}
    seen: dict[str, int] = {}
    done = 0
    for rec, res in zip((r for r in recs if int(r.im_id) in by_im), results):
        t = rec.task.value
        if seen.get(t, 0) >= max(1, limit // 6) or done >= limit:
            continue
        p = save_overlay(by_im[int(rec.im_id)].frame.rgb, gt_answer(rec), res.answer, out / overlay_name(rec), t)
        if p is not None:
            seen[t] = seen.get(t, 0) + 1
            done += 1
    return {"overlays": out}
