"""``bopask sim-eval``: closed-loop evaluation in physics (registered in the ``bopask.commands`` entry points).

Prints a table of success per task and keypoint-noise level, writes ``metrics.json``, ``episodes.jsonl``,
``success_vs_noise.png`` and ``strip.png`` (a few episodes) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _noise(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--keypoint-noise takes comma-separated pixels, e.g. 0,1,2,4: {e}") from e
    if not vals or any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError("--keypoint-noise needs non-negative values")
    return vals


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bopask sim-eval", description=__doc__.splitlines()[0])
    p.add_argument("--client", choices=("oracle", "openai", "transformers"), default="oracle")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL (--client openai)")
    p.add_argument("--model", default=None, help="served model name (openai) or model directory (transformers)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task and noise level")
    p.add_argument("--keypoint-noise", type=_noise, default=[0.0],
                   help="Gaussian pixel noise levels added to the answers, comma-separated (default 0)")
    p.add_argument("--tasks", default="grasp,trajectory", help="comma-separated: grasp, trajectory")
    p.add_argument("--scenes", type=int, default=None, help="number of scenes (default: episodes / 4)")
    p.add_argument("--seed", type=int, default=0, help="first scene seed")
    p.add_argument("--objects", type=int, default=5, help="objects per scene")
    p.add_argument("--no-direct", action="store_true", help="skip executing the datagen's own 3D targets")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from bopask_sim.evaluate import make_eval_client, sim_eval

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in ("grasp", "trajectory")]
    if bad or args.episodes < 1:
        print(f"bopask sim-eval: tasks must be grasp/trajectory (got {bad}) and --episodes >= 1", file=sys.stderr)
        return 2
    try:
        client = make_eval_client(args.client, args.endpoint, args.model)
    except ValueError as e:
        print(f"bopask sim-eval: {e}", file=sys.stderr)
        return 2
    m = sim_eval(client, episodes=args.episodes, noise_levels=args.keypoint_noise, out_dir=args.out, tasks=tasks,
                 scenes=args.scenes, first_seed=args.seed, num_objects=args.objects,
                 direct=False if args.no_direct else None, progress=not args.quiet)
    out = Path(args.out).resolve()
    print(f"\nmetrics: {out / 'metrics.json'}\nplot: {m['plot']}\nstrip: {m['strip']}")
    print(json.dumps({"scenes": len(m["scenes"]), "episodes": m["timing_s"]["n_episodes"],
                      "total_s": round(m["timing_s"]["total"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
