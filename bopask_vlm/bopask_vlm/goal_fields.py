"""A goal's own fields checked before anything runs: one place for the ROS node, replay and ``bopask ask``.

A goal names a task, its object description(s), for a spatial yes/no question a relation, and maybe a
ready-made question. What a user (or a hostile client) can put there is checked here, so that a bad field is
refused at goal time with its reason instead of ending, later, as a VLM error from inside the client:

- the task must be one the action serves (a yes/no question: spatial or depth only);
- every description is non-empty after stripping, at most ``max_chars`` characters (a 100 kB description made a
  200 kB prompt), and holds no control or format character: a NUL silently truncates the text in the ROS message
  layer, ESC starts terminal escapes, and bidi overrides (U+202E ...) make the text read differently than it is;
- a spatial question without a ready-made question needs a relation among :data:`bopask_vlm.prompts.RELATIONS`;
  a relation on any other task is refused (it would be ignored);
- a ready-made question follows the same text rules, with ``QUESTION_CHARS_FACTOR`` times the limit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from bopask_vlm.answers import Task
from bopask_vlm.prompts import RELATIONS

__all__ = ["MAX_DESCRIPTION_CHARS", "OBJECTS_PER_TASK", "QUESTION_CHARS_FACTOR", "YES_NO_TASKS", "GoalFieldError",
           "GoalFields", "check_text", "validate_goal_fields"]

MAX_DESCRIPTION_CHARS = 500
QUESTION_CHARS_FACTOR = 4
YES_NO_TASKS: tuple[Task, ...] = (Task.SPATIAL, Task.DEPTH)
OBJECTS_PER_TASK: dict[Task, int] = {Task.POSE: 1, Task.GRASP: 1, Task.REARRANGEMENT: 1, Task.TRAJECTORY: 2,
                                     Task.SPATIAL: 2, Task.DEPTH: 2}


class GoalFieldError(ValueError):
    """A goal field is malformed; the message names the field and why."""


@dataclass(frozen=True)
class GoalFields:
    """The checked fields: descriptions stripped, empty relation/question as None."""

    task: Task
    objects: tuple[str, ...]
    relation: str | None
    question: str | None


def check_text(name: str, text: object, max_chars: int) -> str:
    """``text`` stripped; :class:`GoalFieldError` when it is not a string, empty, longer than ``max_chars`` or
    holds a control / format character (Unicode categories Cc, Cf: NUL, ESC, bidi overrides, zero-width ...)."""
    if not isinstance(text, str):
        raise GoalFieldError(f"{name} must be text, got {type(text).__name__}")
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cf"):
            raise GoalFieldError(f"{name} holds the control character U+{ord(ch):04X} at position {i}")
    out = text.strip()
    if not out:
        raise GoalFieldError(f"{name} is empty")
    if len(out) > max_chars:
        raise GoalFieldError(f"{name} is {len(out)} characters long (at most {max_chars})")
    return out


def validate_goal_fields(task: Task | str, objects: Sequence[str], relation: str | None = None,
                         question: str | None = None, *, yes_no: bool = False,
                         max_chars: int = MAX_DESCRIPTION_CHARS) -> GoalFields:
    """Check a goal's fields (see the module docstring); the cleaned fields, or :class:`GoalFieldError`.
    ``yes_no``: the goal came through the yes/no action, which serves spatial and depth questions only."""
    try:
        t = Task(task.strip().lower() if isinstance(task, str) else task)
    except ValueError:
        raise GoalFieldError(f"unknown task {task!r}; expected one of {[x.value for x in Task]}") from None
    if yes_no and t not in YES_NO_TASKS:
        raise GoalFieldError(f"a yes/no question's task must be one of {[x.value for x in YES_NO_TASKS]}, "
                             f"got {t.value!r}")
    need = OBJECTS_PER_TASK[t]
    objs = list(objects)
    if len(objs) != need:
        raise GoalFieldError(f"a {t.value} goal takes {need} object description(s), got {len(objs)}")
    names = ("object description",) if need == 1 else ("first object description", "second object description")
    cleaned = tuple(check_text(n, o, max_chars) for n, o in zip(names, objs))
    rel = None if relation is None or (isinstance(relation, str) and not relation.strip()) else relation
    q = None if question is None or (isinstance(question, str) and not question.strip()) else question
    if q is not None:
        q = check_text("question", q, max_chars * QUESTION_CHARS_FACTOR)
    if rel is not None:
        rel = check_text("relation", rel, max_chars)
        if t is not Task.SPATIAL:
            raise GoalFieldError(f"a {t.value} goal takes no relation, got {rel!r}")
        if rel not in RELATIONS:
            raise GoalFieldError(f"unknown relation {rel!r}; expected one of {sorted(RELATIONS)}")
    elif t is Task.SPATIAL and q is None:
        raise GoalFieldError(f"a spatial question needs a relation among {sorted(RELATIONS)} (or a question)")
    return GoalFields(t, cleaned, rel, q)
