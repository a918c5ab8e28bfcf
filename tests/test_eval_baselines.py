"""Trivial baselines (bopask_vlm.eval.baselines) on records the product's datagen wrote: the text prior reads
the words that leak an answer and scores 0.5 on the balanced left/right set; the mean answers are the means;
a bench run's samples are scored beside them. The loss plot of training is drawn (train.loss_plot)."""

from __future__ import annotations

import numpy as np
import pytest

from bopask_vlm.answers import answer_from_record, answer_to_json
from bopask_vlm.answers.types import Task, YesNoAnswer
from bopask_vlm.eval.baselines import TextPrior, _yes, balanced_left_right, learned_vs_baselines
from bopask_vlm.records import ObjectRef, QARecord


def _rec(i: int, question: str, yes: bool, relation: str = "left of", names=("red box", "blue can")) -> QARecord:
    ans = YesNoAnswer(yes, Task.SPATIAL)
    return QARecord(id=f"r{i}", task=Task.SPATIAL, image="x.png", question=question, answer=answer_to_json(ans),
                    answer_text="Yes" if yes else "No", width=224, height=168, camera_K=[1, 0, 0, 0, 1, 0, 0, 0, 1],
                    dataset="t", im_id=0, objects=[ObjectRef(obj_id=k + 1, gt_index=k, name=n, description=n)
                                                   for k, n in enumerate(names)], gt={"relation": relation})


def test_text_prior_learns_leaking_words_only():
    train = [_rec(i, f"Is the leftmost mug to the left of the box {i}?", True) for i in range(20)]
    train += [_rec(100 + i, f"Is the rightmost mug to the left of the box {i}?", False) for i in range(20)]
    prior = TextPrior(train)
    assert prior.predict("Is the leftmost mug to the left of the cube?") is True
    assert prior.predict("Is the rightmost mug to the left of the cube?") is False


def test_balanced_left_right_drops_qualified_names_and_balances():
    recs = [_rec(i, "q", i % 3 == 0, "left of" if i % 2 else "right of") for i in range(60)]
    recs += [_rec(99, "q", True, names=("leftmost cyan mug", "red box"))]
    recs += [_rec(98, "q", True, "behind")]
    bal = balanced_left_right(recs)
    assert bal and all(r.id not in ("r99", "r98") for r in bal)
    for rel in ("left of", "right of"):
        vals = [_yes(r) for r in bal if r.gt["relation"] == rel]
        assert vals.count(True) == vals.count(False) > 0


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from _train_helpers import generated_dataset

    from bopask_vlm.eval.runner import load_records

    tr = generated_dataset(tmp_path_factory.mktemp("bl_train"), seed=0)
    te = generated_dataset(tmp_path_factory.mktemp("bl_test"), seed=3)
    return load_records([tr / "shards"]), load_records([te / "shards"])


def test_learned_vs_baselines_on_datagen_records(generated):
    train, test = generated
    # a perfect model (the ground truth as its answers) against a model that answers nothing
    truth = [{"id": r.id, "metrics": {"correct": 1.0, "nce": 0.0, "valid": 1.0},
              "pred": answer_to_json(answer_from_record(r))} for r in test]
    none = [{"id": r.id, "metrics": {"correct": 0.0, "valid": 0.0}, "pred": None} for r in test]
    good, bad = learned_vs_baselines(train, truth, test), learned_vs_baselines(train, none, test)
    assert {"depth", "pose", "grasp"} <= set(good)
    assert good["depth"]["accuracy"] == 1.0 and bad["depth"]["accuracy"] == 0.0
    assert 0.0 <= good["depth"]["majority"] <= 1.0 and 0.0 <= good["depth"]["text_prior"] <= 1.0
    assert good["pose"]["corner_error_px"] == 0.0 < good["pose"]["mean_answer_corner_error_px"]
    assert bad["pose"]["corner_error_px"] == pytest.approx(np.hypot(224, 168))  # no answer: the diagonal
    assert good["grasp"]["nce"] == 0.0 < good["grasp"]["mean_answer_nce"]
    mean = np.mean([answer_from_record(r).points for r in train if r.task == Task.POSE], axis=0)
    gts = [np.asarray(answer_from_record(r).points) for r in test if r.task == Task.POSE]
    want = np.mean([np.linalg.norm(mean - g, axis=1).mean() for g in gts])
    assert good["pose"]["mean_answer_corner_error_px"] == pytest.approx(want)


def test_loss_plot_is_drawn(tmp_path):
    from bopask_vlm.train.loss_plot import plot_loss

    hist = [{"step": s, "loss": 10.0 / (1 + s)} for s in range(1, 30)]
    p = plot_loss(hist, tmp_path / "loss.png")
    assert p.stat().st_size > 5000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
