"""The six BOP-ASK tasks and their typed answers.

2D answers hold float pixel coordinates of the original image, (u, v) with u to the right and v
down, pixel centres at integers. A model's own coordinate convention is converted at the VLM
boundary (:mod:`bopask_vlm.answers.coords`), never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray


class Task(str, Enum):
    """A BOP-ASK task; the value is the task label stored in dataset records."""

    POSE = "pose"
    GRASP = "grasp"
    TRAJECTORY = "trajectory"
    REARRANGEMENT = "rearrangement"
    SPATIAL = "spatial"
    DEPTH = "depth"

    @property
    def is_yes_no(self) -> bool:
        return self in (Task.SPATIAL, Task.DEPTH)


class AnswerValueError(ValueError):
    """A typed answer was built from values of the wrong shape or non-finite numbers."""


def _points(points: ArrayLike, name: str, count: int | None = None, min_count: int = 0) -> NDArray[np.float64]:
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        p = p.reshape(0, 2)
    if p.ndim != 2 or p.shape[1] != 2:
        raise AnswerValueError(f"{name}: expected (N, 2) points, got shape {p.shape}")
    if count is not None and p.shape[0] != count:
        raise AnswerValueError(f"{name}: expected {count} points, got {p.shape[0]}")
    if p.shape[0] < min_count:
        raise AnswerValueError(f"{name}: expected at least {min_count} points, got {p.shape[0]}")
    if not np.all(np.isfinite(p)):
        raise AnswerValueError(f"{name}: points must be finite")
    p = p.copy()
    p.setflags(write=False)
    return p


@dataclass(frozen=True, eq=False)
class PointsAnswer:
    """Base of the 2D answers: an (N, 2) array of pixel points."""

    points: NDArray[np.float64]
    task: ClassVar[Task]
    count: ClassVar[int | None] = None
    min_count: ClassVar[int] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points(self.points, type(self).__name__, self.count, self.min_count))

    def with_points(self, points: ArrayLike) -> PointsAnswer:
        """The same answer with its points replaced (e.g. converted to another convention)."""
        return type(self)(np.asarray(points, dtype=np.float64).reshape(-1, 2))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and np.array_equal(self.points, other.points)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.points.tobytes()))


@dataclass(frozen=True, eq=False)
class PoseAnswer(PointsAnswer):
    """8 projected cuboid corners: bottom face 0-3 then top face 4-7, each counter-clockwise as
    seen from above the object; top corner i stands above bottom corner i."""

    task: ClassVar[Task] = Task.POSE
    count: ClassVar[int | None] = 8

    @property
    def bottom(self) -> NDArray[np.float64]:
        return self.points[:4]

    @property
    def top(self) -> NDArray[np.float64]:
        return self.points[4:]


@dataclass(frozen=True, eq=False)
class GraspAnswer(PointsAnswer):
    """5 keypoints: grasp center, left finger base, right finger base, left tip, right tip."""

    task: ClassVar[Task] = Task.GRASP
    count: ClassVar[int | None] = 5

    @property
    def center(self) -> NDArray[np.float64]:
        return self.points[0]

    @property
    def left_base(self) -> NDArray[np.float64]:
        return self.points[1]

    @property
    def right_base(self) -> NDArray[np.float64]:
        return self.points[2]

    @property
    def left_tip(self) -> NDArray[np.float64]:
        return self.points[3]

    @property
    def right_tip(self) -> NDArray[np.float64]:
        return self.points[4]

    def mirrored(self) -> GraspAnswer:
        """Left and right fingers swapped."""
        return GraspAnswer(self.points[[0, 2, 1, 4, 3]])


@dataclass(frozen=True, eq=False)
class TrajectoryAnswer(PointsAnswer):
    """Ordered waypoints of a path moving object A to object B (at least start and end)."""

    task: ClassVar[Task] = Task.TRAJECTORY
    min_count: ClassVar[int] = 2


@dataclass(frozen=True, eq=False)
class RearrangementAnswer(PointsAnswer):
    """One point on each object that must be moved first; empty when nothing blocks the target."""

    task: ClassVar[Task] = Task.REARRANGEMENT


@dataclass(frozen=True)
class YesNoAnswer:
    """Answer of the spatial-relation and relative-depth questions."""

    value: bool
    task: Task = Task.SPATIAL

    def __post_init__(self) -> None:
        if not isinstance(self.value, (bool, np.bool_)):
            raise AnswerValueError(f"YesNoAnswer.value must be a bool, got {type(self.value).__name__}")
        if not Task(self.task).is_yes_no:
            raise AnswerValueError(f"YesNoAnswer is for spatial/depth tasks, not {self.task}")
        object.__setattr__(self, "value", bool(self.value))
        object.__setattr__(self, "task", Task(self.task))

    @property
    def points(self) -> NDArray[np.float64]:
        return np.zeros((0, 2))


Answer = Union[PoseAnswer, GraspAnswer, TrajectoryAnswer, RearrangementAnswer, YesNoAnswer]

ANSWER_TYPES: dict[Task, type] = {
    Task.POSE: PoseAnswer,
    Task.GRASP: GraspAnswer,
    Task.TRAJECTORY: TrajectoryAnswer,
    Task.REARRANGEMENT: RearrangementAnswer,
    Task.SPATIAL: YesNoAnswer,
    Task.DEPTH: YesNoAnswer,
}
