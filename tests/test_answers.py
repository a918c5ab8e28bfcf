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
    model_extent,
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
    if not isinstance(answer, YesNoAnswer) and back.points.shape == answer.points.shape:
        # within half a unit of the model's text precision, in original pixels (a resized side shorter than
        # the original makes that more than half a pixel)
        ex, ey = model_extent(convention, W, H)
        tol = 0.5 * 10.0 ** -CoordConvention(convention).decimals * np.array([W / ex, H / ey])
        assert np.all(np.abs(back.points - answer.points) <= tol + 1e-9)
    elif not isinstance(answer, YesNoAnswer):  # rearrangement points rounded onto one another collapse
        assert isinstance(answer, RearrangementAnswer) and len(back.points) < len(answer.points)


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


@pytest.mark.parametrize("convention", ["pixels", "normalized_1000", "resized_pixels"])
@pytest.mark.parametrize("task", ["pose", "grasp", "trajectory", "rearrangement"])
def test_every_schema_corner_passes_validation(task, convention):
    # what the constrained decoder may emit is what the client and the pipeline accept: exactly in the pixel
    # convention; in the scaled ones the last bin may reach up to one original pixel past the last pixel
    # centre (the schema only knows the model's extent), which validation rejects with a reason
    from bopask_vlm.answers import model_extent, outside_points
    from bopask_vlm.clients import validate_answer

    ex, ey = model_extent(convention, W, H)
    schema = json_schema(task, ex, ey, integer=True)
    props = schema["properties"]
    cols = [props[k]["prefixItems"] for k in props] if task == "grasp" else [props[next(iter(props))]["items"]["prefixItems"]]
    n = {"pose": 8, "grasp": 5, "trajectory": 2, "rearrangement": 2}[task]
    for corner in ("minimum", "maximum"):
        model = np.array([[c[0][corner], c[1][corner]] for c in (cols * n)[:n]], dtype=float)
        if task == "trajectory" or task == "rearrangement":
            model[1] = [0, 0] if corner == "maximum" else model[1] + 1
        answer = from_model(parse_answer_json(task, json.dumps({k: v for k, v in zip(
            props, [model.tolist()] if task != "grasp" else model.tolist())})), convention, W, H)
        if convention == "pixels":
            assert outside_points(task, answer.points, W, H) == []
            validate_answer(answer, W, H)
        else:
            assert outside_points(task, np.clip(answer.points - 1.0, -0.5, None), W, H) == []
        # one step past the schema's range is outside too
        past = answer.points.copy()
        past[0] += 1 * W / ex if corner == "maximum" else -1 * W / ex
        assert 0 in outside_points(task, past, W, H)


def test_validation_regions_per_task():
    from bopask_vlm.answers import outside_points

    corner_out = np.array([[-5.0, 300.0]] + [[10.0, 10.0]] * 7)
    assert outside_points("pose", corner_out, W, H) == []
    assert outside_points("pose", corner_out - [316, 0], W, H) == [0]  # -321 < -W/2
    tips_out = np.array([[20, 20], [10, 20], [30, 20], [-40, 500], [700, 500]], dtype=float)
    assert outside_points("grasp", tips_out, W, H) == []
    assert outside_points("grasp", tips_out[[3, 1, 2, 0, 4]], W, H) == [0]
    assert outside_points("trajectory", [[-0.5, 0], [639.49, 479.49], [639.5, 3], [np.nan, 1]], W, H) == [2, 3]
