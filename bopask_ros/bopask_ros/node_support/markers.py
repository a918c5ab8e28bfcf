"""RViz marker content for a pipeline result, ROS-free: the node turns these into
``visualization_msgs/Marker`` (type constants as in that message). The node publishes each result's
markers as one ``MarkerArray`` that starts with a ``DELETEALL`` marker, so the previous result's
skeletons and paths leave the screen (the markers have no lifetime)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.gripper import keypoints_3d

LINE_STRIP = 4
LINE_LIST = 5
SPHERE_LIST = 7


@dataclass(frozen=True)
class MarkerSpec:
    ns: str
    type: int
    points: NDArray[np.float64]  # (N, 3) in the planning frame
    scale: tuple[float, float, float]
    color: tuple[float, float, float, float]


def _skeleton_segments(T: NDArray[np.float64]) -> NDArray[np.float64]:
    k = keypoints_3d(T)  # center, left base, right base, left tip, right tip
    return np.array([k[1], k[2], k[1], k[3], k[2], k[4], k[0], np.asarray(T)[:3, 3]])


def result_markers(result: object) -> list[MarkerSpec]:
    """Lifted points (green valid, red invalid), the executed gripper skeleton (blue; with grasp refinement the
    answer's own skeleton beside it, thin magenta, when the two differ), the waypoint path."""
    out: list[MarkerSpec] = []
    pts = np.asarray(getattr(result, "points_base", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    valid = np.asarray(getattr(result, "valid", np.ones(len(pts), bool)), dtype=bool)
    if len(valid) != len(pts):
        valid = np.ones(len(pts), bool)
    finite = np.isfinite(pts).all(axis=1)
    if np.any(valid & finite):
        out.append(MarkerSpec("lifted_points", SPHERE_LIST, pts[valid & finite], (0.015, 0.015, 0.015),
                              (0.1, 0.9, 0.1, 1.0)))
    if np.any(~valid & finite):
        out.append(MarkerSpec("invalid_points", SPHERE_LIST, pts[~valid & finite], (0.015, 0.015, 0.015),
                              (0.9, 0.1, 0.1, 1.0)))
    T = getattr(result, "grasp_pose_base", None)
    if T is not None:
        out.append(MarkerSpec("gripper", LINE_LIST, _skeleton_segments(T), (0.005, 0.0, 0.0), (0.2, 0.4, 1.0, 1.0)))
    ref = getattr(result, "refinement", None)
    T_answer = getattr(ref, "answer_pose_base", None)
    if T_answer is not None and getattr(ref, "refined", False):
        # the model's own skeleton, thin and magenta, beside the chosen grasp (blue)
        out.append(MarkerSpec("answer_gripper", LINE_LIST, _skeleton_segments(T_answer), (0.002, 0.0, 0.0),
                              (0.9, 0.2, 0.8, 0.8)))
    answer = getattr(result, "answer", None)
    if answer is not None and getattr(answer.task, "value", "") == "trajectory" and np.sum(finite) >= 2:
        out.append(MarkerSpec("waypoints", LINE_STRIP, pts[finite], (0.008, 0.0, 0.0), (1.0, 0.6, 0.0, 1.0)))
    return out
