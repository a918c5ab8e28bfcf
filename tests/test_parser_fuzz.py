"""Fuzz the answer parsers with random and mutated model outputs: only typed answers or the
parser's own error may come out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bopask_vlm.answers import (
    ANSWER_TYPES,
    AnswerParseError,
    GraspAnswer,
    PoseAnswer,
    Task,
    TrajectoryAnswer,
    answer_to_json,
    answer_to_text,
    parse_answer_json,
    parse_answer_text,
)

SEEDS = [
    answer_to_text(PoseAnswer(np.arange(16).reshape(8, 2) * 7.0)),
    answer_to_text(GraspAnswer(np.arange(10).reshape(5, 2) * 3.0)),
    answer_to_text(TrajectoryAnswer(np.arange(8).reshape(4, 2) * 11.0)),
    '{"waypoints": [[1, 2], [3, 4]]}',
    '{"answer": "yes"}',
    "Yes",
]
ALPHABET = "[](),:.;-+eE0123456789 \n\tYesNoGraspcenterLftingbaseRhtip{}\"'_x"


def _check(task: Task, text: str) -> None:
    for parse in (parse_answer_text, parse_answer_json):
        try:
            out = parse(task, text)
        except AnswerParseError:
            continue
        assert isinstance(out, ANSWER_TYPES[task])
        assert np.all(np.isfinite(out.points))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Task)), st.text(alphabet=ALPHABET, max_size=200))
def test_random_text(task, text):
    _check(task, text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Task)), st.sampled_from(SEEDS), st.data())
def test_mutated_answers(task, seed, data):
    chars = list(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        i = data.draw(st.integers(0, max(0, len(chars) - 1)))
        c = data.draw(st.sampled_from(ALPHABET))
        if op == "insert":
            chars.insert(i, c)
        elif op == "delete" and chars:
            del chars[i]
        elif chars:
            chars[i] = c
    _check(task, "".join(chars))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Task)), st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12))
def test_random_json_objects(task, obj):
    try:
        out = parse_answer_json(task, obj)
    except AnswerParseError:
        return
    assert isinstance(out, ANSWER_TYPES[task])


def test_fuzz_seeds_parse():
    assert parse_answer_json("trajectory", answer_to_json(parse_answer_text("trajectory", SEEDS[2]))).points.shape == (4, 2)
