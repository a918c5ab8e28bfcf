"""Error levels: the per-task component scales of the answer-error model, the presets, and parsing.

Every component is a *scale* (a standard deviation or a probability) in units stated on its field. A
level's error on one task is one documented mix of components; calibration
(:mod:`bopask_vlm.clients.answer_error.calibrate`) multiplies that whole mix by one scalar ``s`` (stds
times ``s``, probabilities times ``s`` capped at 1) until the project's metric of the task reaches the
request. ``s = 0`` is the oracle.

A level is written as (:func:`parse_level`):

- a preset name: ``oracle`` (no error), ``nvila15b-sft`` or ``qwen25vl3b-sft`` (the rows of the BOP-ASK
  paper's BOP-Ask-core table, ``../shared/BOPASK.md``: the six metrics as targets with a component mix);
- a metric request: ``grasp_nce=1.4``, ``pose_iou=0.73``, ``grasp_nce=1.4,pose_iou=0.73`` (metric names in
  :data:`METRICS`; fractions, or percentages above 1 for the fraction metrics: ``pose_iou=73.5``). The
  tasks a request does not name get no error.

Targets need calibration on records (:func:`~bopask_vlm.clients.answer_error.calibrate.resolve_level`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

from bopask_vlm.answers.types import Task

__all__ = ["METRICS", "PRESETS", "ErrorLevel", "GraspError", "LevelError", "MetricSpec", "PoseError",
           "RearrangementError", "TrajectoryError", "YesNoError", "parse_level"]


class LevelError(ValueError):
    """An error level that cannot be parsed or resolved."""


def _scaled(comp: Any, s: float) -> Any:
    """``comp`` with every std multiplied by ``s`` and every probability (fields ``p_*``) by ``s``, capped at 1."""
    if s < 0:
        raise LevelError(f"a component multiplier must be >= 0, got {s}")
    vals = {}
    for f in fields(comp):
        v = getattr(comp, f.name)
        vals[f.name] = min(1.0, v * s) if f.name.startswith("p_") else v * s
    return replace(comp, **vals)


@dataclass(frozen=True)
class GraspError:
    """Grasp skeleton errors. ``w`` = the answer's own finger-base width (pixels, |left base - right base|).

    Applied in this order: a replacement of the whole answer (background, another object, another grasp
    of the same object; one at most, drawn with the probabilities below), then scale and rotation about
    the centre, the rigid shift, the per-point jitter, and the left/right mirror.
    """

    shift_w: float = 0.0  # std of the rigid shift of all 5 points, per image axis, in w
    rot_deg: float = 0.0  # std of the in-plane rotation about the grasp centre, degrees
    scale_log: float = 0.0  # std of log(scale factor) about the centre (0.1: about +-10 %)
    jitter_w: float = 0.0  # std of independent per-point jitter, per axis, in w
    p_mirror: float = 0.0  # probability of swapping left and right fingers
    p_other_grasp: float = 0.0  # probability of another grasp of the same object
    p_other_object: float = 0.0  # probability of the answer moved onto another object of the image
    p_background: float = 0.0  # probability of the answer moved onto the background

    def scaled(self, s: float) -> GraspError:
        return _scaled(self, s)


@dataclass(frozen=True)
class PoseError:
    """Cuboid corner errors. ``r`` = the RMS distance of the answer's 8 corners from their mean (pixels).

    Applied in order: corner-order error, scale and rotation about the corners' mean, shift, jitter.
    """

    shift_r: float = 0.0  # std of the shift of the whole corner set, per image axis, in r
    rot_deg: float = 0.0  # std of the in-plane rotation about the corners' mean, degrees
    scale_log: float = 0.0  # std of log(scale factor) about the corners' mean
    jitter_r: float = 0.0  # std of independent per-corner jitter, per axis, in r
    p_order: float = 0.0  # probability of a corner-order error (winding reversed, or top and bottom swapped)

    def scaled(self, s: float) -> PoseError:
        return _scaled(self, s)


@dataclass(frozen=True)
class TrajectoryError:
    """Path errors. ``L`` = the distance from the answer's first to its last point (pixels, at least 20)."""

    start_off: float = 0.0  # std of the first point's displacement off A, per axis, in L
    end_off: float = 0.0  # std of the last point's displacement off B, per axis, in L
    offset: float = 0.0  # std of a shift of the whole path, per axis, in L
    drift: float = 0.0  # std of a drift growing linearly along the path (0 at the start), per axis, in L
    jitter: float = 0.0  # std of independent jitter of the interior waypoints, per axis, in L
    p_fewer: float = 0.0  # probability of one interior waypoint dropped
    p_more: float = 0.0  # probability of one extra waypoint (a jittered midpoint of a segment)

    def scaled(self, s: float) -> TrajectoryError:
        return _scaled(self, s)


@dataclass(frozen=True)
class RearrangementError:
    """Objects-to-move errors."""

    p_miss: float = 0.0  # probability of each object to move being left out of the answer
    p_extra: float = 0.0  # probability of one extra point on another object (or elsewhere)
    jitter_px: float = 0.0  # std of each point's jitter, per axis, pixels

    def scaled(self, s: float) -> RearrangementError:
        return _scaled(self, s)


@dataclass(frozen=True)
class YesNoError:
    """Spatial / relative-depth errors."""

    p_flip: float = 0.0  # probability of the yes/no answer flipped

    def scaled(self, s: float) -> YesNoError:
        return _scaled(self, s)


@dataclass(frozen=True)
class MetricSpec:
    """A metric a level can ask for: the task, the per-sample key of
    :func:`bopask_vlm.eval.scoring.score_answer` whose mean over the task's records is the metric, and
    whether a larger error makes it larger (NCE) or smaller (IoU, success, accuracy, recall)."""

    task: Task
    key: str
    increases_with_error: bool
    fraction: bool  # a fraction in [0, 1] (given as a percentage when above 1)


#: metric name -> spec (the bench's headline columns, :data:`bopask_vlm.eval.report.HEADLINE`)
METRICS: dict[str, MetricSpec] = {
    "pose_iou": MetricSpec(Task.POSE, "iou3d", False, True),
    "traj_success": MetricSpec(Task.TRAJECTORY, "success", False, True),
    "grasp_nce": MetricSpec(Task.GRASP, "nce", True, False),
    "spatial_acc": MetricSpec(Task.SPATIAL, "correct", False, True),
    "depth_acc": MetricSpec(Task.DEPTH, "correct", False, True),
    "rearr_recall": MetricSpec(Task.REARRANGEMENT, "recall", False, True),
}
_ALIASES = {"nce": "grasp_nce", "iou": "pose_iou", "pose_iou3d": "pose_iou", "traj_sr": "traj_success",
            "trajectory_success": "traj_success", "spatial": "spatial_acc", "depth": "depth_acc",
            "rearrangement_recall": "rearr_recall", "recall": "rearr_recall"}
TASK_METRIC: dict[Task, str] = {spec.task: name for name, spec in METRICS.items()}

_TASK_FIELD = {Task.GRASP: "grasp", Task.POSE: "pose", Task.TRAJECTORY: "trajectory",
               Task.REARRANGEMENT: "rearrangement", Task.SPATIAL: "spatial", Task.DEPTH: "depth"}


@dataclass(frozen=True)
class ErrorLevel:
    """The error components of every task, and the metrics they are meant to reach.

    ``targets``: metric name (:data:`METRICS`) -> requested value; ``multipliers``: task value -> the
    scalar the base mix was multiplied by (set by calibration; 1.0 = the mix as written); ``calibrated``:
    whether calibration on records chose the multipliers.
    """

    name: str = "oracle"
    grasp: GraspError = field(default_factory=GraspError)
    pose: PoseError = field(default_factory=PoseError)
    trajectory: TrajectoryError = field(default_factory=TrajectoryError)
    rearrangement: RearrangementError = field(default_factory=RearrangementError)
    spatial: YesNoError = field(default_factory=YesNoError)
    depth: YesNoError = field(default_factory=YesNoError)
    targets: dict[str, float] = field(default_factory=dict)
    multipliers: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False

    def component(self, task: Task | str) -> Any:
        return getattr(self, _TASK_FIELD[Task(task)])

    def with_multiplier(self, task: Task | str, s: float, base: ErrorLevel | None = None) -> ErrorLevel:
        """This level with ``task``'s mix replaced by ``base``'s (default: this level's) times ``s``."""
        task = Task(task)
        src = (base or self).component(task)
        return replace(self, **{_TASK_FIELD[task]: src.scaled(s)},
                       multipliers={**self.multipliers, task.value: float(s)})

    @property
    def is_oracle(self) -> bool:
        return all(getattr(self.component(t), f.name) == 0 for t in Task
                   for f in fields(self.component(t)))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d


# The mixes at multiplier 1 are the ones calibration chose on the datagen test scene (tests/_datagen_helpers,
# synthetic seed 3, error seed 0), rounded: an uncalibrated preset is in the right range; calibrate anyway.
_NVILA = ErrorLevel(
    name="nvila15b-sft",
    grasp=GraspError(shift_w=0.6, rot_deg=18.0, scale_log=0.15, jitter_w=0.15, p_mirror=0.2,
                     p_other_grasp=0.28, p_other_object=0.11, p_background=0.04),
    pose=PoseError(shift_r=0.015, rot_deg=0.8, scale_log=0.01, jitter_r=0.008, p_order=0.006),
    trajectory=TrajectoryError(start_off=0.08, end_off=0.2, offset=0.05, drift=0.05, jitter=0.05,
                               p_fewer=0.2, p_more=0.2),
    rearrangement=RearrangementError(p_miss=0.3, p_extra=0.2, jitter_px=2.0),
    spatial=YesNoError(p_flip=0.05), depth=YesNoError(p_flip=0.06),
    targets={"pose_iou": 0.735, "traj_success": 0.642, "grasp_nce": 1.40, "spatial_acc": 0.958,
             "depth_acc": 0.946, "rearr_recall": 0.577},
)
# the smaller model: coherent errors larger relative to the replacements, more corner-order errors
_QWEN = replace(
    _NVILA, name="qwen25vl3b-sft",
    grasp=GraspError(shift_w=0.9, rot_deg=24.0, scale_log=0.2, jitter_w=0.2, p_mirror=0.3,
                     p_other_grasp=0.24, p_other_object=0.1, p_background=0.04),
    pose=PoseError(shift_r=0.04, rot_deg=2.0, scale_log=0.024, jitter_r=0.02, p_order=0.02),
    trajectory=TrajectoryError(start_off=0.1, end_off=0.35, offset=0.08, drift=0.08, jitter=0.08,
                               p_fewer=0.3, p_more=0.3),
    rearrangement=RearrangementError(p_miss=0.45, p_extra=0.3, jitter_px=3.0),
    spatial=YesNoError(p_flip=0.074), depth=YesNoError(p_flip=0.059),
    targets={"pose_iou": 0.482, "traj_success": 0.225, "grasp_nce": 1.5, "spatial_acc": 0.926,
             "depth_acc": 0.941, "rearr_recall": 0.434},
)
#: The mix a metric request scales (the nvila15b-sft mix, without its targets).
DEFAULT_MIX = replace(_NVILA, name="custom", targets={})

PRESETS: dict[str, ErrorLevel] = {"oracle": ErrorLevel(name="oracle"), _NVILA.name: _NVILA, _QWEN.name: _QWEN}


def _metric_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in METRICS:
        raise LevelError(f"unknown metric {name!r}: expected one of {sorted(METRICS)} (or a preset: "
                         f"{sorted(PRESETS)})")
    return key


def parse_level(text: str | ErrorLevel) -> ErrorLevel:
    """A preset name or a metric request (module doc) as an uncalibrated :class:`ErrorLevel`.

    A preset comes with its mix at multiplier 1 and its targets; a metric request with the default mix
    (:data:`DEFAULT_MIX`) on the named tasks, no error on the others, and the requested targets."""
    if isinstance(text, ErrorLevel):
        return text
    s = str(text).strip()
    if s.lower() in PRESETS:
        return PRESETS[s.lower()]
    if "=" not in s:
        raise LevelError(f"unknown error level {text!r}: a preset ({', '.join(sorted(PRESETS))}) or metric=value "
                         f"pairs such as grasp_nce=1.4,pose_iou=0.73")
    targets: dict[str, float] = {}
    for part in s.split(","):
        if not part.strip():
            continue
        name, _, val = part.partition("=")
        key = _metric_name(name)
        try:
            v = float(val)
        except ValueError as e:
            raise LevelError(f"{part.strip()!r}: the value is not a number") from e
        spec = METRICS[key]
        if spec.fraction and v > 1.0:
            v /= 100.0
        if not (v >= 0.0) or (spec.fraction and v > 1.0) or v != v:
            raise LevelError(f"{part.strip()!r}: out of range")
        if key in targets:
            raise LevelError(f"{key} given twice")
        targets[key] = v
    level = replace(ErrorLevel(name=s), targets=targets)
    for key in targets:
        level = level.with_multiplier(METRICS[key].task, 1.0, base=DEFAULT_MIX)
    return replace(level, multipliers={})
