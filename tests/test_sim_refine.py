"""Grasp refinement in physics (issue 19): the simulator answers the Planner port's reachability question for
refinement's candidates, and a coherently wrong answer, refined, is lifted where the literal one is not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_ros.pipeline import Goal
from bopask_sim.backend import SimMotionBackend
from bopask_sim.evaluate import make_pipeline, prepare_scene
from bopask_vlm.answers.types import GraspAnswer, Task
from bopask_vlm.clients import OracleClient


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    s = prepare_scene(0, tmp_path_factory.mktemp("simrefine"))
    yield s
    s.world.close()


class ScaledClient:
    """Stands in for a model whose grasp skeletons come out ``scale`` times too large (a coherent error: PnP fits it
    without residual and puts it centimetres off in range) and ``shift`` pixels off."""

    def __init__(self, scale: float, shift: tuple[float, float]) -> None:
        self.inner, self.scale, self.shift = OracleClient(), scale, np.asarray(shift, float)

    def ask(self, req):
        resp = self.inner.ask(req)
        p = resp.answer.points
        return dataclasses.replace(resp, answer=GraspAnswer(p[0] + (p - p[0]) * self.scale + self.shift))


def _goal(rec, plan_only=False):
    return Goal(Task.GRASP, [o.description for o in rec.objects], question=rec.question, plan_only=plan_only, record=rec)


def test_the_simulator_answers_reachability_without_moving(prepared):
    be = SimMotionBackend(prepared.world)
    rec = prepared.by_task(Task.GRASP)[0]
    prepared.world.reset()
    res = make_pipeline(prepared, OracleClient(), be).run(prepared.frame.pipeline_frame(), _goal(rec, plan_only=True))
    assert res.ok, res.reason
    q0 = be.arm.q()
    assert be.grasp_problem(res.grasp_pose_base) is None
    far = res.grasp_pose_base.copy()
    far[:3, 3] = [1.6, 0.0, 0.3]
    assert be.grasp_problem(far).startswith("ik_failure")
    np.testing.assert_allclose(be.arm.q(), q0, atol=1e-9)


def test_a_scaled_and_shifted_answer_is_lifted_with_refinement(prepared):
    """The skeleton 15 % too large and 8 px off: refined (range from depth, re-centred on the object, reachable
    through grasp_problem) the object under it is lifted; the result says how far the grasp moved."""
    rec = prepared.by_task(Task.GRASP)[0]
    k = int(rec.objects[0].gt_index)
    prepared.world.reset()
    be = SimMotionBackend(prepared.world)
    literal = make_pipeline(prepared, ScaledClient(1.15, (8.0, -6.0)), be).run(prepared.frame.pipeline_frame(),
                                                                              _goal(rec))
    assert not literal.ok  # executed as drawn it fails (the scene of seed 0 today: the box slips out)
    prepared.world.reset()
    be = SimMotionBackend(prepared.world)
    pipe = make_pipeline(prepared, ScaledClient(1.15, (8.0, -6.0)), be, grasp_refine="local")
    res = pipe.run(prepared.frame.pipeline_frame(), _goal(rec))
    assert res.ok, res.reason
    assert res.plan.executed and res.plan.plan.target == k
    assert res.refinement.mode == "local" and res.refinement.candidates > 10
    assert all(be.arm.touching(prepared.world.instances[k].body))


def test_sim_eval_runs_both_refinement_settings_in_one_run(tmp_path):
    """``--grasp-refine none,local``: both settings on the same episodes, a column and a curve each, the first
    answer's on-object flag and the attempts per episode recorded."""
    import json

    from bopask_sim.cli import main
    from bopask_sim.evaluate import sim_eval

    m = sim_eval(OracleClient(), episodes=2, out_dir=tmp_path, tasks=("grasp",), scenes=1, progress=False, log=None,
                 direct=False, snapshots=0, grasp_refine=("none", "local"), max_attempts=2)
    g = m["by_task"]["grasp"]
    assert m["conditions"] == ["oracle [none]", "oracle [local]"] and m["grasp_refine"] == ["none", "local"]
    assert g["oracle [none]"]["n"] == 2 and g["oracle [local]"]["n"] == 2
    assert g["oracle [local]"]["on_object"]["n"] == 2  # the oracle's answers lie on the asked object
    assert "| grasp | " in m["table"] and "oracle [local]" in m["table"] and "answer on the asked object" in m["table"]
    assert set(m["by_metric"]["grasp"]["bins"]) == {"oracle [none]", "oracle [local]"}  # one curve each
    assert (tmp_path / "success_vs_nce.png").stat().st_size > 1000
    eps = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert sorted(e["level"] for e in eps) == ["oracle [local]"] * 2 + ["oracle [none]"] * 2
    assert all(e["answer_metric"]["attempts"] >= 1 for e in eps)
    with pytest.raises(SystemExit):
        main(["--grasp-refine", "none,global", "--out", str(tmp_path / "x")])
