"""``generate``: BOP scenes to sharded QA records, in parallel (a local process pool, or a Ray cluster) with
a progress bar; resumable and deterministic per seed; corrupt frames skipped and reported; a worker lost
mid-run (process killed, node gone) retried, and a scene that still fails reported by name.

Two phases, the same functions on either backend: (1) the geometry of every object model (collision mesh,
hull, grasp candidates; :mod:`bopask_vlm.datagen.model_geometry`), once per model; (2) one job per scene,
given its dataset's models, returning the scene's shard text, which the driver writes atomically (workers
need the dataset's files, not the output directory).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bopask_vlm.answers.types import Task
from bopask_vlm.datagen.bop_reader import BopFormatError, find_models_dir, list_scenes
from bopask_vlm.datagen.model_geometry import ModelGeometry, ModelGeometryError, build_model_geometry, model_paths
from bopask_vlm.datagen.object_names import object_names
from bopask_vlm.datagen.scene_tasks import Options, process_scene
from bopask_vlm.datagen.shards import shard_path, write_card, write_shard_text

#: Modules every worker needs, imported by the driver before a process pool forks (each costs 0.1-0.6 s).
WORKER_IMPORTS = ("trimesh", "trimesh.ray.ray_pyembree", "fcl", "cv2", "PIL.Image", "scipy.spatial", "open3d",
                  "fast_simplification")


class DatagenError(ValueError):
    """Bad arguments or an empty dataset."""


@dataclass(frozen=True)
class SceneJob:
    scene_dir: str
    out_dir: str  # image paths in records are relative to it
    seed: int
    opts: Options
    rephrase: dict[str, Any] | None


def model_job(args: tuple[str, int, str, int]) -> tuple[str, int, ModelGeometry | str]:
    """Phase 1 task: ``(models_dir, obj_id, mesh path, seed)`` -> the model's geometry, or its error text."""
    models_dir, oid, path, seed = args
    try:
        return models_dir, oid, build_model_geometry(path, oid, seed)
    except ModelGeometryError as e:
        return models_dir, oid, str(e)


def scene_job(job: SceneJob, models: dict[int, ModelGeometry]) -> dict[str, Any]:
    """Phase 2 task: one scene's shard text, counts and errors."""
    rephrase = None
    if job.rephrase:
        from bopask_vlm.datagen.qa import openai_rephraser

        rephrase = openai_rephraser(**job.rephrase)
    res = process_scene(job.scene_dir, job.out_dir, job.seed, job.opts, rephrase, models)
    return {"scene": job.scene_dir, "shard": "".join(r.to_line() + "\n" for r in res.records),
            "records": len(res.records), "frames_ok": res.frames_ok, "errors": res.errors}


class _Local:
    """A process pool (``workers`` > 1) or this process; a pool broken by a killed worker is rebuilt and
    the unfinished tasks resubmitted (up to ``retries`` times each)."""

    def __init__(self, workers: int, retries: int) -> None:
        self.workers, self.retries = workers, retries
        self.pool: Any = None
        if workers > 1:
            import importlib

            for m in WORKER_IMPORTS:  # inherited by forked workers instead of imported by each
                try:
                    importlib.import_module(m)
                except ImportError:
                    pass
            self._new_pool()

    def _new_pool(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=self.workers)

    def put(self, value: Any) -> Any:
        return value

    def run(self, fn: Callable[..., Any], tasks: list[tuple[Any, ...]]) -> Iterator[tuple[int, Any, BaseException | None]]:
        """Yields ``(task index, result, None)`` or ``(task index, None, error)`` as tasks finish."""
        if self.pool is None:
            for i, t in enumerate(tasks):
                try:
                    yield i, fn(*t), None
                except Exception as e:  # a bug or an unforeseen bad input: report the task, keep going
                    yield i, None, e
            return
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        attempts = [0] * len(tasks)
        pending = {self.pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            lost: list[int] = []
            for f in done:
                i = pending.pop(f)
                try:
                    yield i, f.result(), None
                except BrokenProcessPool as e:  # a worker died (killed, out of memory): retry elsewhere
                    attempts[i] += 1
                    if attempts[i] > self.retries:
                        yield i, None, e
                    else:
                        lost.append(i)
                except Exception as e:
                    yield i, None, e
            if lost:
                # the pool is unusable once a worker died: every unfinished task is resubmitted to a new one
                lost += list(pending.values())
                self.pool.shutdown(wait=False, cancel_futures=True)
                self._new_pool()
                pending = {self.pool.submit(fn, *tasks[i]): i for i in sorted(set(lost))}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class _Ray:
    """The same tasks as Ray remote functions; Ray retries a task whose worker or node died
    (``max_retries``), then its error is reported."""

    def __init__(self, address: str | None, retries: int) -> None:
        import ray  # optional dependency, imported only when asked for

        self.ray = ray
        self.owned = not ray.is_initialized()
        if self.owned:
            ray.init(address=address, log_to_driver=False)
        self.retries = retries

    def put(self, value: Any) -> Any:
        return self.ray.put(value)  # shipped once per node, shared by its workers

    def run(self, fn: Callable[..., Any], tasks: list[tuple[Any, ...]]) -> Iterator[tuple[int, Any, BaseException | None]]:
        ray = self.ray
        remote = ray.remote(max_retries=self.retries, retry_exceptions=False)(fn)
        refs = {remote.remote(*t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = refs[done[0]]
            try:
                yield i, ray.get(done[0]), None
            except Exception as e:  # RayTaskError, WorkerCrashedError, NodeDiedError ... after retries
                yield i, None, e

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def _error_key(e: dict[str, Any]) -> tuple[str, str, int, str, str]:
    return (str(e.get("scene") or ""), str(e.get("model") or ""), -1 if e.get("im_id") is None else int(e["im_id"]),
            str(e.get("stage")), str(e.get("error")))


def generate(dataset_root: str | Path, out_dir: str | Path, seed: int = 0, *, split: str | None = None,
             dataset: str | None = None, description_file: str | Path | None = None, workers: int = 1,
             backend: str = "process", address: str | None = None, retries: int = 2,
             tasks: Sequence[str] | None = None, max_scenes: int | None = None,
             rephrase: dict[str, Any] | None = None, progress: bool = True, resume: bool = True,
             **option_overrides: Any) -> dict[str, Any]:
    """Write ``out_dir/shards/<split>-<scene>.jsonl`` for every scene under ``dataset_root``; returns a summary
    (also ``out_dir/manifest.json``; ``scenes_failed`` names scenes without a shard, which a rerun redoes).

    ``backend``: "process" (``workers`` local processes) or "ray" (a Ray cluster at ``address``, e.g.
    ``"10.0.0.1:6379"``; None: the one this process is connected to, else a new local one). ``retries``: how
    often a scene whose worker died is retried. ``rephrase``: ``{"base_url", "model"}`` of an
    OpenAI-compatible server to rephrase questions. Output is identical, byte for byte, on either backend."""
    root, out = Path(dataset_root), Path(out_dir)
    scenes = list_scenes(root, split)
    if not scenes:
        raise DatagenError(f"no BOP scenes (*/*/scene_camera.json) under {root}")
    if max_scenes is not None:
        scenes = scenes[:max_scenes]
    if tasks:
        bad = [t for t in tasks if t not in {x.value for x in Task}]
        if bad:
            raise DatagenError(f"unknown task(s) {bad}")
    if backend not in ("process", "ray"):
        raise DatagenError(f"unknown backend {backend!r} (process or ray)")
    names = object_names(dataset, description_file, root)
    opts = Options(dataset=dataset or root.name, names=names, **option_overrides)
    if tasks:
        opts.tasks = tuple(tasks)
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in scenes if not (resume and shard_path(out, s.parent.name, int(s.name)).is_file())]
    errors: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    from tqdm import tqdm

    t0 = time.perf_counter()
    ex: _Local | _Ray = _Ray(address, retries) if backend == "ray" else _Local(workers, retries)
    t_start = t_models = time.perf_counter()
    try:
        # phase 1: every model of the datasets the scenes use, once (largest files first: they take longest)
        mdirs: dict[str, str | None] = {}
        for s in todo:
            try:
                mdirs[str(s)] = str(find_models_dir(s))
            except BopFormatError as e:
                mdirs[str(s)] = None
                errors.append({"scene": str(s), "im_id": None, "stage": "scene", "error": f"{type(e).__name__}: {e}"})
        mtasks = []
        for md in sorted({d for d in mdirs.values() if d is not None}):
            try:
                paths = model_paths(md)
            except BopFormatError:
                continue  # reported by each scene of this dataset (no usable models_info.json)
            mtasks += [((md, oid, str(p), int(seed)),) for oid, p in paths.items()]
        mtasks.sort(key=lambda t: (-Path(t[0][2]).stat().st_size, t[0][0], t[0][1]))
        models: dict[str, dict[int, ModelGeometry]] = {md: {} for md in {t[0][0] for t in mtasks}}
        with tqdm(total=len(mtasks), desc="datagen models", unit="model", disable=not progress or not mtasks) as bar:
            for i, res, err in ex.run(model_job, mtasks):
                md, oid = mtasks[i][0][0], mtasks[i][0][1]
                if err is None and isinstance(res[2], ModelGeometry):
                    models[md][oid] = res[2]
                else:  # scenes with this object report it too; other scenes are unaffected
                    errors.append({"scene": None, "model": mtasks[i][0][2], "im_id": None, "stage": "model",
                                   "error": f"{type(err).__name__}: {err}" if err is not None else res[2]})
                bar.update(1)
        t_models = time.perf_counter()
        # phase 2: scenes
        shared = {md: ex.put(m) for md, m in models.items()}
        runnable = [s for s in todo if mdirs[str(s)] is not None]
        stasks = [(SceneJob(str(s), str(out), int(seed), opts, rephrase), shared.get(mdirs[str(s)], {}))
                  for s in runnable]
        with tqdm(total=len(stasks), desc="datagen scenes", unit="scene", disable=not progress) as bar:
            for i, res, err in ex.run(scene_job, stasks):
                s = runnable[i]
                if err is not None:
                    errors.append({"scene": str(s), "im_id": None, "stage": "worker",
                                   "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})
                else:
                    write_shard_text(shard_path(out, s.parent.name, int(s.name)), res["shard"])
                    results.append(res)
                    errors += res["errors"]
                bar.update(1)
    finally:
        ex.close()
    t_end = time.perf_counter()
    err_file = out / "errors.jsonl"
    rerun = {str(s) for s in todo}
    prev = [json.loads(line) for line in err_file.read_text().splitlines()] if resume and err_file.is_file() else []
    # errors of scenes redone now, and of the models (rebuilt every run), are replaced by this run's
    keep = [e for e in prev if e.get("scene") not in rerun and e.get("stage") != "model"]
    all_errors = sorted(keep + errors, key=_error_key)
    err_file.write_text("".join(json.dumps(e) + "\n" for e in all_errors))
    done = [s for s in scenes if shard_path(out, s.parent.name, int(s.name)).is_file()]
    summary = {"dataset_root": str(root), "seed": int(seed), "scenes_total": len(scenes),
               "scenes_done": len(done), "scenes_run": len(todo), "records_run": sum(r["records"] for r in results),
               "frames_ok": sum(r["frames_ok"] for r in results),
               "scenes_failed": sorted(str(s) for s in scenes if s not in done),
               "seconds": {"start": round(t_start - t0, 3), "models": round(t_models - t_start, 3),
                           "scenes": round(t_end - t_models, 3)},
               "errors": all_errors}
    (out / "manifest.json").write_text(json.dumps(summary, indent=1))
    write_card(out, summary)
    return summary
