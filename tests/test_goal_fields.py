"""A goal's own fields, checked in one place for the node, replay and ``bopask ask`` (issue 21, items 4 and 5)."""

from __future__ import annotations

import pytest

from bopask_vlm.answers import Task
from bopask_vlm.goal_fields import GoalFieldError, validate_goal_fields


@pytest.mark.parametrize("task", ["trajectory", "grasp", "pose", "rearrangement"])
def test_a_yes_no_question_takes_only_spatial_or_depth(task):
    objs = ["a", "b"] if task == "trajectory" else ["a"]
    with pytest.raises(GoalFieldError, match="yes/no question's task must be one of"):
        validate_goal_fields(task, objs, yes_no=True, question="Is a left of b?")
    assert validate_goal_fields(task, objs).task is Task(task)  # through its own action it is fine


@pytest.mark.parametrize("objects,relation,question,match", [
    ([""], None, None, "object description is empty"),
    (["   \t "], None, None, "control character U\\+0009"),
    (["  "], None, None, "object description is empty"),
    (["the mug", "x"], None, None, "takes 1 object description"),
    (["a" * 501], None, None, "501 characters long"),
    (["the mug\x00; rm -rf"], None, None, "U\\+0000 at position 7"),
    (["the \x1b[31mred\x1b[0m mug"], None, None, "U\\+001B"),
    (["the \u202egum\u202c"], None, None, "U\\+202E"),
    (["the mug"], None, "Where\u200b is it?", "question holds the control character U\\+200B"),
    (["the mug"], None, "q" * 2001, "question is 2001 characters long"),
])
def test_bad_descriptions_and_questions_are_refused_with_the_field_and_why(objects, relation, question, match):
    with pytest.raises(GoalFieldError, match=match):
        validate_goal_fields("grasp", objects, relation, question)


def test_relations():
    ok = validate_goal_fields("spatial", [" the mug ", "the bowl"], "left of", yes_no=True)
    assert ok.objects == ("the mug", "the bowl") and ok.relation == "left of"
    with pytest.raises(GoalFieldError, match="unknown relation 'north of'"):
        validate_goal_fields("spatial", ["a", "b"], "north of", yes_no=True)
    with pytest.raises(GoalFieldError, match="needs a relation"):
        validate_goal_fields("spatial", ["a", "b"], yes_no=True)
    assert validate_goal_fields("spatial", ["a", "b"], "", "Is a left of b?").question == "Is a left of b?"
    with pytest.raises(GoalFieldError, match="depth goal takes no relation"):
        validate_goal_fields("depth", ["a", "b"], "left of")
    with pytest.raises(GoalFieldError, match="unknown task 'teleport'"):
        validate_goal_fields("teleport", ["a"])


def test_the_limit_is_a_parameter():
    validate_goal_fields("grasp", ["a" * 40], max_chars=40)
    with pytest.raises(GoalFieldError, match="at most 39"):
        validate_goal_fields("grasp", ["a" * 40], max_chars=39)


def test_bopask_ask_refuses_a_bad_goal_before_any_client(tmp_path, capsys):
    import cv2
    import numpy as np

    from bopask_vlm.clients.ask import main

    img = tmp_path / "rgb.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    # an endpoint nobody serves: the goal must be refused before any request
    assert main([str(img), "spatial", "the mug", "the bowl", "--relation", "north of",
                 "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    assert "bad goal: unknown relation 'north of'" in capsys.readouterr().err
