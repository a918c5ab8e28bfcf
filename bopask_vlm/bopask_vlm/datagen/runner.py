"""``generate``: BOP scenes to sharded QA records, in parallel (a local process pool, or a Ray cluster) with
a progress bar; resumable and deterministic per seed; corrupt frames skipped and reported; a worker lost
mid-run (process killed, node gone) retried, and a scene that still fails reported by name.

Two kinds of task, the same functions on every backend (:mod:`bopask_vlm.datagen.executors`): the geometry
of each object model the scenes use (collision mesh, hull, grasp candidates;
:mod:`bopask_vlm.datagen.model_geometry`), once per model, largest first; and one task per scene, started as
soon as its models are built, given them, and returning the scene's shard text, which the driver writes
atomically (workers need the dataset's files, not the output directory).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bopask_vlm.answers.types import Task
from bopask_vlm.datagen.bop_reader import BopFormatError, BopScene, find_models_dir, list_scenes
from bopask_vlm.datagen.executors import make_executor
from bopask_vlm.datagen.model_geometry import ModelGeometry, ModelGeometryError, build_model_geometry, model_paths
from bopask_vlm.datagen.object_names import object_names
from bopask_vlm.datagen.scene_tasks import Options, process_scene
from bopask_vlm.datagen.shards import shard_path, write_card, write_shard_text
from bopask_vlm.geometry import GeometryError


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
    """Model task: ``(models_dir, obj_id, mesh path, seed)`` -> the model's geometry, or its error text."""
    models_dir, oid, path, seed = args
    try:
        return models_dir, oid, build_model_geometry(path, oid, seed)
    except ModelGeometryError as e:
        return models_dir, oid, str(e)


def scene_job(job: SceneJob, *models: ModelGeometry) -> dict[str, Any]:
    """Scene task: one scene's shard text, counts and errors, given the geometry of its models."""
    rephrase = None
    if job.rephrase:
        from bopask_vlm.datagen.qa import openai_rephraser

        rephrase = openai_rephraser(**job.rephrase)
    try:
        res = process_scene(job.scene_dir, job.out_dir, job.seed, job.opts, rephrase, {m.obj_id: m for m in models})
    except (BopFormatError, GeometryError) as e:  # a corrupt scene-level file: report the scene, run the others
        return {"scene": job.scene_dir, "shard": "", "records": 0, "frames_ok": 0, "errors": [
            {"scene": str(job.scene_dir), "im_id": None, "stage": "scene", "error": f"{type(e).__name__}: {e}"}]}
    return {"scene": job.scene_dir, "shard": "".join(r.to_line() + "\n" for r in res.records),
            "records": len(res.records), "frames_ok": res.frames_ok, "errors": res.errors}


def _error_key(e: dict[str, Any]) -> tuple[str, str, int, str, str]:
    return (str(e.get("scene") or ""), str(e.get("model") or ""), -1 if e.get("im_id") is None else int(e["im_id"]),
            str(e.get("stage")), str(e.get("error")))


def _scene_obj_ids(scene: Path) -> set[int] | None:
    """The object ids a scene's annotations name (None when they cannot be read: its task reports why)."""
    try:
        return {int(g["obj_id"]) for gts in BopScene(scene).scene_gt.values() for g in gts}
    except (BopFormatError, KeyError, TypeError, ValueError, AttributeError):
        return None


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
    often a task whose worker died is resubmitted. ``rephrase``: ``{"base_url", "model"}`` of an
    OpenAI-compatible server to rephrase questions. Output is identical, byte for byte, on every backend."""
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
    # what each scene needs: its models directory and the objects its annotations name
    paths: dict[str, dict[int, Path]] = {}
    needs: dict[int, set[tuple[str, int]]] = {}  # scene index -> its models not built yet
    uses: dict[int, list[tuple[str, int]]] = {}  # scene index -> its models
    for k, s in enumerate(todo):
        try:
            md = str(find_models_dir(s))
        except BopFormatError as e:
            errors.append({"scene": str(s), "im_id": None, "stage": "scene", "error": f"{type(e).__name__}: {e}"})
            continue
        if md not in paths:
            try:
                paths[md] = model_paths(md)
            except BopFormatError:
                paths[md] = {}  # the scene task reports the unreadable models_info.json
        ids = _scene_obj_ids(s)
        uses[k] = sorted((md, oid) for oid in (paths[md] if ids is None else ids) if oid in paths[md])
        needs[k] = set(uses[k])
    wanted = sorted({m for ms in uses.values() for m in ms}, key=lambda m: (-paths[m[0]][m[1]].stat().st_size, m))
    built: dict[tuple[str, int], Any] = {}  # model -> its ModelGeometry (as the executor shares it)
    ex = make_executor(backend, workers, address, retries)
    t_start = time.perf_counter()
    bar = tqdm(total=len(uses), desc="datagen scenes", unit="scene", disable=not progress)

    def submit_ready() -> None:
        for k in [k for k, ns in needs.items() if not ns]:
            del needs[k]
            have = [built[m] for m in uses[k] if m in built]
            ex.submit(("scene", k), scene_job, SceneJob(str(todo[k]), str(out), int(seed), opts, rephrase), *have)

    try:
        for md, oid in wanted:  # largest meshes first: they take longest
            ex.submit(("model", md, oid), model_job, (md, oid, str(paths[md][oid]), int(seed)))
        submit_ready()
        n_models = 0
        while ex.pending():
            key, res, err = ex.wait()
            if key[0] == "model":
                m = (key[1], key[2])
                n_models += 1
                if err is None and isinstance(res[2], ModelGeometry):
                    built[m] = ex.share(res[2])
                else:  # scenes with this object report it too; other scenes are unaffected
                    errors.append({"scene": None, "model": str(paths[m[0]][m[1]]), "im_id": None, "stage": "model",
                                   "error": f"{type(err).__name__}: {err}" if err is not None else res[2]})
                for ns in needs.values():
                    ns.discard(m)
                bar.set_postfix_str(f"models {n_models}/{len(wanted)}")
                submit_ready()
                continue
            s = todo[key[1]]
            if err is not None:
                msg = str(err).strip().splitlines()
                errors.append({"scene": str(s), "im_id": None, "stage": "worker",
                               "error": f"{type(err).__name__}: {msg[0] if msg else ''}"})
            else:
                write_shard_text(shard_path(out, s.parent.name, int(s.name)), res["shard"])
                results.append(res)
                errors += res["errors"]
            bar.update(1)
    finally:
        bar.close()
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
               "frames_ok": sum(r["frames_ok"] for r in results), "models_built": len(built),
               "scenes_failed": sorted(str(s) for s in scenes if s not in done),
               "seconds": {"plan": round(t_start - t0, 3), "run": round(t_end - t_start, 3)},
               "errors": all_errors}
    (out / "manifest.json").write_text(json.dumps(summary, indent=1))
    write_card(out, summary)
    return summary
