"""The answer-error model: a client that turns any client's answers (the oracle's, normally) into those of
a model at a chosen quality, with structured error components per task, calibrated on records to the
project's own metrics. See ``docs/answer_error.md``.

- :mod:`.levels`: :class:`ErrorLevel` (per-task component scales, units on each field), the presets
  (``oracle``, ``nvila15b-sft``, ``qwen25vl3b-sft``), :func:`parse_level`;
- :mod:`.grasp`, :mod:`.pose`, :mod:`.trajectory`, :mod:`.discrete`: the components;
- :mod:`.client`: :class:`AnswerErrorClient`;
- :mod:`.calibrate`: :func:`calibrate`, :func:`resolve_level`.
"""

from bopask_vlm.clients.answer_error.calibrate import (
    CalibrationReport,
    TaskCalibration,
    calibrate,
    calibrate_level,
    evaluate_level,
    resolve_level,
    resolve_level_report,
)
from bopask_vlm.clients.answer_error.client import AnswerErrorClient
from bopask_vlm.clients.answer_error.context import ErrorContext, answer_seed
from bopask_vlm.clients.answer_error.levels import (
    DEFAULT_MIX,
    METRICS,
    PRESETS,
    ErrorLevel,
    GraspError,
    LevelError,
    PoseError,
    RearrangementError,
    TrajectoryError,
    YesNoError,
    parse_level,
)

__all__ = [
    "DEFAULT_MIX",
    "METRICS",
    "PRESETS",
    "AnswerErrorClient",
    "CalibrationReport",
    "ErrorContext",
    "ErrorLevel",
    "GraspError",
    "LevelError",
    "PoseError",
    "RearrangementError",
    "TaskCalibration",
    "TrajectoryError",
    "YesNoError",
    "answer_seed",
    "calibrate",
    "calibrate_level",
    "evaluate_level",
    "parse_level",
    "resolve_level",
    "resolve_level_report",
]
