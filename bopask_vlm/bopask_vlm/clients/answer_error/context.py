"""What one perturbation draws on: the image size, the record (other grasps, the objects), the other
objects' image positions; the per-answer random generator; the clip to the task's bounds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.bounds import MARGIN, Region, point_region
from bopask_vlm.answers.types import Task

__all__ = ["ErrorContext", "answer_rng", "answer_seed", "clip_to_bounds", "rotate_scale"]


@dataclass
class ErrorContext:
    """``others``: (K, 2) image positions (pixels) of other objects in the same image, where known
    (from the records of that image); ``record``: the question's ground-truth record, where known."""

    width: int
    height: int
    record: Any = None
    others: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))


def answer_seed(seed: int, task: Task | str, question: str, objects: Sequence[str], shape: Sequence[int],
                attempt: int) -> int:
    """A 64-bit seed from what identifies one ask: the level's seed, the task, the question text, the
    objects, the image shape and the attempt (sha256: stable across processes, unlike ``hash()``)."""
    key = json.dumps([int(seed), Task(task).value, str(question), [str(o) for o in objects],
                      [int(x) for x in shape], int(attempt)], separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


def answer_rng(seed: int, task: Task | str, question: str, objects: Sequence[str], shape: Sequence[int],
               attempt: int) -> np.random.Generator:
    return np.random.default_rng(answer_seed(seed, task, question, objects, shape, attempt))


def clip_to_bounds(task: Task | str, points: NDArray[np.float64], width: int, height: int) -> NDArray[np.float64]:
    """Points moved to the nearest place their task allows (:mod:`bopask_vlm.answers.bounds`), with the
    integer rounding of a pixel answer in mind: inside points to ``[0, w - 1] x [0, h - 1]``, margin points
    to ``[-w/2, 3w/2 - 1]`` (and the same in v)."""
    p = np.array(points, dtype=np.float64).reshape(-1, 2)
    for i in range(len(p)):
        if point_region(task, i) is Region.INSIDE:
            lo, hi = np.array([0.0, 0.0]), np.array([width - 1.0, height - 1.0])
        else:
            lo = np.array([np.ceil(-MARGIN * width), np.ceil(-MARGIN * height)])
            hi = np.array([np.floor((1 + MARGIN) * width) - 1.0, np.floor((1 + MARGIN) * height) - 1.0])
        p[i] = np.clip(p[i], lo, hi)
    return p


def rotate_scale(points: NDArray[np.float64], center: NDArray[np.float64], angle_deg: float,
                 scale: float) -> NDArray[np.float64]:
    """Points turned by ``angle_deg`` (image axes, v down) and scaled by ``scale`` about ``center``."""
    a = np.deg2rad(angle_deg)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - center) @ R.T * scale + center
