"""Rearrangement and yes/no answer errors (:class:`~bopask_vlm.clients.answer_error.levels.RearrangementError`,
:class:`~bopask_vlm.clients.answer_error.levels.YesNoError`).

Rearrangement: each object to move is left out with ``p_miss``; with ``p_extra`` one point is added on
another object of the image (``ErrorContext.others``, one not already answered) or, when none is known,
at a random image point; every point gets ``jitter_px`` (pixels). Spatial / depth: the answer is flipped
with ``p_flip``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import Task
from bopask_vlm.clients.answer_error.context import ErrorContext, clip_to_bounds
from bopask_vlm.clients.answer_error.levels import RearrangementError, YesNoError

__all__ = ["flip_yes_no", "perturb_rearrangement"]

_MAX_POINTS = 32


def perturb_rearrangement(points: NDArray[np.float64], comp: RearrangementError, rng: np.random.Generator,
                          ctx: ErrorContext) -> tuple[NDArray[np.float64], dict[str, Any]]:
    u_miss, z_jit = rng.random(_MAX_POINTS), rng.standard_normal((_MAX_POINTS + 1, 2))
    u_extra, u_pick, u_xy = rng.random(), rng.random(), rng.random(2)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    keep = np.array([u_miss[i % _MAX_POINTS] >= comp.p_miss for i in range(n)], dtype=bool)
    out = p[keep]
    extra = None
    if u_extra < comp.p_extra:
        others = np.asarray(ctx.others, dtype=np.float64).reshape(-1, 2)
        if len(others) and n:
            others = others[np.min(np.linalg.norm(others[:, None] - p[None], axis=2), axis=1) > 10.0]
        if len(others):
            extra = others[min(int(u_pick * len(others)), len(others) - 1)]
        else:
            extra = u_xy * [ctx.width - 1, ctx.height - 1]
        out = np.vstack([out, extra])
    if len(out):
        out = out + comp.jitter_px * z_jit[:len(out)]
    info = {"missed": int(n - keep.sum()), "extra": None if extra is None else np.asarray(extra).tolist()}
    return clip_to_bounds(Task.REARRANGEMENT, out, ctx.width, ctx.height), info


def flip_yes_no(value: bool, comp: YesNoError, rng: np.random.Generator) -> tuple[bool, dict[str, Any]]:
    flipped = bool(rng.random() < comp.p_flip)
    return (not value) if flipped else bool(value), {"flipped": flipped}
