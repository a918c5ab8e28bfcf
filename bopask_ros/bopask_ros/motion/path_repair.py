"""A carried object's path checked against the observed scene and raised where it would hit it (ROS-free; issue 19).

A lifted path is the carried object's base point at each waypoint (:meth:`bopask_ros.pipeline.TaskPipeline._lift_path`).
What moves along it is the object hanging in the hand: a vertical column of ``radius`` around the base point, from
the base point up. The observed scene is the depth image's points above the support plane; the carried object's
own points (around the start) and the target's (under the end) are not obstacles. Where a scene point higher than
the base point minus ``clearance`` lies within ``radius`` of the path (sampled every ``step``), the inner waypoints
are raised until the base point clears the highest such point by ``clearance`` (at most ``max_raise``). The first
and last waypoints stay: the object rests there. Routing around instead of over is not done: over is what a
vertical column allows without knowing the objects' far sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.geometry import CameraModel, Plane

__all__ = ["PathRepair", "repair_path"]


@dataclass
class PathRepair:
    """The repaired path (camera frame), the largest waypoint displacement (m) and what was done ("" = nothing)."""

    points: NDArray[np.float64]
    moved_m: float
    reason: str
    collisions_before: int


def _scene_points(depth_m: NDArray[np.float32], camera: CameraModel, max_points: int) -> NDArray[np.float64]:
    h, w = depth_m.shape
    stride = max(1, int(np.ceil(np.sqrt(h * w / max(max_points, 1)))))
    vs, us = np.mgrid[0:h:stride, 0:w:stride]
    z = depth_m[vs, us].astype(np.float64)
    ok = np.isfinite(z)
    pix = np.stack([us[ok], vs[ok]], axis=1).astype(np.float64)
    return camera.rays(pix) * z[ok][:, None] if len(pix) else np.zeros((0, 3))


def repair_path(points_cam: NDArray[np.float64], depth_m: NDArray[np.float32], camera: CameraModel, plane: Plane, *,
                radius: float = 0.05, clearance: float = 0.02, max_raise: float = 0.15, step: float = 0.01,
                keep_out: float = 0.07, min_height: float = 0.01, max_points: int = 20000) -> PathRepair:
    """Check and raise a lifted path; see the module docstring. ``keep_out``: scene points this close (across the
    plane) to the first or last waypoint belong to the carried object or the target and are ignored."""
    P = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    if len(P) < 3 or not np.all(np.isfinite(P)):
        return PathRepair(P, 0.0, "", 0)
    n = np.asarray(plane.normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    S = _scene_points(depth_m, camera, max_points)
    hs = S @ n + plane.offset
    S, hs = S[hs > min_height], hs[hs > min_height]

    # 2D coordinates in the plane: distances across it
    e1 = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    B = np.stack([e1, np.cross(n, e1)], axis=1)

    def across(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.linalg.norm((a @ B)[:, None, :] - (b @ B)[None, :, :], axis=2)

    ends = P[[0, -1]]
    far = np.all(across(S, ends) > keep_out, axis=1)
    S, hs = S[far], hs[far]
    lo, hi = (P @ B).min(axis=0) - radius, (P @ B).max(axis=0) + radius
    s2 = S @ B
    inside = np.all((s2 >= lo) & (s2 <= hi), axis=1)  # only points near the path's extent matter
    S, hs = S[inside], hs[inside]
    # samples along the path with the segment they lie on
    samples, seg = [], []
    for i in range(len(P) - 1):
        k = max(2, int(np.ceil(np.linalg.norm(P[i + 1] - P[i]) / step)) + 1)
        t = np.linspace(0.0, 1.0, k)[:, None]
        samples.append(P[i] + t * (P[i + 1] - P[i]))
        seg.append(np.full(k, i))
    Q = np.concatenate(samples)
    segs = np.concatenate(seg)
    hq = Q @ n + plane.offset
    if not len(S):
        return PathRepair(P, 0.0, "", 0)
    near = across(Q, S) < radius  # (samples, scene points)
    high = near & (hs[None, :] > hq[:, None] - clearance)
    n_hit = int(np.count_nonzero(high.any(axis=1)))
    if n_hit == 0:
        return PathRepair(P, 0.0, "", 0)
    top = np.where(near, hs[None, :], -np.inf).max(axis=1)  # highest obstacle under each sample
    need = np.where(high.any(axis=1), top + clearance - hq, 0.0)
    # each inner waypoint rises by the most any sample of its two segments needs (the first and last stay)
    rise = np.zeros(len(P))
    for i in range(1, len(P) - 1):
        m = (segs == i - 1) | (segs == i)
        rise[i] = float(np.max(need[m], initial=0.0))
    capped = rise > max_raise
    rise = np.clip(rise, 0.0, max_raise)
    out = P + rise[:, None] * n
    moved = float(rise.max())
    where = ", ".join(f"{i}: +{rise[i] * 100:.1f} cm" for i in np.flatnonzero(rise > 0))
    reason = (f"the carried object would pass within {radius * 100:.0f} cm of the scene at {n_hit} path samples; "
              f"waypoints raised ({where})" + (f"; capped at {max_raise * 100:.0f} cm" if np.any(capped) else ""))
    if moved == 0.0:  # hits only on the first or last segment's ends: nothing to raise
        reason = f"the carried object would pass within {radius * 100:.0f} cm of the scene next to its start or end"
    return PathRepair(out, moved, reason, n_hit)
