"""Re-asking the model after its answer failed on the robot (issue 19): one template per failure kind.

The robot side names what went wrong ("the grasp at (u, v) is not reachable: ...") and the model is asked the
same question again with that sentence in front (:func:`reask_question`). Clients that know
``VLMRequest.feedback`` send it themselves; the pipeline passes the re-ask question to those that do not.
(A module beside :mod:`bopask_vlm.prompts`, which holds the training-time phrasing a model relies on verbatim.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["FAILURE_TEMPLATES", "failure_feedback", "reask_question"]

#: ``{where}``: the previous answer's point ("the grasp at (412, 300)"); ``{reason}``: the robot's words
FAILURE_TEMPLATES: dict[str, str] = {
    "no_object": "Your previous answer, {where}, is not on an object (it points at the table or at nothing): {reason}.",
    "collides": "The gripper would collide with the scene at {where}: {reason}.",
    "too_wide": "The object is too wide for the gripper at {where} (it opens 8 cm): {reason}.",
    "no_contact": "The fingers would not close on the object at {where}: {reason}.",
    "unreachable": "The robot cannot reach {where}: {reason}.",
    "unsafe": "{where} is outside the robot's safe workspace: {reason}.",
    "lift_failed": "{where} has no usable depth: {reason}.",
    "plan_failed": "No motion plan was found for {where}: {reason}.",
}
_CLOSING = "Give a different answer for the same object, avoiding this problem."


def failure_feedback(kind: str, reason: str, points: Sequence[Sequence[float]] | None, task: str = "grasp") -> str:
    """The sentence the next ask starts with; an unknown kind uses the plan-failure template."""
    pts = np.asarray(points if points is not None else np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    noun = "the grasp" if task == "grasp" else "the path" if task == "trajectory" else "the answer"
    if len(pts) and np.all(np.isfinite(pts[0])):
        where = f"{noun} at ({pts[0, 0]:.0f}, {pts[0, 1]:.0f})"
    else:
        where = noun
    template = FAILURE_TEMPLATES.get(kind, FAILURE_TEMPLATES["plan_failed"])
    text = template.format(where=where, reason=reason.strip().rstrip("."))
    return text[0].upper() + text[1:] + " " + _CLOSING


def reask_question(question: str, feedback: str) -> str:
    """The question of a re-ask: the failure first, then the original question with its format instruction."""
    return f"{feedback} {question}"
