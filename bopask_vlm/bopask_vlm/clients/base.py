"""The one interface every VLM backend implements, and the shared decode/validate step.

A client turns a :class:`VLMRequest` (task, image, object descriptions) into a :class:`VLMResponse`
whose answer is a typed, validated answer in original-image pixels. Everything after the model's
raw text is common: strict parsing (text or JSON), conversion from the model's coordinate
convention, and validation (right count, finite, where the task allows its points).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bopask_vlm.answers import (
    Answer,
    AnswerParseError,
    CoordConvention,
    ResizePolicy,
    Task,
    YesNoAnswer,
    from_model,
    model_extent,
    parse_answer_json,
    parse_answer_text,
)
from bopask_vlm.answers.bounds import outside_points
from bopask_vlm.prompts import adapt_instruction, make_question
from bopask_vlm.records import QARecord


class VLMError(Exception):
    """A VLM request failed."""


class VLMServerError(VLMError):
    """The model server is unreachable, timed out, failed (HTTP 5xx) or answered non-JSON."""


class VLMAnswerError(VLMError):
    """The model answered, but not with a valid answer; ``raw_text`` holds what it said."""

    def __init__(self, message: str, raw_text: str = "") -> None:
        super().__init__(message)
        self.raw_text = raw_text


@dataclass
class VLMRequest:
    """One question about one image. ``image`` is HxWx3 uint8 RGB (the original image)."""

    task: Task
    image: np.ndarray
    objects: list[str] = field(default_factory=list)
    relation: str | None = None
    question: str | None = None
    record: QARecord | None = None  # ground truth, used by the oracle only
    attempt: int = 0  # 0 = the first ask of this question; a re-ask increments it
    feedback: str | None = None  # the failure named in a re-ask prompt (None on a first ask)

    def __post_init__(self) -> None:
        self.task = Task(self.task)
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be HxWx3 uint8 RGB, got shape {img.shape} dtype {img.dtype}")

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def question_text(self, convention: CoordConvention | str = CoordConvention.PIXELS) -> str:
        """The question sent to the model: ``question`` as given, else built by the prompt module; a re-ask's
        ``feedback`` (the failure of the previous answer) goes in front of it."""
        if self.question:
            text = adapt_instruction(self.question, self.task, convention)
        elif self.record is not None and not self.objects:
            text = adapt_instruction(self.record.question, self.task, convention)
        else:
            text = make_question(self.task, self.objects, self.relation, convention=convention)
        if self.feedback:
            from bopask_vlm.reask_prompts import reask_question

            text = reask_question(text, self.feedback)
        return text


@dataclass
class VLMResponse:
    answer: Answer  # original-image pixels, validated
    raw_text: str
    latency_s: float
    model: str


def validate_answer(answer: Answer, width: int, height: int, raw_text: str = "") -> Answer:
    """Check a converted answer lies where its task allows (:func:`bopask_vlm.answers.bounds.outside_points`:
    in the image, or within half an image of it for cuboid corners and finger tips); raise VLMAnswerError."""
    if isinstance(answer, YesNoAnswer):
        return answer
    p = answer.points
    if not np.all(np.isfinite(p)):
        raise VLMAnswerError("answer has non-finite coordinates", raw_text)
    outside = outside_points(answer.task, p, width, height)
    if outside:
        i = outside[0]
        raise VLMAnswerError(
            f"point {i} ({p[i, 0]:.1f}, {p[i, 1]:.1f}) is outside the {width}x{height} image", raw_text)
    return answer


def decode_answer(task: Task, raw_text: str, convention: CoordConvention | str, width: int, height: int,
                  is_json: bool = False, resize: ResizePolicy | None = None) -> Answer:
    """Strictly parse a model's raw output, convert it to original pixels and validate it.

    A JSON answer is parsed under exactly what the JSON schema sent with the request allowed (the
    convention's extent and its integers-only rule), so an answer a constrained decoder could not have
    produced is refused here too."""
    conv = CoordConvention(convention)
    try:
        if is_json:
            ex, ey = model_extent(conv, width, height, resize)
            parsed = parse_answer_json(task, raw_text, ex, ey, integer=conv.integer)
        else:
            parsed = parse_answer_text(task, raw_text)
    except AnswerParseError as e:
        raise VLMAnswerError(f"unparseable {task.value} answer: {e}", raw_text) from e
    if isinstance(parsed, YesNoAnswer) and parsed.task is not task:
        parsed = YesNoAnswer(parsed.value, task)
    return validate_answer(from_model(parsed, convention, width, height, resize), width, height, raw_text)


class VLMClient(ABC):
    """Base of the backends: subclasses implement :meth:`generate` (raw model output)."""

    model: str = "unknown"
    convention: CoordConvention = CoordConvention.PIXELS
    #: the model's image resize, for the ``resized_pixels`` convention (None: Qwen2.5-VL's defaults)
    resize: ResizePolicy | None = None

    @abstractmethod
    def generate(self, request: VLMRequest, question: str) -> tuple[str, bool]:
        """The model's raw output for ``question`` about ``request.image`` and whether it is JSON."""

    def ask(self, request: VLMRequest) -> VLMResponse:
        t0 = time.perf_counter()
        question = request.question_text(self.convention)
        raw, is_json = self.generate(request, question)
        answer = decode_answer(request.task, raw, self.convention, request.width, request.height, is_json,
                               self.resize)
        return VLMResponse(answer=answer, raw_text=raw, latency_s=time.perf_counter() - t0, model=self.model)

    def ask_many(self, requests: Sequence[VLMRequest], max_concurrency: int = 4) -> list[VLMResponse | VLMError]:
        """Ask many questions, up to ``max_concurrency`` at a time; a failure is returned in its slot."""

        def one(req: VLMRequest) -> VLMResponse | VLMError:
            try:
                return self.ask(req)
            except VLMError as e:
                return e

        if max_concurrency <= 1 or len(requests) <= 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
            return list(pool.map(one, requests))
