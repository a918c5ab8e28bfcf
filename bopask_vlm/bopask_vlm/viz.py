"""Overlays of answers on images (OpenCV drawing) for inspection: cuboids, grasp skeletons, paths,
rearrangement points and yes/no labels."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import GraspAnswer, PoseAnswer, RearrangementAnswer, TrajectoryAnswer, YesNoAnswer

#: cuboid edges in the BOP-ASK corner order (bottom 0-3, top 4-7)
CUBOID_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


class VizError(ValueError):
    """The image or answer cannot be drawn."""


def _pt(p: NDArray[np.float64]) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_answer(image_rgb: NDArray[np.uint8], answer: Any, color: tuple[int, int, int] = (0, 255, 0),
                label: str | None = None) -> NDArray[np.uint8]:
    """A copy of ``image_rgb`` (HxWx3 uint8) with ``answer`` drawn in ``color`` (RGB) and an optional label."""
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise VizError(f"image must be HxWx3 uint8, got {img.dtype} {img.shape}")
    out = np.ascontiguousarray(img.copy())
    c = tuple(int(x) for x in color)
    th = max(1, round(min(out.shape[:2]) / 320))
    if isinstance(answer, PoseAnswer):
        p = answer.points
        for i, j in CUBOID_EDGES:
            cv2.line(out, _pt(p[i]), _pt(p[j]), c, th, cv2.LINE_AA)
        for i in range(4):  # bottom face corners filled, top hollow
            cv2.circle(out, _pt(p[i]), 2 * th, c, -1, cv2.LINE_AA)
    elif isinstance(answer, GraspAnswer):
        p = answer.points
        cv2.line(out, _pt(p[1]), _pt(p[2]), c, th, cv2.LINE_AA)
        cv2.line(out, _pt(p[1]), _pt(p[3]), c, th, cv2.LINE_AA)
        cv2.line(out, _pt(p[2]), _pt(p[4]), c, th, cv2.LINE_AA)
        cv2.circle(out, _pt(p[0]), 3 * th, c, -1, cv2.LINE_AA)
        cv2.putText(out, "L", _pt(p[3]), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * th, c, th, cv2.LINE_AA)
    elif isinstance(answer, TrajectoryAnswer):
        p = answer.points
        for a, b in zip(p[:-1], p[1:]):
            cv2.arrowedLine(out, _pt(a), _pt(b), c, th, cv2.LINE_AA, tipLength=0.08)
        cv2.circle(out, _pt(p[0]), 3 * th, c, -1, cv2.LINE_AA)
        cv2.drawMarker(out, _pt(p[-1]), c, cv2.MARKER_CROSS, 10 * th, th)
    elif isinstance(answer, RearrangementAnswer):
        for q in answer.points:
            cv2.drawMarker(out, _pt(q), c, cv2.MARKER_TILTED_CROSS, 12 * th, 2 * th)
        if len(answer.points) == 0:
            label = (label + ": " if label else "") + "nothing to move"
    elif isinstance(answer, YesNoAnswer):
        label = (label + ": " if label else "") + ("Yes" if answer.value else "No")
    else:
        raise VizError(f"cannot draw {type(answer).__name__}")
    if label:
        cv2.putText(out, label, (8, 20 * th), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * th, (0, 0, 0), 3 * th, cv2.LINE_AA)
        cv2.putText(out, label, (8, 20 * th), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * th, c, th, cv2.LINE_AA)
    return out
