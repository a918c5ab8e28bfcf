"""The safety envelope: checks every 3D target must pass before it is sent to MoveIt.

ROS-free. All coordinates are in the planning (robot base) frame, z up. A check returns a
:class:`SafetyVerdict` naming the check that failed and why; the pipeline never passes a target
that failed one to the planner. Velocity and acceleration scaling for MoveIt live here too, so one
configuration says how cautious the robot is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bopask_vlm.gripper import GRASP_DEPTH, hand_to_skeleton, keypoints_3d


@dataclass(frozen=True)
class SafetyVerdict:
    ok: bool
    check: str = ""
    reason: str = ""


PASSED = SafetyVerdict(True)


class SafetyConfigError(ValueError):
    """A safety envelope configured with impossible values."""


@dataclass(frozen=True)
class SafetyEnvelope:
    """Limits on targets in the base frame.

    - ``workspace_min`` / ``workspace_max``: axis-aligned box every target point must lie in.
    - ``table_height``: z of the table top; ``min_height_above_table``: clearance of target points
      (keypoints, waypoints) and of the gripper's finger tips above it.
    - ``max_approach_angle_deg``: largest angle between the gripper's approach axis (+z of the
      gripper frame) and straight down; 90 allows side grasps, 0 only top-down ones.
    - ``max_reach``: largest distance of a target from the base origin (Panda: 0.855 m).
    - ``pre_grasp_distance``: how far back along the approach the pre-grasp pose stands; it is
      checked like the grasp.
    - ``velocity_scaling`` / ``acceleration_scaling``: MoveIt's scaling factors, in (0, 1].
    """

    workspace_min: tuple[float, float, float] = (-0.3, -0.7, -0.05)
    workspace_max: tuple[float, float, float] = (0.9, 0.7, 0.9)
    table_height: float = 0.0
    min_height_above_table: float = 0.005
    max_approach_angle_deg: float = 90.0
    max_reach: float = 0.855
    pre_grasp_distance: float = 0.10
    velocity_scaling: float = 0.1
    acceleration_scaling: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise SafetyConfigError(f"workspace box needs min < max on every axis, got {lo.tolist()} / {hi.tolist()}")
        for name in ("velocity_scaling", "acceleration_scaling"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise SafetyConfigError(f"{name} must be in (0, 1], got {v}")
        if not 0.0 <= self.max_approach_angle_deg <= 180.0:
            raise SafetyConfigError(f"max_approach_angle_deg must be in [0, 180], got {self.max_approach_angle_deg}")
        if self.max_reach <= 0 or self.pre_grasp_distance < 0:
            raise SafetyConfigError("max_reach must be positive and pre_grasp_distance non-negative")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SafetyEnvelope:
        """From a config mapping; unknown keys are an error (a typo must not disable a check)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = set(d) - known
        if unknown:
            raise SafetyConfigError(f"unknown safety parameters {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        for k in ("workspace_min", "workspace_max"):
            if k in kw:
                kw[k] = tuple(float(x) for x in kw[k])
        return cls(**kw)

    # -- checks ----------------------------------------------------------------------------
    def check_points(self, points_base: ArrayLike, what: str = "target") -> SafetyVerdict:
        """Every point finite, inside the workspace box, within reach, above the table."""
        p = np.atleast_2d(np.asarray(points_base, dtype=np.float64))
        if p.ndim != 2 or p.shape[1] != 3:
            return SafetyVerdict(False, "shape", f"{what} points must have shape (N, 3), got {p.shape}")
        if p.shape[0] == 0:
            return PASSED
        bad = ~np.isfinite(p).all(axis=1)
        if np.any(bad):
            return SafetyVerdict(False, "finite", f"{what} point {int(np.flatnonzero(bad)[0])} is not finite")
        lo, hi = np.asarray(self.workspace_min), np.asarray(self.workspace_max)
        outside = np.any((p < lo) | (p > hi), axis=1)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            return SafetyVerdict(False, "workspace_box",
                                 f"{what} point {i} at {np.round(p[i], 3).tolist()} is outside the workspace box "
                                 f"{list(self.workspace_min)}..{list(self.workspace_max)}")
        reach = np.linalg.norm(p, axis=1)
        if np.any(reach > self.max_reach):
            i = int(np.argmax(reach))
            return SafetyVerdict(False, "reach", f"{what} point {i} is {reach[i]:.3f} m from the base "
                                 f"(max reach {self.max_reach} m)")
        low = p[:, 2] < self.table_height + self.min_height_above_table
        if np.any(low):
            i = int(np.flatnonzero(low)[0])
            return SafetyVerdict(False, "min_height",
                                 f"{what} point {i} is {p[i, 2] - self.table_height:.3f} m above the table "
                                 f"(min {self.min_height_above_table} m)")
        return PASSED

    def approach_angle_deg(self, T_base_gripper: ArrayLike) -> float:
        """Angle between the gripper's approach axis and straight down, degrees."""
        approach = np.asarray(T_base_gripper, dtype=np.float64)[:3, 2]
        c = float(np.clip(approach @ np.array([0.0, 0.0, -1.0]) / max(np.linalg.norm(approach), 1e-12), -1, 1))
        return float(np.degrees(np.arccos(c)))

    def pre_grasp(self, T_base_gripper: ArrayLike) -> NDArray[np.float64]:
        """The pre-grasp pose: the grasp moved back along its approach axis."""
        T = np.array(T_base_gripper, dtype=np.float64)
        T[:3, 3] -= self.pre_grasp_distance * T[:3, 2]
        return T

    def check_grasp(self, T_base_gripper: ArrayLike) -> SafetyVerdict:
        """A gripper pose: rigid, its finger skeleton and grasp point (and the pre-grasp's) inside
        the envelope, fingers above the table, approach angle within the limit."""
        T = np.asarray(T_base_gripper, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            return SafetyVerdict(False, "finite", "grasp pose is not a finite 4x4 transform")
        R = T[:3, :3]
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            return SafetyVerdict(False, "rigid", "grasp pose rotation is not a proper rotation")
        angle = self.approach_angle_deg(T)
        if angle > self.max_approach_angle_deg:
            return SafetyVerdict(False, "approach_angle", f"approach is {angle:.1f} deg from straight down "
                                 f"(max {self.max_approach_angle_deg} deg)")
        grasp_point = T[:3, 3] + GRASP_DEPTH * T[:3, 2]
        for label, pose in (("grasp", T), ("pre-grasp", self.pre_grasp(T))):
            pts = np.vstack([keypoints_3d(pose), pose[:3, 3]])
            v = self.check_points(pts, f"{label} gripper")
            if not v.ok:
                return v
        return self.check_points(grasp_point[None], "grasp point")

    def check_hand_poses(self, poses_base_hand: ArrayLike, what: str = "gripper") -> SafetyVerdict:
        """Robot end-effector (``panda_hand``) poses, e.g. the waypoints of a carried path: each one's
        finger skeleton (finger tips included) and origin inside the envelope and above the table."""
        Ts = np.asarray(poses_base_hand, dtype=np.float64).reshape(-1, 4, 4)
        for i, T in enumerate(Ts):
            if not np.all(np.isfinite(T)):
                return SafetyVerdict(False, "finite", f"{what} pose {i} is not finite")
            v = self.check_points(np.vstack([keypoints_3d(hand_to_skeleton(T)), T[:3, 3]]), f"{what} {i}")
            if not v.ok:
                return v
        return PASSED
