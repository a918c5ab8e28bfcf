"""Pose (cuboid corner) answer errors (:class:`~bopask_vlm.clients.answer_error.levels.PoseError`).

Units: ``r`` is the RMS distance of the answer's 8 corners from their mean, in pixels (about half the
box's projected diagonal). Corner-order errors, one of three kinds with equal chance: the faces' corners
cycled by one (the same box named from another corner: harmless for the 3D IoU, which tries every
assignment of the sizes to the edges, but a 90-degree error in the box's yaw), the winding reversed
(clockwise) or top and bottom faces swapped (both mirror the box: no rigid box projects to them, so the
PnP fit is off).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import Task
from bopask_vlm.clients.answer_error.context import ErrorContext, clip_to_bounds, rotate_scale
from bopask_vlm.clients.answer_error.levels import PoseError

__all__ = ["ORDER_ERRORS", "perturb_pose"]

#: corner-order errors: name -> the answer's corners re-indexed
ORDER_ERRORS: dict[str, list[int]] = {
    "cycled": [1, 2, 3, 0, 5, 6, 7, 4],
    "winding_reversed": [0, 3, 2, 1, 4, 7, 6, 5],
    "top_bottom_swapped": [4, 5, 6, 7, 0, 1, 2, 3],
}


def perturb_pose(points: NDArray[np.float64], comp: PoseError, rng: np.random.Generator,
                 ctx: ErrorContext) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """The perturbed (8, 2) corners, clipped to the pose's bounds, and what was applied."""
    z_shift, z_rot, z_scale = rng.standard_normal(2), rng.standard_normal(), rng.standard_normal()
    z_jit, u_order, u_kind = rng.standard_normal((8, 2)), rng.random(), rng.random()
    p = np.asarray(points, dtype=np.float64).reshape(8, 2)
    c = p.mean(axis=0)
    r = max(float(np.sqrt(np.mean(np.sum((p - c) ** 2, axis=1)))), 1.0)
    order = None
    if u_order < comp.p_order:
        order = list(ORDER_ERRORS)[min(int(u_kind * len(ORDER_ERRORS)), len(ORDER_ERRORS) - 1)]
        p = p[ORDER_ERRORS[order]]
    angle = comp.rot_deg * float(z_rot)
    scale = float(np.exp(comp.scale_log * float(z_scale)))
    p = rotate_scale(p, c, angle, scale)
    shift = comp.shift_r * r * z_shift
    p = p + shift + comp.jitter_r * r * z_jit
    info = {"order_error": order, "rot_deg": angle, "scale": scale, "shift_px": shift.tolist(), "radius_px": r}
    return clip_to_bounds(Task.POSE, p, ctx.width, ctx.height), info
