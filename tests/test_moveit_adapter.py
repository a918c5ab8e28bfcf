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

What MoveIt does that matters here, and the stand-in models (issue 20):
- ``set_from_ik`` takes the pose in the robot model's frame ``world`` (the Panda SRDF's floating virtual joint
  world -> panda_link0, filled from TF); panda_link0 stands where the tabletop launch puts it (the scene xacro's
  world -> table -> robot_base, then robot_base -> panda_link0), and IK solves only within the Panda's reach of
  it. ``get_frame_transform(frame)`` gives model frame -> frame.
- IK converges to a solution that depends on the seed (two arm branches, by the sign of the seed's joint 1);
  the planning scene may hold one branch in collision; ``set_to_random_positions(group)`` gives other seeds.
- The gripper: ros2_controllers' GripperActionController ends a close that the object stops ABORTED unless
  ``allow_stalling``; MoveIt's GripperCommand handle passes ABORTED on unless ``allow_failure``; both read from
  the controller configs the launch ships. An empty close runs to the closed state and SUCCEEDS.
- An execution can run until ``stop_execution`` (a stop sent before the controller started is lost) and takes a
  moment to wind down after it.
- ``PlanRequestParameters(robot, entry)`` loads the entry of config/moveit_py.yaml (its own scaling factors).
"""

from __future__ import annotations

import copy
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

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

CONFIG = Path(__file__).resolve().parents[1] / "bopask_ros" / "config"

PARAMS = {"planning_frame": "panda_link0", "planning_group": "panda_arm", "gripper_group": "hand",
          "end_effector_link": "panda_hand", "planning_pipeline": "ompl_rrtc", "cartesian_pipeline": "pilz_lin",
          "lift_distance": 0.1, "gripper_open_state": "open", "gripper_close_state": "close",
          "allow_execution": True}
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
ARM_JOINTS = JOINTS[:7]


def _launch_link0_in_world() -> np.ndarray:
    """world -> panda_link0 as the tabletop launch publishes it: the scene xacro (world -> table -> robot_base, its
    default robot_x/y/yaw are the launch's) and the launch's static robot_base -> panda_link0 (identity)."""
    import xacro
    import yourdfpy

    doc = xacro.process_file(str(CONFIG.parent / "urdf" / "tabletop.urdf.xacro"),
                             mappings={"with_camera": "false", "with_robot": "false"})
    urdf = yourdfpy.URDF.load(__import__("io").StringIO(doc.toxml()), load_meshes=False, build_collision_scene_graph=False)
    return np.asarray(urdf.get_transform("robot_base", "world"), dtype=float)


T_WORLD_LINK0 = _launch_link0_in_world()
PANDA_REACH = 0.855  # m, from the shoulder (panda_link0 z 0.333)


# -- the moveit_py stand-in ----------------------------------------------------------------------------

class ExecutionStatus:
    """moveit.core.controller_manager.ExecutionStatus: ``.status`` (asString), ``__bool__`` (== SUCCEEDED)."""

    def __init__(self, status: str) -> None:
        self.status = status

    def __bool__(self) -> bool:
        return self.status == "SUCCEEDED"


class JointModelGroup:
    def __init__(self, name) -> None:
        self.name = name


class RobotModel:
    model_frame = "world"

    def get_joint_model_group(self, joint_model_group_name):
        return JointModelGroup(joint_model_group_name)


class RobotState:
    rng = np.random.default_rng(0)
    FRAMES = {"world": np.eye(4), "panda_link0": T_WORLD_LINK0}  # model frame -> frame (from TF, the launch's)

    def __init__(self, positions=None, velocities=None) -> None:
        self.joint_positions = dict(positions or {j: 0.1 * i for i, j in enumerate(JOINTS)})
        self.joint_positions.update({"panda_finger_joint1": 0.02, "panda_finger_joint2": 0.02} if positions is None
                                    else {})
        self.joint_velocities = dict(velocities or {j: 1e-3 for j in JOINTS})  # noisy measured velocities
        self.joint_accelerations = {j: 2e-3 for j in JOINTS}
        self.ik_result = True
        self.updated = 0
        self.robot_model = RobotModel()
        self.ik_calls: list = []

    def __deepcopy__(self, memo=None):
        s = RobotState(self.joint_positions, self.joint_velocities)
        s.joint_accelerations = dict(self.joint_accelerations)
        s.ik_result = self.ik_result
        s.ik_calls = self.ik_calls  # shared: a test counts the IK calls of all copies
        return s

    def get_frame_transform(self, frame_id):
        return self.FRAMES.get(frame_id, np.eye(4)).copy()  # identity for an unknown frame, as moveit_py

    def set_to_random_positions(self, joint_model_group=None):
        assert isinstance(joint_model_group, JointModelGroup)
        self.joint_positions.update({j: float(self.rng.uniform(-2.8, 2.8)) for j in ARM_JOINTS})

    def set_from_ik(self, joint_model_group_name, geometry_pose, tip_name, timeout=0.0):
        """The pose is in the model frame (world); a solution exists within the Panda's reach of its shoulder.
        The solution found lies on the seed's branch (the sign of joint 1)."""
        self.ik_call = (joint_model_group_name, geometry_pose, tip_name, timeout, dict(self.joint_positions))
        self.ik_calls.append(self.ik_call)
        T = np.asarray(geometry_pose.T)
        in_link0 = np.linalg.inv(T_WORLD_LINK0) @ T
        if np.linalg.norm(in_link0[:3, 3] - [0.0, 0.0, 0.333]) > PANDA_REACH or in_link0[2, 3] < -0.2:
            return False
        # ik_result may be a test's model of the arm's limits: a function of the asked pose
        ok = self.ik_result(T) if callable(self.ik_result) else self.ik_result
        if ok:
            branch = 1.0 if self.joint_positions["panda_joint1"] >= 0 else -1.0
            self.joint_positions.update({j: branch * (0.3 + 0.1 * i) for i, j in enumerate(ARM_JOINTS)})
        return ok

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
        v = self.robot.state_valid
        return v(robot_state) if callable(v) else v

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
        self.stop_threads: set[str] = set()

    def stop_execution(self, auto_clear=True):
        self.stop_calls += 1
        self.stop_threads.add(threading.current_thread().name)
        if self.robot.execution_started.is_set():  # a stop before the execution began does nothing (as in MoveIt)
            self.robot.stopped.set()


def _controller_flags(moveit_controllers: Path, ros2_controllers: Path) -> tuple[bool, bool]:
    """(allow_stalling of the GripperActionController, allow_failure of MoveIt's GripperCommand handle) in the
    given controller configs (both default false)."""
    ros2 = yaml.safe_load(ros2_controllers.read_text())
    moveit = yaml.safe_load(moveit_controllers.read_text())
    stalling = ros2.get("panda_hand_controller", {}).get("ros__parameters", {}).get("allow_stalling", False)
    failure = moveit["moveit_simple_controller_manager"]["panda_hand_controller"].get("allow_failure", False)
    return bool(stalling), bool(failure)


SHIPPED_CONTROLLERS = (CONFIG / "panda_moveit_controllers.yaml", CONFIG / "panda_ros2_controllers.yaml")


class MoveItPy:
    """The stand-in MoveItPy; ``statuses``: what each execute returns (default SUCCEEDED); ``object_width``: what
    lies between the fingers (m; None: nothing); ``controllers``: the (MoveIt, ros2_control) controller configs."""

    def __init__(self, node_name="moveit_py", config_dict=None) -> None:
        self.object_width = 0.05  # a 5 cm object between the fingers when they close
        self.controllers = SHIPPED_CONTROLLERS
        self.wind_down = threading.Event()
        self.wind_down.set()  # a stopped execution returns at once unless a test holds it
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
        traj = RobotTrajectory([comp.start, end])
        traj.gripper_goal = comp.goal if comp.group == "hand" else None
        return MotionPlanResponse(traj if code == 1 else None, code)

    def _run_gripper(self, goal: str) -> str:
        """GripperActionController + MoveIt's GripperCommand handle: the fingers move to the goal or stop on the
        object; a stall ends ABORTED unless allow_stalling; MoveIt passes ABORTED on unless allow_failure."""
        target = {"open": 0.08, "close": 0.0}[goal]
        width = target if self.object_width is None or target >= self.object_width else self.object_width
        self.current.joint_positions.update({"panda_finger_joint1": width / 2, "panda_finger_joint2": width / 2})
        if width == target:
            return "SUCCEEDED"
        allow_stalling, allow_failure = _controller_flags(*self.controllers)
        code = "SUCCEEDED" if allow_stalling else "ABORTED"
        return "SUCCEEDED" if code == "ABORTED" and allow_failure else code

    def execute(self, robot_trajectory, controllers):  # Jazzy: controllers has no default
        i = len(self.executed)
        self.executed.append(robot_trajectory)
        if self.block_execution == i:
            time.sleep(0.05)  # the controller takes a moment to start: a stop sent now is lost
            self.execution_started.set()
            assert self.stopped.wait(10.0), "the execution was never stopped"
            assert self.wind_down.wait(10.0), "the test never let the stopped execution end"
            return ExecutionStatus("PREEMPTED")
        if i < len(self.statuses):
            return ExecutionStatus(self.statuses[i])
        goal = getattr(robot_trajectory, "gripper_goal", None)
        return ExecutionStatus(self._run_gripper(goal) if goal is not None else "SUCCEEDED")


def messages():
    """Plain-attribute stand-ins for geometry_msgs / moveit_msgs (not installed here)."""
    ns = types.SimpleNamespace
    return ns(pose=lambda T: ns(T=np.array(T)),
              pose_stamped=lambda T, frame: ns(T=np.array(T), frame=frame),
              box_object=lambda obj, frame: ns(operation="ADD", id=obj.id, obj=obj, frame=frame),
              remove_object=lambda oid, frame: ns(operation="REMOVE", id=oid, frame=frame))


def plan_request_parameters(robot, entry):
    """PlanRequestParameters(robot, entry): the entry's plan_request_params of config/moveit_py.yaml."""
    cfg = yaml.safe_load((CONFIG / "moveit_py.yaml").read_text())[entry]["plan_request_params"]
    return types.SimpleNamespace(entry=entry, **cfg)


def make_planner(robot=None, **kw):
    robot = robot or MoveItPy()
    safety = SafetyEnvelope()
    planner = MoveItPlanner(
        "bopask_moveit_py", {"robot_description_semantic": "<robot/>"}, PARAMS, safety,
        moveit_factory=lambda name, config: (setattr(robot, "config", config), robot)[1],
        backend_factory=lambda r, p, s: MoveItBackend(r, p, s, messages=messages(), sleep=lambda t: None,
                                                      plan_request_parameters=plan_request_parameters), **kw)
    return planner, robot


def grasp_result():
    T_skeleton = make_transform(TOP_DOWN, [0.45, 0.05, 0.12])  # panda_link0 (the planning frame)
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
        # the arm's joints as measured (the fingers move between the plans)
        assert {j: start.joint_positions[j] for j in ARM_JOINTS} == {j: robot.current.joint_positions[j]
                                                                    for j in ARM_JOINTS}
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
    planner.plan(pose_res, Goal("pose", ["the mug"], add_to_planning_scene=True, plan_only=False), None)
    mug = object_box_id("the mug")
    assert robot.scene_ops[1:] == [("ADD", mug)]  # the table is not sent again
    # the same object seen elsewhere: its box is replaced (same id), no stale copy is left
    moved = PipelineResult(ResultStatus.SUCCEEDED, points_base=_box_corners([0.3, -0.2, 0.0], 0.06))
    planner.plan(moved, Goal("pose", ["The Mug"], add_to_planning_scene=True, plan_only=False), None)
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
    assert out.ok and len(robot.executed) == 4  # three waypoints, then the release (defect 8)
    assert [p[3].entry for p in arm_plans(robot)] == ["ompl_rrtc", "pilz_lin", "pilz_lin"]
    assert robot.plans[-1][:2] == ("hand", "open") and robot.executed[-1].gripper_goal == "open"
    out = planner.plan(PipelineResult(ResultStatus.SUCCEEDED), Goal("depth", ["a", "b"]), None)
    assert out.ok and "nothing to plan" in out.reason
    assert steps_for(PipelineResult(ResultStatus.SUCCEEDED, points_base=pts), Goal("trajectory", ["a"]), PARAMS,
                     SafetyEnvelope())[-1].kind == "detach"
    assert steps_for(PipelineResult(ResultStatus.SUCCEEDED, points_base=pts), Goal("trajectory", ["a"]),
                     dict(PARAMS, gripper_open_state="release"), SafetyEnvelope())[-1].named_state == "release"
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


# -- issue 20: what MoveIt does, modelled by the stand-in -------------------------------------------------------

def test_ik_target_is_solved_in_the_model_frame():
    """Defect 1: a panda_link0 target moved into ``world`` (where the launch puts panda_link0) before set_from_ik;
    solved as if it were in world it lies 0.45 m behind and 0.75 m below the arm: "no IK solution"."""
    planner, robot = make_planner()
    out = planner.plan(grasp_result(), grasp_goal(execute=False), cancel=None)
    assert out.ok, out.reason
    asked = np.asarray(robot.current.ik_calls[0][1].T)  # the pre-grasp, as set_from_ik got it
    pre = arm_plans(robot)[0][1][0].T  # the same pose as planned, in panda_link0
    np.testing.assert_allclose(asked, T_WORLD_LINK0 @ pre, atol=1e-12)
    assert T_WORLD_LINK0[2, 3] == pytest.approx(0.75) and T_WORLD_LINK0[0, 3] == pytest.approx(-0.45)
    # the pose goal itself stays stamped in the planning frame (MoveIt transforms stamped goals itself)
    assert arm_plans(robot)[0][1][0].frame == "panda_link0"


def test_a_close_stopped_by_the_object_is_a_grasp_and_an_empty_close_a_miss(tmp_path):
    """Defect 2: with the panda's stock controller configs (neither allow_stalling nor allow_failure) the close
    on an object ends ABORTED; judged by the finger opening it is a grasp and the lift runs. With the shipped
    configs the stall succeeds; an empty close (SUCCEEDED) is a miss and nothing is lifted."""
    for controllers in ("stock", "shipped"):
        planner, robot = make_planner()
        if controllers == "stock":
            tmp = tmp_path
            moveit = yaml.safe_load(SHIPPED_CONTROLLERS[0].read_text())
            del moveit["moveit_simple_controller_manager"]["panda_hand_controller"]["allow_failure"]
            ros2 = yaml.safe_load(SHIPPED_CONTROLLERS[1].read_text())
            del ros2["panda_hand_controller"]["ros__parameters"]["allow_stalling"]
            stock = (tmp / "moveit.yaml", tmp / "ros2.yaml")
            stock[0].write_text(yaml.safe_dump(moveit))
            stock[1].write_text(yaml.safe_dump(ros2))
            robot.controllers = stock
            assert _controller_flags(*stock) == (False, False)
        else:
            assert _controller_flags(*SHIPPED_CONTROLLERS) == (True, True)
        out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
        assert out.ok and out.executed and len(robot.executed) == 5, (controllers, out.reason)
        assert robot.current.joint_positions["panda_finger_joint1"] == pytest.approx(0.025)  # held at 5 cm
    planner, robot = make_planner()
    robot.object_width = None  # nothing between the fingers
    out = planner.plan(grasp_result(), grasp_goal(), cancel=None)
    assert not out.ok and out.executed and "closed on nothing" in out.reason
    assert len(robot.executed) == 4  # pre-grasp, open, approach, close; no lift


def test_cancel_during_execution_returns_at_once_and_the_goal_thread_stops_it():
    """Defect 5: the cancel callback (planner.stop) sets the flag and returns while the execution still runs
    (rclpy moves the goal to CANCELING only then); the goal's thread repeats stop_execution until it ends."""
    planner, robot = make_planner()
    robot.block_execution = 2  # the approach runs until stopped
    robot.wind_down.clear()  # and, once stopped, ends only when the test lets it
    box = {}
    t = threading.Thread(target=lambda: box.update(out=planner.plan(grasp_result(), grasp_goal(), cancel=None)),
                         name="goal")
    t.start()
    assert robot.execution_started.wait(10.0)
    returned = threading.Event()
    threading.Thread(target=lambda: (planner.stop(), returned.set()), name="cancel callback", daemon=True).start()
    assert returned.wait(5.0), "stop() waited for the execution to end"
    assert robot.stopped.wait(5.0) and t.is_alive()  # stopped by the goal's thread, still winding down
    robot.wind_down.set()
    t.join(10.0)
    out = box["out"]
    assert out.canceled and out.executed and "approach" in out.reason and len(robot.executed) == 3
    assert "cancel callback" not in robot.tem.stop_threads and "goal" in robot.tem.stop_threads


def test_a_goal_cancel_seen_during_execution_stops_it():
    planner, robot = make_planner()
    robot.block_execution = 0
    out = planner.plan(grasp_result(), grasp_goal(), cancel=lambda: robot.execution_started.is_set())
    assert out.canceled and robot.stopped.is_set() and len(robot.executed) == 1


def test_pilz_keeps_its_own_slower_scaling():
    """Defect 7: the smaller of the entry's scaling (config/moveit_py.yaml: pilz_lin 0.05) and the envelope's."""
    planner, robot = make_planner()
    planner.plan(grasp_result(), grasp_goal(execute=False), cancel=None)
    scaling = [(p[3].entry, p[3].max_velocity_scaling_factor, p[3].max_acceleration_scaling_factor)
               for p in arm_plans(robot)]
    assert scaling == [("ompl_rrtc", 0.1, 0.1), ("pilz_lin", 0.05, 0.05), ("pilz_lin", 0.05, 0.05)]
    slow = SafetyEnvelope(velocity_scaling=0.03, acceleration_scaling=0.02)
    backend = MoveItBackend(robot, PARAMS, slow, messages=messages(), plan_request_parameters=plan_request_parameters)
    p = backend._plan_params("pilz_lin")
    assert (p.max_velocity_scaling_factor, p.max_acceleration_scaling_factor) == (0.03, 0.02)


def test_failed_starts_take_new_node_names_and_are_not_retried_per_goal():
    """Defect 9: each MoveItPy() that throws leaves its rclcpp node and executor thread behind: every attempt
    gets its own name, and once start-up has failed no goal builds another."""
    names = []

    def factory(name, config):
        names.append(name)
        raise RuntimeError("robot_description_semantic missing")

    planner = MoveItPlanner("bopask_moveit_py", {}, PARAMS, SafetyEnvelope(), startup_attempts=2,
                            moveit_factory=factory, sleep=lambda s: None)
    assert names == ["bopask_moveit_py", "bopask_moveit_py_2"] and not planner.ready
    for _ in range(3):
        out = planner.plan(grasp_result(), grasp_goal(), None)
        assert not out.ok and "robot_description_semantic missing" in out.reason
    assert len(names) == 2


def test_after_start_runs_once_moveit_is_up():
    """Defect 3: MoveItPy's rclcpp::init replaces the SIGINT handler; the node's own goes back right after."""
    import signal

    from bopask_ros.node_support.stop_signals import StopSignals, reassert_stop_signals

    rclcpp_handler = lambda signum, frame: None  # noqa: E731  (stands in for rclcpp's SignalHandler)

    def factory(name, config):
        signal.signal(signal.SIGINT, rclcpp_handler)  # what rclcpp::init does
        return MoveItPy()

    with StopSignals() as stop:
        planner = MoveItPlanner("n", {}, PARAMS, SafetyEnvelope(), moveit_factory=factory,
                                after_start=reassert_stop_signals,
                                backend_factory=lambda r, p, s: MoveItBackend(
                                    r, p, s, messages=messages(), plan_request_parameters=plan_request_parameters))
        assert planner.ready and signal.getsignal(signal.SIGINT) is stop
        assert signal.getsignal(signal.SIGTERM) is stop
    assert signal.getsignal(signal.SIGINT) is not stop  # restored on exit


def test_plan_only_pose_goals_add_no_boxes_and_boxes_expire():
    """Defect 11: a pose goal that only plans adds no box (Pose.action's add_to_planning_scene is true by
    default) unless plan_only_boxes; boxes leave after their lifetime."""
    now = [0.0]
    planner, robot = make_planner(box_lifetime_s=60.0)
    planner.runner.scene.clock = lambda: now[0]
    pose_res = PipelineResult(ResultStatus.SUCCEEDED, points_base=_box_corners([0.5, 0.1, 0.0], 0.06))
    planner.plan(pose_res, Goal("pose", ["the mug"], add_to_planning_scene=True, plan_only=True), None)
    assert robot.scene_ops == [("ADD", "bopask_table")]
    planner.params = dict(PARAMS, plan_only_boxes=True)
    planner.plan(pose_res, Goal("pose", ["the mug"], add_to_planning_scene=True, plan_only=True), None)
    mug = object_box_id("the mug")
    assert robot.scene_ops[-1] == ("ADD", mug)
    now[0] = 30.0
    planner.plan(PipelineResult(ResultStatus.SUCCEEDED), Goal("depth", ["a", "b"]), None)
    assert mug in planner.runner.scene.objects  # within its lifetime
    now[0] = 61.0
    planner.plan(grasp_result(), grasp_goal(execute=False), None)  # a later goal elsewhere
    assert robot.scene_ops[-1] == ("REMOVE", mug) and mug not in planner.runner.scene.objects


def test_ik_tries_other_seeds_when_the_first_solution_collides(monkeypatch):
    """Defect 12: the first IK solution (the current state's branch) is in collision; a random seed finds the
    other branch, which is free: the target is reachable."""
    monkeypatch.setattr(RobotState, "rng", np.random.default_rng(1))  # the random seeds of this test
    planner, robot = make_planner()
    robot.state_valid = lambda state: state.joint_positions["panda_joint1"] < 0  # the +joint-1 branch collides
    out = planner.plan(grasp_result(), grasp_goal(execute=False), cancel=None)
    assert out.ok, out.reason
    assert len(robot.current.ik_calls) > 3  # more than one IK per target
    robot.state_valid = False
    out = planner.plan(grasp_result(), grasp_goal(execute=False), cancel=None)
    assert not out.ok and "every IK solution is in collision" in out.reason
