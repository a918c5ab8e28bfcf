"""Benchmark runner: ask any client every question of a held-out split and score the answers.

Requests go out in batches through ``client.ask_many(requests, max_concurrency)`` (concurrent requests
to a server; the oracle and transformers clients answer in turn), with a progress bar over samples.
Writes the metrics table (JSON + markdown), per-sample records and overlays (ground truth green,
prediction red) of a sample of failures.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bopask_vlm.answers.types import Task
from bopask_vlm.eval.report import aggregate, write_report
from bopask_vlm.eval.scoring import gt_answer, scene_for_record, score_answer

__all__ = ["BenchResult", "is_failure", "load_records", "overlay_name", "run_benchmark", "save_overlay"]


class RunnerError(ValueError):
    """Bad benchmark input (no records, unreadable shard)."""


@dataclass
class BenchResult:
    summary: dict[str, Any]
    samples: list[dict[str, Any]]
    paths: dict[str, Path] = field(default_factory=dict)


def load_records(paths: Sequence[str | Path], *, split: str | None = None, tasks: Iterable[str] | None = None,
                 limit: int | None = None, seed: int = 0) -> list[Any]:
    """QA records from JSONL files or directories (searched recursively for ``*.jsonl``).

    ``split``: keep files whose path contains this name (e.g. ``test``); ``tasks``: keep these tasks;
    ``limit``: a seeded random subset of at most this many records, stratified by task.
    """
    from bopask_vlm.records import QARecord, RecordError

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise RunnerError(f"no such file or directory: {p}")
    if split:
        files = [f for f in files if split in f.as_posix()]
    want = {Task(t) for t in tasks} if tasks else None
    records = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = QARecord.from_line(line)
            except RecordError as e:
                raise RunnerError(f"{f}:{n}: {e}") from e
            if want is None or r.task in want:
                records.append(r)
    if not records:
        raise RunnerError(f"no QA records found in {[str(p) for p in paths]} (split={split!r}, tasks={tasks})")
    if limit is not None and len(records) > limit:
        rng = random.Random(seed)
        by_task: dict[Task, list[Any]] = {}
        for r in records:
            by_task.setdefault(r.task, []).append(r)
        per = max(1, limit // len(by_task))
        picked = []
        for t in sorted(by_task, key=lambda t: t.value):
            group = by_task[t]
            picked += rng.sample(group, min(per, len(group)))
        records = picked[:limit]
    return records


def _load_image(root: Path, rel: str) -> np.ndarray:
    from PIL import Image

    path = root / rel
    if not path.is_file():
        raise RunnerError(f"image {rel!r} not found under the dataset root {root} (give the root the records' "
                          "image paths are relative to)")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


_PRIMARY = {Task.POSE: ("iou3d", "iou2d"), Task.GRASP: ("success",), Task.TRAJECTORY: ("success",),
            Task.REARRANGEMENT: ("recall",), Task.SPATIAL: ("correct",), Task.DEPTH: ("correct",)}


def is_failure(task: Task, metrics: dict[str, float]) -> bool:
    """Invalid, or the task's primary metric says failed (pose: IoU < 0.25)."""
    if not metrics.get("valid"):
        return True
    for key in _PRIMARY[Task(task)]:
        if key in metrics:
            return metrics[key] < (0.25 if key.startswith("iou") else 0.5)
    return False


def overlay_name(record: Any) -> str:
    """A file name for a record's overlay (record ids hold slashes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{record.task.value}_{record.id}") + ".png"


def save_overlay(image: np.ndarray, gt: Any, pred: Any, path: Path, label: str = "") -> Path | None:
    """GT (green) and prediction (red) drawn with :func:`bopask_vlm.viz.draw_answer`; None if no viz."""
    try:
        from bopask_vlm.viz import draw_answer
    except ImportError:
        return None
    from PIL import Image

    img = draw_answer(image, gt, color=(0, 255, 0), label=f"{label}: GT green, prediction red".lstrip(": "))
    if pred is not None:
        img = draw_answer(img, pred, color=(255, 0, 0))
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(path)
    return path


def run_benchmark(records: Sequence[Any], client: Any, dataset_root: str | Path, out_dir: str | Path | None = None,
                  *, max_concurrency: int = 4, overlays: int = 16, progress: bool = True,
                  model_name: str | None = None, batch_size: int | None = None, seed: int = 0) -> BenchResult:
    """Ask ``client`` every record's question, score the answers, and write the report to ``out_dir``."""
    from tqdm import tqdm

    from bopask_vlm.answers import answer_to_json
    from bopask_vlm.clients import VLMError, VLMRequest, VLMServerError

    if not records:
        raise RunnerError("no records to evaluate")
    root = Path(dataset_root)
    bs = batch_size or max(1, 4 * max_concurrency)
    samples: list[dict[str, Any]] = []
    answers: list[Any] = []
    model = model_name
    bar = tqdm(total=len(records), desc="bench", unit="q", disable=not progress)
    for start in range(0, len(records), bs):
        chunk = records[start:start + bs]
        reqs = [VLMRequest(task=r.task, image=_load_image(root, r.image), objects=[o.description for o in r.objects],
                           question=r.question, record=r) for r in chunk]
        resps = client.ask_many(reqs, max_concurrency)
        for r, resp in zip(chunk, resps):
            pred, err, raw, lat = None, "", "", None
            # the request never reached a model (refused, timed out, HTTP 5xx): counted apart from bad answers
            server_error = isinstance(resp, VLMServerError)
            if isinstance(resp, VLMError) or isinstance(resp, Exception):
                err = f"{type(resp).__name__}: {resp}"
                raw = str(getattr(resp, "raw_text", "") or "")
            else:
                pred, raw, lat = resp.answer, resp.raw_text, resp.latency_s
                model = model or resp.model
            scene = scene_for_record(r, root)
            m = score_answer(r, pred, scene)
            samples.append({"id": r.id, "task": r.task.value, "metrics": m, "error": err, "server_error": server_error,
                            "raw_text": raw,
                            "latency_s": lat, "pred": answer_to_json(pred) if pred is not None else None,
                            "image": r.image})
            answers.append(pred)
        bar.update(len(chunk))
    bar.close()
    summary = aggregate(samples)
    summary["model"] = model or type(client).__name__
    lats = [s["latency_s"] for s in samples if s["latency_s"] is not None]
    if lats:
        summary["latency"] = {"query": {"p50_ms": float(np.percentile(lats, 50) * 1e3),
                                        "p95_ms": float(np.percentile(lats, 95) * 1e3), "n": len(lats)}}
    result = BenchResult(summary, samples)
    if out_dir is not None:
        out = Path(out_dir)
        result.paths = write_report(summary, samples, out)
        fails = [i for i, s in enumerate(samples) if is_failure(Task(s["task"]), s["metrics"])]
        random.Random(seed).shuffle(fails)
        if fails and overlays > 0:
            (out / "overlays").mkdir(parents=True, exist_ok=True)
            for i in fails[:overlays]:
                r = records[i]
                save_overlay(_load_image(root, r.image), gt_answer(r), answers[i],
                             out / "overlays" / overlay_name(r), label=r.task.value)
            result.paths["overlays"] = out / "overlays"
    return result
