"""How a list of motion steps is carried out, ROS-free: the control flow every motion backend shares.

:mod:`bopask_ros.motion.motion_steps` says *what* the robot does for a task; :class:`MotionRunner` says *how*: the
order of IK checks, planning and execution, when to look for a cancel, how an execution status is judged,
which state each plan starts from, and which collision objects the planning scene holds. A backend (MoveIt
through moveit_py in :mod:`bopask_ros.ros.moveit_adapter`, or a simulator) only maps single operations to its
library: see :class:`MotionBackend`.

Rules, each tested in ``tests/test_moveit_adapter.py`` against a stand-in backend:

- Before anything moves, every arm pose has a collision-free IK solution seeded from the current state.
- Each arm plan starts from a *copy* of the current state with joint velocities and accelerations set to
  zero (Pilz LIN refuses a start state with non-zero velocity, ``NonZeroVelocityInStartState``, tolerance
  1e-8, and measured joint states are noisy). Without execution, each plan starts where the previous
  one ends, so the whole sequence is checked.
- A cancel (the goal's ``cancel()`` or :meth:`MotionRunner.request_stop`) is looked for before every step and
  between planning and executing it. A stop that arrives while a trajectory runs stops it; one that arrives
  just before execution starts keeps it from starting (the start and the stop share a lock). The stop itself
  is done by the goal's own thread: the trajectory runs on a helper thread while the goal's thread watches
  the stop flag and the goal's ``cancel()`` and repeats the backend's stop until the execution has returned,
  so a cancel callback only sets the flag and returns at once (rclpy moves the goal to CANCELING only when
  it has returned). A canceled sequence ends with ``PlanOutcome.canceled``.
- A gripper close marked ``closes_on_object`` is judged by the finger opening when the backend can measure
  it (``gripper_opening``): fingers stopped at ``min_grasp_width`` or wider hold the object (a grasp, even
  when the controller reported the stall as ABORTED), narrower ones closed on nothing (a miss, even when the
  controller reported SUCCEEDED).
- ``detach`` with a named state opens the gripper (the object is released where the path ends).
- An execution that does not succeed (moveit_py's ``ExecutionStatus``: ABORTED, PREEMPTED, TIMED_OUT,
  FAILED...) ends the sequence: nothing after it runs (no close, no lift after a failed approach) and the
  outcome names the status.
- The planning scene holds the table (from the safety envelope), the support plane the pipeline measured
  when it differs from the table, and one box per object a pose goal asked to add (id from the object
  description; a new pose of the same object replaces its box). A box that contains a grasp or path target
  is removed before planning to it, else the planner could never reach the object. Object boxes leave the
  scene ``box_lifetime_s`` after they were put there (at the next sequence). Objects are sent to the backend
  only when they change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bopask_ros.motion.motion_steps import BOX_PREFIX, MotionStep, object_box_id, poses_to_check, step_options_for
from bopask_ros.pipeline import PlanOutcome

__all__ = [
    "ExecStatus",
    "MotionBackend",
    "MotionPlan",
    "MotionRunner",
    "SceneBook",
    "SceneObject",
    "exec_status_of",
    "object_box_id",
    "plan_goal",
    "support_plane_object",
    "table_object",
]

TABLE_ID = "bopask_table"
SUPPORT_ID = "bopask_support_plane"


# -- execution status -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecStatus:
    """The result of executing one trajectory: ``ok`` only for a completed execution, ``name`` as MoveIt
    spells it (SUCCEEDED, ABORTED, PREEMPTED, TIMED_OUT, FAILED, UNKNOWN, ...)."""

    ok: bool
    name: str


def exec_status_of(value: Any) -> ExecStatus:
    """Judge what a backend's execute returned.

    moveit_py (Jazzy) returns ``moveit.core.controller_manager.ExecutionStatus``: ``bool(status)`` is true
    only for SUCCEEDED and ``status.status`` is its name (moveit_py
    ``src/moveit/moveit_core/controller_manager/controller_manager.cpp``: ``status`` bound to
    ``ExecutionStatus::asString``, ``__bool__`` to its ``operator bool``). A plain bool is accepted too (a
    simulator); ``None`` (no status at all) is a failure, never a success."""
    if value is None:
        return ExecStatus(False, "NO_STATUS")
    if isinstance(value, bool):
        return ExecStatus(value, "SUCCEEDED" if value else "FAILED")
    ok = bool(value)
    name = getattr(value, "status", None)
    if not isinstance(name, str) or not name:
        name = "SUCCEEDED" if ok else "FAILED"
    return ExecStatus(ok and name.upper() == "SUCCEEDED", name.upper())


# -- planning scene objects ------------------------------------------------------------------------

@dataclass(frozen=True)
class SceneObject:
    """A box collision object: ``pose`` (4x4, planning frame) of its centre, ``size`` its edge lengths."""

    id: str
    pose: NDArray[np.float64]
    size: tuple[float, float, float]

    def same_as(self, other: SceneObject | None, tol: float = 1e-3) -> bool:
        return (other is not None and other.id == self.id
                and np.allclose(self.size, other.size, atol=tol) and np.allclose(self.pose, other.pose, atol=tol))

    def contains(self, points: NDArray[np.float64], margin: float = 0.0) -> NDArray[np.bool_]:
        """Which points lie inside the box grown by ``margin``."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        local = (p - self.pose[:3, 3]) @ self.pose[:3, :3]
        return np.all(np.abs(local) <= np.asarray(self.size) / 2 + margin, axis=1)


def table_object(safety: Any, thickness: float = 0.04, gap: float = 0.003) -> SceneObject:
    """The table as a box: the workspace's x/y extent, its top ``gap`` below the safety envelope's table
    height (so the robot's base link, which stands on the table, does not touch it; ``gap`` must stay below
    ``min_height_above_table`` so every accepted target still clears the box)."""
    lo, hi = np.asarray(safety.workspace_min, float), np.asarray(safety.workspace_max, float)
    if gap >= safety.min_height_above_table:
        raise ValueError(f"table gap {gap} m must be smaller than min_height_above_table "
                         f"{safety.min_height_above_table} m")
    T = np.eye(4)
    T[:3, 3] = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, safety.table_height - gap - thickness / 2]
    return SceneObject(TABLE_ID, T, (float(hi[0] - lo[0]), float(hi[1] - lo[1]), float(thickness)))


def support_plane_object(safety: Any, plane: tuple[Sequence[float], float] | None,
                         targets: NDArray[np.float64] | None, *, half_extent: float = 0.15,
                         thickness: float = 0.02, gap: float = 0.003, height_tol: float = 0.01,
                         angle_tol_deg: float = 3.0) -> SceneObject | None:
    """The measured support plane (``normal . x + offset = 0`` in the planning frame) as a thin box under
    the targets, or None where it is the table already (within ``height_tol`` and ``angle_tol_deg``) or
    there is nothing to place it under. It covers only ``half_extent`` around the targets: a plane that is
    not the table (a shelf, a box lid) must not swallow the robot."""
    if plane is None or targets is None:
        return None
    pts = np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    n = np.asarray(plane[0], dtype=np.float64).reshape(3)
    if not len(pts) or not np.all(np.isfinite(n)) or np.linalg.norm(n) < 1e-9:
        return None
    d = float(plane[1]) / np.linalg.norm(n)
    n = n / np.linalg.norm(n)
    if n[2] < 0:
        n, d = -n, -d
    centre_xy = (pts[:, :2].min(axis=0) + pts[:, :2].max(axis=0)) / 2
    # the plane's height under the targets' centre
    z = -(d + n[0] * centre_xy[0] + n[1] * centre_xy[1]) / max(n[2], 1e-9)
    angle = float(np.degrees(np.arccos(np.clip(n[2], -1.0, 1.0))))
    if abs(z - safety.table_height) <= height_tol and angle <= angle_tol_deg:
        return None
    if angle > 45.0:  # a wall, not a support
        return None
    x = np.cross([0.0, 1.0, 0.0], n)
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, np.cross(n, x), n])
    top = np.array([centre_xy[0], centre_xy[1], z])
    T[:3, 3] = top - (gap + thickness / 2) * n
    span = pts[:, :2].max(axis=0) - pts[:, :2].min(axis=0)
    return SceneObject(SUPPORT_ID, T, (float(span[0] + 2 * half_extent), float(span[1] + 2 * half_extent),
                                       float(thickness)))


@dataclass
class SceneBook:
    """What the planning scene holds (our objects only), so that only changes are sent to the backend;
    ``since``: when each object was last put (``clock()``, seconds)."""

    objects: dict[str, SceneObject] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def put(self, obj: SceneObject) -> tuple[list[SceneObject], list[str]]:
        """Add or replace ``obj``; the (add, remove) operations that brings about (none if unchanged)."""
        self.since[obj.id] = self.clock()
        if obj.same_as(self.objects.get(obj.id)):
            return [], []
        self.objects[obj.id] = obj
        return [obj], []

    def drop(self, ids: Iterable[str]) -> tuple[list[SceneObject], list[str]]:
        gone = [i for i in ids if self.objects.pop(i, None) is not None]
        for i in gone:
            self.since.pop(i, None)
        return [], gone

    def expired_boxes(self, lifetime_s: float) -> list[str]:
        """Object boxes put more than ``lifetime_s`` ago (none when ``lifetime_s`` <= 0)."""
        if lifetime_s <= 0:
            return []
        now = self.clock()
        return [i for i in self.objects if i.startswith(BOX_PREFIX) and now - self.since.get(i, now) > lifetime_s]

    def boxes_containing(self, points: NDArray[np.float64], margin: float = 0.02) -> list[str]:
        """Object boxes (not the table or support plane) that hold any of ``points``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return [i for i, o in self.objects.items() if i.startswith(BOX_PREFIX) and len(pts)
                and bool(np.any(o.contains(pts, margin)))]


# -- the backend protocol --------------------------------------------------------------------------

@dataclass
class MotionPlan:
    """One planned step: ``trajectory`` (the backend's object) and the state it ends in."""

    ok: bool
    trajectory: Any = None
    end_state: Any = None
    reason: str = ""


class MotionBackend(Protocol):
    """The single operations a motion library provides. States and trajectories are the backend's own
    objects; the runner only passes them back."""

    def current_state(self) -> Any:
        """An independent copy of the robot's current state (raise ``RuntimeError`` if none is known)."""

    def zero_motion(self, state: Any) -> Any:
        """``state`` with all joint velocities and accelerations zero (may modify and return it)."""

    def ik_problem(self, pose: NDArray[np.float64], seed: Any) -> str | None:
        """None if the end effector can reach ``pose`` (4x4, planning frame) collision-free, IK seeded from
        ``seed``; else why not."""

    def plan(self, step: MotionStep, start: Any) -> MotionPlan:
        """Plan one "move", "linear" or "gripper" step from ``start``."""

    def execute(self, trajectory: Any) -> Any:
        """Run a trajectory to its end (blocking); an execution status (see :func:`exec_status_of`)."""

    def stop_execution(self) -> None:
        """Stop whatever execution is running (no-op when none is)."""

    def apply_scene(self, add: Sequence[SceneObject], remove: Sequence[str]) -> None:
        """Add (or replace, same id) and remove box collision objects in the planning scene."""

    # optional: ``gripper_opening() -> float | None``, the distance between the fingers (m) once they have
    # stopped moving (None: not measured); a backend without it has its gripper closes judged by the status


GRIPPER_MISS = "the gripper closed on nothing"


# -- the runner ------------------------------------------------------------------------------------

class _Canceled(Exception):
    pass


class MotionRunner:
    """Carries out motion steps on a :class:`MotionBackend` (see the module docstring for the rules).

    ``safety``: the :class:`bopask_ros.motion.safety.SafetyEnvelope` (its table becomes a collision object).
    ``stop_poll_s``: how often the goal's thread looks for a stop, and repeats the backend's stop, while an
    execution is running. ``min_grasp_width``: the finger opening (m) below which a close held nothing.
    ``box_lifetime_s``: how long an object box stays in the planning scene (0: until replaced or cleared)."""

    def __init__(self, backend: MotionBackend, safety: Any = None, *, stop_poll_s: float = 0.05,
                 min_grasp_width: float = 0.004, box_lifetime_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.safety = safety
        self.scene = SceneBook(clock=clock)
        self.stop_poll_s = float(stop_poll_s)
        self.min_grasp_width = float(min_grasp_width)
        self.box_lifetime_s = float(box_lifetime_s)
        self._run_lock = threading.Lock()  # one sequence at a time
        self._cond = threading.Condition()
        self._stop = False
        self._executing = False

    # -- cancel ------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Cancel the running sequence without waiting (a cancel callback, a stop signal): nothing further
        starts, and the goal's own thread stops a running execution (it repeats the backend's stop until the
        execution has returned, so a stop that lands just as the controller starts is not lost)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """:meth:`request_stop`, then wait until no execution runs any more (at most ``timeout_s``); True when
        none does."""
        deadline = time.monotonic() + timeout_s
        self.request_stop()
        with self._cond:
            while self._executing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, self.stop_poll_s))
        return True

    @property
    def executing(self) -> bool:
        with self._cond:
            return self._executing

    def _check(self, cancel: Callable[[], bool] | None, where: str) -> None:
        with self._cond:
            stopped = self._stop
        if stopped or (cancel is not None and cancel()):
            raise _Canceled(where)

    def _execute(self, trajectory: Any, cancel: Callable[[], bool] | None, label: str) -> ExecStatus:
        """Run ``trajectory`` on a helper thread; this (the goal's) thread watches for a stop meanwhile and
        stops the execution itself, repeating the backend's stop until the execution has returned."""
        with self._cond:  # the start and request_stop() share the lock: a stop before this point keeps it from starting
            if self._stop or (cancel is not None and cancel()):
                raise _Canceled(f"canceled before executing {label}")
            self._executing = True
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["status"] = self.backend.execute(trajectory)
            except BaseException as e:  # handed to the goal's thread
                box["error"] = e
            finally:
                with self._cond:
                    self._executing = False
                    self._cond.notify_all()

        worker = threading.Thread(target=run, name=f"execute {label}", daemon=True)
        worker.start()
        try:
            with self._cond:
                while self._executing:
                    stopping = self._stop
                    if not stopping and cancel is not None:
                        self._cond.release()  # cancel() may take the goal handle's lock: never under ours
                        try:
                            stopping = bool(cancel())
                        finally:
                            self._cond.acquire()
                        self._stop = self._stop or stopping
                    if stopping and self._executing:
                        self._cond.release()
                        try:
                            self.backend.stop_execution()
                        finally:
                            self._cond.acquire()
                    if self._executing:
                        self._cond.wait(self.stop_poll_s)
        finally:
            worker.join()
        if "error" in box:
            raise box["error"]
        return exec_status_of(box.get("status"))

    def _judge_close(self, step: MotionStep, status: ExecStatus) -> str | None:
        """Why a gripper close did not grasp (None: it did), from the finger opening where the backend measures
        it: a stall on the object is a grasp whatever the status; an empty close is a miss."""
        measure = getattr(self.backend, "gripper_opening", None)
        width = measure() if measure is not None else None
        if width is None:
            return None if status.ok else f"execution of {step.label} did not succeed: {status.name}"
        if width < self.min_grasp_width:
            return (f"{GRIPPER_MISS}: {step.label} ended {width * 1000:.1f} mm open (execution {status.name}), "
                    f"under {self.min_grasp_width * 1000:.1f} mm")
        return None

    # -- planning scene ----------------------------------------------------------------------------
    def _apply(self, ops: tuple[list[SceneObject], list[str]]) -> None:
        add, remove = ops
        if add or remove:
            self.backend.apply_scene(add, remove)

    def update_environment(self, support_plane: tuple[Sequence[float], float] | None = None,
                           targets: NDArray[np.float64] | None = None) -> None:
        """Put the table (and the measured support plane, where it is not the table) into the scene.
        Called before each sequence; sends nothing when nothing changed. Object boxes older than
        ``box_lifetime_s`` leave the scene here."""
        expired = self.scene.expired_boxes(self.box_lifetime_s)
        if expired:
            self._apply(self.scene.drop(expired))
        if self.safety is not None:
            self._apply(self.scene.put(table_object(self.safety)))
            support = support_plane_object(self.safety, support_plane, targets)
            if support is not None:
                self._apply(self.scene.put(support))
            elif SUPPORT_ID in self.scene.objects:
                self._apply(self.scene.drop([SUPPORT_ID]))

    def clear_boxes_at(self, points: NDArray[np.float64]) -> list[str]:
        """Remove object boxes that hold any of ``points`` (the objects about to be grasped or moved)."""
        ids = self.scene.boxes_containing(points)
        self._apply(self.scene.drop(ids))
        return ids

    # -- the sequence ------------------------------------------------------------------------------
    def run(self, steps: Sequence[MotionStep], execute: bool, cancel: Callable[[], bool] | None = None,
            *, support_plane: tuple[Sequence[float], float] | None = None,
            targets: NDArray[np.float64] | None = None) -> PlanOutcome:
        """Check, plan and (with ``execute``) run ``steps``; never raises for a failure of the robot or the
        planner: the outcome says what happened. ``targets``: the task's points (planning frame), under
        which the support plane goes and whose object boxes are cleared."""
        with self._run_lock:
            with self._cond:
                self._stop = False
            executed = False
            plans: list[MotionPlan] = []
            try:
                self.update_environment(support_plane, targets)
                arm_targets = [s.pose[:3, 3] for s in poses_to_check(steps)]
                if targets is not None or arm_targets:
                    pts = [np.asarray(targets, float).reshape(-1, 3)] if targets is not None else []
                    pts += [np.asarray(arm_targets).reshape(-1, 3)] if arm_targets else []
                    self.clear_boxes_at(np.vstack(pts))
                seed = self.backend.zero_motion(self.backend.current_state())
                for s in poses_to_check(steps):
                    self._check(cancel, f"canceled before the IK check of {s.label}")
                    why = self.backend.ik_problem(s.pose, seed)
                    if why is not None:
                        return PlanOutcome(False, f"unreachable: {s.label}: {why}")
                previous_end: Any = None
                for s in steps:
                    self._check(cancel, f"canceled before {s.label}")
                    if s.kind == "add_box":
                        self._apply(self.scene.put(SceneObject(s.meta.get("id", object_box_id("object")),
                                                               np.asarray(s.pose, float), tuple(s.size))))
                        continue
                    if s.kind == "remove_box":
                        self._apply(self.scene.drop([s.meta["id"]]))
                        continue
                    if s.kind == "attach" or (s.kind == "detach" and not s.named_state):
                        continue  # the gripper holds the object; MoveIt's attached-body bookkeeping is not used
                    if s.kind == "detach":  # release: open the gripper where the path ends
                        s = replace(s, kind="gripper")
                    if s.kind == "gripper" and not execute:
                        continue  # the fingers do not change where the arm can go
                    if execute or previous_end is None:
                        start = self.backend.zero_motion(self.backend.current_state())
                    else:
                        start = self.backend.zero_motion(previous_end)
                    plan = self.backend.plan(s, start)
                    if not plan.ok:
                        return PlanOutcome(False, f"no plan for {s.label}" + (f": {plan.reason}" if plan.reason else ""),
                                           executed=executed, plan=plans)
                    plans.append(plan)
                    if not execute:
                        if s.kind != "gripper":
                            previous_end = plan.end_state
                        continue
                    self._check(cancel, f"canceled after planning {s.label}, before executing it")
                    status = self._execute(plan.trajectory, cancel, s.label)
                    executed = True
                    with self._cond:
                        stopped = self._stop
                    if stopped or (cancel is not None and cancel()):
                        raise _Canceled(f"canceled during {s.label} (execution {status.name})")
                    if s.kind == "gripper" and s.meta.get("closes_on_object"):
                        why = self._judge_close(s, status)
                        if why is not None:
                            return PlanOutcome(False, why, executed=True, plan=plans)
                    elif not status.ok:
                        return PlanOutcome(False, f"execution of {s.label} did not succeed: {status.name}",
                                           executed=True, plan=plans)
            except _Canceled as c:
                return PlanOutcome(False, str(c), executed=executed, plan=plans, canceled=True)
            except RuntimeError as e:  # the backend has no current state, the scene could not be updated...
                return PlanOutcome(False, f"{type(e).__name__}: {e}", executed=executed, plan=plans)
        return PlanOutcome(True, "executed" if execute else "planned", executed=execute, plan=plans)


def plan_goal(runner: MotionRunner, result: Any, goal: Any, params: Mapping[str, Any],
              cancel: Callable[[], bool] | None) -> PlanOutcome:
    """The pipeline's ``Planner.plan`` on a runner: the goal's steps (:func:`motion_steps.step_options_for`: a grasp
    turned half a turn when the arm cannot reach it as given; the first unreachable outcome otherwise), executed
    only when the goal asks for it and ``params["allow_execution"]`` allows it, with the result's support plane
    and target points. Any backend behind a :class:`MotionRunner` is a Planner through this."""
    options = step_options_for(result, goal, params, runner.safety)
    if options is None:
        return PlanOutcome(True, "nothing to plan for this task")
    execute = (not goal.plan_only) and bool(params["allow_execution"])
    targets = np.asarray(result.points_base, dtype=np.float64).reshape(-1, 3)
    first: PlanOutcome | None = None
    for steps in options:  # a grasp: as given, then turned half a turn (motion_steps.grasp_alternatives)
        out = runner.run(steps, execute, cancel, support_plane=getattr(result, "support_plane_base", None),
                         targets=targets if len(targets) else None)
        if out.ok or out.executed or out.canceled or not out.reason.startswith("unreachable"):
            return out
        first = first or out
    assert first is not None
    return first
