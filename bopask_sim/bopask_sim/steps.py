"""The one place that says what each :class:`bopask_ros.motion.motion_steps.MotionStep` does in the simulator.

The steps are the MoveIt path's own (``grasp_steps``, ``trajectory_steps``: ``panda_hand`` poses in the robot
base frame); here each kind becomes a simulator action: ``move`` -> joint-space interpolation to the IK solution
(what a free-space plan does, without obstacle avoidance), ``linear`` -> IK along the straight line, ``gripper``
-> both fingers to the named state's opening, ``attach``/``add_box`` -> nothing (friction holds the object; the
scene already holds every object), ``detach`` -> open the fingers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.motion.motion_steps import MotionStep, poses_to_check
from bopask_sim.robot import IKError, Panda

#: finger opening (metres between the pads) of the named gripper states
GRIPPER_STATES = {"open": 0.08, "close": 0.0, "closed": 0.0, "half": 0.04}


def check_reachable(steps: Sequence[MotionStep], arm: Panda, to_world: Callable[[NDArray], NDArray]
                    ) -> dict[int, NDArray[np.float64]]:
    """IK of every pose-carrying step before anything moves (chained seeds); ``{step index: joint angles}``.
    Raises :class:`IKError` naming the first unreachable step."""
    sols: dict[int, NDArray[np.float64]] = {}
    seed = arm.q()
    wanted = {id(s) for s in poses_to_check(list(steps))}
    for i, s in enumerate(steps):
        if id(s) not in wanted:
            continue
        try:
            q = arm.ik(to_world(s.pose), seed)
        except IKError as e:
            raise IKError(f"{s.label}: {e}") from e
        sols[i] = q
        seed = q
    return sols


def run_steps(steps: Sequence[MotionStep], arm: Panda, to_world: Callable[[NDArray], NDArray],
              solutions: dict[int, NDArray[np.float64]] | None = None,
              before: Callable[[int, MotionStep], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> int:
    """Carry the steps out in the simulator; returns how many ran. ``before(i, step)`` is called before each
    (the backend measures there). Raises :class:`IKError` when a straight line cannot be followed."""
    solutions = solutions or {}
    done = 0
    for i, s in enumerate(steps):
        if cancel is not None and cancel():
            break
        if before is not None:
            before(i, s)
        arm.label = s.label
        if s.kind == "move":
            q = solutions.get(i)
            arm.move_joints(q if q is not None else arm.ik(to_world(s.pose)))
        elif s.kind == "linear":
            arm.move_linear(to_world(s.pose))
        elif s.kind == "gripper":
            state = s.named_state or "open"
            if state not in GRIPPER_STATES:
                raise ValueError(f"unknown gripper state {state!r}; known: {sorted(GRIPPER_STATES)}")
            arm.gripper(GRIPPER_STATES[state])
        elif s.kind == "detach":
            arm.gripper(GRIPPER_STATES["open"])
        elif s.kind in ("attach", "add_box"):
            pass
        else:
            raise ValueError(f"unknown motion step kind {s.kind!r}")
        done += 1
    return done


def describe(steps: Sequence[MotionStep]) -> list[dict[str, Any]]:
    """The steps as plain data (labels, kinds, poses) for logs and metrics."""
    return [{"kind": s.kind, "label": s.label,
             "pose": None if s.pose is None else np.asarray(s.pose).round(4).tolist()} for s in steps]
