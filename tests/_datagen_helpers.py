"""Shared synthetic scene + generated dataset for the datagen tests, built once per test session."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from bopask_vlm.datagen.synthetic import make_scene
from bopask_vlm.records import QARecord

SEED = 3


@dataclass
class Built:
    root: Path  # BOP dataset root
    scene: Path
    out: Path  # generated shards dir
    records: list[QARecord]


@cache
def built() -> Built:
    tmp = Path(tempfile.mkdtemp(prefix="bopask_datagen_test_"))
    atexit.register(shutil.rmtree, tmp, True)
    root = tmp / "bop"
    scene = make_scene(root, seed=SEED, num_objects=5, num_frames=3, width=640, height=480, noise=True)
    from bopask_vlm.datagen import generate

    out = tmp / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        generate(root, out, seed=0, progress=False)
    recs = [QARecord.from_line(line) for f in sorted((out / "shards").glob("*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]
    return Built(root, scene, out, recs)


def world_T(scene: Path, im_id: int) -> np.ndarray:
    import json

    w = json.loads((scene / "scene_world.json").read_text())
    return np.asarray(w["frames"][str(im_id)]["T_world_cam"], float)
