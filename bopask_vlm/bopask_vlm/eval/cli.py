"""``bopask bench``: run the BOP-Ask-core style benchmark with any client.

Examples::

    bopask bench --data out --split test --client oracle --out bench_out
    bopask bench --data out --client openai --endpoint http://127.0.0.1:8000/v1 --model m --concurrency 8

``out`` is a ``bopask datagen`` output directory (shards in ``out/shards``; image paths relative to ``out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="bopask bench", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("--data", nargs="+", required=True,
                   help="JSONL shard files or directories (searched recursively), e.g. a datagen output directory")
    p.add_argument("--root", default=None, help="dataset root the records' image paths are relative to "
                                                "(default: the first --data directory)")
    p.add_argument("--split", default=None, help="keep shard files whose path contains this (e.g. test)")
    p.add_argument("--tasks", nargs="*", default=None, help="only these tasks")
    p.add_argument("--limit", type=int, default=None, help="at most this many records (stratified, seeded)")
    p.add_argument("--client", default="oracle", help="client type for make_client (oracle, openai, transformers)")
    p.add_argument("--config", default=None, help="client config as a JSON/YAML file (overrides --client)")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL (vLLM)")
    p.add_argument("--model", default=None, help="model name or directory")
    p.add_argument("--contract", default=None,
                   help="the model's answer contract (trained model directory, its bopask_model.json, or 'served'): "
                        "convention and answer form come from it; a contradicting --config setting is refused")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent requests to a server")
    p.add_argument("--overlays", type=int, default=16, help="overlay images of this many failures")
    p.add_argument("--out", default="bench_out", help="output directory")
    p.add_argument("--answer-error", default=None, metavar="LEVEL",
                   help="wrap the client in the answer-error model (bopask_vlm.clients.answer_error, docs/answer_error.md): "
                        "a preset (oracle, nvila15b-sft, qwen25vl3b-sft) or metric=value pairs (grasp_nce=1.4,pose_iou=0.73), "
                        "calibrated on these records with --seed; prints achieved vs requested metrics")
    p.add_argument("--max-server-errors", type=float, default=None, metavar="FRACTION",
                   help="exit 1 when more than this fraction of the requests never reached the model (refused, "
                        "timed out, HTTP 5xx); without it, exit 1 only when every request failed so")
    p.add_argument("--seed", type=int, default=0, help="seed of --limit's sample and the overlays' choice")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def client_config(args: argparse.Namespace) -> dict:
    """The dict given to :func:`bopask_vlm.clients.make_client`."""
    if args.config:
        text = Path(args.config).read_text()
        if args.config.endswith((".yaml", ".yml")):
            import yaml

            cfg = dict(yaml.safe_load(text))
        else:
            cfg = dict(json.loads(text))
        if getattr(args, "contract", None):
            cfg["contract"] = args.contract
        return cfg
    cfg: dict = {"type": "openai" if args.endpoint and args.client == "oracle" else args.client}
    if getattr(args, "contract", None):
        cfg["contract"] = args.contract
    if args.endpoint:
        cfg["base_url"] = args.endpoint
    if args.model:
        cfg["model"] = args.model
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from bopask_vlm.clients import make_client
    from bopask_vlm.eval.runner import RunnerError, load_records, run_benchmark

    root = Path(args.root) if args.root else next((Path(d) for d in args.data if Path(d).is_dir()), None)
    if root is None:
        print("bopask bench: give --root (the dataset root) when --data lists files", file=sys.stderr)
        return 2
    try:
        records = load_records(args.data, split=args.split, tasks=args.tasks, limit=args.limit, seed=args.seed)
    except (RunnerError, ValueError) as e:
        print(f"bopask bench: {e}", file=sys.stderr)
        return 2
    from bopask_vlm.contract import ContractError

    try:
        client = make_client(client_config(args))
    except ContractError as e:
        print(f"bopask bench: {e}", file=sys.stderr)
        return 2
    if args.answer_error:
        from bopask_vlm.clients.answer_error import LevelError
        from bopask_vlm.clients.answer_error.bench import wrap_client

        try:
            client, ae_report = wrap_client(client, args.answer_error, records, args.seed, dataset_root=root)
        except LevelError as e:
            print(f"bopask bench: --answer-error: {e}", file=sys.stderr)
            return 2
    res = run_benchmark(records, client, root, args.out, max_concurrency=args.concurrency, overlays=args.overlays,
                        progress=not args.no_progress, model_name=args.model, seed=args.seed)
    print(res.paths["markdown"].read_text())
    if args.answer_error:
        from bopask_vlm.clients.answer_error.bench import (
            add_to_metrics_json,
            comparison,
            comparison_table,
            plot_comparison,
        )

        res.summary["answer_error"] = comp = comparison(res.summary, client, ae_report)
        add_to_metrics_json(res.paths["json"], comp)
        res.paths["answer_error_plot"] = plot_comparison(comp, res.paths["json"].parent / "answer_error.png")
        print(comparison_table(comp))
    print(f"report: {res.paths['markdown']}  metrics: {res.paths['json']}")
    return server_error_exit(res.summary, args.max_server_errors, "bopask bench")


def server_error_exit(summary: dict, max_fraction: float | None, prog: str) -> int:
    """1 (and a line on stderr) when every request, or more than ``max_fraction`` of them, never reached the
    model; else 0. The bench's and the demo's exit status."""
    k, n = int(summary.get("server_errors", 0)), int(summary.get("n", 0))
    if not n or not k:
        return 0
    if k == n or (max_fraction is not None and k / n > max_fraction):
        from bopask_vlm.eval.report import server_error_line

        limit = "every request" if k == n else f"more than {max_fraction:g} of the requests"
        print(f"{prog}: {limit} failed to reach the model server: {server_error_line(summary)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
