"""JSON form of the answers: the schema a vLLM server constrains decoding to, and a strict parser.

JSON forms (coordinates in whatever convention the caller uses)::

    pose           {"corners": [[x, y] x 8]}
    grasp          {"grasp_center": [x, y], "left_finger_base": [x, y], "right_finger_base": [x, y],
                    "left_finger_tip": [x, y], "right_finger_tip": [x, y]}
    trajectory     {"waypoints": [[x, y], ...]}       2..64 points
    rearrangement  {"points": [[x, y], ...]}          0..32 points
    spatial/depth  {"answer": "yes" | "no"}

Numeric bounds in the schema keep a constrained decoder from wandering: with random weights an
unbounded number can grow digits until the token limit. Where each task's points may lie (inside the
image, or within half an image outside it for cuboid corners and grasp finger tips) is
:mod:`bopask_vlm.answers.bounds`; the schema uses only keywords structured-output decoders (xgrammar,
vLLM) support: ``type``, ``properties``, ``required``, ``additionalProperties``, ``prefixItems``/``items``,
``minItems``/``maxItems``, ``minimum``/``maximum`` and ``enum``.

The parser accepts exactly what the schema with the same ``width``/``height``/``integer`` accepts
(tested as a property against ``jsonschema``), decided as the text grammar decides
(:mod:`bopask_vlm.answers.text`, issue 13): JSON text is strict UTF-8 (bytes that are not are an error),
an object must not repeat a key (Python's ``json`` would keep the last value silently), object keys are
strings, nesting deeper than any answer is an error rather than a ``RecursionError``, an integer written
with hundreds of digits is a number too large rather than an ``OverflowError``, and the yes/no value is
exactly ``"yes"`` or ``"no"``.
"""

from __future__ import annotations

import json
import math
import reprlib
from typing import Any

import numpy as np

from bopask_vlm.answers.bounds import coord_range, point_region
from bopask_vlm.answers.text import MAX_POINTS, MAX_TEXT_LENGTH, AnswerParseError, finish_answer
from bopask_vlm.answers.types import (
    Answer,
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
    """JSON schema of ``task``'s answer; coordinates bounded per :mod:`~bopask_vlm.answers.bounds` for a
    ``width x height`` extent when given (no coordinate bounds otherwise).

    ``integer`` restricts coordinates to integers (pixel and 0-1000 conventions); use False for
    the 0-1 convention.
    """
    task = Task(task)
    if task.is_yes_no:
        return {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
                "required": ["answer"], "additionalProperties": False}
    num_type = "integer" if integer else "number"

    def coord(region: Any, extent: float | None) -> dict[str, Any]:
        c: dict[str, Any] = {"type": num_type}
        if extent is not None and width is not None and height is not None:
            lo, hi = coord_range(region, extent, integer)
            c["minimum"], c["maximum"] = (int(lo), int(hi)) if integer else (lo, hi)
        return c

    def point(index: int) -> dict[str, Any]:
        region = point_region(task, index)
        return {"type": "array", "prefixItems": [coord(region, width), coord(region, height)], "items": False,
                "minItems": 2, "maxItems": 2}

    if task is Task.GRASP:
        return {"type": "object", "properties": {k: point(i) for i, k in enumerate(GRASP_KEYS)},
                "required": list(GRASP_KEYS), "additionalProperties": False}
    lo, hi = LIST_COUNT[task]
    key = LIST_KEY[task]
    return {"type": "object",
            "properties": {key: {"type": "array", "items": point(0), "minItems": lo, "maxItems": hi}},
            "required": [key], "additionalProperties": False}


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 40, 40


def _reject_constant(name: str) -> float:
    raise AnswerParseError(f"non-finite number {name} in JSON answer", -1, "a finite number")


def _finite_int(digits: str) -> float:
    value = float(digits)  # never int(): 4300+ digits raise ValueError, 309+ overflow float(int)
    if not math.isfinite(value):
        raise AnswerParseError(f"number {digits[:12]}... ({len(digits)} digits) is too large", -1, "a finite number")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise AnswerParseError(f"key {k[:40]!r} appears twice in a JSON object", -1, "distinct keys")
        obj[k] = v
    return obj


def _decode(text_or_bytes: str | bytes) -> Any:
    if len(text_or_bytes) > MAX_TEXT_LENGTH:
        raise AnswerParseError(f"answer is {len(text_or_bytes)} characters long (limit {MAX_TEXT_LENGTH})")
    if isinstance(text_or_bytes, bytes):
        try:
            text = text_or_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AnswerParseError(f"answer is not UTF-8 ({e.reason}) at byte {e.start}", -1, "UTF-8") from e
    else:
        text = text_or_bytes
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_finite_int,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise AnswerParseError(f"invalid JSON: {e.msg}", e.pos, "JSON", text) from e
    except RecursionError as e:
        raise AnswerParseError("JSON nested too deeply for an answer", -1, "an answer object") from e


def _point(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise AnswerParseError(f"{where}: expected [x, y], got {_repr.repr(value)}", -1, "[x, y]")
    out = []
    for v in value:
        ok = not isinstance(v, bool) and isinstance(v, (int, float))
        if ok:
            try:
                f = float(v)
            except OverflowError:  # a decoded object may hold a Python int beyond float range
                ok = False
            else:
                ok = math.isfinite(f)
        if not ok:
            raise AnswerParseError(f"{where}: coordinate {_repr.repr(v)} is not a finite number", -1, "a number")
        out.append(f)
    return out[0], out[1]


def parse_answer_json(task: Task | str, obj_or_str: Any, width: float | None = None, height: float | None = None,
                      integer: bool = False) -> Answer:
    """Parse a JSON answer (a string, UTF-8 bytes or an already-decoded object) for ``task``, strictly:
    exactly the schema's keys, the right number of points, finite numbers, and with ``width``/``height``/
    ``integer`` exactly what :func:`json_schema` with the same arguments allows (the parsers default to
    real-valued coordinates, the schema to integers: pass ``integer`` explicitly to compare them)."""
    task = Task(task)
    obj = _decode(obj_or_str) if isinstance(obj_or_str, (str, bytes)) else obj_or_str
    if not isinstance(obj, dict):
        raise AnswerParseError(f"expected a JSON object, got {type(obj).__name__}", -1, "{...}")
    if not all(isinstance(k, str) for k in obj):
        raise AnswerParseError(f"JSON object keys must be strings, got {_repr.repr(list(obj))}", -1, "string keys")
    if task.is_yes_no:
        expected_keys: tuple[str, ...] = ("answer",)
    elif task is Task.GRASP:
        expected_keys = GRASP_KEYS
    else:
        expected_keys = (LIST_KEY[task],)
    if set(obj) != set(expected_keys):
        raise AnswerParseError(f"keys {_repr.repr(sorted(obj))} do not match {list(expected_keys)}", -1,
                               ", ".join(expected_keys))
    if task.is_yes_no:
        v = obj["answer"]
        if isinstance(v, str) and v in ("yes", "no"):
            return YesNoAnswer(v == "yes", task)
        raise AnswerParseError(f"answer must be 'yes' or 'no', got {_repr.repr(v)}", -1, "'yes' or 'no'")
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
    return finish_answer(task, pts, width, height, integer)


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
