"""Helpers for the training tests: a small synthetic QA set written as QARecord shards.

Until a generated set is used, records are made here from simple synthetic images (a coloured box on a
plain background) with answers tied to the picture, through the VLM layer's own functions
(``answers.answer_to_json`` / ``answer_to_text``, ``prompts.make_question``), so the training side reads
exactly the layout the generator writes.
"""

from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bopask_vlm.answers.types import GraspAnswer, PoseAnswer, Task, YesNoAnswer
from bopask_vlm.records import ObjectRef, QARecord

WIDTH, HEIGHT = 112, 84


def _box_image(rng: np.random.Generator, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    img = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    img[y0:y1, x0:x1] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def make_records(root: Path, n: int = 12, seed: int = 0, tasks: tuple[Task, ...] = (Task.POSE, Task.GRASP,
                 Task.SPATIAL)) -> list[QARecord]:
    """``n`` records (tasks in turn) with PNG images under ``root/images``."""
    from PIL import Image

    from bopask_vlm.answers import answer_to_json, answer_to_text
    from bopask_vlm.prompts import make_question

    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        x0, y0 = int(rng.integers(5, 50)), int(rng.integers(5, 35))
        x1, y1 = x0 + int(rng.integers(15, 50)), y0 + int(rng.integers(15, 40))
        img = _box_image(rng, x0, y0, x1, y1)
        rel = f"images/{i:04d}.png"
        Image.fromarray(img).save(root / rel)
        objects = [ObjectRef(obj_id=1, gt_index=0, name="box", description="the box")]
        relation = None
        if task == Task.POSE:
            d = 4.0
            answer = PoseAnswer([[x0, y1], [x1, y1], [x1 - d, y1 - d], [x0 - d, y1 - d],
                                 [x0, y0], [x1, y0], [x1 - d, y0 - d], [x0 - d, y0 - d]])
        elif task == Task.GRASP:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            answer = GraspAnswer([[cx, cy - 12], [x0, cy - 20], [x1, cy - 20], [x0, cy], [x1, cy]])
        else:
            objects.append(ObjectRef(obj_id=2, gt_index=1, name="edge", description="the image centre"))
            relation = "left of"
            answer = YesNoAnswer((x0 + x1) / 2 < WIDTH / 2, task=Task.SPATIAL)
        question = make_question(task, [o.description for o in objects], relation, rng=prng)
        out.append(QARecord(
            id=f"synth-{seed}-{i}", task=task, image=rel, question=question, answer=answer_to_json(answer),
            answer_text=answer_to_text(answer), width=WIDTH, height=HEIGHT,
            camera_K=[100.0, 0, WIDTH / 2, 0, 100.0, HEIGHT / 2, 0, 0, 1], dataset="synthetic", im_id=i,
            objects=objects, gt={"relation": relation} if relation else {},
        ))
    return out


@functools.lru_cache(maxsize=1)
def shared_tiny_model() -> Path:
    """One tiny Qwen2.5-VL per test process (removed at exit), shared by the training test modules."""
    from bopask_vlm.testing.tiny_qwen import build_tiny_qwen25_vl

    d = Path(tempfile.mkdtemp(prefix="bopask_tiny_qwen_"))
    atexit.register(shutil.rmtree, d, True)
    return build_tiny_qwen25_vl(d / "model", seed=0)


def write_dataset(root: Path, n: int = 12, seed: int = 0, n_shards: int = 2) -> list[QARecord]:
    """``make_records`` written as ``n_shards`` JSONL shards under ``root/shards``."""
    from bopask_vlm.train.data import write_records

    recs = make_records(root, n=n, seed=seed)
    per = -(-n // n_shards)
    for k in range(n_shards):
        write_records(recs[k * per:(k + 1) * per], root / "shards" / f"part-{k:05d}.jsonl")
    return recs


def generated_dataset(root: Path, seed: int = 0, num_objects: int = 3, num_frames: int = 2) -> Path:
    """A small generated set: one synthetic BOP scene (224x168) through ``bopask_vlm.datagen.generate``
    (all six tasks, ~30 records, ~2 s). Falls back to :func:`write_dataset`'s hand-made records where the
    generator is absent. Returns the dataset root (``shards/*.jsonl`` below it)."""
    try:
        from bopask_vlm.datagen import generate
        from bopask_vlm.datagen.synthetic import make_scene
    except ImportError:
        write_dataset(root / "out", n=12, seed=seed)
        return root / "out"
    make_scene(root / "bop", seed=seed, num_objects=num_objects, num_frames=num_frames, width=224, height=168)
    summary = generate(root / "bop", root / "out", seed=seed, progress=False)
    if summary.get("errors"):
        raise RuntimeError(f"datagen errors: {summary['errors']}")
    return root / "out"
