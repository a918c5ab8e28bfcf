"""Answer overlays: every answer type draws where its points are, labels yes/no, rejects bad images."""

from __future__ import annotations

import numpy as np
import pytest

from bopask_vlm.answers.types import (
    GraspAnswer,
    PoseAnswer,
    RearrangementAnswer,
    Task,
    TrajectoryAnswer,
    YesNoAnswer,
)
from bopask_vlm.viz import VizError, draw_answer

IMG = np.zeros((120, 160, 3), np.uint8)


@pytest.mark.parametrize("answer", [
    PoseAnswer([[20, 80], [60, 80], [70, 100], [30, 100], [20, 40], [60, 40], [70, 60], [30, 60]]),
    GraspAnswer([[50, 50], [40, 50], [60, 50], [40, 70], [60, 70]]),
    TrajectoryAnswer([[10, 10], [80, 30], [140, 100]]),
    RearrangementAnswer([[30, 30], [100, 90]]),
])
def test_points_are_drawn_in_colour(answer):
    out = draw_answer(IMG, answer, color=(0, 255, 0))
    assert out.shape == IMG.shape and IMG.max() == 0  # input untouched
    for u, v in answer.points.astype(int):
        patch = out[max(v - 2, 0):v + 3, max(u - 2, 0):u + 3]
        assert patch[..., 1].max() > 100 and patch[..., 0].max() == 0


def test_yes_no_and_empty_answers_are_labelled():
    a = draw_answer(IMG, YesNoAnswer(True, Task.DEPTH), label="q")
    b = draw_answer(IMG, YesNoAnswer(False, Task.DEPTH), label="q")
    assert a.any() and not np.array_equal(a, b)
    assert draw_answer(IMG, RearrangementAnswer(np.zeros((0, 2)))).any()


def test_bad_input():
    with pytest.raises(VizError):
        draw_answer(IMG[..., 0], YesNoAnswer(True))
    with pytest.raises(VizError):
        draw_answer(IMG, "not an answer")
