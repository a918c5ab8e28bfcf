"""Question/answer records: the dataset line format shared by datagen, training, evaluation and
the oracle client.

One JSON object per line. Besides our own fields, each record carries ``messages`` and ``images``
in the conversation layout that common VLM fine-tuning tools read (LLaMA-Factory "sharegpt" with
``<image>`` placeholders, ms-swift, TRL's ``messages`` + ``images``), with image paths relative to
the dataset root.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bopask_vlm.answers.types import Task

IMAGE_TOKEN = "<image>"
RECORD_VERSION = 1


class RecordError(ValueError):
    """A dataset line is not a valid QA record."""


@dataclass
class ObjectRef:
    """An object a question refers to."""

    obj_id: int  # BOP object id
    gt_index: int  # index of this instance in the frame's scene_gt list
    name: str  # short name, e.g. "mustard bottle"
    description: str  # the phrase used in the question, e.g. "the leftmost mustard bottle"


@dataclass
class QARecord:
    """One question about one image, with its answer and the ground truth behind it.

    ``answer`` is the task's canonical JSON form in original-image pixels
    (:func:`bopask_vlm.answers.answer_to_json`); ``answer_text`` the text form a model is
    trained to emit. ``gt`` holds the 3D ground truth the metrics need (camera-frame poses,
    cuboid sizes, grasp poses, 3D paths, mask paths), JSON-able.
    """

    id: str
    task: Task
    image: str  # path relative to the dataset root
    question: str
    answer: dict[str, Any]
    answer_text: str
    width: int
    height: int
    camera_K: list[float]  # row-major 3x3, original image pixels
    depth: str | None = None  # 16-bit png, millimetres times depth_scale
    depth_scale: float = 1.0
    dataset: str = ""
    scene_id: int = 0
    im_id: int = 0
    objects: list[ObjectRef] = field(default_factory=list)
    gt: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def to_json(self) -> dict[str, Any]:
        # a shallow dict: dataclasses.asdict deep-copies ``gt``, half the cost of writing a record
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["objects"] = [asdict(o) for o in self.objects]
        d["task"] = self.task.value
        d["messages"] = [
            {"role": "user", "content": f"{IMAGE_TOKEN}{self.question}"},
            {"role": "assistant", "content": self.answer_text},
        ]
        d["images"] = [self.image]
        return d

    def to_line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QARecord:
        try:
            task = Task(d["task"])
            objects = [ObjectRef(**o) for o in d.get("objects", [])]
            return cls(
                id=str(d["id"]), task=task, image=str(d["image"]), question=str(d["question"]),
                answer=dict(d["answer"]), answer_text=str(d["answer_text"]), width=int(d["width"]),
                height=int(d["height"]), camera_K=[float(x) for x in d["camera_K"]],
                depth=d.get("depth"), depth_scale=float(d.get("depth_scale", 1.0)),
                dataset=str(d.get("dataset", "")), scene_id=int(d.get("scene_id", 0)),
                im_id=int(d.get("im_id", 0)), objects=objects, gt=dict(d.get("gt", {})),
                version=int(d.get("version", RECORD_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"invalid QA record: {type(e).__name__}: {e}") from e

    @classmethod
    def from_line(cls, line: str) -> QARecord:
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"not JSON at column {e.colno}: {e.msg}") from e
        if not isinstance(d, dict):
            raise RecordError("a QA record must be a JSON object")
        return cls.from_json(d)
