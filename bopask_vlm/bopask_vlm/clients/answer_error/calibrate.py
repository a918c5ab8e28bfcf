"""Calibration: the multiplier of each task's component mix that makes the project's own metrics on the
given records reach a request.

The metric of a task is the mean over its records of the per-sample value
:func:`bopask_vlm.eval.scoring.score_answer` gives (what ``bopask bench`` reports: pose ``iou3d``,
trajectory ``success``, grasp ``nce``, spatial/depth ``correct``, rearrangement ``recall``), scoring the
error model's answer to each record exactly as the bench does (the oracle client's answer perturbed, written as
text, decoded and validated; the same random draws as :class:`~.client.AnswerErrorClient` with the same
seed, so a bench run with the calibrated level reproduces the calibrated metrics). Scene ground truth
(masks, 3D boxes) is read from ``dataset_root`` like the bench; without it a pose's 3D box comes from the
record's own ``gt`` (``T_cam_obj``, ``size``, ``box_min``) and masks are disks around the true points.

Search: the draws are fixed per record (common random numbers), so the metric is a monotone function of
the multiplier ``s`` (stds times ``s``, probabilities times ``s`` capped at 1), continuous for NCE and
IoU, a step function for the success and accuracy rates. ``s`` is bracketed by doubling from 1 and found
by bisection until the metric is within ``tol / 4`` (relative) of the request (or the step is found); the
closest value seen is kept and checked against ``tol``. A request the mix cannot reach (better than the oracle, or beyond the worst the mix gives at
``s = 64``) is reported, not silently accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bopask_vlm.answers import CoordConvention, Task
from bopask_vlm.clients.answer_error.context import ErrorContext, answer_rng
from bopask_vlm.clients.answer_error.levels import (
    DEFAULT_MIX,
    METRICS,
    PRESETS,
    ErrorLevel,
    LevelError,
    parse_level,
)
from bopask_vlm.clients.answer_error.model import ObjectIndex, perturb_answer, to_text_and_back

__all__ = ["CalibrationReport", "TaskCalibration", "calibrate", "calibrate_level", "evaluate_level",
           "records_hash", "resolve_level", "resolve_level_report"]

S_MAX = 64.0


@dataclass
class TaskCalibration:
    """One task's result: the requested and achieved metric, the oracle's value, the multiplier chosen."""

    metric: str
    target: float
    achieved: float
    oracle: float
    multiplier: float
    n: int
    within_tol: bool
    evaluations: int
    note: str = ""


@dataclass
class CalibrationReport:
    level: ErrorLevel
    tasks: dict[str, TaskCalibration] = field(default_factory=dict)
    seed: int = 0
    tol: float = 0.05
    records_hash: str = ""

    @property
    def ok(self) -> bool:
        return all(t.within_tol for t in self.tasks.values())

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level.name, "seed": self.seed, "tol": self.tol, "records_hash": self.records_hash,
                "ok": self.ok, "tasks": {k: vars(v) for k, v in self.tasks.items()},
                "components": self.level.to_json()}

    def table(self) -> str:
        """Markdown: metric, requested, achieved, oracle, multiplier, n, within tolerance."""
        lines = [f"answer-error level `{self.level.name}` (seed {self.seed}, tolerance {self.tol:.0%})", "",
                 "| metric | requested | achieved | oracle | multiplier | n | within tol |",
                 "|---|---|---|---|---|---|---|"]
        for t in self.tasks.values():
            lines.append(f"| {t.metric} | {t.target:.3f} | {t.achieved:.3f} | {t.oracle:.3f} | {t.multiplier:.3f} "
                         f"| {t.n} | {'yes' if t.within_tol else 'NO'}{' (' + t.note + ')' if t.note else ''} |")
        return "\n".join(lines) + "\n"


class _RecordBoxScene:
    """A stand-in for :class:`bopask_vlm.eval.scoring.SceneGT` when the scene directory is not at hand: the
    asked object's 3D box from the record's own ``gt`` (what datagen stores), no masks."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def box_cam(self, im_id: int, gt_index: int) -> Any:
        from bopask_vlm.eval.metrics import Box3D

        gt = self.record.gt or {}
        if "T_cam_obj" not in gt or "size" not in gt:
            return None
        T = np.asarray(gt["T_cam_obj"], dtype=np.float64)
        size = np.asarray(gt["size"], dtype=np.float64)
        mins = np.asarray(gt.get("box_min", -size / 2.0), dtype=np.float64)
        return Box3D(T[:3, :3] @ (mins + size / 2.0) + T[:3, 3], T[:3, :3], size)

    def mask(self, *a: Any, **k: Any) -> None:
        return None

    def object_at(self, *a: Any, **k: Any) -> None:
        return None


class _TaskSet:
    """A task's records with what scoring one error-model answer needs, prepared once."""

    def __init__(self, records: Sequence[Any], seed: int, dataset_root: str | Path | None,
                 objects: ObjectIndex) -> None:
        from bopask_vlm.clients.answer_error.client import request_key
        from bopask_vlm.clients.base import VLMError, VLMRequest
        from bopask_vlm.clients.oracle import OracleClient

        oracle = OracleClient()
        from bopask_vlm.eval.scoring import scene_for_record

        self.items = []
        for r in records:
            shape = (int(r.height), int(r.width), 3)
            req = VLMRequest(task=r.task, image=np.broadcast_to(np.zeros((1, 1, 3), np.uint8), shape),
                             objects=[o.description for o in r.objects], question=r.question, record=r)
            q, objs, shp = request_key(req)
            try:  # the oracle's answer (the record's, as integer-pixel text, decoded and validated)
                gt = oracle.ask(req).answer
            except VLMError:
                gt = None
            scene = scene_for_record(r, dataset_root) if dataset_root is not None else None
            if scene is None and r.task is Task.POSE:
                scene = _RecordBoxScene(r)
            self.items.append((r, gt, (seed, r.task, q, objs, shp), ErrorContext(r.width, r.height, r,
                                                                                  objects.others(r)), scene))

    def metric(self, level: ErrorLevel, key: str, attempt: int = 0) -> float:
        from bopask_vlm.clients.base import VLMAnswerError
        from bopask_vlm.eval.scoring import score_answer

        vals = []
        for r, gt, k, ctx, scene in self.items:
            pred = None
            if gt is not None:
                rng = answer_rng(*k, attempt)
                try:
                    pred, _ = to_text_and_back(perturb_answer(gt, level, rng, ctx)[0], CoordConvention.PIXELS,
                                               r.width, r.height)
                except VLMAnswerError:
                    pred = None
            m = score_answer(r, pred, scene)
            if key in m:
                vals.append(float(m[key]))
        return float(np.mean(vals)) if vals else float("nan")


def records_hash(records: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r.id}\x00{r.task.value}\x00{r.image}\x00{r.answer_text}\x01".encode())
    return h.hexdigest()[:16]


def _solve(f: Callable[[float], float], target: float, increasing: bool, tol: float
           ) -> tuple[float, float, int, str]:
    """(multiplier, achieved, evaluations, note) with ``f`` monotone in the multiplier. The search aims at
    ``tol / 4`` and keeps the closest value it saw (``tol`` is what the report checks)."""
    seen: list[tuple[float, float]] = []
    aim = tol / 4.0

    def ev(s: float) -> float:
        m = f(s)
        seen.append((s, m))
        return m

    def within(m: float, t: float) -> bool:
        return abs(m - target) <= t * abs(target) + 1e-12

    def beyond(m: float) -> bool:
        return m >= target if increasing else m <= target

    def best() -> tuple[float, float]:
        return min(seen, key=lambda sm: (abs(sm[1] - target), sm[0]))

    m0 = ev(0.0)
    if within(m0, aim):
        return 0.0, m0, len(seen), ""
    if beyond(m0):
        return 0.0, m0, len(seen), "" if within(m0, tol) else "the oracle itself is worse than the request"
    lo, hi = 0.0, 1.0
    m = ev(hi)
    while not beyond(m) and hi < S_MAX:
        lo, hi = hi, hi * 2
        m = ev(hi)
    if not beyond(m):
        s, mb = best()
        return s, mb, len(seen), f"the mix cannot reach the request (at multiplier {S_MAX:g}: {m:.3f})"
    for _ in range(40):
        if within(m, aim):
            break
        mid = (lo + hi) / 2.0
        m = ev(mid)
        if beyond(m):
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-4 * max(hi, 1e-9):
            break
    s, mb = best()
    note = "" if within(mb, tol) else "the metric steps over the request on these records (closest kept)"
    return s, mb, len(seen), note


def evaluate_level(records: Sequence[Any], level: ErrorLevel, seed: int = 0, *,
                   dataset_root: str | Path | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` whose task has records, for ``level``'s answers to ``records``."""
    objects = ObjectIndex(records)
    out = {}
    for name, spec in METRICS.items():
        recs = [r for r in records if r.task is spec.task]
        if recs:
            out[name] = _TaskSet(recs, seed, dataset_root, objects).metric(level, spec.key)
    return out


def calibrate_level(level: ErrorLevel | str, records: Sequence[Any], seed: int = 0, tol: float = 0.05, *,
                    dataset_root: str | Path | None = None) -> CalibrationReport:
    """``level``'s targets reached on ``records`` by scaling each targeted task's mix (module doc)."""
    level = parse_level(level)
    base = level
    report = CalibrationReport(level, seed=seed, tol=tol, records_hash=records_hash(records))
    objects = ObjectIndex(records)
    for name, target in level.targets.items():
        spec = METRICS[name]
        recs = [r for r in records if r.task is spec.task]
        if not recs:
            report.tasks[name] = TaskCalibration(name, target, float("nan"), float("nan"), 1.0, 0, False, 0,
                                                 "no records of this task: the mix is used as written")
            continue
        ts = _TaskSet(recs, seed, dataset_root, objects)

        def f(s: float, task: Task = spec.task, key: str = spec.key, ts: _TaskSet = ts) -> float:
            return ts.metric(base.with_multiplier(task, s), key)

        oracle = f(0.0)
        s, achieved, n_ev, note = _solve(f, target, spec.increases_with_error, tol)
        level = level.with_multiplier(spec.task, s, base=base)
        within = abs(achieved - target) <= tol * abs(target) + 1e-12
        report.tasks[name] = TaskCalibration(name, target, achieved, oracle, s, len(recs), within, n_ev + 1, note)
    report.level = replace(level, calibrated=True)
    return report


def calibrate(records: Sequence[Any], targets: dict[str, float], seed: int = 0, tol: float = 0.05, *,
              mix: ErrorLevel | str | None = None, dataset_root: str | Path | None = None) -> CalibrationReport:
    """Scale ``mix``'s components (default: :data:`~.levels.DEFAULT_MIX`) task by task until each metric of
    ``targets`` (name in :data:`METRICS` -> value) on ``records`` is within ``tol`` of its request."""
    unknown = sorted(set(targets) - set(METRICS))
    if unknown:
        raise LevelError(f"unknown metrics {unknown}: expected {sorted(METRICS)}")
    base = parse_level(mix) if mix is not None else DEFAULT_MIX
    level = replace(base, name=base.name if mix is not None else ",".join(f"{k}={v:g}" for k, v in targets.items()),
                    targets=dict(targets))
    if mix is None:  # tasks not asked about get no error
        for t in Task:
            if t not in {METRICS[k].task for k in targets}:
                level = level.with_multiplier(t, 0.0)
    return calibrate_level(level, records, seed, tol, dataset_root=dataset_root)


_CACHE: dict[tuple, CalibrationReport] = {}


def _load_cached(path: Path, base: ErrorLevel) -> CalibrationReport | None:
    try:
        d = json.loads(path.read_text())
        level = base
        for task, s in d["multipliers"].items():
            level = level.with_multiplier(task, float(s), base=base)
        return CalibrationReport(replace(level, calibrated=True),
                                 {k: TaskCalibration(**v) for k, v in d["tasks"].items()},
                                 int(d["seed"]), float(d["tol"]), str(d["records_hash"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another version: calibrate again


def resolve_level_report(text: ErrorLevel | str, records: Sequence[Any] | None, seed: int = 0, *,
                         dataset_root: str | Path | None = None, tol: float = 0.05,
                         cache_dir: str | Path | None = None) -> CalibrationReport | None:
    """The calibration of a level's text on ``records``; None when the level asks for nothing (``oracle``).
    A metric request without records is an error; a preset without records runs at its uncalibrated mix
    (None). Cached in memory per (records hash, level, seed, tolerance, root), and in ``cache_dir`` (one
    JSON file per key) when given."""
    level = parse_level(text)
    if not level.targets:
        return None
    if not records:
        if level.name in PRESETS:
            return None
        raise LevelError(f"the level {level.name!r} asks for metrics: it needs records to calibrate on")
    key = (records_hash(records), repr(level), int(seed), float(tol), str(dataset_root))
    if key in _CACHE:
        return _CACHE[key]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"calibration_{hashlib.sha256(repr(key).encode()).hexdigest()[:20]}.json"
        cached = _load_cached(path, level) if path.is_file() else None
        if cached is not None:
            _CACHE[key] = cached
            return cached
    report = calibrate_level(level, records, seed, tol, dataset_root=dataset_root)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        d = {**report.to_json(), "multipliers": report.level.multipliers}
        path.write_text(json.dumps(d, indent=1, default=str))
    _CACHE[key] = report
    return report


def resolve_level(text: ErrorLevel | str, records: Sequence[Any] | None, seed: int = 0, *,
                  dataset_root: str | Path | None = None, tol: float = 0.05,
                  cache_dir: str | Path | None = None) -> ErrorLevel:
    """A level's text (preset or metric request) as an :class:`ErrorLevel` calibrated on ``records``
    (:func:`resolve_level_report`)."""
    report = resolve_level_report(text, records, seed, dataset_root=dataset_root, tol=tol, cache_dir=cache_dir)
    return parse_level(text) if report is None else report.level
