"""Fuzz the answer parsers with random and mutated model outputs: only typed answers or the
parser's own error may come out; and the text grammar, the JSON schema and the JSON parser accept
exactly the same answers (issue 13)."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bopask_vlm.answers import (
    ANSWER_TYPES,
    GRASP_FIELD_NAMES,
    GRASP_KEYS,
    AnswerParseError,
    GraspAnswer,
    PoseAnswer,
    Task,
    TrajectoryAnswer,
    answer_to_json,
    answer_to_text,
    json_schema,
    parse_answer_json,
    parse_answer_text,
)
from bopask_vlm.answers.schema import LIST_KEY

SEEDS = [
    answer_to_text(PoseAnswer(np.arange(16).reshape(8, 2) * 7.0)),
    answer_to_text(GraspAnswer(np.arange(10).reshape(5, 2) * 3.0)),
    answer_to_text(TrajectoryAnswer(np.arange(8).reshape(4, 2) * 11.0)),
    '{"waypoints": [[1, 2], [3, 4]]}',
    '{"answer": "yes"}',
    "Yes",
]
# ASCII answer characters plus the Unicode look-alikes issue 13 found (digits, spaces, BOM, long s)
ALPHABET = ("[](),:.;-+eE0123456789 \n\tYesNoGraspcenterLftingbaseRhtip{}\"'_x"
            "\u0661\u0662\uff11\uff12\u00a0\u2028\u3000\ufeff\u017f\u212a")


def _check(task: Task, text: str | bytes) -> None:
    for parse in (parse_answer_text, parse_answer_json):
        try:
            out = parse(task, text)
        except AnswerParseError:
            continue
        assert isinstance(out, ANSWER_TYPES[task])
        assert np.all(np.isfinite(out.points))


# ---- issue 13: each case found by the outside fuzzing run ends in AnswerParseError ------------------

ISSUE_13_JSON = {
    "1 deep nesting": ("grasp", "[" * 1000),
    "1 deep nesting in an object": ("trajectory", '{"waypoints": ' + "[" * 2000 + "]" * 2000 + "}"),
    "2 integer >= 1e309": ("trajectory", '{"waypoints": [[1' + "0" * 309 + ", 2], [3, 4]]}"),
    "2 integer of 4000 digits": ("trajectory", '{"waypoints": [[' + "9" * 4000 + ", 2], [3, 4]]}"),
    "2 float overflow": ("trajectory", '{"waypoints": [[1e309, 2], [3, 4]]}'),
    "3 bytes not UTF-8": ("spatial", b'{"answer": "\xff"}'),
    "3 UTF-16 bytes": ("spatial", '{"answer": "yes"}'.encode("utf-16")),
    "4 non-string key": ("spatial", {1: "yes", "answer": "yes"}),
    "4 tuple key": ("grasp", {(1, 2): [1, 2]}),
    "4 Python int beyond float": ("trajectory", {"waypoints": [[10 ** 400, 2], [3, 4]]}),
    "4 deeply nested decoded value": ("trajectory", {"waypoints": [[1, 2], [[[[[[[[1]]]]]]]]]}),
    "6 repeated key": ("spatial", '{"answer": "no", "answer": "yes"}'),
    "7 Arabic-Indic digits": ("trajectory", '{"waypoints": [[\u0661\u0662, 2], [3, 4]]}'),
    "7 NBSP between tokens": ("trajectory", '{"waypoints":\u00a0[[1, 2], [3, 4]]}'),
    "7 Yes with dots": ("spatial", '{"answer": "Yes..."}'),
    "7 capitalised yes": ("spatial", '{"answer": "Yes"}'),
    "7 JSON boolean": ("spatial", '{"answer": true}'),
}
ISSUE_13_TEXT = {
    "2 integer >= 1e309": ("trajectory", "[(1" + "0" * 309 + ", 2), (3, 4)]"),
    "7 Arabic-Indic digits": ("trajectory", "[(\u0661\u0662, 1), (3, 4)]"),
    "7 fullwidth digits": ("trajectory", "[(\uff11\uff12, 1), (3, 4)]"),
    "7 NBSP": ("trajectory", "[(1,\u00a02), (3, 4)]"),
    "7 U+2028": ("trajectory", "[(1, 2),\u2028(3, 4)]"),
    "7 ideographic space before yes": ("spatial", "\u3000Yes"),
    "7 Yes...": ("spatial", "Yes..."),
    "7 Yes!": ("depth", "Yes!"),
    "7 long s in yes": ("spatial", "Ye\u017f"),
    "7 Kelvin sign in a name": ("grasp", answer_to_text(GraspAnswer(np.ones((5, 2)))).replace("Left", "\u212aeft")),
    "7 NBSP in a field name": ("grasp", answer_to_text(GraspAnswer(np.ones((5, 2)))).replace("Grasp ", "Grasp\u00a0")),
}


@pytest.mark.parametrize("task,answer", ISSUE_13_JSON.values(), ids=ISSUE_13_JSON.keys())
def test_issue_13_json_cases_are_parse_errors(task, answer):
    with pytest.raises(AnswerParseError):
        parse_answer_json(task, answer)


@pytest.mark.parametrize("task,answer", ISSUE_13_TEXT.values(), ids=ISSUE_13_TEXT.keys())
def test_issue_13_text_cases_are_parse_errors(task, answer):
    with pytest.raises(AnswerParseError):
        parse_answer_text(task, answer)


def test_issue_13_case_5_negative_coordinates_per_task():
    # a cuboid corner and a finger tip may lie outside the image (within half an image); a waypoint,
    # a rearrangement point, a grasp centre or a finger base may not, and the schema says the same
    pose = [[-5, 300]] + [[10, 10]] * 7
    grasp = {k: [20, 20] for k in GRASP_KEYS}
    cases = [
        ("pose", {"corners": pose}, True),
        ("pose", {"corners": [[-321, 300]] + [[10, 10]] * 7}, False),
        ("trajectory", {"waypoints": [[-5, 300], [10, 10]]}, False),
        ("rearrangement", {"points": [[10, -1]]}, False),
        ("grasp", {**grasp, "right_finger_tip": [-5, 20]}, True),
        ("grasp", {**grasp, "left_finger_base": [-5, 20]}, False),
        ("grasp", {**grasp, "grasp_center": [20, -5]}, False),
    ]
    for task, obj, allowed in cases:
        schema_ok = jsonschema.Draft202012Validator(json_schema(task, 640, 480)).is_valid(obj)
        assert schema_ok is allowed, (task, obj)
        for parse, answer in ((parse_answer_json, json.dumps(obj)), (parse_answer_text, _render_text(task, obj))):
            if allowed:
                parse(task, answer, 640, 480, integer=True)
            else:
                with pytest.raises(AnswerParseError, match="coordinate rule"):
                    parse(task, answer, 640, 480, integer=True)


def test_issue_13_case_6_rearrangement_duplicates_collapse_in_both_forms():
    want = np.array([[412.0, 300.0], [10.0, 20.0]])
    a = parse_answer_text("rearrangement", "[(412, 300), (10, 20), (412, 300)]")
    b = parse_answer_json("rearrangement", {"points": [[412, 300], [10, 20], [412, 300]]})
    np.testing.assert_array_equal(a.points, want)
    assert a == b
    # the limit counts what was written: 33 copies of one point are too many, as in the schema
    with pytest.raises(AnswerParseError):
        parse_answer_text("rearrangement", "[" + ", ".join(["(1, 1)"] * 33) + "]")
    with pytest.raises(AnswerParseError):
        parse_answer_json("rearrangement", {"points": [[1, 1]] * 33})


@pytest.mark.parametrize("text,value", [("Yes", True), ("no", False), ("YES", True), ("No.", False),
                                        (" \tyes.\n", True), ("nO", False), ("Yes. ", True)])
def test_issue_13_case_7_accepted_yes_no_forms(text, value):
    assert parse_answer_text("spatial", text).value is value
    assert parse_answer_json("depth", {"answer": "yes" if value else "no"}).value is value


@pytest.mark.parametrize("text", ["Yes..", "yes,", "yes it is", "Yes.No", "y", "yess", "Ye s", ". yes",
                                  "Y\u00e9s", "yes\u00a0"])
def test_issue_13_case_7_rejected_yes_no_forms(text):
    with pytest.raises(AnswerParseError, match="Yes or No"):
        parse_answer_text("spatial", text)


def test_issue_13_case_7_ascii_whitespace_and_digits_still_work():
    assert parse_answer_text("trajectory", "\r\n[ (1,\t2) ,\n(3 , 4) ]\r\n").points.tolist() == [[1, 2], [3, 4]]
    assert parse_answer_json("trajectory", ' \r\n{"waypoints":\t[[1, 2], [3, 4]]}\n').points.tolist() == [[1, 2], [3, 4]]


# ---- agreement: text grammar == JSON parser == JSON schema (jsonschema) ------------------------------

EXTENTS = [(640, 480, True), (1000.0, 1000.0, True), (644.0, 476.0, True), (1.0, 1.0, False), (640, 480, False)]


def _num(v: float | int) -> str:
    return str(v) if isinstance(v, int) else repr(v)  # json.dumps writes floats with repr too


def _render_text(task: str, obj: dict) -> str:
    """The text form of a JSON answer object, any point count or values (answer_to_text needs a valid answer)."""
    if task == "grasp":
        return ", ".join(f"{n}: [{_num(obj[k][0])}, {_num(obj[k][1])}]" for n, k in zip(GRASP_FIELD_NAMES, GRASP_KEYS))
    return "[" + ", ".join(f"({_num(x)}, {_num(y)})" for x, y in obj[LIST_KEY[Task(task)]]) + "]"


def _edges(extent: float) -> list:
    lim = math.ceil(extent)
    return [0, -1, lim - 1, lim, math.ceil(-extent / 2), math.ceil(-extent / 2) - 1, math.ceil(1.5 * extent) - 1,
            math.ceil(1.5 * extent), -0.0, 10 ** 309, -10 ** 309, 1e308, 0.5, float(lim - 1), extent, 1.5 * extent,
            -extent / 2, extent + 1e-9]


def _inside(extent: float, integer: bool):
    if integer:
        return st.integers(0, math.ceil(extent) - 1)
    return st.floats(0, extent, allow_nan=False)


@st.composite
def candidate(draw):
    """A task, an extent and a JSON answer object: a valid one, or one with a few values or the point
    count moved to (or past) the edges of what the schema allows."""
    w, h, integer = draw(st.sampled_from(EXTENTS))
    task = draw(st.sampled_from(["pose", "grasp", "trajectory", "rearrangement"]))
    pt = st.tuples(_inside(w, integer), _inside(h, integer)).map(list)
    if task == "grasp":
        obj = {k: draw(pt) for k in GRASP_KEYS}
        points = list(obj.values())
    else:
        lo, hi = {"pose": (8, 8), "trajectory": (2, 64), "rearrangement": (0, 32)}[task]
        count = draw(st.integers(lo, max(lo, min(hi, 6))) | st.sampled_from([lo - 1, lo, hi, hi + 1]))
        pool = draw(st.lists(pt, min_size=1, max_size=3))  # few distinct points: duplicates happen
        points = [list(draw(st.sampled_from(pool))) if draw(st.booleans()) else draw(pt) for _ in range(max(count, 0))]
        obj = {LIST_KEY[Task(task)]: points}
    for _ in range(draw(st.integers(0, 2)) if points else 0):  # move coordinates to the edges
        p = draw(st.sampled_from(points))
        axis = draw(st.integers(0, 1))
        p[axis] = draw(st.sampled_from(_edges((w, h)[axis])) | st.floats(-(w, h)[axis], 2 * (w, h)[axis]))
    return task, w, h, integer, obj


def _outcome(parse, *args):
    try:
        return parse(*args)
    except AnswerParseError:
        return None


@settings(max_examples=600, deadline=None)
@given(candidate())
def test_text_json_and_schema_accept_the_same_answers(case):
    task, w, h, integer, obj = case
    js = json.dumps(obj)
    schema_ok = jsonschema.Draft202012Validator(json_schema(task, w, h, integer=integer)).is_valid(json.loads(js))
    from_json = _outcome(parse_answer_json, task, js, w, h, integer)
    from_text = _outcome(parse_answer_text, task, _render_text(task, obj), w, h, integer)
    assert (from_json is not None) is schema_ok, (js, from_json)
    assert (from_text is not None) is schema_ok, (_render_text(task, obj), from_text)
    assert from_json == from_text


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([Task.SPATIAL, Task.DEPTH]),
       st.one_of(st.sampled_from(["yes", "no", "Yes", "NO", "yes.", "Yes...", " yes", "no ", "", "y", "ye\u017f"]),
                 st.text(max_size=4), st.booleans(), st.none(), st.integers()))
def test_yes_no_json_parser_agrees_with_schema(task, value):
    obj = {"answer": value}
    schema_ok = jsonschema.Draft202012Validator(json_schema(task)).is_valid(obj)
    got = _outcome(parse_answer_json, task, json.dumps(obj))
    assert (got is not None) is schema_ok
    if schema_ok:  # the same answer through the text grammar
        assert parse_answer_text(task, answer_to_text(got)) == got


SCHEMA_KEYWORDS = {"type", "properties", "required", "additionalProperties", "prefixItems", "items", "minItems",
                   "maxItems", "minimum", "maximum", "enum"}


def _keywords(schema, found: set) -> set:
    if isinstance(schema, dict):
        for k, v in schema.items():
            found.add(k)
            if k == "properties":
                for sub in v.values():
                    _keywords(sub, found)
            elif isinstance(v, (dict, list)):
                _keywords(v, found)
    elif isinstance(schema, list):
        for v in schema:
            _keywords(v, found)
    return found


@pytest.mark.parametrize("task", list(Task))
@pytest.mark.parametrize("w,h,integer", EXTENTS + [(None, None, True)])
def test_schema_uses_only_keywords_structured_decoders_support(task, w, h, integer):
    schema = json_schema(task, w, h, integer=integer)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert _keywords(schema, set()) <= SCHEMA_KEYWORDS


# ---- random and mutated model output: only answers or AnswerParseError -------------------------------

@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Task)), st.text(alphabet=ALPHABET, max_size=200))
def test_random_text(task, text):
    _check(task, text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Task)), st.binary(max_size=64))
def test_random_bytes(task, data):
    _check(task, data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Task)), st.sampled_from(SEEDS), st.data())
def test_mutated_answers(task, seed, data):
    chars = list(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        i = data.draw(st.integers(0, max(0, len(chars) - 1)))
        c = data.draw(st.sampled_from(ALPHABET))
        if op == "insert":
            chars.insert(i, c)
        elif op == "repeat":
            chars[i:i] = [c] * data.draw(st.integers(2, 1200))
        elif op == "delete" and chars:
            del chars[i]
        elif chars:
            chars[i] = c
    _check(task, "".join(chars))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Task)), st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.integers(10 ** 300, 10 ** 400) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=12) | st.integers() | st.none(), children, max_size=4),
    max_leaves=12))
def test_random_json_objects(task, obj):
    try:
        out = parse_answer_json(task, obj)
    except AnswerParseError:
        return
    assert isinstance(out, ANSWER_TYPES[task])


def test_fuzz_seeds_parse():
    assert parse_answer_json("trajectory", answer_to_json(parse_answer_text("trajectory", SEEDS[2]))).points.shape == (4, 2)
