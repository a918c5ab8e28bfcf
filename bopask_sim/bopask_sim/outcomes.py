"""Physical outcomes of an episode and their classification, from measured quantities only (pure functions).

- Grasp success: the object rises >= :data:`LIFT_MIN` (5 cm) and is still that high and between the fingers
  after :data:`HOLD_S` (1 s) of holding, with no collision.
- Collision: a contact normal force above the threshold between the robot or the carried object and the table
  or another object (see :class:`bopask_sim.robot.ContactMonitor`).
- Trajectory success: the carried object ends within :data:`PLACE_TOL` (3 cm) of the target placement, no
  collision, not dropped on the way; released within 3 cm of it but ending farther is "toppled" (the placement
  itself is unstable, e.g. on a ball), released farther is "misplaced".
Every failure carries one :class:`Reason`; the first that applies, in the order the episode ran, wins.
The thresholds below define success (set once from the task's meaning, not fitted to any scene); the constants
that were tuned on simulated scenes name their seeds (:data:`bopask_sim.evaluate.TUNING_SEEDS`).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

LIFT_MIN = 0.05
HOLD_S = 1.0
PLACE_TOL = 0.03
MISSED_RISE = 0.01  # rose less than this: the fingers closed beside it


class Reason(str, enum.Enum):
    OK = "ok"
    VLM_ERROR = "vlm_error"
    INVALID_ANSWER = "invalid_answer"
    LIFT_FAILED = "lift_failed"  # 2D -> 3D failed (no depth, grasp fit rejected by depth)
    REJECTED_BY_SAFETY = "rejected_by_safety"
    IK_FAILURE = "ik_failure"
    COLLISION = "collision"
    MISSED = "missed"
    SLIPPED = "slipped"
    GRASP_FAILED = "grasp_failed"  # trajectory episodes: the object to carry was not held at the start
    DROPPED = "dropped"
    MISPLACED = "misplaced"  # released away from the target placement
    TOPPLED = "toppled"  # released at the target, but it did not stay there (fell off its support)
    PIPELINE_ERROR = "pipeline_error"

    def __str__(self) -> str:
        return self.value


_STATUS_REASON = {"vlm_error": Reason.VLM_ERROR, "invalid_answer": Reason.INVALID_ANSWER,
                  "lift_failed": Reason.LIFT_FAILED, "safety_rejected": Reason.REJECTED_BY_SAFETY,
                  "tf_failed": Reason.PIPELINE_ERROR, "canceled": Reason.PIPELINE_ERROR}


def reason_from_status(status: str) -> Reason:
    """The episode reason of a pipeline result that stopped before the robot moved."""
    return _STATUS_REASON.get(str(status), Reason.PIPELINE_ERROR)


@dataclass
class GraspMeasure:
    """What the simulator measured during a grasp: rise of the object (metres) after the lift and after the
    hold, whether both fingers still touch it after the hold, collisions seen, an IK failure (step label)."""

    rise_after_lift: float = 0.0
    rise_after_hold: float = 0.0
    in_hand: bool = False
    collisions: list[dict[str, Any]] = field(default_factory=list)
    ik_failure: str | None = None
    target: int | None = None  # instance index the grasp aimed at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify_grasp(m: GraspMeasure) -> tuple[bool, Reason]:
    if m.ik_failure:
        return False, Reason.IK_FAILURE
    if m.collisions:
        return False, Reason.COLLISION
    if m.rise_after_lift < MISSED_RISE:
        return False, Reason.MISSED
    if m.rise_after_lift < LIFT_MIN or m.rise_after_hold < LIFT_MIN or not m.in_hand:
        return False, Reason.SLIPPED
    return True, Reason.OK


@dataclass
class CarryMeasure:
    """What the simulator measured during a carry: held at the start, still held at the last waypoint
    (before release), collisions, IK failure, and the final distance of the object's base point from the target
    placement (metres; None when no target is known)."""

    held_at_start: bool = True
    held_before_release: bool = False
    collisions: list[dict[str, Any]] = field(default_factory=list)
    ik_failure: str | None = None
    placement_error: float | None = None
    released_at: list[float] | None = None  # the object's base point (world) when the fingers opened
    release_error: float | None = None  # its distance from the target placement (metres)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify_carry(m: CarryMeasure) -> tuple[bool, Reason]:
    if not m.held_at_start:
        return False, Reason.GRASP_FAILED
    if m.ik_failure:
        return False, Reason.IK_FAILURE
    if m.collisions:
        return False, Reason.COLLISION
    if not m.held_before_release:
        return False, Reason.DROPPED
    if m.placement_error is None or m.placement_error > PLACE_TOL:
        if m.release_error is not None and m.release_error <= PLACE_TOL:
            return False, Reason.TOPPLED
        return False, Reason.MISPLACED
    return True, Reason.OK
