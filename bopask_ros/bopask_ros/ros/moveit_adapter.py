"""MoveIt 2 (moveit_py) behind the pipeline's Planner protocol. Imports moveit_py: runs on a robot
machine only. It carries out the steps of :mod:`bopask_ros.motion_steps`; every decision is there.

Checked against moveit2's moveit_py bindings: ``MoveItPy(node_name, config_dict=...)``,
``get_planning_component(group)``, ``PlanningComponent.set_start_state_to_current_state()``,
``set_goal_state(pose_stamped_msg=..., pose_link=...)`` / ``set_goal_state(configuration_name=...)``,
``plan(single_plan_parameters=PlanRequestParameters(robot, "<plan_request_params entry>"))``,
``RobotState.set_from_ik(group, pose_msg, tip, timeout)``, ``get_planning_scene_monitor().read_write()``.
``MoveItPy.execute`` is ``execute(robot_trajectory, controllers=[])`` on Humble/Jazzy and
``execute(group_name, robot_trajectory, blocking=True)`` on newer releases: both are tried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from bopask_ros.motion_steps import MotionStep, grasp_steps, pose_steps, poses_to_check, trajectory_steps
from bopask_ros.pipeline import Goal, PipelineResult, PlanOutcome
from bopask_ros.safety import SafetyEnvelope
from bopask_vlm.answers import Task
from bopask_vlm.geometry import quat_from_matrix


def _pose_stamped(T: np.ndarray, frame: str) -> Any:
    from geometry_msgs.msg import PoseStamped

    msg = PoseStamped()
    msg.header.frame_id = frame
    q = quat_from_matrix(T[:3, :3])
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in T[:3, 3])
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = (float(v) for v in q)
    return msg


class MoveItPlanner:
    def __init__(self, node_name: str, config_dict: dict, params: Any, safety: SafetyEnvelope) -> None:
        from moveit.planning import MoveItPy, PlanRequestParameters

        self.robot = MoveItPy(node_name=node_name, config_dict=config_dict)
        self.params = params
        self.safety = safety
        self.frame = params["planning_frame"]
        self.arm = self.robot.get_planning_component(params["planning_group"])
        self.gripper = self.robot.get_planning_component(params["gripper_group"])
        self._PlanRequestParameters = PlanRequestParameters
        self._lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------------
    def _plan_params(self, entry: str) -> Any:
        p = self._PlanRequestParameters(self.robot, entry)
        p.max_velocity_scaling_factor = self.safety.velocity_scaling
        p.max_acceleration_scaling_factor = self.safety.acceleration_scaling
        return p

    def _ik_ok(self, T: np.ndarray) -> bool:
        from moveit.core.robot_state import RobotState

        state = RobotState(self.robot.get_robot_model())
        return bool(state.set_from_ik(self.params["planning_group"], _pose_stamped(T, self.frame).pose,
                                      self.params["end_effector_link"], 0.1))

    def _execute(self, group: str, trajectory: Any) -> None:
        try:
            self.robot.execute(group, trajectory, blocking=True)
        except TypeError:
            self.robot.execute(trajectory, controllers=[])

    def stop(self) -> None:
        """Stop a running execution (called from the cancel callback)."""
        tem = getattr(self.robot, "get_trajectory_execution_manager", None) or self.robot.get_trajactory_execution_manager
        tem().stop_execution()

    def _run_step(self, step: MotionStep, execute: bool) -> tuple[bool, str]:
        if step.kind in ("move", "linear"):
            comp, entry = self.arm, self.params["planning_pipeline" if step.kind == "move" else "cartesian_pipeline"]
            comp.set_start_state_to_current_state()
            comp.set_goal_state(pose_stamped_msg=_pose_stamped(step.pose, self.frame),
                                pose_link=self.params["end_effector_link"])
            result = comp.plan(single_plan_parameters=self._plan_params(entry))
            if not result:
                return False, f"no plan for {step.label}"
            if execute:
                self._execute(self.params["planning_group"], result.trajectory)
            return True, ""
        if step.kind == "gripper":
            if not execute:
                return True, ""
            self.gripper.set_start_state_to_current_state()
            self.gripper.set_goal_state(configuration_name=step.named_state)
            result = self.gripper.plan()
            if not result:
                return False, f"no plan for {step.label}"
            self._execute(self.params["gripper_group"], result.trajectory)
            return True, ""
        if step.kind == "add_box":
            from geometry_msgs.msg import Pose
            from moveit_msgs.msg import CollisionObject
            from shape_msgs.msg import SolidPrimitive

            obj = CollisionObject()
            obj.header.frame_id = self.frame
            obj.id = step.meta.get("id", "bopask_object")
            box = SolidPrimitive(type=SolidPrimitive.BOX, dimensions=list(step.size))
            pose: Pose = _pose_stamped(step.pose, self.frame).pose
            obj.primitives.append(box)
            obj.primitive_poses.append(pose)
            obj.operation = CollisionObject.ADD
            with self.robot.get_planning_scene_monitor().read_write() as scene:
                scene.apply_collision_object(obj)
                scene.current_state.update()
            return True, ""
        return True, ""  # attach / detach: bookkeeping on real grippers is left to the controller

    # -- Planner protocol ------------------------------------------------------------------------
    def plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None) -> PlanOutcome:
        task = Task(goal.task)
        execute = (not goal.plan_only) and bool(self.params["allow_execution"])
        if task is Task.GRASP and result.grasp_pose_base is not None:
            steps = grasp_steps(result.grasp_pose_base, self.safety, self.params["lift_distance"],
                                self.params["gripper_open_state"], self.params["gripper_close_state"])
        elif task is Task.TRAJECTORY:
            steps = trajectory_steps(result.points_base)
        elif task is Task.POSE and len(result.points_base) == 8:
            from bopask_vlm.eval.metrics import box_from_corners_3d

            box = box_from_corners_3d(result.points_base)
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = box.R, box.center
            steps = pose_steps(T, box.size)
        else:
            return PlanOutcome(True, "nothing to plan for this task")
        with self._lock:
            for s in poses_to_check(steps):
                if not self._ik_ok(s.pose):
                    return PlanOutcome(False, f"unreachable: no IK solution for {s.label}")
            for i, s in enumerate(steps):
                if cancel is not None and cancel():
                    return PlanOutcome(False, f"canceled before {s.label}", executed=i > 0 and execute)
                # without execution only the first arm motion can be planned from the current state
                if not execute and i > 0 and s.kind in ("move", "linear"):
                    continue
                ok, why = self._run_step(s, execute)
                if not ok:
                    return PlanOutcome(False, why, executed=i > 0 and execute)
        return PlanOutcome(True, "executed" if execute else "planned", executed=execute)
