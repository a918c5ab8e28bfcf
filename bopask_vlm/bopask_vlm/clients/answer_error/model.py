"""One answer through the error model: the task's perturbation, then the text form a model would emit,
decoded and validated exactly like a model's output."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers import (
    Answer,
    CoordConvention,
    ResizePolicy,
    Task,
    YesNoAnswer,
    answer_from_record,
    answer_to_text,
    to_model,
)
from bopask_vlm.clients.answer_error.context import ErrorContext, answer_rng
from bopask_vlm.clients.answer_error.discrete import flip_yes_no, perturb_rearrangement
from bopask_vlm.clients.answer_error.grasp import perturb_grasp
from bopask_vlm.clients.answer_error.levels import ErrorLevel
from bopask_vlm.clients.answer_error.pose import perturb_pose
from bopask_vlm.clients.answer_error.trajectory import perturb_trajectory

__all__ = ["ObjectIndex", "perturb_answer", "request_rng", "to_text_and_back"]

_PERTURB = {Task.GRASP: (perturb_grasp, "grasp"), Task.POSE: (perturb_pose, "pose"),
            Task.TRAJECTORY: (perturb_trajectory, "trajectory"),
            Task.REARRANGEMENT: (perturb_rearrangement, "rearrangement")}


class ObjectIndex:
    """Image positions (pixels) of the objects the records locate, per image: a grasp's centre, a pose's
    corner mean, a trajectory's first point (A) and last point (B's placement), each rearrangement point.
    Used to put a wrong answer on *another* object of the same image."""

    def __init__(self, records: Iterable[Any] = ()) -> None:
        pos: dict[str, dict[int, list[NDArray[np.float64]]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            try:
                a = answer_from_record(r)
            except ValueError:  # a record without a usable answer locates nothing
                continue
            p = np.asarray(a.points, dtype=np.float64)
            objs = [int(o.gt_index) for o in r.objects]
            if r.task is Task.GRASP and objs:
                pos[r.image][objs[0]].append(p[0])
            elif r.task is Task.POSE and objs:
                pos[r.image][objs[0]].append(p.mean(axis=0))
            elif r.task is Task.TRAJECTORY and len(objs) >= 2 and len(p) >= 2:
                pos[r.image][objs[0]].append(p[0])
                pos[r.image][objs[1]].append(p[-1])
            elif r.task is Task.REARRANGEMENT:
                ks = (r.gt or {}).get("blocking_gt_indices", [])
                for k, q in zip(ks, p):
                    pos[r.image][int(k)].append(q)
        self._pos = {im: {k: np.mean(v, axis=0) for k, v in d.items()} for im, d in pos.items()}

    def others(self, record: Any) -> NDArray[np.float64]:
        """(K, 2) positions of the objects of ``record``'s image other than the ones it asks about."""
        if record is None or record.image not in self._pos:
            return np.zeros((0, 2))
        mine = {int(o.gt_index) for o in record.objects}
        pts = [uv for k, uv in sorted(self._pos[record.image].items()) if k not in mine]
        return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def request_rng(seed: int, task: Task, question: str, objects: list[str], shape: tuple[int, ...],
                attempt: int) -> np.random.Generator:
    return answer_rng(seed, task, question, objects, shape, attempt)


def perturb_answer(answer: Answer, level: ErrorLevel, rng: np.random.Generator,
                   ctx: ErrorContext) -> tuple[Answer, dict[str, Any]]:
    """``answer`` (original pixels) with ``level``'s error for its task; points clipped to the task's
    bounds (not yet rounded: :func:`to_text_and_back` does that)."""
    task = Task(answer.task)
    if isinstance(answer, YesNoAnswer):
        value, info = flip_yes_no(answer.value, level.component(task), rng)
        return YesNoAnswer(value, task), info
    fn, _ = _PERTURB[task]
    pts, info = fn(np.asarray(answer.points, dtype=np.float64), level.component(task), rng, ctx)
    return answer.with_points(pts), info


def to_text_and_back(answer: Answer, convention: CoordConvention | str, width: int, height: int,
                     resize: ResizePolicy | None = None) -> tuple[Answer, str]:
    """The answer as a model would write it in ``convention`` (text), and that text decoded and validated
    by the clients' own :func:`~bopask_vlm.clients.base.decode_answer`."""
    from bopask_vlm.clients.base import decode_answer

    conv = CoordConvention(convention)
    text = answer_to_text(to_model(answer, conv, width, height, resize), decimals=conv.decimals)
    return decode_answer(answer.task, text, conv, width, height, False, resize), text
