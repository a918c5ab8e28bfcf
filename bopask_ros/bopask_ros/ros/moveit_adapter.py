"""MoveIt 2 (moveit_py, ROS 2 Jazzy) behind the pipeline's Planner protocol. Imports moveit_py only when a
:class:`MoveItPlanner` starts: runs on a robot machine. Every decision (step order, IK checks, start states,
cancel, execution status, planning-scene bookkeeping) is in the ROS-free :mod:`bopask_ros.motion.motion_runner`
and :mod:`bopask_ros.motion.motion_steps`; :class:`MoveItBackend` only maps single operations to moveit_py.

Checked against moveit2's moveit_py sources for Jazzy (2.10; ``moveit_py/src/moveit/...`` pybind files):

- ``MoveItPy(node_name=..., config_dict=...)`` writes ``config_dict`` to a params file for its own rclcpp
  node, so ``use_sim_time`` must be in that dict (the bopask node's own parameter does not reach it).
  ``MoveItCpp`` throws when no complete joint state arrives within
  ``planning_scene_monitor_options.wait_for_initial_state_timeout``: the start is retried.
- ``MoveItPy.execute(robot_trajectory, controllers)`` (``controllers`` has no default: pass ``[]``) blocks
  with the GIL released and returns ``moveit.core.controller_manager.ExecutionStatus`` (``bool()`` true
  only for SUCCEEDED, ``.status`` its name). Humble's MoveItCpp is
  ``execute(group_name, robot_trajectory, blocking=True)`` and returns a bool; this adapter targets Jazzy.
- ``MoveItPy.get_trajectory_execution_manager().stop_execution()`` (GIL released) stops a running execution.
- ``plan()``, ``set_from_ik()`` and ``get_start_state()`` have no ``gil_scoped_release`` in their bindings (moveit2
  jazzy ``planning_component.cpp``, ``robot_state.cpp``): while they run, every Python thread of the process
  waits, the executor's cancel, feedback and camera callbacks included (issue 20 defect 10, not fixed here: it
  needs the planning in another process). A cancel that arrives meanwhile is served when plan() returns, and the
  runner's check between planning and executing keeps the trajectory from starting.
- ``PlanningComponent.set_start_state(robot_state=...)``, ``set_start_state_to_current_state()`` and
  ``get_start_state()`` (the current state, waiting up to 1 s; None when none arrived),
  ``set_goal_state(pose_stamped_msg=..., pose_link=...)`` / ``set_goal_state(configuration_name=...)``,
  ``plan(single_plan_parameters=PlanRequestParameters(robot, "<plan_request_params entry>"))`` returning a
  ``MotionPlanResponse`` (``bool()`` true on SUCCESS, ``.error_code.val``, ``.trajectory``: a
  ``RobotTrajectory``, indexable, its last item the end state). ``plan()`` holds the GIL.
- ``RobotState.set_from_ik(joint_model_group_name, geometry_pose, tip_name, timeout)`` takes the pose in the
  *model frame* (moveit_core ``RobotState::setFromIK``: "assumed to be in the reference frame of the kinematic
  model"): for the Panda config that is ``world`` (a floating virtual joint world -> panda_link0 in the SRDF,
  filled from TF; the tabletop launch puts panda_link0 at x -0.45, z 0.75 in ``world``), so a planning-frame
  target is first moved into it with ``get_frame_transform(planning_frame)`` (the model frame -> that frame;
  identity when the frame is unknown). ``set_to_random_positions(joint_model_group)`` and
  ``robot_model.get_joint_model_group(name)`` give other IK seeds. ``joint_positions`` / ``joint_velocities`` /
  ``joint_accelerations`` are dicts by variable name; ``copy.deepcopy(state)`` copies it.
- ``MoveItPy()`` calls ``rclcpp::init`` with rclcpp's signal handlers (they replace the process's SIGINT /
  SIGTERM handlers) and starts a detached executor thread for its node before ``MoveItCpp`` is built: a failed
  construction leaves that node and thread behind, so a retry takes a new node name and retries are few.
- ``get_planning_scene_monitor().read_only()`` / ``read_write()`` context managers yield a
  ``PlanningScene``: ``is_state_valid(robot_state, joint_model_group_name)``, ``apply_collision_object(msg)``,
  ``current_state.update()`` (as in moveit2_tutorials' motion_planning_python_api planning-scene example).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.motion.motion_runner import MotionPlan, MotionRunner, SceneObject, plan_goal
from bopask_ros.motion.motion_steps import MotionStep
from bopask_ros.motion.safety import SafetyEnvelope
from bopask_ros.pipeline import Goal, PipelineResult, PlanOutcome
from bopask_vlm.geometry import quat_from_matrix

log = logging.getLogger(__name__)


class RosMessages:
    """Builds the ROS messages moveit_py takes (geometry_msgs, moveit_msgs, shape_msgs, imported when first
    used). Injectable: a test passes an object with the same four methods."""

    def pose(self, T: NDArray[np.float64]) -> Any:
        from geometry_msgs.msg import Pose

        msg = Pose()
        q = quat_from_matrix(np.asarray(T)[:3, :3])
        msg.position.x, msg.position.y, msg.position.z = (float(v) for v in np.asarray(T)[:3, 3])
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (float(v) for v in q)
        return msg

    def pose_stamped(self, T: NDArray[np.float64], frame: str) -> Any:
        from geometry_msgs.msg import PoseStamped

        msg = PoseStamped()
        msg.header.frame_id = frame
        msg.pose = self.pose(T)
        return msg

    def box_object(self, obj: SceneObject, frame: str) -> Any:
        from moveit_msgs.msg import CollisionObject
        from shape_msgs.msg import SolidPrimitive

        msg = CollisionObject()
        msg.header.frame_id = frame
        msg.id = obj.id
        msg.primitives.append(SolidPrimitive(type=SolidPrimitive.BOX, dimensions=[float(v) for v in obj.size]))
        msg.primitive_poses.append(self.pose(obj.pose))
        msg.operation = CollisionObject.ADD  # ADD of an existing id replaces that object
        return msg

    def remove_object(self, object_id: str, frame: str) -> Any:
        from moveit_msgs.msg import CollisionObject

        msg = CollisionObject()
        msg.header.frame_id = frame
        msg.id = object_id
        msg.operation = CollisionObject.REMOVE
        return msg


class MoveItBackend:
    """:class:`bopask_ros.motion.motion_runner.MotionBackend` on a started ``MoveItPy``."""

    def __init__(self, robot: Any, params: Any, safety: SafetyEnvelope, *, messages: Any = None,
                 plan_request_parameters: Callable[[Any, str], Any] | None = None, ik_timeout_s: float = 0.1,
                 ik_seeds: int = 4, finger_joints: Sequence[str] = ("panda_finger_joint1", "panda_finger_joint2"),
                 settle_s: float = 1.0, poll_s: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> None:
        """``ik_seeds``: IK attempts (the current state, then random arm positions) before a target is called
        unreachable (set_from_ik holds the GIL, like plan(): an unreachable target stalls the process for up to
        ``ik_seeds * ik_timeout_s``); ``finger_joints``: the gripper's joints, their positions summed to the finger opening
        (the Panda's two fingers each move half of it); ``settle_s``: how long the opening may take to stop
        changing after a close."""
        self.robot = robot
        self.params = params
        self.safety = safety
        self.msgs = messages if messages is not None else RosMessages()
        if plan_request_parameters is None:
            from moveit.planning import PlanRequestParameters as plan_request_parameters
        self._plan_request_parameters = plan_request_parameters
        self.frame = params["planning_frame"]
        self.group = params["planning_group"]
        self.arm = robot.get_planning_component(params["planning_group"])
        self.gripper = robot.get_planning_component(params["gripper_group"])
        self.ik_timeout_s = float(ik_timeout_s)
        self.ik_seeds = max(1, int(ik_seeds))
        self.finger_joints = tuple(finger_joints)
        self.settle_s, self.poll_s, self._sleep = float(settle_s), float(poll_s), sleep

    def _plan_params(self, entry: str) -> Any:
        """The entry's plan request parameters with the velocity and acceleration scaling capped by the safety
        envelope's (the smaller wins: Pilz LIN's 0.05 stays 0.05 under an envelope of 0.1)."""
        p = self._plan_request_parameters(self.robot, entry)
        p.max_velocity_scaling_factor = _capped(p, "max_velocity_scaling_factor", self.safety.velocity_scaling)
        p.max_acceleration_scaling_factor = _capped(p, "max_acceleration_scaling_factor",
                                                    self.safety.acceleration_scaling)
        return p

    def current_state(self) -> Any:
        self.arm.set_start_state_to_current_state()
        state = self.arm.get_start_state()  # MoveItCpp::getCurrentState(1.0): None without a complete state
        if state is None:
            raise RuntimeError("no current robot state: no complete joint state within 1 s (is the robot driver "
                               "publishing /joint_states, and use_sim_time right?)")
        return copy.deepcopy(state)

    def zero_motion(self, state: Any) -> Any:
        state.joint_velocities = {name: 0.0 for name in state.joint_velocities}
        state.joint_accelerations = {name: 0.0 for name in state.joint_accelerations}
        state.update()
        return state

    def to_model_frame(self, pose: NDArray[np.float64], state: Any) -> NDArray[np.float64]:
        """``pose`` (planning frame) in the robot model's frame, where ``set_from_ik`` takes it."""
        state.update()
        T_model_planning = np.asarray(state.get_frame_transform(self.frame), dtype=np.float64).reshape(4, 4)
        return T_model_planning @ np.asarray(pose, dtype=np.float64)

    def ik_problem(self, pose: NDArray[np.float64], seed: Any) -> str | None:
        """None when some IK solution for ``pose`` is collision-free: the first seeded from ``seed``, then from
        random arm positions (``ik_seeds`` in all); else why not."""
        target = self.msgs.pose(self.to_model_frame(pose, copy.deepcopy(seed)))
        solved = 0
        for i in range(self.ik_seeds):
            state = copy.deepcopy(seed)
            if i:
                state.set_to_random_positions(state.robot_model.get_joint_model_group(self.group))
            if not state.set_from_ik(self.group, target, self.params["end_effector_link"], self.ik_timeout_s):
                continue
            solved += 1
            state.update()
            with self.robot.get_planning_scene_monitor().read_only() as scene:
                if scene.is_state_valid(state, self.group):
                    return None
        if not solved:
            return f"no IK solution ({self.ik_seeds} seeds)"
        return (f"every IK solution is in collision (robot or planning scene; {solved} found from "
                f"{self.ik_seeds} seeds)")

    def gripper_opening(self) -> float | None:
        """The finger opening (m) once it has stopped changing (at most ``settle_s``); None without the finger
        joints in the state."""
        last: float | None = None
        deadline = time.monotonic() + self.settle_s
        while True:
            positions = self.current_state().joint_positions
            if not all(j in positions for j in self.finger_joints):
                return None
            width = float(sum(positions[j] for j in self.finger_joints))
            if last is not None and (abs(width - last) < 2e-4 or time.monotonic() >= deadline):
                return width
            last = width
            self._sleep(self.poll_s)

    def plan(self, step: MotionStep, start: Any) -> MotionPlan:
        if step.kind in ("move", "linear"):
            comp = self.arm
            entry = self.params["planning_pipeline" if step.kind == "move" else "cartesian_pipeline"]
            comp.set_start_state(robot_state=start)
            comp.set_goal_state(pose_stamped_msg=self.msgs.pose_stamped(step.pose, self.frame),
                                pose_link=self.params["end_effector_link"])
            response = comp.plan(single_plan_parameters=self._plan_params(entry))
        elif step.kind == "gripper":
            comp = self.gripper
            comp.set_start_state(robot_state=start)
            comp.set_goal_state(configuration_name=step.named_state)
            response = comp.plan()
        else:
            raise ValueError(f"step kind {step.kind!r} is not planned")
        if not response:
            code = getattr(getattr(response, "error_code", None), "val", "?")
            return MotionPlan(False, reason=f"MoveItErrorCode {code}")
        trajectory = response.trajectory
        end = copy.deepcopy(trajectory[len(trajectory) - 1]) if len(trajectory) else None
        return MotionPlan(True, trajectory=trajectory, end_state=end)

    def execute(self, trajectory: Any) -> Any:
        return self.robot.execute(trajectory, controllers=[])

    def stop_execution(self) -> None:
        self.robot.get_trajectory_execution_manager().stop_execution()

    def apply_scene(self, add: Sequence[SceneObject], remove: Sequence[str]) -> None:
        with self.robot.get_planning_scene_monitor().read_write() as scene:
            for oid in remove:
                scene.apply_collision_object(self.msgs.remove_object(oid, self.frame))
            for obj in add:
                scene.apply_collision_object(self.msgs.box_object(obj, self.frame))
            scene.current_state.update()


def _capped(params: Any, name: str, cap: float) -> float:
    own = getattr(params, name, None)
    return float(cap) if own is None or float(own) <= 0 else min(float(own), float(cap))


class MoveItPlanner:
    """The pipeline's Planner on moveit_py.

    ``node_name``, ``config_dict``: MoveItPy's node and its parameters (the MoveIt config);
    ``use_sim_time``: passed to that node (the node should pass its own ``use_sim_time``);
    ``startup_attempts`` / ``retry_wait_s``: MoveItPy constructions at start, ``retry_wait_s`` apart. Each failed
    one leaves an rclcpp node and its executor thread behind (moveit_py starts them before MoveItCpp throws), so
    every attempt takes a new node name (``node_name``, ``node_name_2``, ...) and there are no retries after
    start: with ``wait_for_initial_state_timeout: 0`` (config/moveit_py.yaml) late joint states do not fail the
    construction, what does (a bad config, no robot_description) a retry cannot mend. Goals then fail with the
    reason; the node keeps serving.
    ``after_start()``: called once MoveItPy is up, from the thread that built it (the node re-installs its own
    SIGINT / SIGTERM handlers there, which rclcpp's replaced).
    ``moveit_factory(node_name, config_dict)`` and ``backend_factory(robot, params, safety)``: injectable for
    tests (default: ``moveit.planning.MoveItPy`` and :class:`MoveItBackend`)."""

    def __init__(self, node_name: str, config_dict: dict, params: Any, safety: SafetyEnvelope, *,
                 use_sim_time: bool = False, startup_attempts: int = 3, retry_wait_s: float = 2.0,
                 moveit_factory: Callable[[str, dict], Any] | None = None,
                 backend_factory: Callable[[Any, Any, SafetyEnvelope], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep, after_start: Callable[[], None] | None = None,
                 box_lifetime_s: float = 300.0) -> None:
        self.node_name = node_name
        self.config = dict(config_dict)
        self.config["use_sim_time"] = bool(use_sim_time)
        self.params = params
        self.safety = safety
        self.startup_attempts = max(1, int(startup_attempts))
        self.retry_wait_s = float(retry_wait_s)
        self._moveit_factory = moveit_factory
        self._backend_factory = backend_factory or MoveItBackend
        self._sleep = sleep
        self._after_start = after_start
        self.box_lifetime_s = float(box_lifetime_s)
        self._start_lock = threading.Lock()
        self.robot: Any = None
        self.runner: MotionRunner | None = None
        self.start_error = ""
        self.node_names: list[str] = []  # one per MoveItPy construction (each leaves an rclcpp node)
        self.start(self.startup_attempts)

    # -- start -------------------------------------------------------------------------------------
    def start(self, attempts: int = 1) -> bool:
        """Start MoveItPy (``attempts`` tries, ``retry_wait_s`` apart; only once in the planner's life); True
        when it runs. Never raises."""
        with self._start_lock:
            if self.runner is not None:
                return True
            if self.node_names:  # tried and failed: a new try would leak one more node and thread
                return False
            factory = self._moveit_factory
            if factory is None:
                try:
                    from moveit.planning import MoveItPy
                except ImportError as e:  # a MoveIt config without moveit_py: goals say so, the node runs on
                    self.start_error = f"moveit_py is not installed ({e}); install ros-jazzy-moveit-py"
                    log.error(self.start_error)
                    return False

                def factory(name: str, config: dict) -> Any:
                    return MoveItPy(node_name=name, config_dict=config)
            for i in range(attempts):
                name = self.node_name if i == 0 else f"{self.node_name}_{i + 1}"
                self.node_names.append(name)
                try:
                    self.robot = factory(name, self.config)
                    if self._after_start is not None:
                        self._after_start()
                    runner = MotionRunner(self._backend_factory(self.robot, self.params, self.safety), self.safety,
                                          box_lifetime_s=self.box_lifetime_s)
                    runner.update_environment()  # the table goes into the planning scene once, at start
                    self.runner = runner
                    self.start_error = ""
                    return True
                except Exception as e:  # MoveItCpp throws RuntimeError when no joint state came in time
                    self.start_error = f"{type(e).__name__}: {e}"
                    log.warning("MoveIt start %d/%d failed: %s", i + 1, attempts, self.start_error)
                    if i + 1 < attempts:
                        self._sleep(self.retry_wait_s)
            return False

    @property
    def ready(self) -> bool:
        return self.runner is not None

    def stop(self) -> bool:
        """Cancel the running motion sequence without waiting (the action server's cancel callback, a stop
        signal): the goal's own thread stops a running execution (:meth:`MotionRunner.request_stop`)."""
        if self.runner is not None:
            self.runner.request_stop()
        return True

    # -- Planner protocol --------------------------------------------------------------------------
    def plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None) -> PlanOutcome:
        if not self.start(1):
            return PlanOutcome(False, f"MoveIt is not running: {self.start_error} (restart the node once the "
                                      "cause is fixed)")
        return plan_goal(self.runner, result, goal, self.params, cancel)
