"""The node's debug image, ROS-free: the model's 2D answer (green) and, when grasp refinement moved the grasp,
the executed grasp's skeleton projected into the same image (blue, labelled), so the two are told apart."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["debug_image"]


def debug_image(rgb: NDArray[np.uint8], camera: Any, result: Any) -> NDArray[np.uint8]:
    """``rgb`` with ``result.answer`` drawn, plus the chosen grasp (``result.grasp_pose_cam``) when it is not the
    answer's own; failed earlier attempts' grasp centres as small red crosses."""
    import cv2

    from bopask_vlm.answers.types import GraspAnswer
    from bopask_vlm.gripper import keypoints_2d
    from bopask_vlm.viz import draw_answer

    out = draw_answer(rgb, result.answer, label="answer")
    th = max(1, round(min(out.shape[:2]) / 320))
    for a in getattr(result, "attempts", [])[:-1]:
        p = np.asarray(a.points, dtype=np.float64).reshape(-1, 2)
        if len(p) and np.all(np.isfinite(p[0])):
            u, v = (int(round(x)) for x in p[0])
            cv2.drawMarker(out, (u, v), (255, 40, 40), cv2.MARKER_TILTED_CROSS, 8 * th, th, cv2.LINE_AA)
    ref = getattr(result, "refinement", None)
    T = getattr(result, "grasp_pose_cam", None)
    if ref is not None and getattr(ref, "refined", False) and T is not None:
        try:
            kp = keypoints_2d(T, camera)
        except ValueError:
            return out
        if np.all(np.isfinite(kp)):
            out = draw_answer(out, GraspAnswer(kp), color=(40, 120, 255),
                              label=f"executed: moved {ref.moved_m * 100:.1f} cm {ref.moved_deg:.0f} deg")
    return out
