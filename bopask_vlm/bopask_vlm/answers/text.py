r"""Text forms of the answers, as BOP-ASK-style models emit them, and a strict parser.

Grammar (``ws`` between tokens; numbers are decimal ints or floats, no NaN/inf)::

    points      := "[" [ point ( "," point )* [","] ] "]" ["."]   # pose, trajectory, rearrangement
    point       := "(" number "," number ")"
    grasp       := field ( sep field ){4} ["."]                   # the 5 names in order
    field       := NAME ":" "[" number "," number "]"             # NAME: ASCII, case-insensitive
    sep         := "," | ";" | a new line
    yes_no      := ws* ("yes" | "no") ["."] ws*                   # ASCII, case-insensitive
    number      := ["+" | "-"] (digits ["." [digits]] | "." digits) [("e" | "E") ["+" | "-"] digits]
    digits      := ("0".."9")+
    ws          := " " | "\t" | "\n" | "\r"

Decisions about what an answer is (issue 13, point 7), the same in the JSON form
(:mod:`bopask_vlm.answers.schema`):

- **Digits are ASCII** ``0-9`` only: Arabic-Indic ``١٢`` or fullwidth ``１２`` digits are not numbers
  (Python's ``\d`` and ``float`` would take them; JSON does not).
- **Whitespace is JSON's four characters** (space, tab, LF, CR). NBSP, U+2028 and other Unicode spaces
  are unexpected characters, as they are in JSON; a grasp field separator "new line" is an LF.
- **Yes/no** is exactly ``yes`` or ``no`` (ASCII letters, any case), optionally followed by one ``.``,
  with optional surrounding whitespace: ``Yes``, ``no.``, `` YES `` are answers; ``Yes...``, ``Yes!``,
  ``Yes, it is.``, ``Yeſ`` are not. In JSON the value is exactly ``"yes"`` or ``"no"`` (the schema's enum).
- **Numbers are finite**: ``1e999`` or 310 written-out digits overflow to infinity and are rejected.
- **Coordinates** follow :mod:`bopask_vlm.answers.bounds` when the caller gives the extent (and the
  integer rule when it asks for integers), exactly as the JSON schema does.
- **Rearrangement duplicates**: points that are exactly equal name the same object once; the answer
  keeps the first of each (a schema cannot forbid duplicates with keywords a structured-output decoder
  supports, so rejecting them would refuse answers the constrained decoder was allowed to give). The
  point limit counts the points as written.

The parser is a small hand-written scanner: the grammar is regular and tiny, and a hand scanner
gives the exact position and expectation of a failure, which is what a caller logs. It never
evaluates text and never recurses.
"""

from __future__ import annotations

import math
import re

import numpy as np

from bopask_vlm.answers.bounds import out_of_range
from bopask_vlm.answers.types import (
    ANSWER_TYPES,
    Answer,
    AnswerValueError,
    GraspAnswer,
    PointsAnswer,
    RearrangementAnswer,
    Task,
    YesNoAnswer,
)

#: Longest answer text accepted; a longer one is a runaway generation, not an answer.
MAX_TEXT_LENGTH = 4096
#: Most points accepted for open-length answers.
MAX_POINTS = {Task.TRAJECTORY: 64, Task.REARRANGEMENT: 32}

GRASP_FIELD_NAMES: tuple[str, ...] = (
    "Grasp center",
    "Left finger base",
    "Right finger base",
    "Left finger tip",
    "Right finger tip",
)


class AnswerParseError(ValueError):
    """Text or JSON that is not a valid answer of the expected task.

    ``position`` is the character offset where parsing broke (-1 when not positional) and
    ``expected`` what the grammar wanted there.
    """

    def __init__(self, message: str, position: int = -1, expected: str = "", text: str = "") -> None:
        self.position = position
        self.expected = expected
        self.text = text
        where = f" at position {position}" if position >= 0 else ""
        near = ""
        if text and position >= 0:
            near = f" near {text[max(0, position - 10):position + 10]!r}"
        exp = f" (expected {expected})" if expected else ""
        super().__init__(f"{message}{where}{near}{exp}")


_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
_YES_NO = re.compile(r"[ \t\n\r]*(yes|no)\.?[ \t\n\r]*", re.ASCII | re.IGNORECASE)
#: The whitespace of both answer forms (JSON's).
WHITESPACE = " \t\n\r"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, expected: str = "") -> AnswerParseError:
        return AnswerParseError(message, self.pos, expected, self.text)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in WHITESPACE:
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, token: str) -> None:
        self.skip_ws()
        if not self.text.startswith(token, self.pos):
            got = self.text[self.pos:self.pos + 1] or "end of text"
            raise self.error(f"unexpected {got!r}", repr(token))
        self.pos += len(token)

    def accept(self, token: str) -> bool:
        self.skip_ws()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def number(self) -> float:
        self.skip_ws()
        m = _NUMBER.match(self.text, self.pos)
        if not m:
            got = self.text[self.pos:self.pos + 1] or "end of text"
            raise self.error(f"unexpected {got!r}", "a number")
        value = float(m.group(0))
        if not math.isfinite(value):
            raise self.error("number out of range", "a finite number")
        self.pos = m.end()
        return value

    def end(self) -> None:
        self.accept(".")
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.error(f"unexpected trailing text {self.text[self.pos:self.pos + 20]!r}", "end of answer")


def _fmt(v: float, decimals: int) -> str:
    if decimals <= 0:
        return str(int(round(v)))  # half to even, as np.round
    s = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def answer_to_text(answer: Answer, decimals: int = 0) -> str:
    """The BOP-ASK text form of ``answer``; coordinates rounded to ``decimals`` (0: integers)."""
    if isinstance(answer, YesNoAnswer):
        return "Yes" if answer.value else "No"
    if isinstance(answer, GraspAnswer):
        return ", ".join(f"{name}: [{_fmt(x, decimals)}, {_fmt(y, decimals)}]"
                         for name, (x, y) in zip(GRASP_FIELD_NAMES, answer.points.tolist()))
    if isinstance(answer, PointsAnswer):
        return "[" + ", ".join(f"({_fmt(x, decimals)}, {_fmt(y, decimals)})" for x, y in answer.points.tolist()) + "]"
    raise TypeError(f"not an answer: {type(answer).__name__}")


def _check_length(text: object) -> str:
    if not isinstance(text, str):
        raise AnswerParseError(f"answer must be text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise AnswerParseError(f"answer is {len(text)} characters long (limit {MAX_TEXT_LENGTH})")
    if not text.strip(WHITESPACE):
        raise AnswerParseError("empty answer", 0, "an answer")
    return text


def _parse_points(s: _Scanner, task: Task) -> list[tuple[float, float]]:
    s.expect("[")
    pts: list[tuple[float, float]] = []
    limit = MAX_POINTS.get(task, 8)
    if s.accept("]"):
        return pts
    while True:
        s.expect("(")
        x = s.number()
        s.expect(",")
        y = s.number()
        s.expect(")")
        pts.append((x, y))
        if len(pts) > limit:
            raise s.error(f"more than {limit} points", "']'")
        if s.accept(","):
            if s.accept("]"):
                return pts
            continue
        s.expect("]")
        return pts


def _parse_grasp(s: _Scanner) -> list[tuple[float, float]]:
    pts = []
    for i, name in enumerate(GRASP_FIELD_NAMES):
        if i:
            start = s.pos
            s.skip_ws()
            had_newline = "\n" in s.text[start:s.pos]
            if not (s.accept(",") or s.accept(";") or had_newline):
                raise s.error("missing separator between grasp fields", "',', ';' or a new line")
        s.skip_ws()
        word = s.text[s.pos:s.pos + len(name)]
        if not (word.isascii() and word.lower() == name.lower()):
            raise s.error("unexpected field", repr(name))
        s.pos += len(name)
        s.expect(":")
        s.expect("[")
        x = s.number()
        s.expect(",")
        y = s.number()
        s.expect("]")
        pts.append((x, y))
    return pts


def finish_answer(task: Task, pts: list[tuple[float, float]], width: float | None, height: float | None,
                  integer: bool, text: str = "") -> Answer:
    """The typed answer of parsed points, after the checks both forms share (count, finiteness,
    :mod:`~bopask_vlm.answers.bounds`, rearrangement duplicates); raises :class:`AnswerParseError`."""
    pos = len(text) if text else -1
    try:
        answer = ANSWER_TYPES[task](np.asarray(pts, dtype=np.float64).reshape(-1, 2))
    except AnswerValueError as e:
        raise AnswerParseError(str(e), pos, "", text) from e
    bad = out_of_range(task, answer.points, width, height, integer)
    if bad:
        rule = "whole numbers" if integer else "finite numbers"
        if width is not None and height is not None:
            rule += f" within the {task.value} bounds of a {width:g}x{height:g} extent"
        raise AnswerParseError(f"points {bad[:8]} break the coordinate rule ({rule})", pos,
                               "coordinates within bounds", text)
    if isinstance(answer, RearrangementAnswer) and len(answer.points):
        _, first = np.unique(answer.points, axis=0, return_index=True)
        if len(first) < len(answer.points):
            answer = RearrangementAnswer(answer.points[np.sort(first)])
    return answer


def parse_answer_text(task: Task | str, text: str, width: float | None = None, height: float | None = None,
                      integer: bool = False) -> Answer:
    """Parse a model's text answer for ``task`` into a typed answer, or raise
    :class:`AnswerParseError` saying where and what was expected.

    ``width``/``height``: the coordinate extent the answer's points must respect
    (:mod:`~bopask_vlm.answers.bounds`, as :func:`~bopask_vlm.answers.json_schema` with the same
    arguments); ``integer``: coordinates must be whole numbers.
    """
    task = Task(task)
    text = _check_length(text)
    s = _Scanner(text)
    if task.is_yes_no:
        m = _YES_NO.fullmatch(text)
        if m:
            return YesNoAnswer(m.group(1).lower() == "yes", task)
        raise AnswerParseError(f"expected Yes or No, got {text.strip(WHITESPACE)[:40]!r}", 0, "'Yes' or 'No'",
                               text)
    pts = _parse_grasp(s) if task is Task.GRASP else _parse_points(s, task)
    s.end()
    return finish_answer(task, pts, width, height, integer, text)
