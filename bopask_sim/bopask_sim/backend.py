"""The simulator as a motion backend behind the task pipeline's ``Planner`` protocol.

``SimMotionBackend.plan(result, goal, cancel)`` builds the MoveIt path's steps (:mod:`bopask_ros.motion.motion_steps`)
from the pipeline result and carries them out in the simulated scene (:mod:`bopask_sim.steps`):

- grasp: ``grasp_steps(result.grasp_pose_base)`` (pre-grasp, open, approach, close, attach, lift), then the
  object is held for 1 s and the outcome measured (:class:`bopask_sim.outcomes.GraspMeasure`);
- trajectory: the object held by the last grasp is carried along ``trajectory_steps`` of the lifted waypoints
  (the hand keeps its orientation at the close and its offset from the object's base point *as the robot
  perceived it*: :func:`perceived_base_point`, from the hand's pose when the fingers closed (kinematics), the
  measured support plane and, when given, the depth points between the fingers; never the simulator's object
  pose), released on the last one (the fingers open), and the hand backs off 8 cm (a simulator-only step, so
  that it does not disturb the placed object);
- other tasks: nothing moves (``pose`` would add a collision box, which the simulated scene already holds).

IK failures are found before anything moves (``PlanOutcome(ok=False, executed=False)``); physical failures
come back as ``PlanOutcome(ok=False, executed=True, reason=...)``; ``plan_only`` goals only check IK.
:meth:`SimMotionBackend.from_params` builds one from plain parameters (for the ROS node's ``motion_backend: sim``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.motion.motion_steps import MotionStep, grasp_alternatives, grasp_steps, trajectory_steps
from bopask_ros.motion.safety import SafetyEnvelope
from bopask_ros.pipeline import Goal, PipelineResult, PlanOutcome
from bopask_sim.outcomes import HOLD_S, CarryMeasure, GraspMeasure, classify_carry, classify_grasp
from bopask_sim.robot import ContactMonitor, IKError
from bopask_sim.steps import check_reachable, describe, run_steps
from bopask_sim.world import SimWorld
from bopask_vlm.answers.types import Task
from bopask_vlm.gripper import GRASP_DEPTH

RETREAT = 0.08
#: the region between the finger pads, in the ``panda_hand`` frame around the grasp point (metres): half the
#: pads' width along x, half the widest opening along y, along the approach z
BETWEEN_FINGERS = (0.012, 0.045, 0.025)
MIN_POINTS_BETWEEN = 15


def perceived_base_point(T_base_hand: NDArray[np.float64], plane_base: tuple[Any, float] | None,
                         points_base: NDArray[np.float64] | None = None, table_height: float = 0.0
                         ) -> NDArray[np.float64]:
    """Where the robot believes the held object's base point (bottom centre, the datagen's trajectory reference)
    rested, from what it perceives: the point between the finger pads of the hand when the fingers closed
    (``T_base_hand``, kinematics; the coupled fingers centre the object along their closing axis), moved along
    the pads' width to the centre of the depth points seen between the fingers (``points_base``, base frame, when
    at least :data:`MIN_POINTS_BETWEEN`), and dropped along the measured support plane's normal onto it
    (``plane_base``: ``(normal, offset)``, ``normal . x + offset = 0``; None: the configured ``table_height``)."""
    T = np.asarray(T_base_hand, float)
    c = T[:3, 3] + T[:3, 2] * GRASP_DEPTH
    if points_base is not None and len(points_base):
        q = (np.asarray(points_base, float).reshape(-1, 3) - c) @ T[:3, :3]
        inside = np.all(np.abs(q) <= np.asarray(BETWEEN_FINGERS), axis=1)
        if int(inside.sum()) >= MIN_POINTS_BETWEEN:
            c = c + T[:3, 0] * float(np.median(q[inside, 0]))
    if plane_base is None:
        n, off = np.array([0.0, 0.0, 1.0]), -float(table_height)
    else:
        n = np.asarray(plane_base[0], float)
        nn = float(np.linalg.norm(n))
        n, off = n / nn, float(plane_base[1]) / nn
        if n[2] < 0:
            n, off = -n, -off
    return c - (float(n @ c) + off) * n


#: joint change (rad, any joint) between the solutions at a straight segment's two ends beyond which
#: :meth:`SimMotionBackend.grasp_problem` expects an elbow flip on the way (a 10-15 cm line needs ~0.3 rad)
ELBOW_FLIP_RAD = 1.0


class SimMotionBackend:
    """Planner protocol over a :class:`SimWorld`. ``safety``: the envelope whose ``pre_grasp`` distance the grasp
    steps use (default: the node's default envelope); ``lift_distance``: the grasp's final lift (m)."""

    def __init__(self, world: SimWorld, safety: SafetyEnvelope | None = None, *, lift_distance: float = 0.1,
                 hold_s: float = HOLD_S) -> None:
        self.world = world
        self.arm = world.panda
        self.safety = safety or SafetyEnvelope()
        self.lift_distance = float(lift_distance)
        self.hold_s = float(hold_s)
        self.held: int | None = None  # instance index held after a successful grasp
        #: ``panda_hand`` in the base frame when the fingers last closed (kinematics) and the held object's base
        #: point as perceived then (:func:`perceived_base_point`): what a carry's hand-to-object offset comes from
        self.hand_at_close: NDArray[np.float64] | None = None
        self.held_point_base: NDArray[np.float64] | None = None
        #: every motion step list sent to the arm (plain data), in order: what the robot was commanded
        self.commanded: list[list[dict[str, Any]]] = []
        self.last: dict[str, Any] = {}  # measures of the last plan() for the caller (metrics, pictures)

    @classmethod
    def from_params(cls, scene_seed: int = 0, num_objects: int = 5, calibration: str | Path | None = None,
                    width: int = 640, height: int = 480, scene_file: str | Path | None = None,
                    safety: dict[str, Any] | None = None, lift_distance: float = 0.1,
                    **world_kwargs: Any) -> SimMotionBackend:
        """A backend over a fresh scene built from plain parameters. ``scene_file``: a JSON/YAML mapping with
        any of ``scene_seed``, ``num_objects``, ``calibration``, ``width``, ``height`` (overrides the arguments);
        ``safety``: :meth:`SafetyEnvelope.from_dict` parameters; ``lift_distance``: the grasp's final lift (m)."""
        if scene_file:
            import yaml

            spec = yaml.safe_load(Path(scene_file).read_text()) or {}
            if not isinstance(spec, dict):
                raise ValueError(f"{scene_file}: a scene file holds a mapping")
            scene_seed = int(spec.get("scene_seed", scene_seed))
            num_objects = int(spec.get("num_objects", num_objects))
            calibration = spec.get("calibration", calibration)
            width, height = int(spec.get("width", width)), int(spec.get("height", height))
        world = SimWorld(scene_seed, num_objects, calibration=calibration, width=width, height=height, **world_kwargs)
        return cls(world, SafetyEnvelope.from_dict(safety) if safety else None, lift_distance=lift_distance)

    # -- helpers -----------------------------------------------------------------------------------------
    def _to_world(self, T_base: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.world.base_to_world(T_base)

    def _nearest_instance(self, p_world: NDArray[np.float64], exclude: set[int] = frozenset()) -> int | None:
        """The instance whose surface is nearest to a world point (pybullet closest points, 10 cm search)."""
        import pybullet as p

        best, best_d = None, np.inf
        probe = p.createCollisionShape(p.GEOM_SPHERE, radius=1e-3, physicsClientId=self.world.client)
        body = p.createMultiBody(0, probe, -1, p_world.tolist(), physicsClientId=self.world.client)
        try:
            for i, inst in enumerate(self.world.instances):
                if i in exclude:
                    continue
                pts = p.getClosestPoints(body, inst.body, 0.10, physicsClientId=self.world.client)
                if pts:
                    d = min(c[8] for c in pts)
                    if d < best_d:
                        best, best_d = i, d
        finally:
            p.removeBody(body, physicsClientId=self.world.client)
        return best

    def _collisions(self) -> list[dict[str, Any]]:
        return [vars(c) for c in self.arm.monitor.collisions]

    # -- Planner protocol --------------------------------------------------------------------------------
    def plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None = None) -> PlanOutcome:
        """Plan and (unless ``goal.plan_only``) execute, holding the world's lock throughout (no render between
        two physics steps of one motion)."""
        with self.world.lock:
            return self._plan(result, goal, cancel)

    def _plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None) -> PlanOutcome:
        task = Task(goal.task)
        execute = not goal.plan_only
        if task == Task.GRASP:
            if result.grasp_pose_base is None:
                return PlanOutcome(False, "no grasp pose to execute")
            out = self.grasp(result.grasp_pose_base, execute=execute, cancel=cancel)
            if self.hand_at_close is not None and out.executed:
                self.held_point_base = perceived_base_point(self.hand_at_close, result.support_plane_base,
                                                            table_height=self.safety.table_height)
            return out
        if task == Task.TRAJECTORY:
            return self.carry(result.points_base, execute=execute, cancel=cancel)
        return PlanOutcome(True, f"nothing to execute for {task.value}")

    # -- grasp -------------------------------------------------------------------------------------------
    def grasp_problem(self, T_base_skeleton: NDArray[np.float64]) -> str | None:
        """None when the arm reaches every pose of the grasp's steps (either of the two equivalent grasps), else
        why not: the Planner port's optional reachability check that grasp refinement asks of its candidates
        (:func:`bopask_ros.grasp.refine.refine_grasp`). Nothing moves."""
        first: IKError | str | None = None
        with self.world.lock:
            for T_try in grasp_alternatives(T_base_skeleton):
                steps = grasp_steps(T_try, self.safety, lift_distance=self.lift_distance)
                try:
                    sols = check_reachable(steps, self.arm, self._to_world)
                except IKError as e:
                    first = first or e
                    continue
                # a straight segment whose ends' joint solutions lie far apart needs an elbow flip on the way (the
                # arm's straight-line follower refuses a 0.5 rad jump between 5 mm steps)
                idx = sorted(sols)
                flip = [steps[b].label for a, b in zip(idx[:-1], idx[1:])
                        if steps[b].kind == "linear" and float(np.max(np.abs(sols[b] - sols[a]))) > ELBOW_FLIP_RAD]
                if not flip:
                    return None
                first = first or f"{flip[0]}: the straight line needs a joint-space jump (elbow flip)"
        return f"ik_failure: {first}"

    def grasp(self, T_base_skeleton: NDArray[np.float64], *, execute: bool = True,
              cancel: Callable[[], bool] | None = None) -> PlanOutcome:
        """Grasp at an M2T2 skeleton pose in the base frame (the pipeline's ``grasp_pose_base``)."""
        m = GraspMeasure()
        # a parallel-jaw grasp and the same grasp turned 180 degrees about its approach are one physical grasp:
        # the arm takes the first its joint limits allow, as the MoveIt path does (motion_steps.grasp_alternatives)
        first: IKError | None = None
        for T_try in grasp_alternatives(T_base_skeleton):
            steps = grasp_steps(T_try, self.safety, lift_distance=self.lift_distance)
            try:
                sols = check_reachable(steps, self.arm, self._to_world)
                break
            except IKError as e:
                first = first or e
        else:
            m.ik_failure = str(first)
            self.last = {"task": "grasp", "steps": describe(steps), "measure": m}
            return PlanOutcome(False, f"ik_failure: {first}", executed=False, plan=m)
        self.last = {"task": "grasp", "steps": describe(steps), "measure": m}
        if not execute:
            return PlanOutcome(True, "reachable (plan only)", executed=False, plan=m)
        T_w = self._to_world(np.asarray(T_try, float))
        grasp_point = T_w[:3, :3] @ np.array([0.0, 0.0, GRASP_DEPTH]) + T_w[:3, 3]
        target = self._nearest_instance(grasp_point)
        m.target = target
        body = self.world.instances[target].body if target is not None else None
        self.arm.monitor = ContactMonitor(target=body)
        z0 = self.world.object_pose(target)[2, 3] if target is not None else 0.0
        self.held = None
        self.hand_at_close = self.held_point_base = None

        def rise() -> float:
            return float(self.world.object_pose(target)[2, 3] - z0) if target is not None else 0.0

        def before(i: int, s: MotionStep) -> None:
            if s.kind == "attach":  # the fingers have closed: where the hand is (kinematics)
                self.hand_at_close = self.world.world_to_base(self.arm.hand_pose())

        self.commanded.append(describe(steps))
        try:
            run_steps(steps, self.arm, self._to_world, sols, before=before, cancel=cancel)
        except IKError as e:
            m.ik_failure = str(e)
        m.rise_after_lift = rise()
        if not m.ik_failure:
            self.arm.wait(self.hold_s)
        m.rise_after_hold = rise()
        m.in_hand = bool(body is not None and all(self.arm.touching(body)))
        m.collisions = self._collisions()
        ok, reason = classify_grasp(m)
        if ok or (m.in_hand and m.rise_after_hold > 0.02):
            self.held = target
        # the reason says what physically happened: "lifted: ..." or the failure ("slipped: ...", "collision: ...")
        detail = f"{'lifted' if ok else reason.value}: rose {m.rise_after_lift * 100:.1f} cm, {m.rise_after_hold * 100:.1f} cm after " \
                 f"{self.hold_s:.0f} s" + (f"; {m.collisions[0]['a']} hit {m.collisions[0]['b']} "
                                           f"({m.collisions[0]['force']:.0f} N, {m.collisions[0]['step']})"
                                           if m.collisions else "") + (f"; {m.ik_failure}" if m.ik_failure else "")
        return PlanOutcome(ok, detail, executed=True, plan=m)

    # -- carry -------------------------------------------------------------------------------------------
    def carry(self, points_base: NDArray[np.float64], *, execute: bool = True,
              target_world: NDArray[np.float64] | None = None,
              cancel: Callable[[], bool] | None = None) -> PlanOutcome:
        """Carry the held object's base point along ``points_base`` (the pipeline's lifted waypoints) and
        release it on the last one. ``target_world``: the intended resting place of the base point, for the
        placement error (else the last waypoint)."""
        P = np.asarray(points_base, float).reshape(-1, 3)
        m = CarryMeasure()
        self.last = {"task": "trajectory", "measure": m}
        a = self.held
        if a is None or not all(self.arm.touching(self.world.instances[a].body)):
            m.held_at_start = False
            return PlanOutcome(False, "grasp_failed: no object in the gripper to carry", executed=False, plan=m)
        if len(P) < 2:
            return PlanOutcome(False, "a trajectory needs at least 2 waypoints", executed=False, plan=m)
        if self.hand_at_close is None or self.held_point_base is None:
            return PlanOutcome(False, "grasp_failed: the held object's position was not perceived at the grasp",
                               executed=False, plan=m)
        # the hand-to-object offset as perceived when the fingers closed (they move together since)
        T_hand_b = self.hand_at_close
        d = T_hand_b[:3, 3] - np.asarray(self.held_point_base, float)
        steps = trajectory_steps(P + d, orientation=T_hand_b[:3, :3], tool_offset=0.0)
        back = T_hand_b.copy()
        back[:3, 3] = P[-1] + d + [0.0, 0.0, RETREAT]
        steps.append(MotionStep("linear", "retreat (simulator)", back))
        self.last["steps"] = describe(steps)
        try:
            sols = check_reachable(steps, self.arm, self._to_world)
        except IKError as e:
            m.ik_failure = str(e)
            return PlanOutcome(False, f"ik_failure: {e}", executed=False, plan=m)
        if not execute:
            return PlanOutcome(True, "reachable (plan only)", executed=False, plan=m)
        self.commanded.append(describe(steps))
        last_w = self.world.base_to_world(P[-1:])[0]
        b = self._nearest_instance(last_w - [0.0, 0.0, 0.005], exclude={a})
        allowed = {self.world.instances[b].body} if b is not None else set()
        body = self.world.instances[a].body
        self.arm.monitor = ContactMonitor(target=body, allowed=allowed)

        def before(i: int, s: MotionStep) -> None:
            if s.kind == "detach":
                m.held_before_release = bool(all(self.arm.touching(body)))
                m.released_at = self.world.base_point(a).tolist()

        try:
            run_steps(steps, self.arm, self._to_world, sols, before=before, cancel=cancel)
        except IKError as e:
            m.ik_failure = str(e)
        self.held = self.hand_at_close = self.held_point_base = None  # released
        self.arm.wait(self.hold_s)
        goal = last_w if target_world is None else np.asarray(target_world, float)
        m.placement_error = float(np.linalg.norm(self.world.base_point(a) - goal))
        m.collisions = self._collisions()
        ok, reason = classify_carry(m)
        detail = f"{'placed' if ok else reason.value}: {m.placement_error * 100:.1f} cm from the target placement" + (
            f"; {m.collisions[0]['a']} hit {m.collisions[0]['b']} ({m.collisions[0]['force']:.0f} N, "
            f"{m.collisions[0]['step']})" if m.collisions else "") + (f"; {m.ik_failure}" if m.ik_failure else "")
        return PlanOutcome(ok, detail, executed=True, plan=m)

    def close(self) -> None:
        self.world.close()


def write_scene_file(path: str | Path, **params: Any) -> Path:
    """A scene file for :meth:`SimMotionBackend.from_params` (JSON is YAML)."""
    p = Path(path)
    p.write_text(json.dumps(params, indent=1))
    return p
