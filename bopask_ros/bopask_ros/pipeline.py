"""The task pipeline of one goal, ROS-free: the ROS node, rosbag replay and the demo all call it.

Stages: snapshot -> query (VLM client) -> validate (finite, inside the image) -> lift (DepthLifter;
depth patch for rearrangement points; cuboid corners by table geometry, see :func:`_lift_cuboid`
(hidden corners have no depth of their own); the support plane raised by ``waypoint_height`` for
trajectory waypoints, the start on the table, the end above the highest seen surface under its ray; ``fit_grasp`` for grasps) -> transform (TF at
the image stamp into ``base_frame``) -> safety (optional :class:`SafetyEnvelope`) -> plan (optional
:class:`Planner`). :meth:`TaskPipeline.run` never raises for bad model output, missing depth, missing
TF or a failed check: it returns a :class:`ResultStatus` and a reason. A target that fails a check is
never passed to the planner. ``timings`` holds seconds per stage (keys are :class:`Stage` values).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.answers.bounds import outside_points
from bopask_vlm.answers.types import GraspAnswer, Task
from bopask_vlm.geometry import CameraModel, transform_points
from bopask_vlm.gripper import keypoints_3d

__all__ = [
    "Attempt",
    "Frame",
    "GraspRefinement",
    "Goal",
    "PipelineResult",
    "PlanOutcome",
    "Planner",
    "ResultStatus",
    "Stage",
    "TaskPipeline",
]


class Stage(str, enum.Enum):
    SNAPSHOT = "snapshot"
    QUERY = "query"
    VALIDATE = "validate"
    LIFT = "lift"
    TRANSFORM = "transform"
    SAFETY = "safety"
    PLAN = "plan"
    EXECUTE = "execute"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


class ResultStatus(str, enum.Enum):
    SUCCEEDED = "succeeded"
    VLM_ERROR = "vlm_error"
    INVALID_ANSWER = "invalid_answer"
    LIFT_FAILED = "lift_failed"
    TF_FAILED = "tf_failed"
    SAFETY_REJECTED = "safety_rejected"
    PLAN_FAILED = "plan_failed"
    EXECUTION_FAILED = "execution_failed"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


@dataclass
class Frame:
    """One synchronised RGB-D frame: RGB HxWx3 uint8, depth HxW float32 metres (NaN = none) or None,
    its camera, stamp (seconds) and optical frame id."""

    rgb: NDArray[np.uint8]
    depth_m: NDArray[np.float32] | None
    camera: CameraModel
    stamp: float
    frame_id: str = "camera_color_optical_frame"


@dataclass
class Goal:
    """What to do: the task, the object description(s), a spatial relation, an optional ready-made
    question, plan only (no execution), an optional QA record (the oracle answers from it), and for a pose
    goal whether to put the recovered box into the planning scene (the Pose action's
    ``add_to_planning_scene``; off unless asked)."""

    task: Task | str
    objects: Sequence[str]
    relation: str | None = None
    question: str | None = None
    plan_only: bool = True
    record: Any = None
    add_to_planning_scene: bool = False


@dataclass
class PlanOutcome:
    """What a planner did: ``ok``; why not; whether the robot moved (``executed``: then a failure is an
    execution failure); ``canceled`` when it stopped for a cancel (the goal then ends CANCELED)."""

    ok: bool
    reason: str = ""
    executed: bool = False
    plan: Any = None
    canceled: bool = False


class Planner(Protocol):
    def plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None) -> PlanOutcome: ...


@dataclass
class PipelineResult:
    status: ResultStatus
    reason: str = ""
    answer: Any = None
    points_cam: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))
    points_base: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))
    valid: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    rules: list[Any] = field(default_factory=list)
    grasp_pose_base: NDArray[np.float64] | None = None
    grasp_width: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    plan: PlanOutcome | None = None
    raw_text: str = ""
    grasp_pose_cam: NDArray[np.float64] | None = None
    T_base_cam: NDArray[np.float64] | None = None
    model_latency_s: float | None = None
    #: the support plane under the targets in the base frame, ``(normal, offset)`` with
    #: ``normal . x + offset = 0`` (set when a planner will use it; None when unknown)
    support_plane_base: tuple[NDArray[np.float64], float] | None = None
    #: how the answer became the grasp (``grasp_refine``; None for other tasks)
    refinement: GraspRefinement | None = None
    #: every ask of the model in this goal, the last one's answer is ``answer``
    attempts: list[Attempt] = field(default_factory=list)
    #: the collision repair of a path: largest waypoint displacement (m) and what was done ("" = nothing)
    path_moved_m: float = 0.0
    path_repair: str = ""

    @property
    def ok(self) -> bool:
        return self.status == ResultStatus.SUCCEEDED


@dataclass
class GraspRefinement:
    """How the answer's grasp became the executed one: ``mode`` none|local, distance and angle moved from the
    answer's own fit, the chosen candidate's score, candidates checked, where the range came from, the answer's
    own pose (base frame, M2T2 skeleton), the reason; ``seconds`` spent."""

    mode: str
    refined: bool = False
    moved_m: float = 0.0
    moved_deg: float = 0.0
    score: float = 0.0
    candidates: int = 0
    range_source: str = ""
    answer_pose_base: NDArray[np.float64] | None = None
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Attempt:
    """One ask of the model: its index, the answer's points, and its failure kind and reason ("" = used)."""

    index: int
    points: NDArray[np.float64]
    failure: str = ""
    reason: str = ""
    status: str = ""


#: failures a new answer can cure: the pipeline asks again (``max_attempts``) naming them
_RETRYABLE = {"lift_failed", "safety_rejected", "plan_failed"}


class _Stop(Exception):
    def __init__(self, status: ResultStatus, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.kind = kind or {"safety_rejected": "unsafe", "plan_failed": "unreachable"}.get(status.value, status.value)


class TaskPipeline:
    """Runs goals on frames. ``client``: a VLM client (``ask(VLMRequest) -> VLMResponse``);
    ``tf_buffer``: a :class:`bopask_ros.perception.tf_buffer.TransformBuffer`; ``safety``: a
    :class:`bopask_ros.motion.safety.SafetyEnvelope` or None; ``planner``: a :class:`Planner` or None.

    ``waypoint_height``: the lowest carrying height above the table (metres) of a path's inner waypoints
    (see :meth:`_lift_path`);
    ``start_height``: height of a path's first waypoint (where A rests) above the table; None: just high
    enough that the finger tips, which reach ``FINGER_TIP_Z - GRASP_DEPTH`` below the grasp point, clear the
    table by the safety envelope's ``min_height_above_table`` (+1 mm);
    ``table_height``: the table top's height in ``base_frame`` when the robot knows it (the support
    plane then comes from TF instead of a RANSAC fit of each frame's depth; None: fit it);
    ``place_clearance``: how far above its support the last waypoint of a path stands (the datagen's
    ``trajectories.LIFT``: A is released that much above B);
    ``lifter_kwargs``: passed to :class:`bopask_ros.perception.lifting.DepthLifter`;
    ``grasp_refine``: ``"none"`` executes the answer's fitted grasp, ``"local"`` the best executable grasp near it
    (:func:`bopask_ros.grasp.refine.refine_grasp`, ``refine_params``; safety and the planner's optional
    ``grasp_problem(T_base_skeleton) -> str | None`` accept candidates);
    with ``"local"`` a path's inner waypoints are also raised where the carried object would hit the observed scene
    (:func:`bopask_ros.motion.path_repair.repair_path`; ``result.path_moved_m``, ``result.path_repair``);
    ``max_attempts``: asks of the model per goal: an answer that fails lifting, refinement, safety or planning
    (before anything moved) is asked again with the failure named (:mod:`bopask_vlm.reask_prompts`).
    """

    def __init__(self, client: Any, tf_buffer: Any, base_frame: str = "base_link", safety: Any = None,
                 planner: Planner | None = None, *, waypoint_height: float = 0.16, table_height: float | None = None,
                 lifter_kwargs: dict[str, Any] | None = None, start_height: float | None = None,
                 place_clearance: float = 0.02, grasp_refine: str = "none", refine_params: Any = None,
                 max_attempts: int = 1) -> None:
        if grasp_refine not in ("none", "local"):
            raise ValueError(f"grasp_refine must be 'none' or 'local', got {grasp_refine!r}")
        if int(max_attempts) < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self.grasp_refine = grasp_refine
        self.refine_params = refine_params
        self.max_attempts = int(max_attempts)
        self.current_attempt = 0
        self.client = client
        self.tf_buffer = tf_buffer
        self.base_frame = base_frame
        self.safety = safety
        self.planner = planner
        self.waypoint_height = float(waypoint_height)
        if start_height is None:
            from bopask_vlm.gripper import FINGER_TIP_Z, GRASP_DEPTH

            clearance = float(getattr(safety, "min_height_above_table", 0.005))
            start_height = (FINGER_TIP_Z - GRASP_DEPTH) + clearance + 0.001
        self.start_height = float(start_height)
        self.place_clearance = float(place_clearance)
        self.table_height = None if table_height is None else float(table_height)
        self.lifter_kwargs = dict(lifter_kwargs or {})
        self._lifter_key: tuple[int, float] | None = None
        self._lifter: Any = None

    # -- helpers ------------------------------------------------------------------------------------
    def lifter_for(self, frame: Frame, T_base_cam: NDArray[np.float64] | None = None) -> Any:
        """The frame's DepthLifter, cached for consecutive goals on the same frame (plane fit once).

        With ``table_height`` and ``T_base_cam``, the support plane is the table (z = table_height in the
        base frame) carried into the camera frame."""
        from bopask_ros.perception.lifting import DepthLifter
        from bopask_vlm.geometry import Plane, invert_transform

        key = (id(frame.depth_m), float(frame.stamp))
        if self._lifter_key != key or self._lifter is None:
            plane = None
            if self.table_height is not None and T_base_cam is not None:
                plane = Plane(np.array([0.0, 0.0, 1.0]), -self.table_height).transformed(invert_transform(T_base_cam))
            self._lifter = DepthLifter(frame.camera, frame.depth_m, plane=plane, **self.lifter_kwargs)
            self._lifter_key = key
        return self._lifter

    def _lookup(self, frame: Frame, result: PipelineResult) -> NDArray[np.float64]:
        from bopask_ros.perception.tf_buffer import TransformError

        if result.T_base_cam is None:
            try:
                result.T_base_cam = self.tf_buffer.lookup_transform(self.base_frame, frame.frame_id, frame.stamp)
            except TransformError as e:
                raise _Stop(ResultStatus.TF_FAILED, f"{type(e).__name__}: {e}") from e
        return result.T_base_cam

    # -- the run ------------------------------------------------------------------------------------
    def run(self, frame: Frame, goal: Goal, feedback: Callable[[Stage], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> PipelineResult:
        """Run one goal on one frame; see the module docstring.

        Bad model output, missing depth or TF, failed checks and cancellation come back as a status
        and a reason. Only programming errors raise: an unknown task (``ValueError``) or a malformed
        frame (``TypeError``).
        """
        result = PipelineResult(status=ResultStatus.SUCCEEDED)
        timings = result.timings

        def stage(s: Stage) -> None:
            if cancel is not None and cancel():
                raise _Stop(ResultStatus.CANCELED, f"canceled before {s.value}")
            if feedback is not None:
                feedback(s)

        try:
            task = Task(goal.task)
        except ValueError as e:
            raise ValueError(f"unknown task {goal.task!r}; expected one of {[t.value for t in Task]}") from e
        t_all = time.perf_counter()
        try:
            stage(Stage.SNAPSHOT)
            t0 = time.perf_counter()
            self._check_frame(frame)
            timings[Stage.SNAPSHOT.value] = time.perf_counter() - t0

            feedback_text: str | None = None
            for attempt in range(self.max_attempts):
                self.current_attempt = attempt  # the node's feedback names it
                try:
                    self._attempt(frame, goal, task, result, stage, cancel, attempt, feedback_text)
                    break
                except _Stop as s:
                    retry = (s.status.value in _RETRYABLE and attempt + 1 < self.max_attempts
                             and not (result.plan is not None and result.plan.executed))
                    if result.attempts and result.attempts[-1].index == attempt:
                        result.attempts[-1].failure, result.attempts[-1].reason = s.kind, s.reason
                        result.attempts[-1].status = s.status.value
                    if not retry:
                        raise
                    from bopask_vlm.reask_prompts import failure_feedback

                    pts = result.attempts[-1].points if result.attempts else None
                    feedback_text = failure_feedback(s.kind, s.reason, pts, task.value)
                    self._reset_for_attempt(result)
            if feedback is not None:
                feedback(Stage.DONE)
            result.reason = result.reason or "ok"
        except _Stop as s:
            result.status = s.status
            result.reason = s.reason
        timings["total"] = time.perf_counter() - t_all
        return result

    @staticmethod
    def _reset_for_attempt(result: PipelineResult) -> None:
        result.points_cam = np.zeros((0, 3))
        result.points_base = np.zeros((0, 3))
        result.valid = np.zeros(0, dtype=bool)
        result.rules = []
        result.grasp_pose_base = result.grasp_pose_cam = None
        result.grasp_width = None
        result.plan = None
        result.refinement = None
        result.path_moved_m, result.path_repair = 0.0, ""

    def _attempt(self, frame: Frame, goal: Goal, task: Task, result: PipelineResult, stage: Callable[[Stage], None],
                 cancel: Callable[[], bool] | None, attempt: int, feedback_text: str | None) -> None:
        """One ask of the model and everything after it; a failure raises :class:`_Stop`."""
        timings = result.timings
        stage(Stage.QUERY)
        t0 = time.perf_counter()
        answer = self._query(frame, goal, task, result, attempt, feedback_text)
        timings[Stage.QUERY.value] = timings.get(Stage.QUERY.value, 0.0) + time.perf_counter() - t0
        result.answer = answer
        pts = getattr(answer, "points", None)
        result.attempts.append(Attempt(attempt, np.asarray(pts if pts is not None else np.zeros((0, 2)),
                                                           dtype=np.float64).reshape(-1, 2)))

        stage(Stage.VALIDATE)
        t0 = time.perf_counter()
        self._validate(frame, task, answer)
        timings[Stage.VALIDATE.value] = time.perf_counter() - t0

        if not task.is_yes_no:
            stage(Stage.LIFT)
            t0 = time.perf_counter()
            self._lift(frame, task, answer, result, goal)
            timings[Stage.LIFT.value] = time.perf_counter() - t0

            stage(Stage.TRANSFORM)
            t0 = time.perf_counter()
            self._transform(frame, result)
            timings[Stage.TRANSFORM.value] = time.perf_counter() - t0

            if self.safety is not None:
                stage(Stage.SAFETY)
                t0 = time.perf_counter()
                self._safety(task, result)
                timings[Stage.SAFETY.value] = time.perf_counter() - t0

            if self.planner is not None:
                stage(Stage.PLAN)
                if not goal.plan_only:
                    stage(Stage.EXECUTE)
                t0 = time.perf_counter()
                try:
                    outcome = self.planner.plan(result, goal, cancel)
                except Exception as e:  # a planner/executor failure is a result, not a crash of the node
                    outcome = PlanOutcome(False, f"planner raised {type(e).__name__}: {e}")
                timings[Stage.PLAN.value] = time.perf_counter() - t0
                result.plan = outcome
                if not outcome.ok:
                    if getattr(outcome, "canceled", False):
                        st = ResultStatus.CANCELED
                    elif outcome.executed:
                        st = ResultStatus.EXECUTION_FAILED
                    else:
                        st = ResultStatus.PLAN_FAILED
                    raise _Stop(st, outcome.reason or st.value)

    # -- stages -------------------------------------------------------------------------------------
    @staticmethod
    def _check_frame(frame: Frame) -> None:
        rgb = np.asarray(frame.rgb)
        cam = frame.camera
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise TypeError(f"frame.rgb must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
        if rgb.shape[:2] != (cam.height, cam.width):
            raise TypeError(f"frame.rgb is {rgb.shape[1]}x{rgb.shape[0]}, camera {cam.width}x{cam.height}")

    def _query(self, frame: Frame, goal: Goal, task: Task, result: PipelineResult, attempt: int = 0,
               feedback_text: str | None = None) -> Any:
        import dataclasses

        from bopask_vlm.clients import VLMAnswerError, VLMError, VLMRequest

        extra: dict[str, Any] = {}
        question = goal.question
        if attempt:
            names = {f.name for f in dataclasses.fields(VLMRequest)}
            if "attempt" in names and "feedback" in names:  # the client words the re-ask and draws afresh
                extra = {"attempt": attempt, "feedback": feedback_text}
            elif feedback_text:  # an older request type: the failure goes in front of the question
                from bopask_vlm.reask_prompts import reask_question

                base = VLMRequest(task=task, image=frame.rgb, objects=list(goal.objects), relation=goal.relation,
                                  question=goal.question, record=goal.record)
                question = reask_question(base.question_text(), feedback_text)
        req = VLMRequest(task=task, image=frame.rgb, objects=list(goal.objects), relation=goal.relation,
                         question=question, record=goal.record, **extra)
        try:
            resp = self.client.ask(req)
        except VLMAnswerError as e:
            result.raw_text = str(getattr(e, "raw_text", "") or "")
            raise _Stop(ResultStatus.INVALID_ANSWER, f"unparseable or invalid answer: {e}") from e
        except VLMError as e:
            raise _Stop(ResultStatus.VLM_ERROR, f"VLM request failed: {type(e).__name__}: {e}") from e
        except Exception as e:  # a client bug must not take the node down either
            raise _Stop(ResultStatus.VLM_ERROR, f"VLM client raised {type(e).__name__}: {e}") from e
        result.raw_text = str(getattr(resp, "raw_text", ""))
        result.model_latency_s = getattr(resp, "latency_s", None)
        return resp.answer

    @staticmethod
    def _validate(frame: Frame, task: Task, answer: Any) -> None:
        if answer is None:
            raise _Stop(ResultStatus.INVALID_ANSWER, "no answer")
        a_task = getattr(answer, "task", None)
        if a_task is not None and Task(a_task) != task:
            raise _Stop(ResultStatus.INVALID_ANSWER, f"answer is for task {Task(a_task).value}, asked {task.value}")
        if task.is_yes_no:
            return
        pts = np.asarray(answer.points, dtype=np.float64)
        if not np.all(np.isfinite(pts)):
            raise _Stop(ResultStatus.INVALID_ANSWER, "answer has non-finite coordinates")
        # grasp finger tips (PnP uses them) and the cuboid corners of an object at the image border (lifted by
        # ray geometry) may lie within half an image of the border; every other point must be inside. One
        # rule with the JSON schema and the client's check: bopask_vlm.answers.bounds
        cam = frame.camera
        bad = outside_points(task, pts, cam.width, cam.height)
        if bad:
            raise _Stop(ResultStatus.INVALID_ANSWER, f"points {bad} lie outside the {cam.width}x{cam.height} image")

    def _lift(self, frame: Frame, task: Task, answer: Any, result: PipelineResult, goal: Goal | None = None) -> None:
        from bopask_ros.grasp.grasp_fit import fit_grasp
        from bopask_ros.perception.lifting import LiftError

        if frame.depth_m is None:
            raise _Stop(ResultStatus.LIFT_FAILED, "the frame has no depth image")
        pts = np.asarray(answer.points, dtype=np.float64)
        T_base_cam = self._lookup(frame, result) if self.table_height is not None else None
        try:
            lifter = self.lifter_for(frame, T_base_cam)
            if task == Task.GRASP:
                fit = fit_grasp(GraspAnswer(pts).points, lifter)
                result.rules = list(fit.rules)
                # with refinement a skeleton that is not rigid (a model's per-point errors) or whose range disagrees
                # with depth still says which object and roughly how: its fitted pose is the intent, depth decides
                as_intent = self.grasp_refine == "local" and bool(np.all(np.isfinite(fit.T_cam_gripper)))
                if not fit.valid and not as_intent:
                    raise _Stop(ResultStatus.LIFT_FAILED, f"grasp fit failed: {fit.reason}")
                result.grasp_pose_cam = fit.T_cam_gripper
                result.grasp_width = float(fit.width)
                result.refinement = GraspRefinement(self.grasp_refine, range_source=fit.range_source,
                                                    reason=fit.reason)
                if self.grasp_refine == "local":
                    self._refine(frame, lifter, fit, result, goal, loose=not fit.valid)
                result.points_cam = keypoints_3d(result.grasp_pose_cam)
                result.valid = np.ones(5, dtype=bool)
                return
            if len(pts) == 0:  # rearrangement: nothing to move
                result.valid = np.zeros(0, dtype=bool)
                return
            if task == Task.TRAJECTORY:
                lp = self._lift_path(lifter, pts)
            elif task == Task.POSE:
                lp = _lift_cuboid(lifter, pts)
            else:
                lp = lifter.lift(pts, mode="surface")
        except _Stop:
            raise
        except (LiftError, ValueError) as e:
            raise _Stop(ResultStatus.LIFT_FAILED, f"{type(e).__name__}: {e}") from e
        result.points_cam = lp.points
        result.valid = np.asarray(lp.valid, dtype=bool)
        result.rules = list(lp.rules)
        if not lp.all_valid:
            bad = np.flatnonzero(~result.valid)
            why = "; ".join(f"{i}: {lp.reasons[i]}" for i in bad[:3])
            raise _Stop(ResultStatus.LIFT_FAILED, f"points {bad.tolist()} have no 3D position ({why})")
        if task == Task.TRAJECTORY and self.grasp_refine == "local":
            # the path as an intent too: the carried object's swept column raised over what the depth shows
            from bopask_ros.motion.path_repair import repair_path

            t0 = time.perf_counter()
            rep = repair_path(result.points_cam, lifter.depth_m, lifter.camera, lifter.support_plane())
            result.timings["path_repair"] = time.perf_counter() - t0
            result.points_cam, result.path_moved_m, result.path_repair = rep.points, rep.moved_m, rep.reason

    def _refine(self, frame: Frame, lifter: Any, fit: Any, result: PipelineResult, goal: Goal | None,
                loose: bool = False) -> None:
        """``grasp_refine: local``: the best executable grasp near the answer's fit (safety and the planner's
        optional ``grasp_problem`` accept it), or a failure a re-ask can name. ``loose``: the fit itself failed
        (not a rigid skeleton): its orientation is trusted less (candidates up to twice the angle)."""
        import dataclasses

        from bopask_ros.grasp.refine import FailureKind, RefineParams, refine_grasp

        T_base_cam = self._lookup(frame, result)
        problem = getattr(self.planner, "grasp_problem", None)

        unsafe_checks: list[str] = []  # the safety checks that refused candidates, last one last

        def accept(T_cam: NDArray[np.float64]) -> tuple[FailureKind, str] | None:
            T_base = T_base_cam @ T_cam
            if self.safety is not None:
                v = self.safety.check_grasp(T_base)
                if not v.ok:
                    unsafe_checks.append(v.check)
                    return FailureKind.UNSAFE, f"{v.check}: {v.reason}"
            if problem is not None:
                why = problem(T_base)
                if why:
                    return FailureKind.UNREACHABLE, str(why)
            return None

        params = self.refine_params or RefineParams()
        if loose:
            params = dataclasses.replace(params, max_angle_deg=2.0 * params.max_angle_deg)
        ref = refine_grasp(fit.T_cam_gripper, lifter, params, accept=accept)
        info = result.refinement
        info.candidates, info.seconds = ref.candidates, ref.seconds
        result.timings["refine"] = result.timings.get("refine", 0.0) + ref.seconds
        info.answer_pose_base = T_base_cam @ fit.T_cam_gripper
        if not ref.ok:
            info.reason = ref.reason
            if ref.failure == FailureKind.UNSAFE and unsafe_checks:
                # a SAFETY_REJECTED reason starts with the check that failed (the result's failed_check)
                raise _Stop(ResultStatus.SAFETY_REJECTED, f"{unsafe_checks[-1]}: grasp refinement: {ref.reason}",
                            str(ref.failure))
            raise _Stop(ResultStatus.SAFETY_REJECTED if ref.failure == FailureKind.UNSAFE else
                        ResultStatus.PLAN_FAILED if ref.failure == FailureKind.UNREACHABLE else
                        ResultStatus.LIFT_FAILED, f"grasp refinement: {ref.reason}", str(ref.failure))
        info.refined = not ref.kept_answer or loose
        info.moved_m, info.moved_deg, info.score = ref.moved_m, ref.moved_deg, ref.score
        info.reason = ref.reason
        result.grasp_pose_cam = ref.T_cam_gripper
        result.grasp_width = float(ref.width)

    def _lift_path(self, lifter: Any, pts: NDArray[np.float64]) -> Any:
        """Lift a pick-and-place path of object A's base point, inverting the datagen's convention
        (:mod:`bopask_vlm.datagen.trajectories`: the bottom centre of A's box at rest on the table, the same
        point lifted ``LIFT`` straight up, the planner's free-space points, and the placement ``LIFT`` above
        the top centre of B's box).

        - first waypoint: where its ray meets the support plane (A's base at rest; exact for a point on the
          table), raised ``start_height`` along the normal (not 0: the finger tips reach below the grasp point);
        - last waypoint: ``place_clearance`` above the highest seen surface under its ray
          (:meth:`bopask_ros.perception.lifting.DepthLifter.lift_onto_surface`): B's top when the ray passes over B;
        - second waypoint (paths of 3+ points): the point of its ray nearest to the vertical through the
          start (the lift-off), kept when its height is between the start's and the carrying height;
        - the waypoints between: on their rays at heights interpolated between the lift-off and the
          placement by the answer's 2D arc length, never below ``waypoint_height`` (the carrying height:
          one image cannot tell how high the planner's free-space points were; the ray fixes the rest).
        """
        from bopask_ros.perception.lifting import LiftedPoints, LiftRule

        n = len(pts)
        plane = lifter.support_plane()
        nrm = np.asarray(plane.normal, dtype=np.float64)
        rays = lifter.camera.rays(pts)

        def at_height(i: int, h: float) -> NDArray[np.float64]:
            denom = float(rays[i] @ nrm)
            s = (h - plane.offset) / denom if abs(denom) > 1e-9 else np.nan
            return rays[i] * s if np.isfinite(s) and s > 0 else np.full(3, np.nan)

        points = np.full((n, 3), np.nan)
        rules = [LiftRule.PLANE] * n
        reasons = [""] * n
        rest = at_height(0, 0.0)
        points[0] = rest + self.start_height * nrm
        reasons[0] = f"A at rest: the ray on the support plane, raised {self.start_height:.3f} m"
        if n == 1:
            return LiftedPoints(points, np.isfinite(points).all(axis=1), rules, reasons)
        end = lifter.lift_onto_surface(pts[-1:], self.place_clearance)
        points[-1] = end.points[0]
        rules[-1] = end.rules[0]
        reasons[-1] = f"placement: {end.reasons[0]}"
        if n > 2 and np.isfinite(rest).all() and end.valid[0]:
            h_end = float(plane.signed_distance(end.points[0])[0])
            # the lift-off: the point of ray 1 nearest to the vertical through the rest point
            r = rays[1]
            A = np.array([[r @ r, -(r @ nrm)], [r @ nrm, -1.0]])
            try:
                t, h1 = np.linalg.solve(A, np.array([r @ rest, nrm @ rest]))
            except np.linalg.LinAlgError:
                t, h1 = -1.0, np.nan
            carry = max(self.waypoint_height, h_end)
            if t > 0 and self.start_height <= h1 <= carry:
                points[1] = t * r
                reasons[1] = f"lift-off above the start, height {h1:.3f} m"
                first_mid = 2
            else:
                h1 = self.start_height
                first_mid = 1
            seg = np.linalg.norm(np.diff(pts[first_mid - 1:], axis=0), axis=1)
            frac = np.cumsum(seg) / max(float(seg.sum()), 1e-9)
            for k, i in enumerate(range(first_mid, n - 1)):
                h = max(self.waypoint_height, h1 + (h_end - h1) * float(frac[k]))
                points[i] = at_height(i, h)
                reasons[i] = f"carried on the ray at height {h:.3f} m"
        elif n > 2:
            for i in range(1, n - 1):
                points[i] = at_height(i, self.waypoint_height)
                reasons[i] = f"on the support plane at height {self.waypoint_height:.3f} m"
        valid = np.isfinite(points).all(axis=1)
        for i in np.flatnonzero(~valid):
            rules[i] = LiftRule.NONE
            reasons[i] = reasons[i] or "the ray does not meet the plane in front of the camera"
        return LiftedPoints(points, valid, rules, reasons)

    def _transform(self, frame: Frame, result: PipelineResult) -> None:
        T = self._lookup(frame, result)
        if len(result.points_cam):
            result.points_base = transform_points(T, result.points_cam)
        if result.grasp_pose_cam is not None:
            result.grasp_pose_base = T @ result.grasp_pose_cam
        if self.planner is not None and self._lifter is not None:  # the planner puts it into its scene
            from bopask_ros.perception.lifting import LiftError

            try:
                plane = self._lifter.support_plane().transformed(T)
                result.support_plane_base = (np.asarray(plane.normal, dtype=np.float64), float(plane.offset))
            except (LiftError, ValueError):
                result.support_plane_base = None

    def _safety(self, task: Task, result: PipelineResult) -> None:
        """Check the motion targets: the gripper pose of a grasp; every waypoint of a path, and the gripper
        (finger tips included) at each of them in the pose the robot will be sent
        (:func:`bopask_ros.motion.motion_steps.trajectory_steps`); the centre of a cuboid (its bottom lies on the
        table); rearrangement points."""
        verdicts = []
        P = np.asarray(result.points_base, dtype=np.float64)
        if task == Task.GRASP and result.grasp_pose_base is not None:
            verdicts.append(self.safety.check_grasp(result.grasp_pose_base))
        elif task == Task.TRAJECTORY and len(P):
            from bopask_ros.motion.motion_steps import trajectory_steps

            verdicts.append(self.safety.check_points(P, "waypoint"))
            if verdicts[-1].ok:
                poses = [s.pose for s in trajectory_steps(P) if s.pose is not None]
                verdicts.append(self.safety.check_hand_poses(poses, "gripper at waypoint"))
        elif task == Task.POSE and len(P):
            verdicts.append(self.safety.check_points(P.mean(axis=0, keepdims=True)))
        elif len(P):
            verdicts.append(self.safety.check_points(P))
        for v in verdicts:
            if not v.ok:
                raise _Stop(ResultStatus.SAFETY_REJECTED, f"{v.check}: {v.reason}")


def _lift_cuboid(lifter: Any, corners: NDArray[np.float64]) -> Any:
    """Lift 8 cuboid corners (bottom 0-3, top 4-7 above them) of an object standing on the table.

    The bottom corners are where their rays meet the support plane (exact for an object on the table,
    where depth would see the object's front face instead of its hidden corners); each top corner is the
    point of its ray closest to the plane normal through its bottom corner. Falls back to depth with a
    plane fallback (``mode="auto"``) when the plane is not usable (no plane, or a top corner below it).
    """
    from bopask_ros.perception.lifting import LiftedPoints, LiftRule

    try:
        plane = lifter.support_plane()
    except ValueError:
        return lifter.lift(corners, mode="auto", height=0.0)
    bottom = plane.intersect_rays(lifter.camera.rays(corners[:4]))  # corners may lie outside the image
    if not np.all(np.isfinite(bottom)):
        return lifter.lift(corners, mode="auto", height=0.0)
    n = plane.normal
    d = lifter.camera.rays(corners[4:])
    top = np.empty((4, 3))
    for i in range(4):
        b, r = bottom[i], d[i]
        # minimise |t r - (b + s n)|: [r.r, -r.n; r.n, -1] [t, s] = [r.b, n.b]
        A = np.array([[r @ r, -(r @ n)], [r @ n, -1.0]])
        rhs = np.array([r @ b, n @ b])
        try:
            t, h = np.linalg.solve(A, rhs)
        except np.linalg.LinAlgError:
            return lifter.lift(corners, mode="auto", height=0.0)
        if t <= 0 or h <= 0:
            return lifter.lift(corners, mode="auto", height=0.0)
        top[i] = t * r
    pts = np.vstack([bottom, top])
    return LiftedPoints(pts, np.ones(8, dtype=bool), [LiftRule.PLANE] * 8,
                        ["bottom corner on the support plane"] * 4 + ["top corner above its bottom corner"] * 4)
