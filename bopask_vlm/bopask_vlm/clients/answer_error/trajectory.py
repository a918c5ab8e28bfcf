"""Trajectory answer errors (:class:`~bopask_vlm.clients.answer_error.levels.TrajectoryError`).

Units: ``L`` is the distance from the answer's first to its last point in pixels (at least 20 px). The
start moves off A by ``start_off``, the end off B by ``end_off`` (both ends of a 2-point path included),
the whole path by ``offset``, and a drift grows linearly with the arc length from 0 at the start to
``drift`` at the end (so it also moves the end point). Interior waypoints get ``jitter``. With
``p_fewer`` one interior waypoint is dropped (never below 2 points); with ``p_more`` a jittered midpoint
is inserted into one segment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import Task
from bopask_vlm.clients.answer_error.context import ErrorContext, clip_to_bounds
from bopask_vlm.clients.answer_error.levels import TrajectoryError

__all__ = ["MIN_CHORD_PX", "perturb_trajectory"]

MIN_CHORD_PX = 20.0
_MAX_POINTS = 64  # jitter draws made for every answer (longer answers reuse them cyclically)


def perturb_trajectory(points: NDArray[np.float64], comp: TrajectoryError, rng: np.random.Generator,
                       ctx: ErrorContext) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """The perturbed (N', 2) path, clipped to the image, and what was applied."""
    z_start, z_end, z_off, z_drift = (rng.standard_normal(2) for _ in range(4))
    z_jit, z_mid = rng.standard_normal((_MAX_POINTS, 2)), rng.standard_normal(2)
    u_fewer, u_more, u_i, u_j = rng.random(), rng.random(), rng.random(), rng.random()
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
    n = len(p)
    L = max(float(np.linalg.norm(p[-1] - p[0])), MIN_CHORD_PX)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    arc = np.r_[0.0, np.cumsum(seg)]
    frac = arc / arc[-1] if arc[-1] > 0 else np.linspace(0.0, 1.0, n)
    p = p + frac[:, None] * (comp.drift * L * z_drift)
    p = p + comp.offset * L * z_off
    p[0] += comp.start_off * L * z_start
    p[-1] += comp.end_off * L * z_end
    if n > 2:
        idx = np.arange(1, n - 1)
        p[1:-1] += comp.jitter * L * z_jit[idx % _MAX_POINTS]
    dropped = inserted = None
    if u_fewer < comp.p_fewer and len(p) > 2:
        dropped = 1 + min(int(u_i * (len(p) - 2)), len(p) - 3)
        p = np.delete(p, dropped, axis=0)
    if u_more < comp.p_more:
        k = min(int(u_j * (len(p) - 1)), len(p) - 2)
        mid = (p[k] + p[k + 1]) / 2.0 + max(comp.jitter, 0.05) * L * z_mid
        p = np.insert(p, k + 1, mid, axis=0)
        inserted = k + 1
    info = {"chord_px": L, "dropped": dropped, "inserted": inserted}
    return clip_to_bounds(Task.TRAJECTORY, p, ctx.width, ctx.height), info
