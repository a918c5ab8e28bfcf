"""BOP-ASK metrics, one documented function per quantity.

Conventions: 2D points are float pixels of the original image (u right, v down); 3D quantities are
metres in one common frame (the camera frame in the dataset, the robot base frame on the robot side).
Every function raises :class:`MetricError` for malformed input (wrong shapes, non-finite ground truth);
a *prediction* that is merely wrong scores badly instead (e.g. a pose answer without 8 points has IoU 0).

Definitions that the paper does not publish, chosen here and documented:

- Pose 3D IoU: exact volume IoU of two oriented boxes (intersection of the 12 half-spaces, Chebyshev
  centre by linear programming, ``scipy.spatial.HalfspaceIntersection`` + ``ConvexHull`` volume). The
  predicted box is recovered from the 8 predicted corners by PnP with the object's known size (all
  assignments of the three sizes to the box edges are tried, the lowest reprojection error wins), or,
  when the size is unknown, from the corners lifted with depth (:func:`box_from_corners_3d`).
- Pose 2D IoU: IoU of the convex hulls of the predicted and ground-truth corners (shapely).
- Grasp NCE: mean keypoint distance / ground-truth finger-base distance, min over the direct and the
  left/right-mirrored assignment, capped at :data:`NCE_CAP`; success when ``NCE < 2``.
- Trajectory distance: discrete Frechet distance between the two polylines after resampling each to
  :data:`RESAMPLE_POINTS` points equally spaced by arc length (pixels in 2D, metres in 3D).
- Trajectory success: first point on object A (inside its visible mask, or within ``tolerance_px``),
  last point at B's placement (inside B's mask / within ``tolerance_px``), and, when 3D data is given,
  the lifted path (sampled every ``step_m``) enters no other object's box.
- Rearrangement: a predicted point hits an object when it lies inside that object's visible mask;
  recall = objects hit / objects to move, precision = points that hit an object to move / points.
  With nothing to move, an empty answer scores 1/1 and any point scores precision 0 (recall 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bopask_vlm.geometry import CameraModel, rotation_angle_deg

__all__ = [
    "NCE_CAP",
    "NCE_SUCCESS",
    "RESAMPLE_POINTS",
    "Box3D",
    "MetricError",
    "box_from_corners_3d",
    "box_from_corners_pnp",
    "box_iou_3d",
    "discrete_frechet",
    "grasp_nce",
    "grasp_pose_error",
    "hull_iou_2d",
    "path_clear",
    "pose_iou_2d",
    "rearrangement_scores",
    "resample_polyline",
    "trajectory_distance",
    "trajectory_success",
    "yes_no_correct",
]

NCE_CAP = 10.0
NCE_SUCCESS = 2.0
RESAMPLE_POINTS = 50


class MetricError(ValueError):
    """Input to a metric has the wrong shape or non-finite ground truth."""


def _arr(x: ArrayLike, shape: tuple[int | None, ...], name: str, finite: bool = True) -> NDArray[np.float64]:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MetricError(f"{name}: not numeric: {e}") from e
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise MetricError(f"{name}: expected shape ({want}), got {a.shape}")
    if finite and not np.all(np.isfinite(a)):
        raise MetricError(f"{name}: values must be finite")
    return a


# ---------------------------------------------------------------------------------------------
# Oriented boxes
# ---------------------------------------------------------------------------------------------

#: Unit cuboid corners in answer order: bottom face (z = -1/2) then top face, counter-clockwise seen
#: from +z, top corner i above bottom corner i. Edge 0->1 runs along x, 1->2 along y, 0->4 along z.
UNIT_CORNERS = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                         [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=np.float64) / 2.0


@dataclass(frozen=True)
class Box3D:
    """An oriented box: ``center`` (3,), rotation ``R`` (3, 3, columns = box axes), full ``size`` (3,)."""

    center: NDArray[np.float64]
    R: NDArray[np.float64]
    size: NDArray[np.float64]

    def __post_init__(self) -> None:
        c = _arr(self.center, (3,), "Box3D.center")
        R = _arr(self.R, (3, 3), "Box3D.R")
        s = _arr(self.size, (3,), "Box3D.size")
        if np.any(s < 0):
            raise MetricError(f"Box3D.size must be non-negative, got {s.tolist()}")
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-6):
            raise MetricError("Box3D.R must be a rotation matrix")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "size", s)

    @classmethod
    def from_pose(cls, T: ArrayLike, size: ArrayLike) -> Box3D:
        """From a 4x4 pose of the box centre (e.g. a BOP ``T_cam_obj``) and its full size."""
        T = _arr(T, (4, 4), "T")
        return cls(T[:3, 3], T[:3, :3], size)

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def corners(self) -> NDArray[np.float64]:
        """(8, 3) corners in :data:`UNIT_CORNERS` order."""
        return (UNIT_CORNERS * self.size) @ self.R.T + self.center

    def halfspaces(self) -> NDArray[np.float64]:
        """(6, 4) rows ``[n, d]`` with ``n . x + d <= 0`` inside (scipy's convention)."""
        rows = []
        for k in range(3):
            n = self.R[:, k]
            h = self.size[k] / 2.0
            c = float(n @ self.center)
            rows.append(np.r_[n, -c - h])
            rows.append(np.r_[-n, c - h])
        return np.array(rows)

    def contains(self, points: ArrayLike, margin: float = 0.0) -> NDArray[np.bool_]:
        """Whether each (N, 3) point lies inside the box grown by ``margin`` on every side."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        local = (p - self.center) @ self.R
        return np.all(np.abs(local) <= self.size / 2.0 + margin, axis=1)


def box_iou_3d(a: Box3D, b: Box3D) -> float:
    """Exact volume IoU of two oriented boxes, any rotations. Disjoint or touching boxes give 0.

    IoU does not depend on position or scale, so the pair is first moved to a common centre and divided
    by the larger box's longest side: the linear program's and Qhull's absolute tolerances then act on
    unit-sized boxes, and millimetre or micrometre boxes get the same IoU as metre ones.
    """
    from scipy.optimize import linprog
    from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError

    if a.volume <= 0 or b.volume <= 0:
        return 0.0
    unit = float(max(a.size.max(), b.size.max()))
    origin = (a.center + b.center) / 2.0
    if not np.isfinite(unit) or not np.all(np.isfinite(origin)):
        raise MetricError("box_iou_3d: boxes must have finite centres and sizes")
    a = Box3D((a.center - origin) / unit, a.R, a.size / unit)
    b = Box3D((b.center - origin) / unit, b.R, b.size / unit)
    va, vb = a.volume, b.volume
    if va <= 0 or vb <= 0:  # a side underflowed to 0 relative to the other box: no measurable overlap
        return 0.0
    hs = np.vstack([a.halfspaces(), b.halfspaces()])
    A, d = hs[:, :3], hs[:, 3]
    # Chebyshev centre: maximise r subject to A x + r |A_i| <= -d (|A_i| = 1 here)
    norms = np.linalg.norm(A, axis=1)
    res = linprog(c=[0, 0, 0, -1], A_ub=np.c_[A, norms], b_ub=-d, bounds=[(None, None)] * 3 + [(0, None)],
                  method="highs")
    scale = float(min(a.size.min(), b.size.min()))
    if not res.success or res.x[3] <= 1e-9 * max(scale, 1e-12):
        return 0.0
    try:
        inter = HalfspaceIntersection(hs, res.x[:3])
        vol = ConvexHull(inter.intersections).volume
    except (QhullError, ValueError):
        return 0.0
    vol = min(float(vol), va, vb)
    return float(vol / (va + vb - vol))


def box_from_corners_3d(corners: ArrayLike) -> Box3D:
    """The box that best fits 8 3D corners given in answer order (bottom 0-3, top 4-7, CCW).

    Axes from the mean edge directions, orthonormalised (SVD); size from the mean edge lengths;
    centre the corners' mean. Used for ground truth stored as corners and for depth-lifted answers.
    """
    P = _arr(corners, (8, 3), "corners")
    ex = ((P[1] - P[0]) + (P[2] - P[3]) + (P[5] - P[4]) + (P[6] - P[7])) / 4.0
    ey = ((P[2] - P[1]) + (P[3] - P[0]) + (P[6] - P[5]) + (P[7] - P[4])) / 4.0
    ez = ((P[4] - P[0]) + (P[5] - P[1]) + (P[6] - P[2]) + (P[7] - P[3])) / 4.0
    M = np.stack([ex, ey, ez], axis=1)
    lengths = np.linalg.norm(M, axis=0)
    if np.any(lengths < 1e-9):
        raise MetricError("corners are degenerate (a box edge has zero length)")
    U, _, Vt = np.linalg.svd(M / lengths)
    R = U @ Vt
    if np.linalg.det(R) < 0:  # clockwise corner order: flip the vertical axis
        U[:, -1] *= -1
        R = U @ Vt
    size = np.abs(np.einsum("ij,ij->j", R, M))
    return Box3D(P.mean(axis=0), R, size)


def box_from_corners_pnp(corners_2d: ArrayLike, size: ArrayLike, camera: CameraModel) -> tuple[Box3D, float]:
    """The camera-frame box of known full ``size`` (metres) whose projection best matches 8 corners.

    Which object axis runs along which answer edge is not known, so every assignment of the three
    sizes to the (0->1, 1->2, 0->4) edges is solved (OpenCV ``solvePnP``, iterative, after EPnP) and
    the lowest RMS reprojection error wins. Returns the box and that error in pixels.
    """
    import cv2

    uv = _arr(corners_2d, (8, 2), "corners_2d")
    s = _arr(size, (3,), "size")
    if np.any(s <= 0):
        raise MetricError(f"size must be positive, got {s.tolist()}")
    dist = camera.D if camera.is_distorted else np.zeros(5)
    best: tuple[Box3D, float] | None = None
    for perm in set(itertools.permutations(range(3))):
        dims = s[list(perm)]
        obj = UNIT_CORNERS * dims
        ok, rvec, tvec = cv2.solvePnP(obj, uv, camera.K, dist, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            continue
        ok, rvec, tvec = cv2.solvePnP(obj, uv, camera.K, dist, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or tvec[2, 0] <= 0:
            continue
        R = cv2.Rodrigues(rvec)[0]
        proj, _ = cv2.projectPoints(obj, rvec, tvec, camera.K, dist)
        err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - uv) ** 2, axis=1))))
        if best is None or err < best[1]:
            best = (Box3D(tvec.reshape(3), R, dims), err)
    if best is None:
        raise MetricError("PnP found no box pose in front of the camera")
    return best


def hull_iou_2d(points_a: ArrayLike, points_b: ArrayLike) -> float:
    """IoU of the convex hulls of two 2D point sets (0 when either hull has no area)."""
    from shapely import MultiPoint

    a = _arr(points_a, (None, 2), "points_a")
    b = _arr(points_b, (None, 2), "points_b")
    ha, hb = MultiPoint(a).convex_hull, MultiPoint(b).convex_hull
    if ha.area <= 0 or hb.area <= 0:
        return 0.0
    inter = ha.intersection(hb).area
    return float(inter / (ha.area + hb.area - inter))


def pose_iou_2d(pred_points: ArrayLike | None, gt_corners_2d: ArrayLike) -> float:
    """2D pose IoU (SpaceTools style): convex-hull IoU, 0 when the answer does not have 8 finite points."""
    gt = _arr(gt_corners_2d, (8, 2), "gt_corners_2d")
    if pred_points is None:
        return 0.0
    p = np.asarray(pred_points, dtype=np.float64)
    if p.shape != (8, 2) or not np.all(np.isfinite(p)):
        return 0.0
    return hull_iou_2d(p, gt)


# ---------------------------------------------------------------------------------------------
# Grasps
# ---------------------------------------------------------------------------------------------

_MIRROR = [0, 2, 1, 4, 3]


def grasp_nce(pred: ArrayLike, gt: ArrayLike, cap: float = NCE_CAP) -> float:
    """Normalised coordinate error of 5 grasp keypoints (center, L base, R base, L tip, R tip).

    ``mean_i |pred_i - gt_i| / |gt_Lbase - gt_Rbase|``, the smaller of the direct and the
    left/right-mirrored assignment, capped at ``cap``. A prediction without 5 finite points scores ``cap``.
    """
    g = _arr(gt, (5, 2), "gt")
    w = float(np.linalg.norm(g[1] - g[2]))
    if w < 1e-6:
        raise MetricError("ground-truth finger bases coincide: the NCE normaliser is zero")
    p = np.asarray(pred, dtype=np.float64) if pred is not None else np.zeros((0, 2))
    if p.shape != (5, 2) or not np.all(np.isfinite(p)):
        return float(cap)
    direct = np.linalg.norm(p - g, axis=1).mean()
    mirrored = np.linalg.norm(p[_MIRROR] - g, axis=1).mean()
    return float(min(min(direct, mirrored) / w, cap))


def grasp_pose_error(T_pred: ArrayLike, T_gt: ArrayLike) -> tuple[float, float]:
    """(translation error in metres, rotation error in degrees) of two gripper poses.

    The gripper is symmetric under a half turn about its approach axis (z): the smaller rotation
    error of the two equivalent poses is reported.
    """
    from bopask_vlm.gripper import FLIP_Z

    A = _arr(T_pred, (4, 4), "T_pred")
    B = _arr(T_gt, (4, 4), "T_gt")
    t = float(np.linalg.norm(A[:3, 3] - B[:3, 3]))
    r = min(rotation_angle_deg(A[:3, :3], B[:3, :3]), rotation_angle_deg((A @ FLIP_Z)[:3, :3], B[:3, :3]))
    return t, float(r)


# ---------------------------------------------------------------------------------------------
# Trajectories
# ---------------------------------------------------------------------------------------------


def resample_polyline(points: ArrayLike, n: int = RESAMPLE_POINTS) -> NDArray[np.float64]:
    """``n`` points equally spaced by arc length along a polyline (any dimension, >= 1 point)."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] < 1 or not np.all(np.isfinite(P)):
        raise MetricError(f"polyline must be a finite (N, D) array with N >= 1, got shape {P.shape}")
    if n < 2:
        raise MetricError("resample to at least 2 points")
    seg = np.linalg.norm(np.diff(P, axis=0), axis=1)
    s = np.r_[0.0, np.cumsum(seg)]
    if s[-1] <= 0:
        return np.repeat(P[:1], n, axis=0)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, P[:, k]) for k in range(P.shape[1])], axis=1)


def discrete_frechet(P: ArrayLike, Q: ArrayLike) -> float:
    """Discrete Frechet distance between two point sequences (Eiter & Mannila dynamic programme)."""
    A = np.asarray(P, dtype=np.float64)
    B = np.asarray(Q, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1] or len(A) == 0 or len(B) == 0:
        raise MetricError(f"Frechet needs two non-empty (N, D) sequences, got {A.shape} and {B.shape}")
    D = np.linalg.norm(A[:, None, :] - B[None, :, :], axis=2)
    n, m = D.shape
    ca = np.empty((n, m))
    ca[:, 0] = np.maximum.accumulate(D[:, 0])
    ca[0, :] = np.maximum.accumulate(D[0, :])
    for i in range(1, n):
        for j in range(1, m):
            ca[i, j] = max(min(ca[i - 1, j], ca[i - 1, j - 1], ca[i, j - 1]), D[i, j])
    return float(ca[-1, -1])


def trajectory_distance(pred: ArrayLike, gt: ArrayLike, n: int = RESAMPLE_POINTS) -> float:
    """Discrete Frechet distance after resampling both paths to ``n`` points (units of the input)."""
    return discrete_frechet(resample_polyline(pred, n), resample_polyline(gt, n))


def _near_mask(point: NDArray[np.float64], mask: NDArray[np.bool_], tolerance_px: float) -> bool:
    h, w = mask.shape
    u, v = int(round(point[0])), int(round(point[1]))
    r = int(np.ceil(tolerance_px))
    u0, u1, v0, v1 = max(u - r, 0), min(u + r + 1, w), max(v - r, 0), min(v + r + 1, h)
    if u0 >= u1 or v0 >= v1:
        return False
    vv, uu = np.nonzero(mask[v0:v1, u0:u1])
    if vv.size == 0:
        return False
    d2 = (uu + u0 - point[0]) ** 2 + (vv + v0 - point[1]) ** 2
    return bool(d2.min() <= tolerance_px**2 + 0.5)


def path_clear(path_3d: ArrayLike, obstacles: Sequence[Box3D], step_m: float = 0.005, margin: float = 0.0) -> bool:
    """Whether a 3D polyline (sampled every ``step_m``) stays outside every obstacle box."""
    P = _arr(path_3d, (None, 3), "path_3d")
    if not obstacles or len(P) == 0:
        return True
    length = float(np.linalg.norm(np.diff(P, axis=0), axis=1).sum()) if len(P) > 1 else 0.0
    samples = resample_polyline(P, max(2, int(np.ceil(length / step_m)) + 1))
    return not any(np.any(b.contains(samples, margin)) for b in obstacles)


def trajectory_success(pred: ArrayLike | None, start_mask: ArrayLike, goal_mask: ArrayLike, *,
                       tolerance_px: float = 10.0, path_3d: ArrayLike | None = None,
                       obstacles: Sequence[Box3D] = ()) -> bool:
    """Success of a predicted 2D path moving object A to object B.

    The first point must lie on A (``start_mask``, HxW bool, within ``tolerance_px``), the last at B's
    placement (``goal_mask``), and, when ``path_3d`` (the lifted path) is given, it must stay clear of
    the other objects' boxes (``obstacles``; leave A and B out of them).
    """
    sm = np.asarray(start_mask, dtype=bool)
    gm = np.asarray(goal_mask, dtype=bool)
    if sm.ndim != 2 or gm.shape != sm.shape:
        raise MetricError(f"start/goal masks must be HxW of one size, got {sm.shape} and {gm.shape}")
    if pred is None:
        return False
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 2 or not np.all(np.isfinite(p)):
        return False
    if not (_near_mask(p[0], sm, tolerance_px) and _near_mask(p[-1], gm, tolerance_px)):
        return False
    if path_3d is not None:
        P = np.asarray(path_3d, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != 3 or not np.all(np.isfinite(P)):
            return False
        return path_clear(P, obstacles)
    return True


# ---------------------------------------------------------------------------------------------
# Rearrangement, spatial, depth
# ---------------------------------------------------------------------------------------------


def rearrangement_scores(pred: ArrayLike | None, masks: Sequence[ArrayLike]) -> tuple[float, float]:
    """(recall, precision) of predicted points against the visible masks of the objects to move."""
    ms = [np.asarray(m, dtype=bool) for m in masks]
    if any(m.ndim != 2 for m in ms):
        raise MetricError("masks must be HxW boolean images")
    p = np.zeros((0, 2)) if pred is None else np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(p)):
        return 0.0, 0.0
    if not ms:
        return 1.0, (1.0 if len(p) == 0 else 0.0)
    hit_obj = np.zeros(len(ms), dtype=bool)
    hit_pt = np.zeros(len(p), dtype=bool)
    for k, m in enumerate(ms):
        h, w = m.shape
        u = np.round(p[:, 0]).astype(int)
        v = np.round(p[:, 1]).astype(int)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        on = np.zeros(len(p), dtype=bool)
        on[inside] = m[v[inside], u[inside]]
        hit_obj[k] = bool(on.any())
        hit_pt |= on
    precision = float(hit_pt.mean()) if len(p) else 0.0
    return float(hit_obj.mean()), precision


def yes_no_correct(pred: bool | None, gt: bool) -> bool:
    """Spatial / relative-depth accuracy of one answer (``None`` = no valid answer = wrong)."""
    return pred is not None and bool(pred) == bool(gt)
