"""Prompts: every task has BOP-ASK-style templates, the format instruction matches the parser."""

from __future__ import annotations

import random

import pytest

from bopask_vlm.answers import CoordConvention, Task
from bopask_vlm.prompts import RELATIONS, format_instruction, make_question, templates


@pytest.mark.parametrize("task", list(Task))
def test_every_template_fills(task):
    objs = ["the carton of orange juice"] if task in (Task.POSE, Task.GRASP, Task.REARRANGEMENT) \
        else ["the whisk", "the colander"]
    for i in range(len(templates(task))):
        q = make_question(task, objs, relation="left of", template=i)
        assert objs[0] in q and "{" not in q
        assert q.endswith(format_instruction(task))


def test_bopask_phrasings():
    assert make_question(Task.GRASP, ["the carton of orange juice"]).startswith(
        "What are the five (x, y) points in the image that outline the grasp plane for the carton of orange juice?")
    assert make_question(Task.DEPTH, ["the can", "the box"]).startswith("Is the can closer to you than the box?")
    assert make_question(Task.SPATIAL, ["the drill", "the marker"], "right of").startswith(
        "Is the drill right of the marker?")
    assert "[(x1, y1), (x2, y2), ...]" in make_question(Task.POSE, ["the box"])


def test_convention_changes_instruction_and_rng_is_deterministic():
    assert "[0, 1000]" in format_instruction(Task.TRAJECTORY, CoordConvention.NORMALIZED_1000)
    a = [make_question(Task.POSE, ["x"], rng=random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]


@pytest.mark.parametrize("args,msg", [
    ((Task.TRAJECTORY, ["only one"]), "need 2"),
    ((Task.SPATIAL, ["a", "b"], "diagonal to"), "relation"),
    ((Task.POSE, [""]), "need 1"),
])
def test_bad_question_arguments(args, msg):
    with pytest.raises(ValueError, match=msg):
        make_question(*args)


def test_relations_cover_issue_list():
    assert {"left of", "right of", "in front of", "behind", "above"} <= set(RELATIONS)


def test_adapt_instruction_rewrites_the_convention_only():
    from bopask_vlm.prompts import adapt_instruction

    q = make_question(Task.GRASP, ["the mug"], template=2)
    a = adapt_instruction(q, Task.GRASP, CoordConvention.NORMALIZED_1000)
    assert a.startswith("Show the grasp for picking up the mug.") and "[0, 1000]" in a
    assert adapt_instruction(a, Task.GRASP, CoordConvention.PIXELS) == q
    assert adapt_instruction("free text", Task.GRASP, CoordConvention.NORMALIZED_1) == "free text"
