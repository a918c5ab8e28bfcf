"""Grasp answer errors (:class:`~bopask_vlm.clients.answer_error.levels.GraspError`).

Units: ``w`` is the answer's own finger-base width in pixels, so a pure shift of ``k`` (in ``w``) gives
a grasp NCE of exactly ``k`` (the NCE normaliser is the same width). A rotation by ``theta`` moves the
finger bases by ``w sin(theta/2)``; a scale ``1 + e`` moves each point by ``e`` times its distance to the
centre.

Replacements (at most one per answer): **another grasp of the same object** is one of the record's other
kept grasps (``gt["grasps_T_cam_gripper"]``, projected like the metric does) at least 0.25 w from the
answer, else the skeleton moved along the object, perpendicular to the fingers, by 0.5 to 1.5 w;
**another object** puts the centre on another object of the same image (``ErrorContext.others``), else
2 to 5 w away; **background** puts it on the farthest of 8 random image points from every known object.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import Task
from bopask_vlm.clients.answer_error.context import ErrorContext, clip_to_bounds, rotate_scale
from bopask_vlm.clients.answer_error.levels import GraspError

__all__ = ["grasp_candidates", "perturb_grasp"]

_MIRROR = [0, 2, 1, 4, 3]


def grasp_candidates(record: Any) -> list[NDArray[np.float64]]:
    """(5, 2) keypoints of every kept grasp of the record's object, left/right as seen in the image."""
    from bopask_vlm.eval.scoring import _grasp_alternatives

    if record is None:
        return []
    return _grasp_alternatives(record)


def _draws(rng: np.random.Generator) -> dict[str, Any]:
    # a fixed number of draws in a fixed order: a level's scales change what the draws do, never which
    # draws are made, so two levels see the same random numbers (calibration relies on it)
    return {"shift": rng.standard_normal(2), "rot": rng.standard_normal(), "scale": rng.standard_normal(),
            "jitter": rng.standard_normal((5, 2)), "u_mirror": rng.random(), "u_event": rng.random(),
            "u_pick": rng.random(), "u_dist": rng.random(), "u_dir": rng.random(), "bg": rng.random((8, 2))}


def _other_grasp(p: NDArray[np.float64], w: float, d: dict[str, Any], ctx: ErrorContext) -> NDArray[np.float64]:
    cands = [c for c in grasp_candidates(ctx.record)
             if np.linalg.norm(c - p, axis=1).mean() >= 0.25 * w
             and np.linalg.norm(c[_MIRROR] - p, axis=1).mean() >= 0.25 * w]
    if cands:
        return np.asarray(cands[int(d["u_pick"] * len(cands)) % len(cands)], dtype=np.float64)
    axis = p[2] - p[1]
    perp = np.array([-axis[1], axis[0]]) / max(np.linalg.norm(axis), 1e-9)
    sign = 1.0 if d["u_dir"] < 0.5 else -1.0
    return p + sign * (0.5 + d["u_dist"]) * w * perp


def _on_other_object(p: NDArray[np.float64], w: float, d: dict[str, Any], ctx: ErrorContext) -> NDArray[np.float64]:
    others = np.asarray(ctx.others, dtype=np.float64).reshape(-1, 2)
    others = others[np.linalg.norm(others - p[0], axis=1) > w] if len(others) else others
    if len(others):
        target = others[int(d["u_pick"] * len(others)) % len(others)]
    else:
        a = 2 * np.pi * d["u_dir"]
        target = p[0] + (2.0 + 3.0 * d["u_dist"]) * w * np.array([np.cos(a), np.sin(a)])
    return p + (target - p[0])


def _on_background(p: NDArray[np.float64], d: dict[str, Any], ctx: ErrorContext) -> NDArray[np.float64]:
    cands = d["bg"] * [ctx.width - 1, ctx.height - 1]
    known = np.vstack([np.asarray(ctx.others, dtype=np.float64).reshape(-1, 2), p[:1]])
    dist = np.min(np.linalg.norm(cands[:, None, :] - known[None], axis=2), axis=1)
    return p + (cands[int(np.argmax(dist))] - p[0])


def perturb_grasp(points: NDArray[np.float64], comp: GraspError, rng: np.random.Generator,
                  ctx: ErrorContext) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """The perturbed (5, 2) skeleton, clipped to the grasp's bounds, and what was applied."""
    d = _draws(rng)
    p = np.asarray(points, dtype=np.float64).reshape(5, 2)
    w = max(float(np.linalg.norm(p[1] - p[2])), 1.0)
    info: dict[str, Any] = {"replaced": None}
    u = d["u_event"]
    if u < comp.p_background:
        p, info["replaced"] = _on_background(p, d, ctx), "background"
    elif u < comp.p_background + comp.p_other_object:
        p, info["replaced"] = _on_other_object(p, w, d, ctx), "other_object"
    elif u < comp.p_background + comp.p_other_object + comp.p_other_grasp:
        p, info["replaced"] = _other_grasp(p, w, d, ctx), "other_grasp"
    angle = comp.rot_deg * float(d["rot"])
    scale = float(np.exp(comp.scale_log * float(d["scale"])))
    p = rotate_scale(p, p[0].copy(), angle, scale)
    shift = comp.shift_w * w * d["shift"]
    p = p + shift + comp.jitter_w * w * d["jitter"]
    mirrored = bool(d["u_mirror"] < comp.p_mirror)
    if mirrored:
        p = p[_MIRROR]
    info.update(shift_px=shift.tolist(), rot_deg=angle, scale=scale, mirrored=mirrored, width_px=w)
    return clip_to_bounds(Task.GRASP, p, ctx.width, ctx.height), info
