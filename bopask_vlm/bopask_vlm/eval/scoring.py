"""Score one answer against its QA record: the per-sample metrics of every task.

The 2D ground truth is the record's own answer (``answer_from_record``). What the metrics need beyond
it is read from the BOP scene the record's image belongs to (``<scene>/rgb/<im_id>.png`` under the
dataset root): visible masks (``mask_visib/IM_GT.png``, else ``bbox_visib`` rectangles) and 3D boxes
from ``scene_gt.json`` + ``models_info.json``. Objects are identified from the ground-truth points
themselves (the mask under a trajectory's first/last point, under each rearrangement point), so no
extra ground-truth fields are required.

Per-sample metric keys (absent = not computable): ``valid`` (1/0) always; pose ``iou3d``, ``iou2d``;
grasp ``nce``, ``success`` (and ``nce_any``: the best match among all kept grasps of the object); trajectory ``success``, ``dist_px``; rearrangement ``recall``,
``precision``; spatial/depth ``correct``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import Task
from bopask_vlm.eval import metrics as M
from bopask_vlm.geometry import CameraModel

__all__ = ["SceneGT", "gt_answer", "rearrangement_objects", "scene_dir_of", "scene_for_record", "score_answer",
           "trajectory_objects"]


class SceneGT:
    """Lazy access to one BOP scene directory's ground truth (masks, boxes)."""

    def __init__(self, scene_dir: str | Path) -> None:
        self.dir = Path(scene_dir)
        self._gt: dict[str, Any] | None = None
        self._info: dict[str, Any] | None = None
        self._models: dict[str, Any] | None = None
        self._masks: dict[tuple[int, int], NDArray[np.bool_] | None] = {}

    def _json(self, name: str) -> dict[str, Any]:
        p = self.dir / name
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def scene_gt(self) -> dict[str, Any]:
        if self._gt is None:
            self._gt = self._json("scene_gt.json")
        return self._gt

    @property
    def scene_gt_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self._json("scene_gt_info.json")
        return self._info

    @property
    def models_info(self) -> dict[str, Any]:
        if self._models is None:
            self._models = {}
            for cand in (self.dir / "models", self.dir.parent / "models", self.dir.parent.parent / "models",
                         self.dir / "models_eval", self.dir.parent / "models_eval"):
                f = cand / "models_info.json"
                if f.is_file():
                    self._models = json.loads(f.read_text())
                    break
        return self._models

    def instances(self, im_id: int) -> list[dict[str, Any]]:
        return list(self.scene_gt.get(str(im_id), []))

    def mask(self, im_id: int, gt_index: int, shape: tuple[int, int]) -> NDArray[np.bool_] | None:
        """Visible mask of one instance (mask_visib png, else its bbox_visib rectangle)."""
        key = (im_id, gt_index)
        if key not in self._masks:
            m = None
            p = self.dir / "mask_visib" / f"{im_id:06d}_{gt_index:06d}.png"
            if p.is_file():
                from PIL import Image

                m = np.asarray(Image.open(p)) > 0
                if m.ndim == 3:
                    m = m.any(axis=2)
            else:
                infos = self.scene_gt_info.get(str(im_id), [])
                if gt_index < len(infos) and "bbox_visib" in infos[gt_index]:
                    x, y, w, h = (int(v) for v in infos[gt_index]["bbox_visib"])
                    if w > 0 and h > 0:
                        m = np.zeros(shape, dtype=bool)
                        m[max(y, 0):y + h, max(x, 0):x + w] = True
            self._masks[key] = m
        return self._masks[key]

    def object_at(self, im_id: int, uv: NDArray[np.float64], shape: tuple[int, int],
                  tolerance_px: float = 3.0) -> int | None:
        """Index of the instance whose visible mask holds pixel ``uv`` (nearest within tolerance)."""
        best, best_d = None, np.inf
        u, v = float(uv[0]), float(uv[1])
        for k in range(len(self.instances(im_id))):
            m = self.mask(im_id, k, shape)
            if m is None:
                continue
            iu, iv = int(round(u)), int(round(v))
            if 0 <= iv < m.shape[0] and 0 <= iu < m.shape[1] and m[iv, iu]:
                return k
            r = int(np.ceil(tolerance_px))
            sub = m[max(iv - r, 0):iv + r + 1, max(iu - r, 0):iu + r + 1]
            vv, uu = np.nonzero(sub)
            if vv.size:
                d = np.min((uu + max(iu - r, 0) - u) ** 2 + (vv + max(iv - r, 0) - v) ** 2)
                if d < best_d and d <= tolerance_px**2:
                    best, best_d = k, d
        return best

    def box_cam(self, im_id: int, gt_index: int) -> M.Box3D | None:
        """The instance's 3D box in the camera frame (metres), from its pose and models_info."""
        inst = self.instances(im_id)
        if gt_index >= len(inst):
            return None
        g = inst[gt_index]
        info = self.models_info.get(str(g["obj_id"]))
        if info is None:
            return None
        size = np.array([info["size_x"], info["size_y"], info["size_z"]], float) / 1000.0
        mins = np.array([info["min_x"], info["min_y"], info["min_z"]], float) / 1000.0
        R = np.asarray(g["cam_R_m2c"], float).reshape(3, 3)
        t = np.asarray(g["cam_t_m2c"], float) / 1000.0
        return M.Box3D(R @ (mins + size / 2.0) + t, R, size)


def scene_dir_of(record: Any, dataset_root: str | Path) -> Path:
    """``<root>/<...>/<scene>/rgb/<im>.png`` -> ``<root>/<...>/<scene>``."""
    return (Path(dataset_root) / record.image).parent.parent


@lru_cache(maxsize=64)
def _scene_cached(path: str) -> SceneGT:
    return SceneGT(path)


def scene_for_record(record: Any, dataset_root: str | Path | None) -> SceneGT | None:
    if dataset_root is None:
        return None
    d = scene_dir_of(record, dataset_root)
    return _scene_cached(str(d.resolve())) if d.is_dir() else None


def gt_answer(record: Any) -> Any:
    from bopask_vlm.answers import answer_from_record

    return answer_from_record(record)


def _camera(record: Any) -> CameraModel:
    return CameraModel(K=np.asarray(record.camera_K, float).reshape(3, 3), width=record.width, height=record.height)


def score_answer(record: Any, pred: Any, scene: SceneGT | None = None, *, gt: Any = None,
                 tolerance_px: float = 10.0) -> dict[str, float]:
    """Per-sample metrics of ``pred`` (an Answer in original-image pixels, or None = invalid answer)."""
    task = Task(record.task)
    gt = gt_answer(record) if gt is None else gt
    shape = (int(record.height), int(record.width))
    valid = pred is not None and getattr(pred, "task", task) == task
    p = np.asarray(pred.points, float) if valid and not task.is_yes_no else None
    out: dict[str, float] = {"valid": float(valid)}
    if task.is_yes_no:
        out["correct"] = float(M.yes_no_correct(pred.value if valid else None, gt.value))
        return out
    g = np.asarray(gt.points, float)
    im_id = int(record.im_id)
    if task == Task.POSE:
        out["iou2d"] = M.pose_iou_2d(p, g)
        box = None
        if scene is not None and record.objects:
            box = scene.box_cam(im_id, int(record.objects[0].gt_index))
        if box is not None:
            iou3d = 0.0
            if p is not None and p.shape == (8, 2):
                try:
                    fit, _ = M.box_from_corners_pnp(p, box.size, _camera(record))
                    iou3d = M.box_iou_3d(fit, box)
                except M.MetricError:
                    iou3d = 0.0
            out["iou3d"] = iou3d
    elif task == Task.GRASP:
        nce = M.grasp_nce(p, g)
        out["nce"] = nce
        out["success"] = float(nce < M.NCE_SUCCESS)
        alts = _grasp_alternatives(record)
        if alts:  # the best match among all the object's kept grasps (the answer's grasp is one of them)
            out["nce_any"] = min([nce] + [M.grasp_nce(p, a) for a in alts])
    elif task == Task.TRAJECTORY:
        # start region: A's visible mask; goal: B's visible mask (the placement rests on B); each united
        # with a disk around the true end point, so a placement seen just beside B's mask still counts
        start_m, goal_m = _disk(g[0], shape, tolerance_px), _disk(g[-1], shape, tolerance_px)
        if scene is not None:
            ka, kb = trajectory_objects(record, scene, g, shape)
            for k, region in ((ka, start_m), (kb, goal_m)):
                m = scene.mask(im_id, k, shape) if k is not None else None
                if m is not None:
                    region |= m
        out["success"] = float(M.trajectory_success(p, start_m, goal_m, tolerance_px=tolerance_px))
        if p is not None and len(p) >= 1:
            out["dist_px"] = M.trajectory_distance(p, g)
    elif task == Task.REARRANGEMENT:
        masks = []
        ks = rearrangement_objects(record, scene, g, shape)
        for pt, k in zip(g, ks):
            m = scene.mask(im_id, k, shape) if (scene is not None and k is not None) else None
            masks.append(_disk(pt, shape, tolerance_px) if m is None else m)
        r, pr = M.rearrangement_scores(p if p is not None else None, masks)
        if p is None:
            r, pr = 0.0, 0.0
        out["recall"], out["precision"] = r, pr
    return out


def _grasp_alternatives(record: Any) -> list[NDArray[np.float64]]:
    """2D keypoints of every kept grasp of the object (``gt["keypoints_2d_all"]``, or projected from
    ``gt["grasps_T_cam_gripper"]``), left/right as seen in the image."""
    from bopask_vlm.geometry import GeometryError
    from bopask_vlm.gripper import keypoints_2d

    gt = record.gt or {}
    if gt.get("keypoints_2d_all"):
        return [np.asarray(a, float) for a in gt["keypoints_2d_all"] if np.shape(a) == (5, 2)]
    out = []
    cam = _camera(record)
    for T in gt.get("grasps_T_cam_gripper", []) or []:
        try:
            kp = keypoints_2d(np.asarray(T, float), cam)
        except (GeometryError, ValueError):
            continue
        if np.all(np.isfinite(kp)) and np.linalg.norm(kp[1] - kp[2]) > 1e-6:
            out.append(kp)
    return out


def trajectory_objects(record: Any, scene: SceneGT | None, gt_points: NDArray[np.float64],
                       shape: tuple[int, int]) -> tuple[int | None, int | None]:
    """Scene indices of A and B: ``gt["a_gt_index"]``/``["b_gt_index"]``, else the masks under the true ends."""
    gt = record.gt or {}
    if "a_gt_index" in gt and "b_gt_index" in gt:
        return int(gt["a_gt_index"]), int(gt["b_gt_index"])
    if scene is None:
        return None, None
    im = int(record.im_id)
    return scene.object_at(im, gt_points[0], shape), scene.object_at(im, gt_points[-1], shape)


def rearrangement_objects(record: Any, scene: SceneGT | None, gt_points: NDArray[np.float64],
                          shape: tuple[int, int]) -> list[int | None]:
    """Scene indices of the objects to move (``gt["blocking_gt_indices"]``, else the masks under the points)."""
    gt = record.gt or {}
    if "blocking_gt_indices" in gt and len(gt["blocking_gt_indices"]) == len(gt_points):
        return [int(k) for k in gt["blocking_gt_indices"]]
    if scene is None:
        return [None] * len(gt_points)
    return [scene.object_at(int(record.im_id), p, shape) for p in gt_points]


def _disk(center: NDArray[np.float64], shape: tuple[int, int], radius: float) -> NDArray[np.bool_]:
    v, u = np.ogrid[0:shape[0], 0:shape[1]]
    return (u - center[0]) ** 2 + (v - center[1]) ** 2 <= radius**2
