"""Scene preparation time of the ``mixed`` scene family against the ``primitives`` family (the reference) in the
same run, on the same seeds, interleaved.

Per seed and family: build the pybullet world (objects, convex pieces, settling), capture the frame (render +
depth model), write it in the BOP layout and run the datagen's grasps and trajectories on it -- what
``bopask_sim.evaluate.prepare_scene`` does. The mixed family is timed with an empty V-HACD cache first (``cold``:
every generated object decomposed once) and again with it filled (``warm``: what a second preparation of a scene,
and every later run, pays); each warm figure is the fastest of ``--repeats`` (the machine is shared). Also the
depth model alone on one frame: the D435 model against the synthetic scenes' noise. Prints a table and one JSON
line (last); ``mixed_warm_vs_primitives`` is the ratio of mean preparation times (target: <= 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _prep(seed: int, family: str, work: Path) -> tuple[float, int, int]:
    from bopask_sim.evaluate import prepare_scene

    t = time.perf_counter()
    s = prepare_scene(seed, work / f"{family}_{seed}_{time.perf_counter_ns()}", scene_family=family)
    dt = time.perf_counter() - t
    n_g = sum(r.task.value == "grasp" for r in s.records)
    n_t = sum(r.task.value == "trajectory" for r in s.records)
    s.world.close()
    return dt, n_g, n_t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[302, 303, 304, 305])
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    os.environ["BOPASK_SIM_CACHE"] = tempfile.mkdtemp(prefix="bench_sim_cache_")  # cold V-HACD cache
    work = Path(tempfile.mkdtemp(prefix="bench_sim_scenes_"))
    cold = {s: _prep(s, "mixed", work) for s in a.seeds}
    warm: dict[str, dict[int, tuple[float, int, int]]] = {"primitives": {}, "mixed": {}}
    for _ in range(a.repeats):
        for s in a.seeds:
            for fam in ("primitives", "mixed"):
                try:
                    r = _prep(s, fam, work)
                except ValueError as e:  # a seed the family cannot place
                    print(f"{fam} seed {s}: {e}", file=sys.stderr)
                    continue
                if s not in warm[fam] or r[0] < warm[fam][s][0]:
                    warm[fam][s] = r
    from bopask_sim.camera import realsense_depth
    from bopask_sim.world import SimWorld

    with SimWorld(a.seeds[0], 5, scene_family="mixed") as w:
        ideal = w.render().depth_m
        fx = float(w.camera.K[0, 0])
        times = {}
        for name, model in (("synthetic", None), ("d435", "d435")):
            best = np.inf
            for k in range(5):
                t = time.perf_counter()
                realsense_depth(ideal, np.random.default_rng(k), model, fx)
                best = min(best, time.perf_counter() - t)
            times[name] = best
    common = sorted(set(warm["primitives"]) & set(warm["mixed"]))
    mean = {f: float(np.mean([warm[f][s][0] for s in common])) for f in warm}
    print(f"{'seed':>5} {'primitives s':>13} {'mixed warm s':>13} {'mixed cold s':>13}  records g/t (prim, mixed)")
    for s in a.seeds:
        p, m, c = warm["primitives"].get(s), warm["mixed"].get(s), cold[s]
        print(f"{s:>5} {p[0] if p else float('nan'):>13.2f} {m[0] if m else float('nan'):>13.2f} {c[0]:>13.2f}  "
              f"{(p[1], p[2]) if p else '-'} {(m[1], m[2]) if m else '-'}")
    print(f"depth model per 640x480 frame: synthetic {1000 * times['synthetic']:.0f} ms, d435 "
          f"{1000 * times['d435']:.0f} ms")
    out = {"seeds": common, "primitives_s": round(mean["primitives"], 3), "mixed_warm_s": round(mean["mixed"], 3),
           "mixed_cold_s": round(float(np.mean([cold[s][0] for s in a.seeds])), 3),
           "mixed_warm_vs_primitives": round(mean["mixed"] / mean["primitives"], 3),
           "depth_ms": {k: round(1000 * v, 1) for k, v in times.items()},
           "grasp_records_per_scene": {f: round(float(np.mean([warm[f][s][1] for s in common])), 2) for f in warm},
           "trajectory_records_per_scene": {f: round(float(np.mean([warm[f][s][2] for s in common])), 2) for f in warm}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
