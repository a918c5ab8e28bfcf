"""``bopask sim-eval``: closed-loop evaluation in physics (registered in the ``bopask.commands`` entry points).

Prints a table of success per task and condition (answer-error level x keypoint-noise level), the metric the
answers scored and success binned by it, the scene seeds; writes ``metrics.json``, ``episodes.jsonl``,
``success_vs_noise.png``, ``success_vs_nce.png``, ``success_vs_endpoint.png`` and ``strip.png`` under ``--out``.
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


def _refine(text: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vals if v not in ("none", "local")]
    if not vals or bad or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"--grasp-refine takes none, local or none,local (got {text!r})")
    return vals


def _levels(text: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError("--answer-error takes LEVEL[,LEVEL...]: oracle, a preset name "
                                         "(nvila15b-sft, qwen25vl3b-sft) or a metric request such as grasp_nce=1.4")
    for v in vals:
        if v == "oracle":
            continue
        try:
            from bopask_vlm.clients.answer_error import parse_level
        except ImportError as e:
            raise argparse.ArgumentTypeError(f"--answer-error {v}: the answer-error model is not installed ({e})") from e
        try:
            parse_level(v)
        except (ValueError, KeyError) as e:
            raise argparse.ArgumentTypeError(f"--answer-error {v}: {e}") from e
    return vals


def _calib(text: str) -> tuple[float, float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--calib-error takes MM,DEG, e.g. 3,0.3: {e}") from e
    if len(vals) != 2 or any(v < 0 or v != v for v in vals):
        raise argparse.ArgumentTypeError("--calib-error takes two non-negative numbers: MM,DEG (0,0: exact)")
    return vals[0] / 1000.0, vals[1]


def parser() -> argparse.ArgumentParser:
    from bopask_sim.evaluate import CALIB_ERROR, EVAL_FIRST_SEED
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="bopask sim-eval", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("--client", choices=("oracle", "openai", "transformers"), default="oracle",
                   help="who answers: the datagen's records (oracle), a vLLM server, a local model")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL (--client openai)")
    p.add_argument("--model", default=None, help="served model name (openai) or model directory (transformers)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task and noise level")
    p.add_argument("--keypoint-noise", type=_noise, default=[0.0],
                   help="Gaussian pixel noise levels added to the answers, comma-separated (default 0)")
    p.add_argument("--answer-error", type=_levels, default=["oracle"],
                   help="answer-error levels, comma-separated: oracle (none), a preset (nvila15b-sft, "
                        "qwen25vl3b-sft) or a metric request such as grasp_nce=1.4 (default oracle)")
    p.add_argument("--grasp-refine", type=_refine, default=["none"],
                   help="grasp refinement settings, comma-separated, each run on the same episodes: none (the "
                        "answer's grasp as fitted), local (the best executable grasp near it, paths raised over "
                        "the scene; the node's default)")
    p.add_argument("--max-attempts", type=int, default=1,
                   help="asks of the model per goal: a failed answer is asked again naming the failure (the "
                        "node's default is 3)")
    p.add_argument("--calib-error", type=_calib, default=CALIB_ERROR, metavar="MM,DEG",
                   help=f"camera calibration error drawn per scene (default {CALIB_ERROR[0] * 1000:g},"
                        f"{CALIB_ERROR[1]:g}; 0,0: the render pose exactly)")
    p.add_argument("--executor", choices=("inline", "process", "ray"), default="inline",
                   help="where scenes run: this process, a process pool (--workers), a Ray cluster (--address)")
    p.add_argument("--workers", type=int, default=2, help="process-pool size (--executor process)")
    p.add_argument("--address", default=None, help="Ray cluster address (--executor ray; default: a local one)")
    p.add_argument("--tasks", default="grasp,trajectory", help="comma-separated: grasp, trajectory")
    p.add_argument("--scenes", type=int, default=None, help="number of scenes (default: episodes / 4)")
    p.add_argument("--seed", type=int, default=EVAL_FIRST_SEED,
                   help=f"first scene seed (default {EVAL_FIRST_SEED}: disjoint from the seeds the simulator's "
                        f"constants were tuned on)")
    p.add_argument("--objects", type=int, default=5, help="objects per scene")
    p.add_argument("--scene-family", choices=("primitives", "mixed"), default="primitives",
                   help="primitives: the original scenes; mixed: many meshes, clutter, D435 depth")
    p.add_argument("--viewpoint", choices=("front", "oblique"), default=None,
                   help="a named camera placement instead of the calibration file (oblique: low, from the side)")
    p.add_argument("--no-direct", action="store_true", help="skip executing the datagen's own 3D targets")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from bopask_sim.evaluate import make_eval_client, sim_eval

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in ("grasp", "trajectory")]
    if bad or not tasks or args.episodes < 1 or args.workers < 1 or args.max_attempts < 1:
        print(f"bopask sim-eval: tasks must be grasp/trajectory (got {bad or 'none'}), --episodes, --workers and "
              "--max-attempts >= 1",
              file=sys.stderr)
        return 2
    try:
        client = make_eval_client(args.client, args.endpoint, args.model)
    except ValueError as e:
        print(f"bopask sim-eval: {e}", file=sys.stderr)
        return 2
    m = sim_eval(client, episodes=args.episodes, noise_levels=args.keypoint_noise, out_dir=args.out, tasks=tasks,
                 scenes=args.scenes, first_seed=args.seed, num_objects=args.objects,
                 direct=False if args.no_direct else None, progress=not args.quiet, answer_error=args.answer_error,
                 calib_error=args.calib_error, executor=args.executor, workers=args.workers, address=args.address,
                 scene_family=args.scene_family, viewpoint=args.viewpoint, grasp_refine=args.grasp_refine,
                 max_attempts=args.max_attempts)
    out = Path(args.out).resolve()
    print(f"\nmetrics: {out / 'metrics.json'}\nplot: {m['plot']}\nstrip: {m['strip']}")
    for task, path in m["plots"].items():
        print(f"{task} success by answer quality: {path}")
    print(json.dumps({"scenes": len(m["scenes"]), "episodes": m["timing_s"]["n_episodes"],
                      "total_s": round(m["timing_s"]["total"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
