"""Closed-loop episodes per second on 2 cores, against the render time alone of the same frames in the same run.

Two worker processes (one per core) each build a scene, run the datagen on it and then every grasp and
trajectory episode of the scene through the pipeline (oracle client) and the simulated Panda. Each worker
also re-renders its camera frame (and an episode snapshot view) a few times alone: the reference, since a
closed-loop episode needs at least one frame rendered. Prints episodes per second, seconds per episode, the
render time per frame, their ratio, and one JSON line (last).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _worker(args: tuple[int, str]) -> dict[str, float]:
    seed, work = args
    from bopask_sim.backend import SimMotionBackend
    from bopask_sim.evaluate import grasp_episode, make_pipeline, prepare_scene, trajectory_episode
    from bopask_vlm.answers.types import Task
    from bopask_vlm.clients import OracleClient

    t = time.perf_counter()
    s = prepare_scene(seed, Path(work))
    prep_s = time.perf_counter() - t
    be = SimMotionBackend(s.world)
    n, ok = 0, 0
    t = time.perf_counter()
    for rec in s.by_task(Task.GRASP):
        e = grasp_episode(s, be, make_pipeline(s, OracleClient(), be), rec)
        n, ok = n + 1, ok + int(e.success)
    for rec in s.by_task(Task.TRAJECTORY):
        e = trajectory_episode(s, be, make_pipeline(s, OracleClient(), be), rec)
        n, ok = n + 1, ok + int(e.success)
    ep_s = time.perf_counter() - t
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        s.world.render()
    render_s = (time.perf_counter() - t) / reps
    s.world.close()
    return {"episodes": n, "ok": ok, "episodes_s": ep_s, "render_s": render_s, "prep_s": prep_s}


def main() -> int:
    workers = 2
    seeds = [0, 1, 2, 3]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as ex:
            res = list(ex.map(_worker, [(s, tmp) for s in seeds]))
        wall = time.perf_counter() - t
    n = sum(r["episodes"] for r in res)
    ep_time = sum(r["episodes_s"] for r in res)
    render = sum(r["render_s"] for r in res) / len(res)
    fig = {
        "workers": workers,
        "scenes": len(seeds),
        "episodes": n,
        "success": sum(r["ok"] for r in res) / max(n, 1),
        "episodes_per_s_2_cores": n / sum(r["episodes_s"] for r in res) * workers,
        "episode_s_mean": ep_time / max(n, 1),
        "render_s_per_frame": render,
        "episode_vs_render_ratio": (ep_time / max(n, 1)) / render,
        "scene_prep_s_mean": sum(r["prep_s"] for r in res) / len(res),
        "wall_s": wall,
    }
    print(f"{n} closed-loop episodes on {len(seeds)} scenes, {workers} workers: "
          f"{fig['episodes_per_s_2_cores']:.2f} episodes/s ({fig['episode_s_mean']:.2f} s each)")
    print(f"render alone: {render * 1e3:.0f} ms per 640x480 frame; an episode costs "
          f"{fig['episode_vs_render_ratio']:.1f} renders; scene preparation (build, render, BOP, datagen) "
          f"{fig['scene_prep_s_mean']:.1f} s")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    import argparse

    # no options: --help says what is measured and against what
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sys.exit(main())
