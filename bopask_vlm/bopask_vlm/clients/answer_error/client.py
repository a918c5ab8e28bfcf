""":class:`AnswerErrorClient`: any client's answers turned into those of a model at a chosen quality.

The wrapped client (the oracle in tests and sim-eval) is asked first; its validated answer (original
pixels) is then perturbed by the level's components for the task (:mod:`.grasp`, :mod:`.pose`,
:mod:`.trajectory`, :mod:`.discrete`), written as the text a model would emit in the wrapped client's
convention (``raw_text``) and decoded and validated like any model output, so downstream sees only
answers that pass the clients' validation.

Determinism: one answer's random numbers come from (seed, task, question text, objects, image shape,
``request.attempt``) through sha256 (:func:`.context.answer_seed`): the same question asked again with
the same seed gets the same answer; a re-ask (``attempt + 1``) gets a fresh draw.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from bopask_vlm.answers import Answer, CoordConvention
from bopask_vlm.clients.answer_error.context import ErrorContext
from bopask_vlm.clients.answer_error.levels import ErrorLevel, parse_level
from bopask_vlm.clients.answer_error.model import ObjectIndex, perturb_answer, request_rng, to_text_and_back
from bopask_vlm.clients.base import VLMClient, VLMRequest, VLMResponse

__all__ = ["AnswerErrorClient", "request_key"]


def request_key(request: VLMRequest) -> tuple[str, list[str], tuple[int, ...]]:
    """(question text, objects, image shape): what identifies a question for the error model's draws."""
    return (request.question_text(CoordConvention.PIXELS), [str(o) for o in request.objects],
            tuple(int(x) for x in np.shape(request.image)))


class AnswerErrorClient(VLMClient):
    """Wraps ``inner`` (any :class:`VLMClient`); ``level`` is an :class:`ErrorLevel` or a level's text
    (:func:`parse_level`: a preset then runs at its uncalibrated mix; calibrate with
    :func:`~bopask_vlm.clients.answer_error.calibrate.resolve_level` first to reach its metrics).
    ``records``: the dataset's records, optional; they locate the other objects of an image for the
    wrong-object errors."""

    def __init__(self, inner: VLMClient, level: ErrorLevel | str, seed: int = 0, *,
                 records: Iterable[Any] | None = None) -> None:
        self.inner = inner
        self.level = parse_level(level)
        self.seed = int(seed)
        self.convention = CoordConvention(getattr(inner, "convention", CoordConvention.PIXELS))
        self.resize = getattr(inner, "resize", None)
        self.model = f"{getattr(inner, 'model', 'unknown')}+answer_error:{self.level.name}"
        self.objects = ObjectIndex(records or ())

    def generate(self, request: VLMRequest, question: str) -> tuple[str, bool]:
        return self.ask(request).raw_text, False

    def perturb(self, request: VLMRequest, answer: Answer) -> tuple[Answer, str, dict[str, Any]]:
        """(perturbed answer, its raw text, what was applied) for ``answer`` to ``request``."""
        question, objects, shape = request_key(request)
        rng = request_rng(self.seed, request.task, question, objects, shape, int(request.attempt))
        ctx = ErrorContext(request.width, request.height, request.record, self.objects.others(request.record))
        out, info = perturb_answer(answer, self.level, rng, ctx)
        final, text = to_text_and_back(out, self.convention, request.width, request.height, self.resize)
        return final, text, info

    def ask(self, request: VLMRequest) -> VLMResponse:
        t0 = time.perf_counter()
        resp = self.inner.ask(request)
        answer, text, _ = self.perturb(request, resp.answer)
        return VLMResponse(answer=answer, raw_text=text, latency_s=resp.latency_s + (time.perf_counter() - t0),
                           model=self.model)
