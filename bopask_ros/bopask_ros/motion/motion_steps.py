"""What the robot does for each task, as a list of motion steps: ROS-free, so it is tested here
and the MoveIt adapter only carries the steps out.

Poses are 4x4 transforms of the robot's end-effector link ``panda_hand`` (+z the approach, the fingers
close along its y) in the planning frame. Grasps arrive as M2T2 skeleton poses (fingers close along x)
and are converted once, here, with :func:`bopask_vlm.gripper.skeleton_to_hand`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from bopask_ros.motion.safety import SafetyEnvelope
from bopask_vlm.gripper import FLIP_Z, skeleton_to_hand

#: a top-down gripper orientation: approach (+z) pointing down the base z axis
TOP_DOWN = Rotation.from_euler("x", 180, degrees=True).as_matrix()


@dataclass(frozen=True)
class MotionStep:
    kind: str  # "move" (free-space plan), "linear" (straight line), "gripper", "add_box", "remove_box",
    # "attach", "detach"
    label: str
    pose: NDArray[np.float64] | None = None
    named_state: str | None = None
    size: tuple[float, float, float] | None = None
    meta: dict = field(default_factory=dict)


def _shifted(T: NDArray[np.float64], dz: float) -> NDArray[np.float64]:
    out = np.array(T, dtype=np.float64)
    out[2, 3] += dz
    return out


def grasp_steps(T_grasp: NDArray[np.float64], safety: SafetyEnvelope, lift_distance: float = 0.1,
                open_state: str = "open", close_state: str = "close") -> list[MotionStep]:
    """Pre-grasp (free move), open, approach (linear), close, lift (linear, straight up).

    ``T_grasp``: the grasp as an M2T2 skeleton pose in the planning frame (the pipeline's
    ``grasp_pose_base``); the steps hold ``panda_hand`` poses."""
    T = skeleton_to_hand(T_grasp)
    return [
        MotionStep("move", "pre-grasp", safety.pre_grasp(T)),
        MotionStep("gripper", "open gripper", named_state=open_state),
        MotionStep("linear", "approach", T),
        # judged by the finger opening (MotionRunner): a close stopped by the object is a grasp, an empty one a miss
        MotionStep("gripper", "close gripper", named_state=close_state, meta={"closes_on_object": True}),
        MotionStep("attach", "attach object"),
        MotionStep("linear", "lift", _shifted(T, lift_distance)),
    ]


def grasp_alternatives(T_grasp: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """The grasp as given, then the same grasp turned 180 degrees about its approach axis; both motion paths (the
    MoveIt runner's :func:`bopask_ros.motion.motion_runner.plan_goal` and the simulator's
    :meth:`bopask_sim.backend.SimMotionBackend.grasp`) execute the first whose steps the arm can reach.

    Legitimate for a parallel-jaw gripper such as the Panda's: its two fingers are identical and close
    symmetrically onto one line, so the turned grasp touches the object at the same two contacts along the same
    closing line from the same approach; only the wrist differs by half a turn, which the arm's last joint limit
    (about +-166 deg on the Panda) may allow for one and not for the other. (Not for a gripper whose fingers
    differ, or whose hand is not symmetric about its approach axis.)"""
    T = np.asarray(T_grasp, dtype=np.float64)
    return [T, T @ FLIP_Z]


def trajectory_steps(points_base: NDArray[np.float64], orientation: NDArray[np.float64] = TOP_DOWN,
                     tool_offset: float = 0.1034, release_state: str = "open") -> list[MotionStep]:
    """Carry a grasped object along lifted waypoints: a free move to the first, then straight
    segments, then release it (``detach``: the gripper opens to ``release_state``). The gripper frame stands
    ``tool_offset`` above each waypoint (the grasp point is between the finger pads, that far along the
    approach)."""
    P = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    steps = []
    for i, p in enumerate(P):
        T = np.eye(4)
        T[:3, :3] = orientation
        T[:3, 3] = p - tool_offset * orientation[:, 2]
        steps.append(MotionStep("move" if i == 0 else "linear", f"waypoint {i}", T))
    steps.append(MotionStep("detach", "release object", named_state=release_state))
    return steps


#: id prefix of the object boxes pose goals put into the planning scene
BOX_PREFIX = "bopask_box_"


def object_box_id(description: str) -> str:
    """The planning-scene id of an object's box: the same description always names the same box, so a
    new pose of an object replaces its old box instead of leaving a stale one."""
    slug = re.sub(r"[^a-z0-9]+", "_", description.strip().lower()).strip("_")
    return BOX_PREFIX + (slug or "object")


def pose_steps(T_box: NDArray[np.float64], size: NDArray[np.float64], description: str = "object",
               add_to_planning_scene: bool = True) -> list[MotionStep]:
    """Put the recovered object box into the planning scene as a collision object (replacing that
    object's previous box), only when the goal asks for it; else nothing."""
    if not add_to_planning_scene:
        return []
    s = tuple(float(x) for x in np.asarray(size).reshape(3))
    oid = object_box_id(description)
    return [MotionStep("add_box", f"add {oid}", np.asarray(T_box, dtype=np.float64), size=s, meta={"id": oid})]


def poses_to_check(steps: list[MotionStep]) -> list[MotionStep]:
    """The steps whose pose must have an IK solution before anything moves."""
    return [s for s in steps if s.kind in ("move", "linear") and s.pose is not None]


def step_options_for(result: Any, goal: Any, params: Mapping[str, Any],
                     safety: SafetyEnvelope) -> list[list[MotionStep]] | None:
    """The goal's motion steps and their equivalent alternatives, in the order to try them (the first whose arm
    poses are all reachable runs): a grasp's :func:`grasp_alternatives`; one list for every other task. None:
    nothing to plan."""
    from bopask_vlm.answers import Task

    if Task(goal.task) is Task.GRASP and result.grasp_pose_base is not None:
        return [grasp_steps(T, safety, params["lift_distance"], params["gripper_open_state"],
                            params["gripper_close_state"]) for T in grasp_alternatives(result.grasp_pose_base)]
    steps = steps_for(result, goal, params, safety)
    return None if steps is None else [steps]


def _param(params: Mapping[str, Any], name: str, default: Any) -> Any:
    try:
        return params[name]
    except KeyError:
        return default


def steps_for(result: Any, goal: Any, params: Mapping[str, Any], safety: SafetyEnvelope) -> list[MotionStep] | None:
    """The motion steps of a goal's pipeline result (a :class:`bopask_ros.pipeline.PipelineResult` and its
    :class:`~bopask_ros.pipeline.Goal`; ``params``: the node's, for lift distance and gripper states). None:
    nothing to plan for this task."""
    from bopask_vlm.answers import Task

    task = Task(goal.task)
    if task is Task.GRASP and result.grasp_pose_base is not None:
        return grasp_steps(result.grasp_pose_base, safety, params["lift_distance"], params["gripper_open_state"],
                           params["gripper_close_state"])
    if task is Task.TRAJECTORY and len(result.points_base):
        return trajectory_steps(result.points_base, release_state=params["gripper_open_state"])
    if task is Task.POSE and len(result.points_base) == 8:
        from bopask_vlm.eval.metrics import box_from_corners_3d

        box = box_from_corners_3d(result.points_base)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = box.R, box.center
        name = str(goal.objects[0]) if goal.objects else "object"
        # a box only when the goal asks (Pose.action: add_to_planning_scene, true by default) and either moves the
        # robot or the node lets plan-only goals add boxes (plan_only_boxes): a look at an object adds nothing
        asked = bool(getattr(goal, "add_to_planning_scene", False))
        allowed = not getattr(goal, "plan_only", True) or bool(_param(params, "plan_only_boxes", False))
        return pose_steps(T, box.size, name, asked and allowed)
    return None
