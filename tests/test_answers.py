"""Answer formats: text and JSON round trips, strict parsing, coordinate conventions."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bopask_vlm.answers import (
    AnswerParseError,
    CoordConvention,
    GraspAnswer,
    PoseAnswer,
    RearrangementAnswer,
    Task,
    TrajectoryAnswer,
    YesNoAnswer,
    answer_to_json,
    answer_to_text,
    from_model,
    json_schema,
    parse_answer_json,
    parse_answer_text,
    to_model,
)

W, H = 640, 480
coord = st.floats(min_value=0, max_value=639, allow_nan=False, allow_infinity=False)


def points(n_min: int, n_max: int, unique: bool = False):
    # rearrangement points name distinct objects: repeated points (also after rounding) collapse to one
    return st.lists(st.tuples(coord, coord.map(lambda v: v * H / W)), min_size=n_min, max_size=n_max,
                    unique_by=(lambda p: (round(p[0]), round(p[1]))) if unique else None)


answers = st.one_of(
    points(8, 8).map(lambda p: PoseAnswer(np.array(p))),
    points(5, 5).map(lambda p: GraspAnswer(np.array(p))),
    points(2, 64).map(lambda p: TrajectoryAnswer(np.array(p))),
    points(0, 32, unique=True).map(lambda p: RearrangementAnswer(np.array(p).reshape(-1, 2))),
    st.builds(YesNoAnswer, st.booleans(), st.sampled_from([Task.SPATIAL, Task.DEPTH])),
)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_text_round_trip_within_half_pixel(answer):
    back = parse_answer_text(answer.task, answer_to_text(answer))
    assert type(back) is type(answer)
    if isinstance(answer, YesNoAnswer):
        assert back == answer
    else:
        assert back.points.shape == answer.points.shape
        assert np.all(np.abs(back.points - answer.points) <= 0.5 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_json_round_trip_exact_and_schema_valid(answer):
    obj = answer_to_json(answer)
    assert parse_answer_json(answer.task, json.dumps(obj)) == answer
    ints = answer_to_json(answer, decimals=0)
    jsonschema.validate(ints, json_schema(answer.task, W, H))


@settings(max_examples=100, deadline=None)
@given(answers, st.sampled_from(list(CoordConvention)))
def test_convention_round_trip_after_text_rounding(answer, convention):
    model_side = to_model(answer, convention, W, H)
    text = answer_to_text(model_side, decimals=CoordConvention(convention).decimals)
    back = from_model(parse_answer_text(answer.task, text), convention, W, H)
    if not isinstance(answer, YesNoAnswer):
        assert np.all(np.abs(back.points - answer.points) <= 0.5 + 1e-9)


def test_grasp_text_form_matches_bopask():
    a = GraspAnswer(np.array([[10, 20], [5, 20], [15, 20], [5, 40], [15, 40]], dtype=float))
    assert answer_to_text(a) == ("Grasp center: [10, 20], Left finger base: [5, 20], Right finger base: [15, 20], "
                                 "Left finger tip: [5, 40], Right finger tip: [15, 40]")
    multiline = "Grasp center: [10, 20]\nLeft finger base: [5, 20]\nRight finger base: [15, 20]\n" \
                "Left finger tip: [5, 40]\nRight finger tip: [15, 40]."
    assert parse_answer_text("grasp", multiline) == a
    assert a.mirrored().left_base.tolist() == [15.0, 20.0]


@pytest.mark.parametrize("task,text,where", [
    ("pose", "[(1, 2), (3, 4)]", "expected 8 points"),
    ("trajectory", "[(1, 2)]", "at least 2"),
    ("trajectory", "[(1, 2), (3, 4)", "']'"),
    ("trajectory", "[(1, 2), (3, nan)]", "a number"),
    ("trajectory", "[(1, 2), (3, 4)] because it is shortest", "end of answer"),
    ("trajectory", "[[1, 2], [3, 4]]", "'('"),
    ("trajectory", "__import__('os').system('true')", "'['"),
    ("grasp", "Grasp center: [1, 2], Right finger base: [1, 2]", "'Left finger base'"),
    ("spatial", "Yes, it is.", "'Yes' or 'No'"),
    ("depth", "", "an answer"),
    ("rearrangement", "[" + "(1, 1), " * 40 + "(1, 1)]", "more than 32"),
])
def test_bad_text_answers_raise_precise_errors(task, text, where):
    with pytest.raises(AnswerParseError) as e:
        parse_answer_text(task, text)
    assert where in str(e.value)


def test_over_long_answer_rejected():
    with pytest.raises(AnswerParseError, match="characters long"):
        parse_answer_text("trajectory", "[" + "(1, 1), " * 2000 + "(1, 1)]")


@pytest.mark.parametrize("task,obj,msg", [
    ("pose", {"corners": [[1, 2]] * 7}, "expected 8..8"),
    ("grasp", {"grasp_center": [1, 2]}, "do not match"),
    ("trajectory", {"waypoints": [[1, "2"], [3, 4]]}, "not a finite number"),
    ("trajectory", '{"waypoints": [[1, NaN], [3, 4]]}', "non-finite"),
    ("spatial", {"answer": "maybe"}, "'yes' or 'no'"),
    ("rearrangement", "{not json", "invalid JSON"),
    ("rearrangement", [], "JSON object"),
])
def test_bad_json_answers(task, obj, msg):
    with pytest.raises(AnswerParseError, match=msg):
        parse_answer_json(task, obj)


def test_schema_bounds_reject_out_of_image_points():
    schema = json_schema("trajectory", W, H)
    jsonschema.validate({"waypoints": [[0, 0], [639, 479]]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"waypoints": [[0, 0], [641, 10]]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"waypoints": [[0, 0]]}, schema)


def test_resized_pixels_follow_qwen_smart_resize():
    a = TrajectoryAnswer(np.array([[0.0, 0.0], [640.0, 480.0]]))
    m = to_model(a, CoordConvention.RESIZED_PIXELS, 640, 480)
    # smart_resize(480, 640) -> 476 x 644 (multiples of 28)
    assert m.points[1].tolist() == pytest.approx([644.0, 476.0])
    n = to_model(a, CoordConvention.NORMALIZED_1000, 640, 480)
    assert n.points[1].tolist() == pytest.approx([1000.0, 1000.0])
