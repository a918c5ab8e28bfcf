"""Trivial baselines a learned model must beat, fitted on training records and scored on held-out ones.

- **majority**: the training set's most frequent answer of the task (yes/no tasks);
- **text prior**: the answer predicted from the question's words alone (multinomial naive Bayes over word
  unigrams, Laplace smoothing; hand-written because it is twenty lines and the venv has no scikit-learn), so
  a model that reads the words but not the image scores this;
- **mean answer** (coordinate tasks): the mean of the training answers' points (mean corners for pose, mean
  skeleton for grasp), one constant prediction for every record.

:func:`balanced_left_right` picks the left/right spatial questions whose words say nothing about the answer
(no "leftmost"/"rightmost" instance qualifiers) with as many Yes as No per relation, so the words alone score
0.5 there. :func:`learned_vs_baselines` scores a ``bopask bench`` run's samples (``eval.runner.BenchResult``)
beside the baselines on the same records.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from bopask_vlm.answers.types import Task

_WORD = re.compile(r"[a-z]+")
#: words that name one of several instances by its image position (they leak left/right answers)
_POSITION_QUALIFIERS = {"leftmost", "rightmost", "middle", "left", "right"}


def _words(question: str) -> list[str]:
    return _WORD.findall(question.lower())


def _yes(record: Any) -> bool:
    from bopask_vlm.answers import answer_from_record

    return bool(answer_from_record(record).value)


class TextPrior:
    """Multinomial naive Bayes over the question's words: P(yes | words) from training questions only."""

    def __init__(self, records: Sequence[Any]) -> None:
        self.counts: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
        self.n = Counter(_yes(r) for r in records)
        for r in records:
            self.counts[_yes(r)].update(_words(r.question))
        self.vocab = set(self.counts[True]) | set(self.counts[False])

    def predict(self, question: str) -> bool:
        score = {}
        for label in (True, False):
            total = sum(self.counts[label].values()) + len(self.vocab)
            score[label] = math.log(self.n[label] + 1) + sum(
                math.log((self.counts[label][w] + 1) / total) for w in _words(question) if w in self.vocab)
        return score[True] >= score[False]


def relation_of(record: Any) -> str | None:
    return (record.gt or {}).get("relation")


def balanced_left_right(records: Sequence[Any], seed: int = 0) -> list[Any]:
    """Left/right spatial records without instance qualifiers, subsampled to equal Yes and No per relation."""
    by: dict[tuple[str, bool], list[Any]] = defaultdict(list)
    for r in records:
        rel = relation_of(r)
        if r.task != Task.SPATIAL or rel not in ("left of", "right of"):
            continue
        names = " ".join(o.description for o in r.objects).lower()
        if set(_words(names)) & _POSITION_QUALIFIERS:
            continue
        by[(rel, _yes(r))].append(r)
    rng = random.Random(seed)
    out: list[Any] = []
    for rel in ("left of", "right of"):
        k = min(len(by[(rel, True)]), len(by[(rel, False)]))
        for v in (True, False):
            out += rng.sample(by[(rel, v)], k)
    return out


def _mean_points(records: Sequence[Any]) -> np.ndarray | None:
    from bopask_vlm.answers import answer_from_record

    pts = [np.asarray(answer_from_record(r).points, float) for r in records]
    shapes = Counter(p.shape for p in pts)
    if not shapes:
        return None
    shape = shapes.most_common(1)[0][0]
    return np.mean([p for p in pts if p.shape == shape], axis=0)


def corner_error(pred: np.ndarray | None, gt: np.ndarray, cap: float | None = None) -> float:
    """Mean distance (px) between predicted and true corners; a missing or misshapen answer counts as
    ``cap`` (default: the image diagonal is not known here, so the caller passes one) or NaN."""
    if pred is None or np.shape(pred) != np.shape(gt):
        return float(cap) if cap is not None else math.nan
    return float(np.linalg.norm(np.asarray(pred, float) - gt, axis=1).mean())


def learned_vs_baselines(train: Sequence[Any], samples: Sequence[dict[str, Any]], records: Sequence[Any],
                         seed: int = 0) -> dict[str, Any]:
    """Figures of a bench run (``samples`` in the order of ``records``, the held-out records) and the
    baselines fitted on ``train``, on the same records. Keys: depth, left_right, pose, grasp, each with the
    model's figure, the baselines' and the record count."""
    from bopask_vlm.answers import answer_from_record
    from bopask_vlm.eval import metrics as M

    out: dict[str, Any] = {}
    by_id = {s["id"]: s for s in samples}
    yesno_train = {t: [r for r in train if r.task == t] for t in (Task.DEPTH, Task.SPATIAL)}

    def yes_no(task: Task, recs: Sequence[Any], name: str) -> None:
        if not recs:
            return
        prior = TextPrior(yesno_train[task])
        majority = Counter(_yes(r) for r in yesno_train[task]).most_common(1)[0][0] if yesno_train[task] else True
        truth = [_yes(r) for r in recs]
        out[name] = {
            "n": len(recs),
            "accuracy": float(np.mean([by_id[r.id]["metrics"].get("correct", 0.0) for r in recs])),
            "majority": float(np.mean([t == majority for t in truth])),
            "text_prior": float(np.mean([prior.predict(r.question) == t for r, t in zip(recs, truth)])),
        }

    held = [r for r in records if r.id in by_id]
    yes_no(Task.DEPTH, [r for r in held if r.task == Task.DEPTH], "depth")
    yes_no(Task.SPATIAL, balanced_left_right(held, seed), "left_right")
    for task, name, key in ((Task.POSE, "pose", "corner_error_px"), (Task.GRASP, "grasp", "nce")):
        recs = [r for r in held if r.task == task]
        mean = _mean_points([r for r in train if r.task == task])
        if not recs or mean is None:
            continue
        diag = float(math.hypot(recs[0].width, recs[0].height))
        model_v, base_v = [], []
        for r in recs:
            gt = np.asarray(answer_from_record(r).points, float)
            pred = by_id[r.id].get("pred")
            p = np.asarray(pred[next(iter(pred))], float) if isinstance(pred, dict) and pred else None
            if task == Task.POSE:
                model_v.append(corner_error(p, gt, cap=diag))
                base_v.append(corner_error(mean, gt, cap=diag))
            else:
                model_v.append(float(by_id[r.id]["metrics"].get("nce", M.NCE_CAP)))
                base_v.append(M.grasp_nce(mean, gt))
        out[name] = {"n": len(recs), key: float(np.mean(model_v)), f"mean_answer_{key}": float(np.mean(base_v)),
                     "parsed": float(np.mean([by_id[r.id]["metrics"].get("valid", 0.0) for r in recs]))}
    return out
