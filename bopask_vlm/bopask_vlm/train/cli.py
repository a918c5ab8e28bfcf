"""``bopask train``: supervised fine-tuning on generated BOP-ASK shards.

Single GPU:   bopask train --config run.yaml
Multi-GPU:    accelerate launch --num_processes 8 -m bopask_vlm.train.cli --config run.yaml
              torchrun --nproc_per_node 8 -m bopask_vlm.train.cli --config run.yaml
Multi-node:   torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m bopask_vlm.train.cli ...
Resume:       bopask train --config run.yaml --resume            (latest checkpoint-N in run.output_dir)
Export only:  bopask train --config run.yaml --export-checkpoint runs/x/checkpoint-800 --out models/x
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bopask_vlm.help_format import DefaultsFormatter


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bopask train", description=__doc__, formatter_class=DefaultsFormatter
    )
    p.add_argument("--config", required=True, type=Path,
                   help="run file (YAML), or the name of a shipped one (bopask_vlm/train/configs/: tiny_cpu.yaml, "
                        "qwen25vl_3b_lora.yaml, ...); its relative paths are relative to the working directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable, parsed as YAML), e.g. --set optim.max_steps=100; "
                        "a list field takes one plain value or [a, b]: --set data.train=DIR")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                   help="continue from the latest checkpoint in run.output_dir, or from CHECKPOINT")
    p.add_argument("--no-export", action="store_true", help="do not write run.output_dir/model at the end")
    p.add_argument("--export-checkpoint", type=Path, metavar="CHECKPOINT",
                   help="do not train: export CHECKPOINT (with the config's base model) to --out")
    p.add_argument("--out", type=Path, help="output model directory for --export-checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from bopask_vlm.train.config import TrainConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except TrainConfigError as e:
        print(f"bopask train: {e}", file=sys.stderr)
        return 2
    from bopask_vlm.train.config import resolve_config_path

    if resolve_config_path(args.config) != args.config:
        print(f"bopask train: config {resolve_config_path(args.config)} (shipped)", file=sys.stderr)
    if args.export_checkpoint is None and not args.print_config:
        missing = _missing_data(cfg.data.train + cfg.data.eval)
        if missing:  # say so now, before torch and the model load
            print(f"bopask train: no training data at {', '.join(missing)} (relative paths are relative to the "
                  f"working directory {Path.cwd()})", file=sys.stderr)
            return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0

    from bopask_vlm.train.trainer import TrainError, export_checkpoint, train

    try:
        if args.export_checkpoint is not None:
            if args.out is None:
                print("bopask train: --export-checkpoint needs --out", file=sys.stderr)
                return 2
            out = export_checkpoint(cfg, args.export_checkpoint, args.out)
            print(f"exported {args.export_checkpoint} -> {out}")
            return 0
        result = train(cfg, resume=args.resume or False, export=not args.no_export)
    except TrainError as e:
        print(f"bopask train: {e}", file=sys.stderr)
        return 1
    print(f"trained to step {result.global_step} (train loss {result.train_loss:.4f}); "
          f"model: {result.model_dir or '(not exported)'}")
    return 0


def _missing_data(sources: list[str]) -> list[str]:
    """The data sources (directories, shard files, globs) that name nothing."""
    import glob

    return [s for s in map(str, sources)
            if not (Path(s).exists() or any(c in s for c in "*?[") and glob.glob(s))]


if __name__ == "__main__":
    sys.exit(main())
