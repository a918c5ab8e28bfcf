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
    assert not literal.ok  # executed as drawn, the hand hits the neighbouring ball on its way down
    prepared.world.reset()
    be = SimMotionBackend(prepared.world)
    pipe = make_pipeline(prepared, ScaledClient(1.15, (8.0, -6.0)), be)
    pipe.grasp_refine = "local"
    res = pipe.run(prepared.frame.pipeline_frame(), _goal(rec))
    assert res.ok, res.reason
    assert res.plan.executed and res.plan.plan.target == k
    assert res.refinement.mode == "local" and res.refinement.candidates > 10
    assert all(be.arm.touching(prepared.world.instances[k].body))
