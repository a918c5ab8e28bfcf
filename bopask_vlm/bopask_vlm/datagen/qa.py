"""Questions and answers through the VLM layer's templates and answer formats (one source of truth:
:func:`bopask_vlm.prompts.make_question`, :func:`bopask_vlm.answers.answer_to_text` / ``answer_to_json``),
with object descriptions that tell instances of the same object apart, and optional LLM rephrasing.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.types import Answer, PointsAnswer, Task

ORDINALS = ("leftmost", "second from the left", "third from the left", "fourth from the left")


def describe_instances(names: Sequence[str], centers_u: Sequence[float]) -> list[str]:
    """Phrases for the instances of one frame: "the red box", or by position for repeated names
    ("the leftmost blue can", "the rightmost blue can", "the second from the left ...")."""
    out = [f"the {n}" for n in names]
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n, []).append(i)
    for n, idx in groups.items():
        if len(idx) < 2:
            continue
        order = sorted(idx, key=lambda i: centers_u[i])
        for rank, i in enumerate(order):
            if rank == len(order) - 1:
                word = "rightmost"
            elif rank < len(ORDINALS):
                word = ORDINALS[rank]
            else:
                word = f"number {rank + 1} from the left"
            out[i] = f"the {word} {n}"
    return out


class QuestionMaker:
    """Builds (question, answer_text, answer_json) with the VLM layer's API; ``rephrase`` (optional)
    rewrites the question proper (e.g. an LLM through the OpenAI-compatible client): it is given the text
    before the answer-format instruction (:func:`bopask_vlm.prompts.split_instruction`) and the instruction
    is appended to its reply verbatim, so a rephrased record still ends in the instruction that training
    adapts to the model's convention."""

    def __init__(self, rng: random.Random, rephrase: Callable[[str], str] | None = None) -> None:
        from bopask_vlm.answers import answer_to_json, answer_to_text
        from bopask_vlm.prompts import make_question

        self.make_question, self.to_text, self.to_json = make_question, answer_to_text, answer_to_json
        self.rng = rng
        self.rephrase = rephrase

    def __call__(self, task: Task, objects: Sequence[str], answer: Answer,
                 relation: str | None = None) -> tuple[str, str, dict[str, Any]]:
        q = self.make_question(task, list(objects), relation, rng=self.rng)
        if self.rephrase is not None:
            from bopask_vlm.prompts import split_instruction

            head, tail = split_instruction(q, task)
            try:
                new_head = self.rephrase(head).strip()
                if new_head:
                    q = f"{new_head} {tail}" if tail else new_head
            except Exception as e:
                warnings.warn(f"rephrasing failed, template question kept: {e}", RuntimeWarning, stacklevel=2)
        return q, self.to_text(answer), self.to_json(answer)


def openai_rephraser(base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 30.0) -> Callable[[str], str]:
    """Rephrase a question proper (no answer-format instruction: :class:`QuestionMaker` splits it off and
    appends it again) with an OpenAI-compatible server."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout)

    def rephrase(head: str) -> str:
        r = client.chat.completions.create(model=model, temperature=0.7, max_tokens=128, messages=[
            {"role": "system", "content": "Rephrase the user's question about an image. Keep every object "
                                          "description and meaning exactly; reply with the question only."},
            {"role": "user", "content": head}])
        text = (r.choices[0].message.content or "").strip()
        return text or head

    return rephrase


def points_answer(task: Task, points: NDArray[np.float64]) -> PointsAnswer:
    from bopask_vlm.answers.types import ANSWER_TYPES

    return ANSWER_TYPES[task](np.asarray(points, float).reshape(-1, 2))
