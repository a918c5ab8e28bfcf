"""The answer contract of a trained model: what its answers look like, written once at export and read by
every consumer (``bopask serve``, the clients, ``bopask ask``, ``bopask bench``, the ROS node).

It lives in the exported model's card, ``bopask_model.json`` (:mod:`bopask_vlm.train.export`), beside the
weights::

    {"contract_version": 1, "answer_form": "text", "coord_convention": "resized_pixels",
     "resize": {"factor": 28, "min_pixels": 3136, "max_pixels": 1003520}, "prompt_version": 1, ...}

- ``answer_form``: ``text`` (BOP-ASK's ``[(x, y), ...]`` / ``Yes``, :func:`bopask_vlm.answers.answer_to_text`)
  or ``json`` (:func:`bopask_vlm.answers.answer_to_json`, compact): what the model was trained to write, so
  what a served model is constrained to (:func:`structured_outputs`: a regex of the text grammar, or the
  task's JSON schema, both through vLLM's xgrammar backend).
- ``coord_convention`` and ``resize``: how its coordinates map to original-image pixels
  (:mod:`bopask_vlm.answers.coords`); ``resize`` is the processor's ``smart_resize`` policy of training.
- ``prompt_version``: :data:`bopask_vlm.prompts.PROMPT_VERSION` of the questions it was trained on.

A consumer given a contract takes convention and form from it; an explicit setting that disagrees is a
:class:`ContractError` (refuse to start), never a silent conversion. Without a contract (a base model)
the explicit settings apply as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bopask_vlm.answers.coords import CoordConvention, ResizePolicy
from bopask_vlm.answers.text import GRASP_FIELD_NAMES, MAX_POINTS
from bopask_vlm.answers.types import Task

CONTRACT_VERSION = 1
MODEL_CARD_FILE = "bopask_model.json"
ANSWER_FORMS = ("text", "json")


class ContractError(ValueError):
    """A contract is missing, malformed, or contradicted by an explicit setting."""


@dataclass(frozen=True)
class AnswerContract:
    answer_form: str = "text"
    coord_convention: CoordConvention = CoordConvention.PIXELS
    resize: ResizePolicy | None = None
    prompt_version: int = 1
    source: str = ""  # where it was read from (for messages)

    def __post_init__(self) -> None:
        if self.answer_form not in ANSWER_FORMS:
            raise ContractError(f"answer_form {self.answer_form!r} is not one of {ANSWER_FORMS}")
        object.__setattr__(self, "coord_convention", CoordConvention(self.coord_convention))

    def to_card(self) -> dict[str, Any]:
        """The contract's keys of ``bopask_model.json``."""
        r = self.resize
        return {"contract_version": CONTRACT_VERSION, "answer_form": self.answer_form,
                "coord_convention": self.coord_convention.value, "prompt_version": int(self.prompt_version),
                "resize": None if r is None else {"factor": r.factor, "min_pixels": r.min_pixels,
                                                  "max_pixels": r.max_pixels}}

    @classmethod
    def from_card(cls, card: dict[str, Any], source: str = "") -> AnswerContract:
        """Read the contract keys of a model card. Cards written before the contract existed carry only
        ``coord_convention`` (and ``min_pixels``/``max_pixels``): such models were trained on the text form."""
        where = f" ({source})" if source else ""
        if "coord_convention" not in card:
            raise ContractError(f"model card has no coord_convention{where}")
        version = int(card.get("contract_version", CONTRACT_VERSION))
        if version > CONTRACT_VERSION:
            raise ContractError(f"contract version {version} is newer than this code's {CONTRACT_VERSION}{where}")
        try:
            conv = CoordConvention(card["coord_convention"])
        except ValueError as e:
            raise ContractError(f"unknown coord_convention {card['coord_convention']!r}{where}") from e
        r = card.get("resize")
        resize = None
        if isinstance(r, dict):
            resize = ResizePolicy(int(r["factor"]), int(r["min_pixels"]), int(r["max_pixels"]))
        elif card.get("min_pixels") and card.get("max_pixels"):
            resize = ResizePolicy(min_pixels=int(card["min_pixels"]), max_pixels=int(card["max_pixels"]))
        return cls(answer_form=str(card.get("answer_form", "text")), coord_convention=conv, resize=resize,
                   prompt_version=int(card.get("prompt_version", 1)), source=source)

    def resolve_convention(self, explicit: CoordConvention | str | None, who: str = "") -> CoordConvention:
        """The contract's convention; ``explicit`` (a user's setting) must agree with it or be None/""."""
        if explicit not in (None, ""):
            conv = CoordConvention(explicit)
            if conv is not self.coord_convention:
                raise ContractError(
                    f"{who + ': ' if who else ''}coordinate convention {conv.value!r} contradicts the model's "
                    f"contract {self.coord_convention.value!r} ({self.source or 'contract'}); remove the setting "
                    "or use the contract's value")
        return self.coord_convention

    def resolve_form(self, explicit: str | None, who: str = "") -> str:
        """The contract's answer form; ``explicit`` must agree with it or be None/""."""
        if explicit not in (None, "") and explicit != self.answer_form:
            raise ContractError(f"{who + ': ' if who else ''}answer form {explicit!r} contradicts the model's "
                                f"contract {self.answer_form!r} ({self.source or 'contract'})")
        return self.answer_form


def read_contract(path: str | Path) -> AnswerContract:
    """The contract of a model directory (its ``bopask_model.json``) or of a card file given directly."""
    p = Path(path)
    card = p / MODEL_CARD_FILE if p.is_dir() else p
    if not card.is_file():
        raise ContractError(f"no model card at {card} (a model exported by `bopask train` has one)")
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError) as e:
        raise ContractError(f"cannot read model card {card}: {e}") from e
    if not isinstance(data, dict):
        raise ContractError(f"model card {card} is not a JSON object")
    return AnswerContract.from_card(data, source=str(card))


def find_contract(model_dir: str | Path) -> AnswerContract | None:
    """The contract beside a model's weights, or None for a model without a card (a base model)."""
    p = Path(model_dir)
    return read_contract(p) if (p / MODEL_CARD_FILE).is_file() else None


# ----------------------------------------------------------------------------------------------- grammars


def _number(convention: CoordConvention) -> str:
    # answer_to_text's numbers: integers, or up to the convention's decimals (normalized_1). Digits are
    # bounded so that a constrained weak model cannot run away inside one number.
    if convention.decimals:
        return rf"-?[0-9]{{1,2}}(\.[0-9]{{1,{convention.decimals}}})?"
    return r"-?[0-9]{1,5}"


def text_regex(task: Task | str, convention: CoordConvention | str) -> str:
    """A regular expression of exactly the text form :func:`~bopask_vlm.answers.answer_to_text` writes for
    ``task`` (separators ``", "``, no trailing text): what a text-trained model is constrained to (vLLM
    ``structured_outputs.regex``, compiled by xgrammar). Bounds and counts beyond it are the parser's."""
    task, conv = Task(task), CoordConvention(convention)
    n = _number(conv)
    if task.is_yes_no:
        return "(Yes|No)"
    if task is Task.GRASP:
        return ", ".join(rf"{name}: \[{n}, {n}\]" for name in GRASP_FIELD_NAMES)
    point = rf"\({n}, {n}\)"
    if task is Task.POSE:
        return rf"\[{point}(, {point}){{7}}\]"
    if task is Task.TRAJECTORY:
        return rf"\[{point}(, {point}){{1,{MAX_POINTS[Task.TRAJECTORY] - 1}}}\]"
    return rf"\[({point}(, {point}){{0,{MAX_POINTS[Task.REARRANGEMENT] - 1}}})?\]"


__all__ = ["ANSWER_FORMS", "AnswerContract", "CONTRACT_VERSION", "ContractError", "MODEL_CARD_FILE",
           "find_contract", "read_contract", "text_regex"]
