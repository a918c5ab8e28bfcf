"""JSON form of the answers: the schema a vLLM server constrains decoding to, and a strict parser.

JSON forms (coordinates in whatever convention the caller uses)::

    pose           {"corners": [[x, y] x 8]}
    grasp          {"grasp_center": [x, y], "left_finger_base": [x, y], "right_finger_base": [x, y],
                    "left_finger_tip": [x, y], "right_finger_tip": [x, y]}
    trajectory     {"waypoints": [[x, y], ...]}       2..64 points
    rearrangement  {"points": [[x, y], ...]}          0..32 points
    spatial/depth  {"answer": "yes" | "no"}

Numeric bounds in the schema keep a constrained decoder from wandering: with random weights an
unbounded number can grow digits until the token limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from bopask_vlm.answers.text import MAX_POINTS, MAX_TEXT_LENGTH, AnswerParseError
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

GRASP_KEYS: tuple[str, ...] = (
    "grasp_center",
    "left_finger_base",
    "right_finger_base",
    "left_finger_tip",
    "right_finger_tip",
)
LIST_KEY = {Task.POSE: "corners", Task.TRAJECTORY: "waypoints", Task.REARRANGEMENT: "points"}
LIST_COUNT = {Task.POSE: (8, 8), Task.TRAJECTORY: (2, MAX_POINTS[Task.TRAJECTORY]),
              Task.REARRANGEMENT: (0, MAX_POINTS[Task.REARRANGEMENT])}


def answer_to_json(answer: Answer, decimals: int | None = None) -> dict[str, Any]:
    """The JSON form of ``answer`` (coordinates rounded to ``decimals`` when given)."""

    def pt(p: np.ndarray) -> list[float]:
        if decimals is None:
            return [float(p[0]), float(p[1])]
        if decimals <= 0:
            return [int(round(float(p[0]))), int(round(float(p[1])))]
        return [round(float(p[0]), decimals), round(float(p[1]), decimals)]

    if isinstance(answer, YesNoAnswer):
        return {"answer": "yes" if answer.value else "no"}
    if isinstance(answer, GraspAnswer):
        return {k: pt(p) for k, p in zip(GRASP_KEYS, answer.points)}
    if isinstance(answer, PointsAnswer):
        return {LIST_KEY[answer.task]: [pt(p) for p in answer.points]}
    raise TypeError(f"not an answer: {type(answer).__name__}")


def json_schema(task: Task | str, width: float | None = None, height: float | None = None,
                integer: bool = True) -> dict[str, Any]:
    """JSON schema of ``task``'s answer; x in [0, width], y in [0, height] when given.

    ``integer`` restricts coordinates to integers (pixel and 0-1000 conventions); use False for
    the 0-1 convention.
    """
    task = Task(task)
    if task.is_yes_no:
        return {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
                "required": ["answer"], "additionalProperties": False}
    num_type = "integer" if integer else "number"

    def coord(bound: float | None) -> dict[str, Any]:
        c: dict[str, Any] = {"type": num_type, "minimum": 0}
        if bound is not None:
            c["maximum"] = int(math.floor(bound)) if integer else float(bound)
        return c

    point = {"type": "array", "prefixItems": [coord(width), coord(height)], "items": False,
             "minItems": 2, "maxItems": 2}
    if task is Task.GRASP:
        return {"type": "object", "properties": {k: point for k in GRASP_KEYS},
                "required": list(GRASP_KEYS), "additionalProperties": False}
    lo, hi = LIST_COUNT[task]
    key = LIST_KEY[task]
    return {"type": "object",
            "properties": {key: {"type": "array", "items": point, "minItems": lo, "maxItems": hi}},
            "required": [key], "additionalProperties": False}


def _reject_constant(name: str) -> float:
    raise AnswerParseError(f"non-finite number {name} in JSON answer", -1, "a finite number")


def _point(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise AnswerParseError(f"{where}: expected [x, y], got {json.dumps(value)[:40]}", -1, "[x, y]")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise AnswerParseError(f"{where}: coordinate {v!r} is not a finite number", -1, "a number")
        out.append(float(v))
    return out[0], out[1]


def parse_answer_json(task: Task | str, obj_or_str: Any) -> Answer:
    """Parse a JSON answer (a string or an already-decoded object) for ``task``, strictly: exactly
    the schema's keys, the right number of points, finite numbers."""
    task = Task(task)
    obj = obj_or_str
    if isinstance(obj_or_str, (str, bytes)):
        text = obj_or_str.decode() if isinstance(obj_or_str, bytes) else obj_or_str
        if len(text) > MAX_TEXT_LENGTH:
            raise AnswerParseError(f"answer is {len(text)} characters long (limit {MAX_TEXT_LENGTH})")
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            raise AnswerParseError(f"invalid JSON: {e.msg}", e.pos, "JSON", text) from e
    if not isinstance(obj, dict):
        raise AnswerParseError(f"expected a JSON object, got {type(obj).__name__}", -1, "{...}")
    if task.is_yes_no:
        expected_keys: tuple[str, ...] = ("answer",)
    elif task is Task.GRASP:
        expected_keys = GRASP_KEYS
    else:
        expected_keys = (LIST_KEY[task],)
    if set(obj) != set(expected_keys):
        raise AnswerParseError(f"keys {sorted(obj)} do not match {list(expected_keys)}", -1,
                               ", ".join(expected_keys))
    if task.is_yes_no:
        v = obj["answer"]
        if isinstance(v, bool):
            return YesNoAnswer(v, task)
        if isinstance(v, str) and v.strip().lower() in ("yes", "no"):
            return YesNoAnswer(v.strip().lower() == "yes", task)
        raise AnswerParseError(f"answer must be 'yes' or 'no', got {v!r}", -1, "'yes' or 'no'")
    if task is Task.GRASP:
        pts = [_point(obj[k], k) for k in GRASP_KEYS]
    else:
        key = LIST_KEY[task]
        items = obj[key]
        lo, hi = LIST_COUNT[task]
        if not isinstance(items, list):
            raise AnswerParseError(f"{key} must be a list", -1, "[[x, y], ...]")
        if not lo <= len(items) <= hi:
            raise AnswerParseError(f"{key} has {len(items)} points, expected {lo}..{hi}", -1,
                                   f"{lo}..{hi} points")
        pts = [_point(p, f"{key}[{i}]") for i, p in enumerate(items)]
    try:
        return ANSWER_TYPES[task](np.asarray(pts, dtype=np.float64).reshape(-1, 2))
    except AnswerValueError as e:
        raise AnswerParseError(str(e)) from e


def answer_from_record(record: Any) -> Answer:
    """The ground-truth answer of a :class:`bopask_vlm.records.QARecord` (original pixels)."""
    return parse_answer_json(record.task, record.answer)


__all__ = [
    "GRASP_KEYS",
    "LIST_KEY",
    "PoseAnswer",
    "RearrangementAnswer",
    "TrajectoryAnswer",
    "answer_from_record",
    "answer_to_json",
    "json_schema",
    "parse_answer_json",
]
