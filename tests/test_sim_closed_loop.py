"""Closed loop in physics: the product's TaskPipeline (oracle client, validation, lifting, safety) with the
simulator as its motion backend; physical outcomes; the sim-eval runner and its ``bopask`` plugin entry."""

from __future__ import annotations

import json

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_ros.pipeline import Goal, PipelineResult, Planner, ResultStatus
from bopask_sim.backend import SimMotionBackend
from bopask_sim.evaluate import make_pipeline, prepare_scene, sim_eval
from bopask_vlm.answers.types import Task
from bopask_vlm.clients import OracleClient


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    s = prepare_scene(0, tmp_path_factory.mktemp("simloop"))
    yield s
    s.world.close()


def test_backend_is_a_planner_and_checks_reachability_first(prepared):
    be = SimMotionBackend(prepared.world)
    planner: Planner = be  # the pipeline's protocol (structural): plan(result, goal, cancel) -> PlanOutcome
    assert callable(planner.plan)
    far = np.eye(4)
    far[:3, :3] = np.diag([1.0, -1.0, -1.0])
    far[:3, 3] = [1.6, 0.0, 0.3]  # 1.6 m from the base: no arm reaches it
    res = PipelineResult(ResultStatus.SUCCEEDED, grasp_pose_base=far)
    prepared.world.reset()
    q0 = be.arm.q()
    out = be.plan(res, Goal(Task.GRASP, ["x"], plan_only=False))
    assert not out.ok and not out.executed and out.reason.startswith("ik_failure")
    np.testing.assert_allclose(be.arm.q(), q0, atol=1e-9)  # nothing moved
    carry = be.plan(PipelineResult(ResultStatus.SUCCEEDED, points_base=np.zeros((3, 3))),
                    Goal(Task.TRAJECTORY, ["a", "b"], plan_only=False))
    assert not carry.ok and "no object in the gripper" in carry.reason


def test_oracle_grasp_through_the_pipeline_lifts_the_object(prepared):
    be = SimMotionBackend(prepared.world)
    rec = prepared.by_task(Task.GRASP)[0]
    prepared.world.reset()
    k = int(rec.objects[0].gt_index)
    z0 = prepared.world.object_pose(k)[2, 3]
    res = make_pipeline(prepared, OracleClient(), be).run(prepared.frame.pipeline_frame(), Goal(
        Task.GRASP, [o.description for o in rec.objects], question=rec.question, plan_only=False, record=rec))
    assert res.ok, res.reason
    assert res.plan.executed and res.plan.plan.target == k
    assert prepared.world.object_pose(k)[2, 3] - z0 > 0.05  # really up, measured in the physics
    assert all(be.arm.touching(prepared.world.instances[k].body))
    # a plan-only goal only checks IK: nothing moves
    prepared.world.reset()
    q0 = be.arm.q()
    res = make_pipeline(prepared, OracleClient(), be).run(prepared.frame.pipeline_frame(), Goal(
        Task.GRASP, [o.description for o in rec.objects], question=rec.question, plan_only=True, record=rec))
    assert res.ok and not res.plan.executed
    np.testing.assert_allclose(be.arm.q(), q0, atol=1e-9)


def test_sim_eval_ci_run(tmp_path):
    """<= 10 episodes on one scene: the runner's files, the table, every episode explained."""
    m = sim_eval(OracleClient(), episodes=3, noise_levels=(0.0, 4.0), out_dir=tmp_path, tasks=("grasp",),
                 scenes=1, progress=False, log=None, direct=False, snapshots=2)
    g = m["by_task"]["grasp"]
    assert g["0"]["n"] == 3 and g["4"]["n"] == 3
    assert g["0"]["success"] >= 2 / 3
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["by_task"]["grasp"]["0"]["n"] == 3
    eps = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(eps) == 6 and all(e["reason"] and (e["success"] == (e["reason"] == "ok")) for e in eps)
    assert (tmp_path / "success_vs_noise.png").stat().st_size > 1000 and (tmp_path / "strip.png").is_file()
    assert "| grasp |" in m["table"]


def test_from_params_builds_a_backend(tmp_path):
    from bopask_sim.backend import write_scene_file

    f = write_scene_file(tmp_path / "scene.json", scene_seed=7, num_objects=2)
    be = SimMotionBackend.from_params(scene_file=f, safety={"max_reach": 0.8})
    try:
        assert be.world.seed == 7 and len(be.world.instances) == 2 and be.safety.max_reach == 0.8
    finally:
        be.close()


def test_bopask_cli_finds_the_plugin(capsys):
    from bopask_vlm import cli

    if "sim-eval" not in cli.plugins():
        pytest.skip("bopask_sim is not installed (its entry point registers sim-eval)")
    assert cli.main(["--help"]) == 0
    assert "sim-eval" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["sim-eval", "--help"])
    assert e.value.code == 0 and "--keypoint-noise" in capsys.readouterr().out


def test_demo_appends_a_closed_loop_section(tmp_path):
    from bopask_sim.demo import SECTION, run_closed_loop_demo

    (tmp_path / "report.md").write_text("# BOP-ASK demo: rosbag replay\n\nreplay table\n")
    for levels in (("oracle",), ("oracle", "nvila15b-sft")):  # a re-run replaces the section instead of adding one
        m = run_closed_loop_demo(tmp_path, episodes=1, scenes=1, progress=False, levels=levels)
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# BOP-ASK demo: rosbag replay") and "replay table" in text
    assert text.count(SECTION) == 1 and "| grasp |" in text and "closed_loop/strip.png" in text
    assert "closed_loop/success_vs_nce.png" in text and (tmp_path / "closed_loop" / "success_vs_nce.png").is_file()
    assert "Scene seeds 1000" in text and "disjoint" in text
    assert (tmp_path / "closed_loop" / "strip.png").is_file()
    assert m["answer_error"] == ["oracle", "nvila15b-sft"] and "nvila15b-sft" in text
    assert all(m["by_task"]["grasp"][c]["n"] == 1 for c in m["conditions"])
