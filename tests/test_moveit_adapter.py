"""The MoveIt adapter's control flow (execution status, cancel, start state, IK, planning-scene objects, start-up)
against a STAND-IN for moveit_py.

moveit_py (and moveit_msgs, tf2) cannot be installed here: they are not on PyPI. The stand-in below models the
shapes of the Jazzy API as read in moveit2's moveit_py pybind sources (see the docstring of
bopask_ros.ros.moveit_adapter): ``MoveItPy.execute(robot_trajectory, controllers)`` (no default for
``controllers``) returning an ``ExecutionStatus`` (``bool()`` true only for SUCCEEDED, ``.status`` its name),
``PlanningComponent.plan()`` returning a ``MotionPlanResponse`` (``bool()``, ``.error_code.val``,
``.trajectory`` indexable), ``RobotState`` with dict-valued ``joint_velocities``/``joint_accelerations``,
``set_from_ik(group, pose, tip, timeout)`` and ``__deepcopy__``, ``get_start_state()`` returning None without a
current state, and the planning scene monitor's ``read_only()``/``read_write()`` context managers. Only moveit_py
and the ROS messages are stood in for; the project's own code (runner, steps, safety, pipeline) is real.
"""

from __future__ import annotations

import copy
import threading
import time
import types
from contextlib import contextmanager

import numpy as np
import pytest

from bopask_ros.motion.motion_runner import (
    MotionRunner,
    SceneObject,
    exec_status_of,
    support_plane_object,
    table_object,
)
from bopask_ros.motion.motion_steps import TOP_DOWN, grasp_steps, object_box_id, steps_for, trajectory_steps
from bopask_ros.motion.safety import SafetyEnvelope
from bopask_ros.pipeline import Goal, PipelineResult, ResultStatus
from bopask_ros.ros.moveit_adapter import MoveItBackend, MoveItPlanner
from bopask_vlm.geometry import make_transform
from bopask_vlm.gripper import skeleton_to_hand

PARAMS = {"planning_frame": "panda_link0", "planning_group": "panda_arm", "gripper_group": "hand",
          "end_effector_link": "panda_hand", "planning_pipeline": "ompl_rrtc", "cartesian_pipeline": "pilz_lin",
          "lift_distance": 0.1, "gripper_open_state": "open", "gripper_close_state": "close",
          "allow_execution": True}
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]


# -- the moveit_py stand-in ----------------------------------------------------------------------------

class ExecutionStatus:
    """moveit.core.controller_manager.ExecutionStatus: ``.status`` (asString), ``__bool__`` (== SUCCEEDED)."""

    def __init__(self, status: str) -> None:
        self.status = status

    def __bool__(self) -> bool:
        return self.status == "SUCCEEDED"


class RobotState:
    def __init__(self, positions=None, velocities=None) -> None:
        self.joint_positions = dict(positions or {j: 0.1 * i for i, j in enumerate(JOINTS)})
        self.joint_velocities = dict(velocities or {j: 1e-3 for j in JOINTS})  # noisy measured velocities
        self.joint_accelerations = {j: 2e-3 for j in JOINTS}
        self.ik_result = True
        self.updated = 0

    def __deepcopy__(self, memo=None):
        s = RobotState(self.joint_positions, self.joint_velocities)
        s.joint_accelerations = dict(self.joint_accelerations)
        s.ik_result = self.ik_result
        return s

    def set_from_ik(self, joint_model_group_name, geometry_pose, tip_name, timeout=0.0):
        self.ik_call = (joint_model_group_name, geometry_pose, tip_name, timeout, dict(self.joint_positions))
        # ik_result may be a test's model of the arm's limits: a function of the asked pose
        return self.ik_result(geometry_pose.T) if callable(self.ik_result) else self.ik_result

    def update(self, force=False, type="all"):
        self.updated += 1


class RobotTrajectory:
    def __init__(self, states) -> None:
        self.states = list(states)

    def __len__(self):
        return len(self.states)

    def __getitem__(self, i):
        return self.states[i]


class MotionPlanResponse:
    def __init__(self, trajectory=None, code=1) -> None:
        self.trajectory = trajectory
        self.error_code = types.SimpleNamespace(val=code)

    def __bool__(self):
        return self.error_code.val == 1  # MoveItErrorCodes.SUCCESS


class PlanningComponent:
    def __init__(self, robot, group) -> None:
        self.robot, self.group = robot, group
        self.start = None

    def set_start_state_to_current_state(self):
        self.start = None

    def get_start_state(self):
        return self.robot.current if self.start is None else self.start

    def set_start_state(self, configuration_name=None, robot_state=None):
        self.start = robot_state

    def set_goal_state(self, configuration_name=None, robot_state=None, pose_stamped_msg=None, pose_link=None,
                       motion_plan_constraints=None):
        self.goal = configuration_name if configuration_name is not None else (pose_stamped_msg, pose_link)

    def plan(self, single_plan_parameters=None, multi_plan_parameters=None, planning_scene=None,
             solution_selection_function=None, stopping_criterion_callback=None):
        return self.robot.on_plan(self, single_plan_parameters)


class PlanningScene:
    def __init__(self, robot) -> None:
        self.robot = robot
        self.current_state = RobotState()

    def is_state_valid(self, robot_state, joint_model_group_name, verbose=False):
        return self.robot.state_valid

    def apply_collision_object(self, collision_object_msg, color_msg=None):
        self.robot.scene_ops.append((collision_object_msg.operation, collision_object_msg.id))


class PlanningSceneMonitor:
    def __init__(self, robot) -> None:
        self.scene = PlanningScene(robot)

    @contextmanager
    def read_only(self):
        yield self.scene

    @contextmanager
    def read_write(self):
        yield self.scene


class TrajectoryExecutionManager:
    def __init__(self, robot) -> None:
        self.robot = robot
        self.stop_calls = 0

    def stop_execution(self, auto_clear=True):
        self.stop_calls += 1
        if self.robot.execution_started.is_set():  # a stop before the execution began does nothing (as in MoveIt)
            self.robot.stopped.set()


class MoveItPy:
    """The stand-in MoveItPy; ``statuses``: what each execute returns (default SUCCEEDED)."""

    def __init__(self, node_name="moveit_py", config_dict=None) -> None:
        self.node_name, self.config = node_name, config_dict
        self.current = RobotState()
        self.state_valid = True
        self.components = {}
        self.plans, self.executed, self.scene_ops = [], [], []
        self.statuses: list[str] = []
        self.plan_code = {}
        self.psm = PlanningSceneMonitor(self)
        self.tem = TrajectoryExecutionManager(self)
        self.execution_started, self.stopped = threading.Event(), threading.Event()
        self.block_execution = None  # an index of execute() that runs until stopped
        self.on_plan_hook = None

    def get_planning_component(self, planning_component_name):
        return self.components.setdefault(planning_component_name, PlanningComponent(self, planning_component_name))

    def get_planning_scene_monitor(self):
        return self.psm

    def get_trajectory_execution_manager(self):
        return self.tem

    def on_plan(self, comp, params):
        i = len(self.plans)
        self.plans.append((comp.group, comp.goal, comp.start, params))
        if self.on_plan_hook is not None:
            self.on_plan_hook(i)
        code = self.plan_code.get(i, 1)
        end = RobotState({j: 1.0 + i for j in JOINTS}, {j: 0.5 for j in JOINTS})
        return MotionPlanResponse(RobotTrajectory([comp.start, end]) if code == 1 else None, code)

    def execute(self, robot_trajectory, controllers):  # Jazzy: controllers has no default
        i = len(self.executed)
        self.executed.append(robot_trajectory)
        if self.block_execution == i:
            time.sleep(0.05)  # the controller takes a moment to start: a stop sent now is lost
            self.execution_started.set()
            assert self.stopped.wait(10.0), "the execution was never stopped"
            return ExecutionStatus("PREEMPTED")
        return ExecutionStatus(self.statuses[i] if i < len(self.statuses) else "SUCCEEDED")


def messages():
    """Plain-attribute stand-ins for geometry_msgs / moveit_msgs (not installed here)."""
    ns = types.SimpleNamespace
    return ns(pose=lambda T: ns(T=np.array(T)),
              pose_stamped=lambda T, frame: ns(T=np.array(T), frame=frame),
              box_object=lambda obj, frame: ns(operation="ADD", id=obj.id, obj=obj, frame=frame),
              remove_object=lambda oid, frame: ns(operation="REMOVE", id=oid, frame=frame))


def plan_request_parameters(robot, entry):
    return types.SimpleNamespace(entry=entry)


def make_planner(robot=None, **kw):
    robot = robot or MoveItPy()
    safety = SafetyEnvelope()
    planner = MoveItPlanner(
        "bopask_moveit_py", {"robot_description_semantic": "<robot/>"}, PARAMS, safety,
        moveit_factory=lambda name, config: (setattr(robot, "config", config), robot)[1],
        backend_factory=lambda r, p, s: MoveItBackend(r, p, s, messages=messages(),
                                                      plan_request_parameters=plan_request_parameters), **kw)
    return planner, robot


def grasp_result():
    T_skeleton = make_transform(TOP_DOWN, [0.45, 0.05, 0.12])
    from bopask_vlm.gripper import keypoints_3d

    return PipelineResult(ResultStatus.SUCCEEDED, grasp_pose_base=T_skeleton, points_base=keypoints_3d(T_skeleton))


def grasp_goal(execute=True):
    return Goal("grasp", ["the mug"], plan_only=not execute)


def arm_plans(robot):
    return [p for p in robot.plans if p[0] == "panda_arm"]


# -- tests ---------------------------------------------------------------------------------------------

def test_exec_status_judges_moveit_statuses():
    assert exec_status_of(ExecutionStatus("SUCCEEDED")).ok
    for name in ("ABORTED", "PREEMPTED", "TIMED_OUT", "FAILED", "UNKNOWN"):
        s = exec_status_of(ExecutionStatus(name))
        assert not s.ok and s.name == name
    assert not exec_status_of(None).ok and exec_status_of(True).ok and not exec_status_of(False).ok


def test_grasp_executes_every_step_from_zero_velocity_copies_of_the_current_state():
    planner, robot = make_planner()
    res = grasp_result()
    out = planner.plan(res, grasp_goal(), cancel=None)
    assert out.ok and out.executed, out.reason
    # pre-grasp, open, approach, close, lift: each planned then executed
    assert [p[0] for p in robot.plans] == ["panda_arm", "hand", "panda_arm", "hand", "panda_arm"]
    assert len(robot.executed) == 5
    assert [p[1] for p in robot.plans if p[0] == "hand"] == ["open", "close"]
    assert [p[3].entry for p in arm_plans(robot)] == ["ompl_rrtc", "pilz_lin", "pilz_lin"]
    for _, _, start, _ in robot.plans:
        assert start is not robot.current  # a copy, never MoveIt's own current state
        assert all(v == 0.0 for v in start.joint_velocities.values())  # Pilz LIN: NonZeroVelocityInStartState
        assert all(v == 0.0 for v in start.joint_accelerations.values())
        assert start.joint_positions == robot.current.joint_positions
    assert any(v != 0.0 for v in robot.current.joint_velocities.values())  # the measured state is untouched
    # goals are panda_hand poses: the M2T2 skeleton pose turned by the one named transform
    (approach_msg, link) = arm_plans(robot)[1][1]
    assert link == "panda_hand" and approach_msg.frame == "panda_link0"
    np.testing.assert_allclose(approach_msg.T, skeleton_to_hand(res.grasp_pose_base))
    assert robot.config["use_sim_time"] is False


@pytest.mark.parametrize("status", ["ABORTED", "PREEMPTED", "TIMED_OUT"])
def test_a_failed_approach_stops_the_sequence(status):
    planner, robot = make_planner()
    robot.statuses = ["SUCCEEDED", "SUCCEEDED", status]  # pre-grasp, open, approach
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and out.executed and not out.canceled
    assert status in out.reason and "approach" in out.reason
    assert len(robot.executed) == 3 and len(robot.plans) == 3  # no close, no lift


def test_pipeline_maps_a_failed_execution_and_a_cancel():
    from bopask_ros.pipeline import PlanOutcome

    # the mapping TaskPipeline.run applies to a planner's outcome (tested end to end in test_pipeline.py)
    assert PlanOutcome(False, "x", executed=True).canceled is False
    assert PlanOutcome(False, "x", canceled=True).canceled


def test_cancel_during_plan_keeps_the_trajectory_from_executing():
    planner, robot = make_planner()
    flag = {"cancel": False}
    # the cancel request arrives while plan() of the approach runs (plan holds the GIL: the cancel callback
    # only gets to run after it returns, just before execute)
    robot.on_plan_hook = lambda i: flag.update(cancel=True) if i == 2 else None
    out = planner.plan(grasp_result(), grasp_goal(), cancel=lambda: flag["cancel"])
    assert out.canceled and not out.ok and "after planning approach, before executing it" in out.reason
    assert len(robot.executed) == 2  # pre-grasp and open ran, the approach never started


def test_stop_between_plan_and_execute_is_not_lost():
    planner, robot = make_planner()
    robot.on_plan_hook = lambda i: planner.stop() if i == 0 else None  # the cancel callback calls stop()
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert out.canceled and robot.executed == [] and not out.executed


def test_stop_during_execution_stops_it_even_when_the_first_stop_lands_before_it_starts():
    planner, robot = make_planner()
    robot.block_execution = 0
    box = {}
    t = threading.Thread(target=lambda: box.update(out=planner.plan(grasp_result(), grasp_goal(), cancel=None)))
    t.start()
    while not planner.runner.executing:
        time.sleep(0.001)
    assert planner.stop() is True  # its first stop_execution comes before the controller started
    t.join(10.0)
    out = box["out"]
    assert out.canceled and out.executed and "PREEMPTED" in out.reason
    assert robot.tem.stop_calls >= 2 and len(robot.executed) == 1  # repeated until it stopped; nothing after


def test_plan_only_checks_the_whole_sequence_without_moving():
    planner, robot = make_planner()
    out = planner.plan(grasp_result(), grasp_goal(execute=False), cancel=None)
    assert out.ok and not out.executed and robot.executed == []
    arms = arm_plans(robot)
    assert len(arms) == 3 and not [p for p in robot.plans if p[0] == "hand"]
    # each plan starts where the previous one ends (zeroed), the first from the current state
    assert arms[0][2].joint_positions == robot.current.joint_positions
    assert arms[1][2].joint_positions == {j: 1.0 for j in JOINTS}
    assert arms[2][2].joint_positions == {j: 2.0 for j in JOINTS}
    assert all(v == 0.0 for p in arms for v in p[2].joint_velocities.values())


def test_allow_execution_false_only_plans():
    planner, robot = make_planner()
    planner.params = dict(PARAMS, allow_execution=False)
    out = planner.plan(grasp_result(), grasp_goal(execute=True), cancel=None)
    assert out.ok and not out.executed and robot.executed == []


def test_ik_is_seeded_from_the_current_state_and_checks_collisions():
    planner, robot = make_planner()
    robot.state_valid = False
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and "unreachable" in out.reason and "collision" in out.reason
    assert robot.plans == [] and robot.executed == []
    robot.state_valid, robot.current.ik_result = True, False
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and "no IK solution" in out.reason and "pre-grasp" in out.reason


def test_no_plan_and_no_current_state_are_reasons_not_crashes():
    planner, robot = make_planner()
    robot.plan_code = {2: -1}  # MoveItErrorCodes.FAILURE for the approach
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and "no plan for approach" in out.reason and "-1" in out.reason and out.executed
    planner, robot = make_planner()
    robot.current = None  # get_start_state(): None when no joint state arrived
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and "no current robot state" in out.reason and robot.plans == []


def test_planning_scene_table_once_and_object_boxes_per_object():
    planner, robot = make_planner()
    assert robot.scene_ops == [("ADD", "bopask_table")]  # at start, before any goal
    pose_res = PipelineResult(ResultStatus.SUCCEEDED, points_base=_box_corners([0.5, 0.1, 0.0], 0.06))
    # add_to_planning_scene false: nothing but the table
    out = planner.plan(pose_res, Goal("pose", ["the mug"], add_to_planning_scene=False), None)
    assert out.ok and robot.scene_ops == [("ADD", "bopask_table")]
    planner.plan(pose_res, Goal("pose", ["the mug"], add_to_planning_scene=True), None)
    mug = object_box_id("the mug")
    assert robot.scene_ops[1:] == [("ADD", mug)]  # the table is not sent again
    # the same object seen elsewhere: its box is replaced (same id), no stale copy is left
    moved = PipelineResult(ResultStatus.SUCCEEDED, points_base=_box_corners([0.3, -0.2, 0.0], 0.06))
    planner.plan(moved, Goal("pose", ["The Mug"], add_to_planning_scene=True), None)
    assert robot.scene_ops[2:] == [("ADD", mug)]
    assert list(planner.runner.scene.objects) == ["bopask_table", mug]
    # a grasp of what lies inside that box removes the box first, else the planner could not reach it
    T = make_transform(TOP_DOWN, [0.3, -0.2, 0.05])
    from bopask_vlm.gripper import keypoints_3d

    grasp = PipelineResult(ResultStatus.SUCCEEDED, grasp_pose_base=T, points_base=keypoints_3d(T))
    out = planner.plan(grasp, Goal("grasp", ["a cup"], plan_only=True), None)
    assert out.ok and robot.scene_ops[3:] == [("REMOVE", mug)]


def test_table_and_support_plane_objects():
    safety = SafetyEnvelope(table_height=0.02)
    table = table_object(safety)
    top = table.pose[2, 3] + table.size[2] / 2
    assert top < safety.table_height and safety.table_height - top < safety.min_height_above_table
    assert table.contains(np.array([[0.5, 0.0, 0.0]]))[0] and not table.contains(np.array([[0.5, 0, 0.03]]))[0]
    targets = np.array([[0.5, 0.1, 0.05], [0.55, 0.15, 0.06]])
    assert support_plane_object(safety, ((0, 0, 1.0), -0.025), targets) is None  # the table, within 1 cm
    shelf = support_plane_object(safety, ((0, 0, 2.0), -0.2), targets)  # z = 0.1, normal not unit
    assert shelf is not None
    assert shelf.pose[2, 3] + shelf.size[2] / 2 == pytest.approx(0.1 - 0.003)
    assert shelf.contains(np.array([[0.52, 0.12, 0.09]]))[0] and not shelf.contains(np.zeros((1, 3)))[0]
    assert support_plane_object(safety, ((1.0, 0, 0), -0.5), targets) is None  # a wall is no support


def test_support_plane_goes_into_the_scene_and_leaves_it():
    planner, robot = make_planner()
    res = grasp_result()
    res.support_plane_base = (np.array([0.0, 0.0, 1.0]), -0.08)
    planner.plan(res, grasp_goal(execute=False), None)
    assert ("ADD", "bopask_support_plane") in robot.scene_ops
    res.support_plane_base = (np.array([0.0, 0.0, 1.0]), 0.0)  # back on the table
    planner.plan(res, grasp_goal(execute=False), None)
    assert robot.scene_ops[-1] == ("REMOVE", "bopask_support_plane")


def test_startup_retries_and_a_late_start_keeps_the_planner_answering():
    calls = []
    robot = MoveItPy()

    def factory(name, config):
        calls.append(config)
        if len(calls) < 3:
            raise RuntimeError("Failed to configure planning scene monitor")  # no joint state within the timeout
        return robot

    slept = []
    planner = MoveItPlanner("n", {"a": 1}, PARAMS, SafetyEnvelope(), use_sim_time=True, startup_attempts=3,
                            moveit_factory=factory, sleep=slept.append,
                            backend_factory=lambda r, p, s: MoveItBackend(
                                r, p, s, messages=messages(), plan_request_parameters=plan_request_parameters))
    assert planner.ready and len(calls) == 3 and len(slept) == 2 and calls[0]["use_sim_time"] is True
    down = MoveItPlanner("n", {}, PARAMS, SafetyEnvelope(), startup_attempts=2, sleep=lambda s: None,
                         moveit_factory=lambda n, c: (_ for _ in ()).throw(RuntimeError("no joint states")))
    assert not down.ready and down.stop() is True
    out = down.plan(grasp_result(), grasp_goal(), None)
    assert not out.ok and "MoveIt is not running" in out.reason and "no joint states" in out.reason


def test_trajectory_and_nothing_to_plan():
    planner, robot = make_planner()
    pts = np.array([[0.45, 0.0, 0.02], [0.45, 0.1, 0.12], [0.4, 0.2, 0.06]])
    out = planner.plan(PipelineResult(ResultStatus.SUCCEEDED, points_base=pts), Goal("trajectory", ["a", "b"],
                                                                                      plan_only=False), None)
    assert out.ok and len(robot.executed) == 3
    assert [p[3].entry for p in arm_plans(robot)] == ["ompl_rrtc", "pilz_lin", "pilz_lin"]
    out = planner.plan(PipelineResult(ResultStatus.SUCCEEDED), Goal("depth", ["a", "b"]), None)
    assert out.ok and "nothing to plan" in out.reason
    assert steps_for(PipelineResult(ResultStatus.SUCCEEDED, points_base=pts), Goal("trajectory", ["a"]), PARAMS,
                     SafetyEnvelope())[-1].kind == "detach"
    assert len(trajectory_steps(pts)) == 4 and len(grasp_steps(np.eye(4), SafetyEnvelope())) == 6


def test_scene_object_same_as_and_runner_without_safety():
    a = SceneObject("x", np.eye(4), (0.1, 0.1, 0.1))
    assert a.same_as(copy.deepcopy(a)) and not a.same_as(SceneObject("x", np.eye(4), (0.2, 0.1, 0.1)))
    robot = MoveItPy()
    runner = MotionRunner(MoveItBackend(robot, PARAMS, SafetyEnvelope(), messages=messages(),
                                        plan_request_parameters=plan_request_parameters))
    out = runner.run(trajectory_steps(np.array([[0.4, 0.0, 0.1]])), execute=True)
    assert out.ok and robot.scene_ops == []  # no safety envelope: no table


def _box_corners(bottom_centre, edge):
    c = np.asarray(bottom_centre, float)
    h = edge / 2
    bottom = np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]]) + c
    return np.vstack([bottom, bottom + [0, 0, edge]])


def test_without_moveit_py_the_planner_answers_with_the_reason():
    # the real import: moveit_py is not installed on this machine, which is the case being tested
    try:
        import moveit.planning  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("moveit_py is installed here")
    planner = MoveItPlanner("n", {}, PARAMS, SafetyEnvelope(), startup_attempts=1)
    assert not planner.ready and "moveit_py is not installed" in planner.start_error
    out = planner.plan(grasp_result(), grasp_goal(), None)
    assert not out.ok and "moveit_py is not installed" in out.reason


def test_a_grasp_the_wrist_cannot_reach_is_turned_half_a_turn_as_in_the_simulator():
    """The stand-in's IK models the Panda's last-joint limit: only hands whose x axis points against the asked
    grasp's are reachable; the runner executes the same grasp turned 180 degrees about its approach
    (motion_steps.grasp_alternatives, as bopask_sim's backend does)."""
    from bopask_ros.motion.motion_steps import grasp_alternatives
    from bopask_vlm.gripper import skeleton_to_hand

    planner, robot = make_planner()
    res = grasp_result()
    T_as_asked, T_turned = (skeleton_to_hand(T) for T in grasp_alternatives(res.grasp_pose_base))
    robot.current.ik_result = lambda T: bool(T[:3, 0] @ T_as_asked[:3, 0] < 0)
    out = planner.plan(res, grasp_goal(), cancel=None)
    assert out.ok and out.executed, out.reason
    goals = [np.asarray(p[1][0].T) for p in arm_plans(robot) if isinstance(p[1], tuple)]
    assert any(np.allclose(T, T_turned) for T in goals), "the turned grasp's approach was planned"
    assert not any(np.allclose(T, T_as_asked) for T in goals)
    np.testing.assert_allclose(T_turned[:3, 2], T_as_asked[:3, 2])  # same approach, wrist half a turn
    np.testing.assert_allclose(T_turned[:3, 0], -T_as_asked[:3, 0])
    # neither reachable: the first unreachable reason, nothing moved
    robot2 = MoveItPy()
    planner2, _ = make_planner(robot2)
    robot2.current.ik_result = False
    out = planner2.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and not out.executed and "unreachable" in out.reason and robot2.executed == []
