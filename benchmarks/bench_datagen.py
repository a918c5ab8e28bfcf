"""Dataset generation throughput vs. only decoding the same frames' rgb + depth files, on 2 cores.

Builds synthetic BOP scenes (untimed), then in one run measures (a) decoding every frame's rgb png and
16-bit depth png with OpenCV, 2 processes, and (b) the whole generation pipeline (``generate``: the object
models' geometry once -- collision meshes, hulls, grasp candidates; then per scene the world frame, grasps
placed and checked, trajectories, blockers; per frame projection, relations and every question; shards
written), with 2 worker processes and with 1 (the scaling line: frames/s per worker count). Each is timed
``REPEATS`` times, interleaved, and the fastest kept (the machine is shared; the fastest run is the one
least disturbed). Model and per-scene work is amortised over the frames, so the ratio depends on frames per
scene and scenes per dataset (printed). Ends with one JSON line; ``gen_vs_decode_ratio`` (2 workers vs 2
decoding processes) >= 0.5 is the target.

``--sizing [OBJECTS]``: instead, the figures of ``docs/datagen_sizing.md`` (1 process, CPU seconds): the one-off cost
per object model, the cost per image and per extra QA record (by raising the yes/no questions per image),
and bytes per record and per image of the written shards, raw and gzip-compressed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

from bopask_vlm.help_format import DefaultsFormatter

REPEATS = 3


def _decode_scene(scene: str) -> int:
    n = 0
    for rgb in sorted(Path(scene, "rgb").glob("*.png")):
        img = cv2.imread(str(rgb), cv2.IMREAD_COLOR)
        dep = cv2.imread(str(Path(scene, "depth", rgb.name)), cv2.IMREAD_ANYDEPTH)
        assert img is not None and dep is not None
        n += 1
    return n


def sizing(frames: int = 30, scenes: int = 2, objects: int = 5) -> int:
    import gzip

    from bopask_vlm.datagen import generate
    from bopask_vlm.datagen.model_geometry import build_models
    from bopask_vlm.datagen.synthetic import make_scene

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        root = Path(tmp) / "bop"
        for i in range(scenes):
            make_scene(root, seed=100 + i, num_objects=objects, num_frames=frames, scene_id=i)
        c0 = time.process_time()
        models, _ = build_models(root / "models", 0)
        t_models = time.process_time() - c0
        big = max(models.values(), key=lambda m: m.n_faces)
        c0 = time.process_time()
        build_models(root / "models", 0, [big.obj_id])
        t_big = time.process_time() - c0
        runs: dict[str, tuple[float, int]] = {}
        more = {"spatial_per_frame": 40, "depth_per_frame": 20}
        for k, (name, kw) in enumerate((("warm-up", {}), ("default", {}), ("more_yes_no", more), ("default", {}))):
            c0 = time.process_time()
            s = generate(root, Path(tmp) / f"{name}{k}", seed=0, workers=1, progress=False, **kw)
            t = time.process_time() - c0
            runs[name] = (min(t, runs.get(name, (t, 0))[0]), s["records_run"])
        shards = sorted((Path(tmp) / "default1" / "shards").glob("*.jsonl"))
        raw = sum(p.stat().st_size for p in shards)
        gz = sum(len(gzip.compress(p.read_bytes(), 6)) for p in shards)
        raw_more = sum(p.stat().st_size for p in (Path(tmp) / "more_yes_no2" / "shards").glob("*.jsonl"))
        n_img = scenes * frames
        (ta, ra), (tb, rb) = runs["default"], runs["more_yes_no"]
        per_record = (tb - ta) / (rb - ra)
        out = {"images": n_img, "objects_per_image": objects, "models": len(models), "model_cpu_s_all": round(t_models, 3),
               "model_cpu_s_largest": round(t_big, 3), "largest_model_faces": big.n_faces,
               "run_cpu_s_default": round(ta, 3), "records_default": ra, "records_per_image": round(ra / n_img, 2),
               "cpu_ms_per_image_default": round(1000 * ta / n_img, 2),
               "cpu_ms_per_image_without_models": round(1000 * (ta - t_models) / n_img, 2),
               "cpu_ms_per_extra_record": round(1000 * per_record, 3), "records_more_yes_no": rb,
               "cpu_ms_per_image_more_yes_no": round(1000 * tb / n_img, 2),
               "bytes_per_record": round(raw / ra, 1), "bytes_per_image": round(raw / n_img),
               "gzip_bytes_per_image": round(gz / n_img), "gzip_ratio": round(raw / gz, 2),
               "bytes_per_image_more_yes_no": round(raw_more / n_img)}
    print(json.dumps(out))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    p.add_argument("scenes", nargs="?", type=int, default=2, help="synthetic scenes (throughput run)")
    p.add_argument("frames", nargs="?", type=int, default=30, help="frames per scene (throughput run)")
    p.add_argument("--sizing", action="store_true",
                   help="measure the cost per model, image and question instead (docs/datagen_sizing.md)")
    p.add_argument("--objects", type=int, default=5, help="objects per image of the --sizing run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.sizing:
        return sizing(objects=args.objects)
    from bopask_vlm.datagen import generate, model_geometry
    from bopask_vlm.datagen.bop_reader import list_scenes
    from bopask_vlm.datagen.synthetic import make_scene

    scenes, frames = args.scenes, args.frames
    t_dec, t_gen = [], {1: [], 2: []}
    summaries: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bop"
        for i in range(scenes):
            make_scene(root, seed=100 + i, num_objects=5, num_frames=frames, scene_id=i)
        dirs = [str(s) for s in list_scenes(root)]
        n_frames = scenes * frames
        with ProcessPoolExecutor(2) as ex:  # warm the pool (imports) before timing
            list(ex.map(_decode_scene, dirs[:1]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for _ in range(REPEATS):
                    t0 = time.perf_counter()
                    assert sum(ex.map(_decode_scene, dirs)) == n_frames
                    t_dec.append(time.perf_counter() - t0)
                    for w in (2, 1):
                        out = Path(tmp) / f"out{w}"
                        shutil.rmtree(out, ignore_errors=True)
                        model_geometry.clear_shape_cache()  # no FCL geometry left over from the previous run
                        t0 = time.perf_counter()
                        summaries[w] = generate(root, out, seed=0, workers=w, progress=False)
                        t_gen[w].append(time.perf_counter() - t0)
        shard = sorted((Path(tmp) / "out2" / "shards").glob("*.jsonl"))[0]
        bytes_per_record = shard.stat().st_size / max(1, len(shard.read_text().splitlines()))
    dec_fps = n_frames / min(t_dec)
    fps = {w: n_frames / min(ts) for w, ts in t_gen.items()}
    s = summaries[2]
    print(f"{scenes} scenes x {frames} frames (640x480, 5 objects), best of {REPEATS}: decode rgb+depth "
          f"{dec_fps:.1f} frames/s; generation {fps[2]:.1f} frames/s with 2 workers, {fps[1]:.1f} with 1 "
          f"({s['records_run']} records, {len(s['errors'])} errors, {bytes_per_record:.0f} B/record)")
    print(f"seconds (last 2-worker run): {s['seconds']}; (last 1-worker run): {summaries[1]['seconds']}")
    print(json.dumps({"frames": n_frames, "frames_per_scene": frames, "decode_fps": round(dec_fps, 2),
                      "generate_fps": round(fps[2], 2), "generate_fps_1_worker": round(fps[1], 2),
                      "scaling_2_vs_1": round(fps[2] / fps[1], 3), "records": s["records_run"],
                      "gen_vs_decode_ratio": round(fps[2] / dec_fps, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
