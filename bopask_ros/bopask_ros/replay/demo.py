"""The embedded demo (``make demo``): no GPU, no robot, no download.

1. make a synthetic tabletop scene (BOP format) and its question/answer records;
2. write the scene as a RealSense-style rosbag2 (mcap) with a robot base on the table;
3. replay the bag through the task pipeline (with the node's default safety envelope) with the oracle
   client (or a vLLM-served model with ``--endpoint URL --model NAME``), scoring in 2D and in 3D in the
   robot base frame;
4. write the report under ``--out``: ``report.md`` (metrics table, per-stage latency), ``metrics.json``,
   ``metrics.png``, ``samples.jsonl`` and ``overlays/`` (grasps, cuboids, trajectories, ...).

Usage: ``python -m bopask_ros.replay.demo --out demo_out [--endpoint http://127.0.0.1:8000/v1 --model NAME]``;
exit status 1 when every request (or more than ``--max-server-errors`` of them) failed to reach the server.
``bopask replay demo_out/bag --client ... --out DIR`` replays the demo's bag again with any client.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="python -m bopask_ros.replay.demo", description=__doc__,
                                formatter_class=DefaultsFormatter)
    p.add_argument("--out", default="demo_out", help="output directory (replaced)")
    p.add_argument("--seed", type=int, default=0, help="scene and sampling seed")
    p.add_argument("--objects", type=int, default=5, help="objects on the table")
    p.add_argument("--frames", type=int, default=3, help="camera views of the scene")
    p.add_argument("--width", type=int, default=640, help="image width (px)")
    p.add_argument("--height", type=int, default=480, help="image height (px)")
    p.add_argument("--max-records", type=int, default=120, help="at most this many questions (stratified)")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL of a vLLM server")
    p.add_argument("--model", default=None, help="served model name (with --endpoint)")
    p.add_argument("--max-server-errors", type=float, default=None, metavar="FRACTION",
                   help="exit 1 when more than this fraction of the requests never reached the model server; "
                        "without it, exit 1 only when every request failed so")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no report on stdout")
    return p


def make_dataset(work: Path, seed: int, num_objects: int, num_frames: int, width: int, height: int,
                 max_records: int | None = None) -> tuple[Path, list[Any], Path]:
    """A synthetic BOP scene under ``work``, the QA records of its frames, and the records' dataset root
    (the directory their image paths are relative to; shards in its ``shards/``)."""
    from bopask_vlm.datagen import generate, synthetic
    from bopask_vlm.eval.runner import load_records

    scene_dir = Path(synthetic.make_scene(work / "bop", seed=seed, num_objects=num_objects, num_frames=num_frames,
                                          width=width, height=height, noise=True))
    out = work / "qa"
    generate(_dataset_root(scene_dir), out, seed, progress=False)
    records = load_records([out / "shards"], limit=max_records, seed=seed)
    return scene_dir, records, out


def _dataset_root(scene_dir: Path) -> Path:
    """The BOP dataset root holding ``scene_dir`` (the directory with ``models/`` beside the scenes)."""
    for cand in (scene_dir, scene_dir.parent, scene_dir.parent.parent):
        if (cand / "models").is_dir() and cand != scene_dir:
            return cand
    return scene_dir.parent


def make_client(endpoint: str | None, model: str | None, **options: Any) -> Any:
    """The oracle, or with ``endpoint`` an OpenAI-compatible (vLLM) client; ``options`` go to its config."""
    if endpoint:
        from bopask_vlm.clients import make_client as _make

        return _make({"type": "openai", "base_url": endpoint, "model": model or "default", **options})
    from bopask_vlm.clients import OracleClient

    return OracleClient()


def run_demo(out: str | Path, *, seed: int = 0, num_objects: int = 5, num_frames: int = 3, width: int = 640,
             height: int = 480, max_records: int | None = 120, endpoint: str | None = None,
             model: str | None = None, progress: bool = True,
             client_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole demo; returns the replay summary (also in ``out/metrics.json``)."""
    from bopask_ros.replay.bag_replay import replay_bag
    from bopask_ros.replay.bag_writer import bop_scene_to_bag

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    scene_dir, records, _ = make_dataset(out / "data", seed, num_objects, num_frames, width, height, max_records)
    t_data = time.perf_counter()
    ids = sorted({int(r.im_id) for r in records})
    bag = bop_scene_to_bag(scene_dir, out / "bag", records=records, im_ids=ids)
    t_bag = time.perf_counter()
    from bopask_ros.motion.safety import SafetyEnvelope

    # the default Panda-sized envelope of the node: targets out of reach come back as safety_rejected
    rep = replay_bag(bag, make_client(endpoint, model, **(client_options or {})), out_dir=out, progress=progress,
                     safety=SafetyEnvelope())
    t_end = time.perf_counter()
    rep.summary["demo_timing_s"] = {"dataset": t_data - t0, "bag": t_bag - t_data, "replay": t_end - t_bag,
                                    "total": t_end - t0}
    from bopask_vlm.eval.report import write_report

    write_report(rep.summary, rep.samples, out, title="BOP-ASK demo: rosbag replay")
    return rep.summary


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    summary = run_demo(args.out, seed=args.seed, num_objects=args.objects, num_frames=args.frames,
                       width=args.width, height=args.height, max_records=args.max_records,
                       endpoint=args.endpoint, model=args.model, progress=not args.quiet)
    out = Path(args.out).resolve()
    if not args.quiet:
        print((out / "report.md").read_text())
    frames = summary["frames_read"]
    print(f"demo finished in {summary['demo_timing_s']['total']:.1f} s: {summary['n']} questions on "
          f"{frames} frame{'' if frames == 1 else 's'}, {summary['invalid']} invalid")
    from bopask_vlm.eval.cli import server_error_exit
    from bopask_vlm.eval.report import server_error_line

    if summary.get("server_errors"):
        print(server_error_line(summary))
    print(f"report: {out / 'report.md'}\nmetrics: {out / 'metrics.json'}\nplot: {out / 'metrics.png'}\n"
          f"overlays: {out / 'overlays'}\nbag: {out / 'bag'}")
    return server_error_exit(summary, args.max_server_errors, "python -m bopask_ros.replay.demo")


if __name__ == "__main__":
    sys.exit(main())
