"""``generate``: BOP scenes to sharded QA records, in parallel over scenes (processes, or Ray when asked),
with a progress bar; resumable and deterministic per seed; corrupt frames skipped and reported."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bopask_vlm.answers.types import Task
from bopask_vlm.datagen.bop_reader import BopFormatError, list_scenes
from bopask_vlm.datagen.object_names import object_names
from bopask_vlm.datagen.scene_tasks import Options, process_scene
from bopask_vlm.datagen.shards import shard_path, write_card, write_shard
from bopask_vlm.geometry import GeometryError


class DatagenError(ValueError):
    """Bad arguments or an empty dataset."""


def _job(args: tuple[str, str, int, Options, Any]) -> dict[str, Any]:
    scene_dir, out_dir, seed, opts, rephrase_cfg = args
    rephrase = None
    if rephrase_cfg:
        from bopask_vlm.datagen.qa import openai_rephraser

        rephrase = openai_rephraser(**rephrase_cfg)
    try:
        res = process_scene(scene_dir, out_dir, seed, opts, rephrase)
    except (BopFormatError, GeometryError) as e:  # a corrupt scene-level file: report the scene, run the others
        return {"scene": scene_dir, "records": 0, "frames_ok": 0, "errors": [
            {"scene": str(scene_dir), "im_id": None, "stage": "scene", "error": f"{type(e).__name__}: {e}"}]}
    sd = Path(scene_dir)
    write_shard(shard_path(Path(out_dir), sd.parent.name, int(sd.name)), res.records)
    return {"scene": scene_dir, "records": len(res.records), "frames_ok": res.frames_ok, "errors": res.errors}


def generate(dataset_root: str | Path, out_dir: str | Path, seed: int = 0, *, split: str | None = None,
             dataset: str | None = None, description_file: str | Path | None = None, workers: int = 1,
             backend: str = "process", tasks: Sequence[str] | None = None, max_scenes: int | None = None,
             rephrase: dict[str, Any] | None = None, progress: bool = True, resume: bool = True,
             **option_overrides: Any) -> dict[str, Any]:
    """Write ``out_dir/shards/<split>-<scene>.jsonl`` for every scene under ``dataset_root``; returns a summary
    (also ``out_dir/manifest.json``). ``backend``: "process" (local pool) or "ray" (cluster; lazy import).
    ``rephrase``: ``{"base_url", "model"}`` of an OpenAI-compatible server to rephrase questions."""
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
    names = object_names(dataset, description_file, root)
    opts = Options(dataset=dataset or root.name, names=names, **option_overrides)
    if tasks:
        opts.tasks = tuple(tasks)
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in scenes if not (resume and shard_path(out, s.parent.name, int(s.name)).is_file())]
    jobs = [(str(s), str(out), int(seed), opts, rephrase) for s in todo]
    results: list[dict[str, Any]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="datagen scenes", unit="scene", disable=not progress)
    if backend == "ray":
        import ray  # optional dependency, imported only when asked for

        if not ray.is_initialized():
            ray.init()
        remote = ray.remote(_job)
        pending = [remote.remote(j) for j in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(done[0]))
            bar.update(1)
    elif backend != "process":
        raise DatagenError(f"unknown backend {backend!r} (process or ray)")
    elif workers <= 1:
        for j in jobs:
            results.append(_job(j))
            bar.update(1)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            for r in ex.map(_job, jobs):
                results.append(r)
                bar.update(1)
    bar.close()
    errors = [e for r in results for e in r["errors"]]
    err_file = out / "errors.jsonl"
    prev = [json.loads(line) for line in err_file.read_text().splitlines()] if resume and err_file.is_file() else []
    all_errors = prev + errors
    err_file.write_text("".join(json.dumps(e) + "\n" for e in all_errors))
    summary = {"dataset_root": str(root), "seed": int(seed), "scenes_total": len(scenes),
               "scenes_done": len(scenes), "scenes_run": len(jobs), "records_run": sum(r["records"] for r in results),
               "frames_ok": sum(r["frames_ok"] for r in results), "errors": all_errors}
    (out / "manifest.json").write_text(json.dumps(summary, indent=1))
    write_card(out, summary)
    return summary
