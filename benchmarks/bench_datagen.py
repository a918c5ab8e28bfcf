"""Dataset generation throughput vs. only decoding the same frames' rgb + depth files, on 2 cores.

Builds synthetic BOP scenes (untimed), then in one run measures (a) decoding every frame's rgb png and
16-bit depth png with OpenCV, 2 processes, and (b) the whole generation pipeline (``generate``, 2 worker
processes: world frame, grasps, trajectories, blockers once per scene; projection, relations and every
question per frame; shards written). Per-scene work is amortised over the scene's frames, so the ratio
depends on frames per scene (printed). Ends with one JSON line; ``gen_vs_decode_ratio`` >= 0.5 is the target.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2


def _decode_scene(scene: str) -> int:
    n = 0
    for rgb in sorted(Path(scene, "rgb").glob("*.png")):
        img = cv2.imread(str(rgb), cv2.IMREAD_COLOR)
        dep = cv2.imread(str(Path(scene, "depth", rgb.name)), cv2.IMREAD_ANYDEPTH)
        assert img is not None and dep is not None
        n += 1
    return n


def main() -> int:
    from bopask_vlm.datagen import generate
    from bopask_vlm.datagen.bop_reader import list_scenes
    from bopask_vlm.datagen.synthetic import make_scene

    scenes, frames = int(sys.argv[1]) if len(sys.argv) > 1 else 2, int(sys.argv[2]) if len(sys.argv) > 2 else 30
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bop"
        for i in range(scenes):
            make_scene(root, seed=100 + i, num_objects=5, num_frames=frames, scene_id=i)
        dirs = [str(s) for s in list_scenes(root)]
        n_frames = scenes * frames
        with ProcessPoolExecutor(2) as ex:  # warm the pool (imports) before timing
            list(ex.map(_decode_scene, dirs[:1]))
            t0 = time.perf_counter()
            assert sum(ex.map(_decode_scene, dirs)) == n_frames
            t_dec = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t0 = time.perf_counter()
            s = generate(root, Path(tmp) / "out", seed=0, workers=2, progress=False)
            t_gen = time.perf_counter() - t0
    dec_fps, gen_fps = n_frames / t_dec, n_frames / t_gen
    print(f"{scenes} scenes x {frames} frames (640x480, 5 objects): decode rgb+depth {dec_fps:.1f} frames/s, "
          f"generation {gen_fps:.1f} frames/s ({s['records_run']} records, {len(s['errors'])} errors)")
    print(json.dumps({"frames": n_frames, "frames_per_scene": frames, "decode_fps": round(dec_fps, 2),
                      "generate_fps": round(gen_fps, 2), "records": s["records_run"],
                      "gen_vs_decode_ratio": round(gen_fps / dec_fps, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
