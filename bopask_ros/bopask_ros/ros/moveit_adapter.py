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
- ``PlanningComponent.set_start_state(robot_state=...)``, ``set_start_state_to_current_state()`` and
  ``get_start_state()`` (the current state, waiting up to 1 s; None when none arrived),
  ``set_goal_state(pose_stamped_msg=..., pose_link=...)`` / ``set_goal_state(configuration_name=...)``,
  ``plan(single_plan_parameters=PlanRequestParameters(robot, "<plan_request_params entry>"))`` returning a
  ``MotionPlanResponse`` (``bool()`` true on SUCCESS, ``.error_code.val``, ``.trajectory``: a
  ``RobotTrajectory``, indexable, its last item the end state). ``plan()`` holds the GIL.
- ``RobotState.set_from_ik(joint_model_group_name, geometry_pose, tip_name, timeout)``; ``joint_velocities``
  / ``joint_accelerations`` are dicts by variable name; ``copy.deepcopy(state)`` copies it.
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
                 plan_request_parameters: Callable[[Any, str], Any] | None = None, ik_timeout_s: float = 0.1) -> None:
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

    def _plan_params(self, entry: str) -> Any:
        p = self._plan_request_parameters(self.robot, entry)
        p.max_velocity_scaling_factor = self.safety.velocity_scaling
        p.max_acceleration_scaling_factor = self.safety.acceleration_scaling
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

    def ik_problem(self, pose: NDArray[np.float64], seed: Any) -> str | None:
        state = copy.deepcopy(seed)
        if not state.set_from_ik(self.group, self.msgs.pose(pose), self.params["end_effector_link"],
                                 self.ik_timeout_s):
            return "no IK solution"
        state.update()
        with self.robot.get_planning_scene_monitor().read_only() as scene:
            valid = scene.is_state_valid(state, self.group)
        return None if valid else "the IK solution is in collision (robot or planning scene)"

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


class MoveItPlanner:
    """The pipeline's Planner on moveit_py.

    ``node_name``, ``config_dict``: MoveItPy's node and its parameters (the MoveIt config);
    ``use_sim_time``: passed to that node (the node should pass its own ``use_sim_time``);
    ``startup_attempts`` / ``retry_wait_s``: MoveItPy is started again when it fails (joint states late);
    after that each goal tries once more and fails with the reason until MoveIt is up, the node keeps serving.
    ``moveit_factory(node_name, config_dict)`` and ``backend_factory(robot, params, safety)``: injectable for
    tests (default: ``moveit.planning.MoveItPy`` and :class:`MoveItBackend`)."""

    def __init__(self, node_name: str, config_dict: dict, params: Any, safety: SafetyEnvelope, *,
                 use_sim_time: bool = False, startup_attempts: int = 3, retry_wait_s: float = 2.0,
                 moveit_factory: Callable[[str, dict], Any] | None = None,
                 backend_factory: Callable[[Any, Any, SafetyEnvelope], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
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
        self._start_lock = threading.Lock()
        self.robot: Any = None
        self.runner: MotionRunner | None = None
        self.start_error = ""
        self.start(self.startup_attempts)

    # -- start -------------------------------------------------------------------------------------
    def start(self, attempts: int = 1) -> bool:
        """Start MoveItPy (``attempts`` tries, ``retry_wait_s`` apart); True when it runs. Never raises."""
        with self._start_lock:
            if self.runner is not None:
                return True
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
                try:
                    self.robot = factory(self.node_name, self.config)
                    runner = MotionRunner(self._backend_factory(self.robot, self.params, self.safety), self.safety)
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
        """Cancel the running motion sequence (called from the action server's cancel callback)."""
        return True if self.runner is None else self.runner.stop()

    # -- Planner protocol --------------------------------------------------------------------------
    def plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None) -> PlanOutcome:
        if not self.start(1):
            return PlanOutcome(False, f"MoveIt is not running: {self.start_error}")
        return plan_goal(self.runner, result, goal, self.params, cancel)
