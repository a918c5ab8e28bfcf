"""Question templates per task, in BOP-ASK's styles, with the answer-format instruction.

Dataset generation and inference both build questions here, so a model is served with exactly the
phrasing and format instruction it was trained on. Templates are ``str.format`` strings with
``{a}`` (the target object) and ``{b}`` (the reference object, where a task has one).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from bopask_vlm.answers.coords import CoordConvention
from bopask_vlm.answers.types import Task

#: Version of the question templates and format instructions below, recorded in a trained model's answer
#: contract (:mod:`bopask_vlm.contract`); raise it when a change alters what a trained model is asked.
PROMPT_VERSION = 1

TEMPLATES: dict[Task, tuple[str, ...]] = {
    Task.POSE: (
        "What are the eight (x, y) image coordinates of the cuboid corners for {a}?",
        "Locate the cuboid corners of {a}.",
        "Draw the cuboid for {a}?",
        "Where are the corners of the 3D bounding box of {a} in the image?",
    ),
    Task.GRASP: (
        "What are the five (x, y) points in the image that outline the grasp plane for {a}?",
        "How would a parallel-jaw gripper grasp {a}? Give the five grasp keypoints.",
        "Show the grasp for picking up {a}.",
        "Where should the gripper grasp {a}?",
    ),
    Task.TRAJECTORY: (
        "What is the path from {a} to {b}?",
        "Show me how to move {a} to the location of {b}?",
        "Draw a collision-free trajectory that moves {a} to {b}.",
        "How should {a} be carried to {b}?",
    ),
    Task.REARRANGEMENT: (
        "Which objects should you move first to grab {a}?",
        "Point to objects that need to be moved to pick up {a}?",
        "What has to be moved out of the way before picking up {a}?",
    ),
}

#: Spatial relations and their question forms ("Is A <phrase> B?").
RELATIONS: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of", "on the left side of"),
    "right of": ("right of", "to the right of", "on the right side of"),
    "in front of": ("in front of", "closer to the front than"),
    "behind": ("behind", "further back than"),
    "above": ("above", "on top of"),
    "below": ("below", "underneath"),
}
SPATIAL_TEMPLATES: tuple[str, ...] = ("Is {a} {rel} {b}?", "Is it true that {a} is {rel} {b}?")
DEPTH_TEMPLATES: tuple[str, ...] = (
    "Is {a} closer to you than {b}?",
    "Is {a} nearer to the camera than {b}?",
)


def _coord_phrase(convention: CoordConvention) -> str:
    if convention is CoordConvention.NORMALIZED_1:
        return "image coordinates normalized to [0, 1] (x by the image width, y by the image height)"
    if convention is CoordConvention.NORMALIZED_1000:
        return "image coordinates normalized to [0, 1000]"
    return "integer pixel coordinates"


def format_instruction(task: Task | str, convention: CoordConvention | str = CoordConvention.PIXELS) -> str:
    """The answer-format sentence appended to every question of ``task``."""
    task, conv = Task(task), CoordConvention(convention)
    coords = _coord_phrase(conv)
    if task is Task.POSE:
        return (f"Answer in {coords}, bottom face first then top face, all counter-clockwise, "
                "formatted as a list of 8 tuples like [(x1, y1), (x2, y2), ...].")
    if task is Task.GRASP:
        return (f"Answer in {coords} as Grasp center: [x, y], Left finger base: [x, y], "
                "Right finger base: [x, y], Left finger tip: [x, y], Right finger tip: [x, y].")
    if task is Task.TRAJECTORY:
        return f"Answer in {coords} as a list of waypoints like [(x1, y1), (x2, y2), ...]."
    if task is Task.REARRANGEMENT:
        return (f"Answer in {coords} with one point on each object to move, as a list like "
                "[(x1, y1), ...], or [] if nothing needs to be moved.")
    return "Answer Yes or No."


def templates(task: Task | str) -> list[str]:
    """The question templates of ``task`` (``{a}``, ``{b}``, and ``{rel}`` for spatial)."""
    task = Task(task)
    if task is Task.SPATIAL:
        return list(SPATIAL_TEMPLATES)
    if task is Task.DEPTH:
        return list(DEPTH_TEMPLATES)
    return list(TEMPLATES[task])


def make_question(task: Task | str, objects: Sequence[str], relation: str | None = None, *,
                  template: int | None = None, rng: random.Random | None = None,
                  convention: CoordConvention | str = CoordConvention.PIXELS) -> str:
    """A question about ``objects`` (descriptions such as "the red mug") plus the format instruction.

    The template is ``template`` when given, else drawn from ``rng``, else the first one, so the
    default is deterministic. Spatial questions need ``relation`` (a key of :data:`RELATIONS`).
    """
    task = Task(task)
    objs = [str(o).strip() for o in objects]
    needed = 1 if task in (Task.POSE, Task.GRASP, Task.REARRANGEMENT) else 2
    if len(objs) != needed or not all(objs):
        raise ValueError(f"{task.value} questions need {needed} object description(s), got {objects!r}")
    options = templates(task)
    if template is not None:
        if not 0 <= template < len(options):
            raise ValueError(f"template {template} out of range for {task.value} (0..{len(options) - 1})")
        idx = template
    else:
        idx = rng.randrange(len(options)) if rng is not None else 0
    fields = {"a": objs[0], "b": objs[1] if needed == 2 else ""}
    if task is Task.SPATIAL:
        if relation not in RELATIONS:
            raise ValueError(f"spatial questions need a relation among {sorted(RELATIONS)}, got {relation!r}")
        phrases = RELATIONS[relation]
        fields["rel"] = phrases[rng.randrange(len(phrases))] if rng is not None else phrases[0]
    question = options[idx].format(**fields)
    question = question[0].upper() + question[1:]
    return f"{question} {format_instruction(task, convention)}"


def adapt_instruction(question: str, task: Task | str, convention: CoordConvention | str) -> str:
    """``question`` with its answer-format instruction rewritten for ``convention``.

    Dataset questions carry the instruction of the convention they were generated in (pixels); a
    model trained in another convention must be asked in its own, the one training used.
    """
    target = format_instruction(task, convention)
    for c in CoordConvention:
        old = format_instruction(task, c)
        if question.endswith(old):
            return question[: len(question) - len(old)] + target
    return question


def split_instruction(question: str, task: Task | str) -> tuple[str, str]:
    """(question proper, answer-format instruction) of a question :func:`make_question` built, in any
    convention; ("question", "") when it carries none of them. ``head + " " + tail`` is the question again.

    Rephrasing rewrites the head only: the instruction is what a trained model relies on verbatim.
    """
    for c in CoordConvention:
        tail = format_instruction(task, c)
        if question.endswith(tail):
            return question[: len(question) - len(tail)].rstrip(" "), tail
    return question, ""
