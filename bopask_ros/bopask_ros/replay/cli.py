"""``bopask replay``: replay a recorded bag through the task pipeline without ROS and score it.

Every QA record stored beside the bag (``make demo`` writes them; ``bopask_ros.replay.bag_writer``) is asked
of the client on its frame, then parsed, validated, lifted with the frame's depth, carried into the robot
base frame by the bag's TF and checked against the node's default safety envelope, exactly as the ROS node
does; 2D and 3D metrics and per-stage latencies are written as the demo's replay section is.

Examples::

    bopask replay demo_out/bag --client oracle --out replay_out
    bopask replay demo_out/bag --client openai --endpoint http://127.0.0.1:8000/v1 --model model --out replay_out

Writes ``OUT/report.md``, ``metrics.json``, ``metrics.png``, ``samples.jsonl`` and ``overlays/``. Exit
status 1 when every request (or more than ``--max-server-errors`` of them) failed to reach the model
server, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bopask_vlm.help_format import DefaultsFormatter


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bopask replay", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("bag", help="the rosbag2 directory (or its .mcap/.db3 file), e.g. demo_out/bag")
    p.add_argument("--client", default="oracle", help="client type (oracle, openai, transformers)")
    p.add_argument("--config", default=None, help="client config as a JSON/YAML file (overrides --client)")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL (vLLM); implies --client openai")
    p.add_argument("--model", default=None, help="model name or directory")
    p.add_argument("--out", default="replay_out", help="output directory")
    p.add_argument("--overlays", type=int, default=12, help="overlay images (a few per task)")
    p.add_argument("--scene-dir", default=None,
                   help="the BOP scene for masks and 3D boxes (default: the one named in the bag's side file)")
    p.add_argument("--max-server-errors", type=float, default=None, metavar="FRACTION",
                   help="exit 1 when more than this fraction of the requests never reached the model; "
                        "without it, exit 1 only when every request failed so")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no report on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from bopask_ros.motion.safety import SafetyEnvelope
    from bopask_ros.replay.bag_reader import BagReadError, read_bag
    from bopask_ros.replay.bag_replay import replay_bag
    from bopask_vlm.clients import make_client
    from bopask_vlm.eval.cli import client_config, server_error_exit
    from bopask_vlm.eval.report import server_error_line

    bag = Path(args.bag)
    if not bag.exists():
        print(f"bopask replay: no such bag: {bag}", file=sys.stderr)
        return 2
    try:
        data = read_bag(bag)
    except BagReadError as e:
        print(f"bopask replay: {e}", file=sys.stderr)
        return 2
    if not data.records:
        print(f"bopask replay: {bag} has no QA records beside it (the questions to ask; bag_writer stores them "
              "as the demo does)", file=sys.stderr)
        return 2
    try:
        client = make_client(client_config(args))
    except (ValueError, TypeError, ImportError) as e:  # a bad client config
        print(f"bopask replay: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    rep = replay_bag(data, client, out_dir=out, safety=SafetyEnvelope(), scene_dir=args.scene_dir,
                     progress=not args.quiet, overlays=args.overlays)
    s = rep.summary
    if not args.quiet:
        print(rep.paths["markdown"].read_text())
    frames = s["frames_read"]
    print(f"replayed {s['n']} questions on {frames} frame{'' if frames == 1 else 's'}: {s['invalid']} invalid"
          + ("" if rep.complete else f"; the bag is damaged: {'; '.join(rep.errors)}"))
    line = server_error_line(s)
    if line:
        print(line)
    out = out.resolve()
    print(f"report: {out / 'report.md'}\nmetrics: {out / 'metrics.json'}\nplot: {out / 'metrics.png'}\n"
          f"overlays: {out / 'overlays'}")
    return server_error_exit(s, args.max_server_errors, "bopask replay")


if __name__ == "__main__":
    sys.exit(main())
