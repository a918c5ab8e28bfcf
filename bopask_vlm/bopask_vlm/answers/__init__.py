"""The six task answer types, their text grammar and JSON schema: one source of truth."""

from bopask_vlm.answers.types import (
    ANSWER_TYPES,
    Answer,
    AnswerValueError,
    GraspAnswer,
    PointsAnswer,
    PoseAnswer,
    RearrangementAnswer,
    Task,
    TrajectoryAnswer,
    YesNoAnswer,
)

__all__ = [
    "ANSWER_TYPES",
    "Answer",
    "AnswerValueError",
    "GraspAnswer",
    "PointsAnswer",
    "PoseAnswer",
    "RearrangementAnswer",
    "Task",
    "TrajectoryAnswer",
    "YesNoAnswer",
]
