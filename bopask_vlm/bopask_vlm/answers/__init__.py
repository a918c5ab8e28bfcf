"""The six task answer types, their text grammar and JSON schema: one source of truth."""

from bopask_vlm.answers.bounds import MARGIN, Region, outside_points, point_region
from bopask_vlm.answers.coords import CoordConvention, ResizePolicy, from_model, model_extent, to_model
from bopask_vlm.answers.schema import (
    GRASP_KEYS,
    answer_from_record,
    answer_to_json,
    json_schema,
    parse_answer_json,
)
from bopask_vlm.answers.text import GRASP_FIELD_NAMES, AnswerParseError, answer_to_text, parse_answer_text
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
    "GRASP_FIELD_NAMES",
    "GRASP_KEYS",
    "MARGIN",
    "Answer",
    "AnswerParseError",
    "AnswerValueError",
    "CoordConvention",
    "GraspAnswer",
    "PointsAnswer",
    "PoseAnswer",
    "RearrangementAnswer",
    "Region",
    "ResizePolicy",
    "Task",
    "TrajectoryAnswer",
    "YesNoAnswer",
    "answer_from_record",
    "answer_to_json",
    "answer_to_text",
    "from_model",
    "json_schema",
    "model_extent",
    "outside_points",
    "parse_answer_json",
    "parse_answer_text",
    "point_region",
    "to_model",
]
