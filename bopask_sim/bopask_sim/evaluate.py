"""Closed-loop evaluation: simulated scenes -> BOP layout -> the datagen's QA records -> the product's
``TaskPipeline`` (client, validation, lifting, safety envelope) with the simulator as its motion backend ->
physically measured outcomes per episode, per task and keypoint-noise level.

An episode starts from the settled scene with the arm at home. A grasp episode asks the client for the grasp
of one object and executes it; a trajectory episode first grasps object A with the datagen's top grasp (the
setup, not scored by the model), then asks for the path of A onto B and carries it. With the oracle client,
``--keypoint-noise`` adds Gaussian pixel noise to its answers, and the datagen's own top grasps and paths are
also executed directly (no 2D answer in between): how many of them are physically executable.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.perception.tf_buffer import TransformBuffer
from bopask_ros.pipeline import Goal, TaskPipeline
from bopask_sim.backend import SimMotionBackend
from bopask_sim.bop_export import write_bop_scene
from bopask_sim.outcomes import CarryMeasure, GraspMeasure, Reason, classify_carry, classify_grasp, reason_from_status
from bopask_sim.world import BASE_FRAME, SimFrame, SimWorld
from bopask_vlm.answers.types import Task
from bopask_vlm.geometry import transform_points

GRASPS_PER_SCENE = 4
TRAJECTORIES_PER_SCENE = 4
SETUP_GRASPS = 4  # datagen grasps of A tried, best first, until one is reachable (a carry's setup)
PLACE_LIFT = 0.02
#: lowest carrying height of a path's inner waypoints (the pipeline's ``waypoint_height``): one image cannot tell
#: how high the datagen's planner carried A; measured over the 40 oracle paths at 0 px: 0.0 m -> 42 %,
#: 0.12 m -> 82 %, 0.16 m -> 98 % (clears the catalogue's 9-12 cm neighbours with A below; the node's default)
CARRY_HEIGHT = 0.16  # datagen places A this far above B (trajectories.LIFT); it rests that much lower


@dataclass
class PreparedScene:
    seed: int
    world: SimWorld
    frame: SimFrame
    scene_dir: Path
    records: list[Any]
    prep_s: float = 0.0

    def by_task(self, task: Task) -> list[Any]:
        return [r for r in self.records if Task(r.task) == task]

    def grasp_record_of(self, gt_index: int) -> Any:
        for r in self.by_task(Task.GRASP):
            if r.objects and int(r.objects[0].gt_index) == int(gt_index):
                return r
        return None


def prepare_scene(seed: int, work_dir: str | Path, *, num_objects: int = 5, width: int = 640, height: int = 480,
                  calibration: Any = None, use_real_mesh: bool = True) -> PreparedScene:
    """Build the scene, capture the camera frame, write it in the BOP layout and run the datagen on it."""
    from bopask_vlm.datagen import generate
    from bopask_vlm.eval.runner import load_records

    t0 = time.perf_counter()
    work = Path(work_dir) / f"scene_{seed:04d}"
    world = SimWorld(seed, num_objects, calibration=calibration, width=width, height=height,
                     use_real_mesh=use_real_mesh)
    frame = world.capture()
    sdir = write_bop_scene(world, frame, work / "bop")
    generate(work / "bop", work / "qa", seed, tasks=["grasp", "trajectory"], progress=False, resume=False)
    records = load_records([work / "qa" / "shards"])
    return PreparedScene(seed, world, frame, sdir, records, time.perf_counter() - t0)


class NoisyClient:
    """Wraps a VLM client and adds Gaussian pixel noise (``sigma_px``) to the points of its answers."""

    def __init__(self, inner: Any, sigma_px: float, rng: np.random.Generator) -> None:
        self.inner, self.sigma, self.rng = inner, float(sigma_px), rng
        self.model = getattr(inner, "model", type(inner).__name__)

    def ask(self, request: Any) -> Any:
        from dataclasses import replace

        resp = self.inner.ask(request)
        pts = getattr(resp.answer, "points", None)
        if self.sigma <= 0 or pts is None or not hasattr(resp.answer, "with_points") or len(pts) == 0:
            return resp
        noisy = np.asarray(pts, float) + self.rng.normal(0.0, self.sigma, np.shape(pts))
        return replace(resp, answer=resp.answer.with_points(noisy))


def make_pipeline(prep: PreparedScene, client: Any, backend: SimMotionBackend) -> TaskPipeline:
    """The product's pipeline as the node builds it: static TF from the calibration, the default safety
    envelope (table at z = 0 in the base frame), the simulator as planner; inner path waypoints carried at
    least :data:`CARRY_HEIGHT` up."""
    tf = TransformBuffer()
    tf.set_transform(prep.frame.T_base_camera, BASE_FRAME, prep.frame.frame_id, 0.0, static=True)
    return TaskPipeline(client, tf, base_frame=BASE_FRAME, safety=backend.safety, planner=backend, table_height=0.0,
                        waypoint_height=CARRY_HEIGHT)


def _goal(record: Any) -> Goal:
    return Goal(task=Task(record.task), objects=[o.description for o in record.objects], question=record.question,
                plan_only=False, record=record)


@dataclass
class Episode:
    task: str
    scene: int
    record_id: str
    noise_px: float
    mode: str  # "pipeline" (client answer through the pipeline) | "direct" (datagen's 3D target executed)
    success: bool
    reason: str
    detail: str = ""
    measure: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    snapshot: NDArray[np.uint8] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in vars(self).items() if k != "snapshot"}
        return d


def _snapshot(world: SimWorld, scale: int = 2) -> NDArray[np.uint8]:
    from bopask_sim.camera import d435_camera
    from bopask_vlm.geometry import CameraModel

    c = d435_camera(world.camera.width, world.camera.height)
    small = CameraModel(K=np.diag([1 / scale, 1 / scale, 1.0]) @ c.K, width=c.width // scale, height=c.height // scale)
    return world.render(small).rgb


def _grasp_result(m: GraspMeasure, wanted: int | None) -> tuple[bool, Reason]:
    ok, reason = classify_grasp(m)
    if ok and wanted is not None and m.target is not None and int(m.target) != int(wanted):
        return False, Reason.MISSED  # lifted, but another object than the one asked for
    return ok, reason


def grasp_episode(prep: PreparedScene, backend: SimMotionBackend, pipeline: TaskPipeline | None, record: Any,
                  noise_px: float = 0.0, snapshot: bool = False) -> Episode:
    """One grasp: through the pipeline (``pipeline`` given) or the record's 3D grasp directly (``None``)."""
    t0 = time.perf_counter()
    prep.world.reset()
    backend.held = None
    wanted = int(record.objects[0].gt_index) if record.objects else None
    mode = "pipeline" if pipeline is not None else "direct"
    if pipeline is None:
        T_base = prep.frame.T_base_camera @ np.asarray(record.gt["T_cam_gripper"], float)
        out, res = backend.grasp(T_base), None
    else:
        res = pipeline.run(prep.frame.pipeline_frame(), _goal(record))
        out = res.plan
    if out is None or not isinstance(out.plan, GraspMeasure):
        status = res.status.value if res is not None else "pipeline_error"
        return Episode("grasp", prep.seed, record.id, noise_px, mode, False, reason_from_status(status).value,
                       res.reason if res is not None else "", {}, time.perf_counter() - t0)
    ok, reason = _grasp_result(out.plan, wanted)
    snap = _snapshot(prep.world) if snapshot else None
    return Episode("grasp", prep.seed, record.id, noise_px, mode, ok, reason.value, out.reason, out.plan.to_dict(),
                   time.perf_counter() - t0, snap)


def placement_target(prep: PreparedScene, record: Any) -> NDArray[np.float64]:
    """Where A's base point should rest (world): the datagen's placement on B, lowered by its 2 cm lift."""
    p = transform_points(prep.frame.T_world_camera, np.asarray(record.gt["placement_cam"], float)[None])[0]
    return p - np.array([0.0, 0.0, PLACE_LIFT])


def trajectory_episode(prep: PreparedScene, backend: SimMotionBackend, pipeline: TaskPipeline | None, record: Any,
                       noise_px: float = 0.0, snapshot: bool = False) -> Episode:
    """Grasp A (the datagen's top grasp of A; the next ones when the arm cannot reach it), then carry it: the client's path through the pipeline, or the
    datagen's 3D path directly (``pipeline`` None)."""
    t0 = time.perf_counter()
    mode = "pipeline" if pipeline is not None else "direct"
    a = int(record.gt["a_gt_index"])
    grec = prep.grasp_record_of(a)
    target = placement_target(prep, record)

    def fail(reason: Reason, detail: str, measure: dict[str, Any] | None = None) -> Episode:
        return Episode("trajectory", prep.seed, record.id, noise_px, mode, False, reason.value, detail, measure or {},
                       time.perf_counter() - t0)

    if grec is None:
        return fail(Reason.GRASP_FAILED, "the datagen has no grasp of the object to carry")
    # the setup is not what is measured: the datagen's next grasps of A when its top one fails (out of reach, slipped)
    setup = None
    for T_cam in [grec.gt["T_cam_gripper"], *grec.gt.get("grasps_T_cam_gripper", [])[1:SETUP_GRASPS]]:
        prep.world.reset()
        backend.held = None
        setup = backend.grasp(prep.frame.T_base_camera @ np.asarray(T_cam, float))
        if backend.held == a:
            break
    if backend.held != a:
        return fail(Reason.GRASP_FAILED, f"setup grasp of A: {setup.reason}")
    res = None
    if pipeline is None:
        path_base = transform_points(prep.frame.T_base_camera, np.asarray(record.gt["path_cam"], float))
        out = backend.carry(path_base, target_world=target)
    else:
        res = pipeline.run(prep.frame.pipeline_frame(), _goal(record))
        out = res.plan
    if out is None or not isinstance(out.plan, CarryMeasure):
        return fail(reason_from_status(res.status.value if res is not None else "pipeline_error"),
                    res.reason if res is not None else "")
    m = out.plan
    if m.held_at_start and not m.ik_failure and out.executed:
        m.placement_error = float(np.linalg.norm(prep.world.base_point(a) - target))
        if m.released_at is not None:
            m.release_error = float(np.linalg.norm(np.asarray(m.released_at) - target))
    ok, reason = classify_carry(m)
    snap = _snapshot(prep.world) if snapshot else None
    # the backend measures from the last waypoint (the release point, 2 cm above the rest); report the target's
    detail = out.reason if m.placement_error is None or reason not in (Reason.OK, Reason.MISPLACED, Reason.TOPPLED) \
        else f"{reason.value}: {m.placement_error * 100:.1f} cm from the target placement"
    return Episode("trajectory", prep.seed, record.id, noise_px, mode, ok, reason.value, detail, m.to_dict(),
                   time.perf_counter() - t0, snap)


# -- the whole evaluation ----------------------------------------------------------------------------------
def make_eval_client(kind: str, endpoint: str | None = None, model: str | None = None) -> Any:
    from bopask_vlm.clients import OracleClient, make_client

    if kind == "oracle":
        return OracleClient()
    if kind == "openai":
        if not endpoint:
            raise ValueError("--client openai needs --endpoint URL (and --model NAME)")
        return make_client({"type": "openai", "base_url": endpoint, "model": model or "default"})
    if kind == "transformers":
        if not model:
            raise ValueError("--client transformers needs --model DIR")
        return make_client({"type": "transformers", "model_dir": model})
    raise ValueError(f"unknown client {kind!r} (oracle, openai, transformers)")


def _rate(eps: list[Episode]) -> float | None:
    return float(np.mean([e.success for e in eps])) if eps else None


def summarize(episodes: list[Episode], noise_levels: Sequence[float]) -> dict[str, Any]:
    """Success per task and noise level (pipeline episodes), reasons, and the direct executability."""
    out: dict[str, Any] = {"by_task": {}, "executable": {}}
    for task in ("grasp", "trajectory"):
        rows = {}
        for s in noise_levels:
            eps = [e for e in episodes if e.task == task and e.mode == "pipeline" and e.noise_px == s]
            reasons: dict[str, int] = {}
            for e in eps:
                reasons[e.reason] = reasons.get(e.reason, 0) + 1
            rows[f"{s:g}"] = {"n": len(eps), "success": _rate(eps), "reasons": reasons}
        out["by_task"][task] = rows
        direct = [e for e in episodes if e.task == task and e.mode == "direct"]
        reasons = {}
        for e in direct:
            reasons[e.reason] = reasons.get(e.reason, 0) + 1
        out["executable"][task] = {"n": len(direct), "success": _rate(direct), "reasons": reasons}
    return out


def table_markdown(summary: dict[str, Any], noise_levels: Sequence[float]) -> str:
    head = "| task | " + " | ".join(f"noise {s:g} px" for s in noise_levels) + " |"
    lines = [head, "|---" * (len(noise_levels) + 1) + "|"]
    for task, rows in summary["by_task"].items():
        cells = []
        for s in noise_levels:
            r = rows[f"{s:g}"]
            cells.append("-" if r["success"] is None else f"{r['success'] * 100:.0f} % ({r['n']})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    ex = summary.get("executable", {})
    if any(v["n"] for v in ex.values()):
        lines.append("")
        lines.append("Datagen targets executed directly (physically executable): " + ", ".join(
            f"{t} {v['success'] * 100:.0f} % of {v['n']}" for t, v in ex.items() if v["n"]))
    return "\n".join(lines)


def plot_success(summary: dict[str, Any], noise_levels: Sequence[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    for task, rows in summary["by_task"].items():
        xs = [s for s in noise_levels if rows[f"{s:g}"]["success"] is not None]
        ys = [rows[f"{s:g}"]["success"] * 100 for s in xs]
        if xs:
            ax.plot(xs, ys, "o-", label=task)
    ax.set_xlabel("keypoint noise (px, Gaussian sigma)")
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("closed loop in physics")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def picture_strip(episodes: list[Episode], path: Path, limit: int = 6) -> Path | None:
    import cv2

    shots = [e for e in episodes if e.snapshot is not None][:limit]
    if not shots:
        return None
    tiles = []
    for e in shots:
        img = np.ascontiguousarray(e.snapshot[:, :, ::-1])
        col = (40, 180, 40) if e.success else (40, 40, 220)
        cv2.rectangle(img, (0, 0), (img.shape[1] - 1, 22), (255, 255, 255), -1)
        cv2.putText(img, f"{e.task} {e.noise_px:g}px: {e.reason}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, col, 1,
                    cv2.LINE_AA)
        tiles.append(img)
    cv2.imwrite(str(path), np.concatenate(tiles, axis=1))
    return path


def select_records(scenes: list[PreparedScene], task: Task, n: int, per_scene: int) -> list[tuple[PreparedScene, Any]]:
    """Up to ``n`` records of ``task``, round robin over the scenes (at most ``per_scene`` from one); trajectories
    only where the datagen has a grasp of the object to carry (the episode's setup)."""
    def usable(s: PreparedScene, r: Any) -> bool:  # a carry starts from the datagen's grasp of A
        return task != Task.TRAJECTORY or s.grasp_record_of(int(r.gt["a_gt_index"])) is not None

    pools = [[(s, r) for r in s.by_task(task) if usable(s, r)][:per_scene] for s in scenes]
    out: list[tuple[PreparedScene, Any]] = []
    k = 0
    while len(out) < n and any(k < len(p) for p in pools):
        for p in pools:
            if k < len(p) and len(out) < n:
                out.append(p[k])
        k += 1
    return out


def _select_from_prefix(scenes: list[PreparedScene], task: Task, n: int, per_scene: int) -> list[tuple[PreparedScene, Any]]:
    """:func:`select_records` over the shortest prefix of ``scenes`` that holds ``n`` records (else all)."""
    for k in range(1, len(scenes) + 1):
        got = select_records(scenes[:k], task, n, per_scene)
        if len(got) >= n:
            return got
    return select_records(scenes, task, n, per_scene)


def sim_eval(client: Any, *, episodes: int = 10, noise_levels: Sequence[float] = (0.0,), out_dir: str | Path,
             tasks: Sequence[str] = ("grasp", "trajectory"), scenes: int | None = None, first_seed: int = 0,
             num_objects: int = 5, direct: bool | None = None, snapshots: int = 4, progress: bool = True,
             use_real_mesh: bool = True, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the evaluation; writes ``metrics.json``, ``episodes.jsonl``, ``success_vs_noise.png`` and
    ``strip.png`` under ``out_dir`` and returns the metrics. ``episodes``: per task and noise level;
    ``scenes``: how many scenes (default: enough for ``episodes`` at 4 per scene, at least 10 for 40);
    ``direct``: also execute the datagen's 3D targets (default: with the oracle)."""
    from tqdm import tqdm

    from bopask_vlm.clients import OracleClient

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    n_scenes = scenes or max(1, math.ceil(episodes / GRASPS_PER_SCENE))
    direct = isinstance(client, OracleClient) if direct is None else direct
    prepared: list[PreparedScene] = []
    seed = first_seed
    bar = tqdm(total=n_scenes, desc="sim scenes", unit="scene", disable=not progress)
    errors: list[str] = []
    while len(prepared) < n_scenes and seed < first_seed + 4 * n_scenes + 4:
        try:
            prepared.append(prepare_scene(seed, out / "scenes", num_objects=num_objects, use_real_mesh=use_real_mesh))
            bar.update(1)
        except Exception as e:  # a scene that cannot be built is reported, the run goes on
            errors.append(f"scene {seed}: {type(e).__name__}: {e}")
        seed += 1
    bar.close()
    # top up with more scenes when some held too few questions
    need = {Task.GRASP: episodes if "grasp" in tasks else 0, Task.TRAJECTORY: episodes if "trajectory" in tasks else 0}
    per = {Task.GRASP: GRASPS_PER_SCENE, Task.TRAJECTORY: TRAJECTORIES_PER_SCENE}
    while any(len(select_records(prepared, t, n, per[t])) < n for t, n in need.items()) and \
            seed < first_seed + 4 * n_scenes + 4:
        try:
            prepared.append(prepare_scene(seed, out / "scenes", num_objects=num_objects, use_real_mesh=use_real_mesh))
        except Exception as e:
            errors.append(f"scene {seed}: {type(e).__name__}: {e}")
        seed += 1
    t_prep = time.perf_counter() - t_all
    # each task from the fewest scenes that hold its episodes: scenes added for one task leave the others' sample
    jobs = {t: _select_from_prefix(prepared, t, n, per[t]) for t, n in need.items() if n}
    backends = {id(s): SimMotionBackend(s.world) for s in prepared}
    eps: list[Episode] = []
    total = sum(len(v) for v in jobs.values()) * (len(noise_levels) + (1 if direct else 0))
    bar = tqdm(total=total, desc="sim episodes", unit="ep", disable=not progress)
    shots = 0
    for sigma in noise_levels:
        for task, items in jobs.items():
            run = grasp_episode if task == Task.GRASP else trajectory_episode
            for k, (s, rec) in enumerate(items):
                rng = np.random.default_rng([int(s.seed), k, int(round(sigma * 1000)), 1 if task == Task.GRASP else 2])
                be = backends[id(s)]
                pipe = make_pipeline(s, NoisyClient(client, sigma, rng), be)
                want_shot = shots < snapshots and (k < 2)
                e = run(s, be, pipe, rec, sigma, snapshot=want_shot)
                shots += int(e.snapshot is not None)
                eps.append(e)
                bar.update(1)
    if direct:
        for task, items in jobs.items():
            run = grasp_episode if task == Task.GRASP else trajectory_episode
            for s, rec in items:
                eps.append(run(s, backends[id(s)], None, rec, 0.0))
                bar.update(1)
    bar.close()
    summary = summarize(eps, noise_levels)
    n_frames = len(prepared)
    metrics = {"client": getattr(client, "model", type(client).__name__), "episodes_per_level": episodes,
               "noise_levels": list(noise_levels), "scenes": [s.seed for s in prepared], "errors": errors,
               **summary, "timing_s": {"scenes": t_prep, "total": time.perf_counter() - t_all,
                                       "episodes": sum(e.wall_s for e in eps), "n_episodes": len(eps),
                                       "frames": n_frames}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(out / "episodes.jsonl", "w") as f:
        for e in eps:
            f.write(json.dumps(e.to_dict(), default=float) + "\n")
    metrics["table"] = table_markdown(summary, noise_levels)
    metrics["plot"] = str(plot_success(summary, noise_levels, out / "success_vs_noise.png"))
    strip = picture_strip(eps, out / "strip.png")
    metrics["strip"] = str(strip) if strip else None
    for s in prepared:
        s.world.close()
    if log is not None:
        log(metrics["table"])
    return metrics
