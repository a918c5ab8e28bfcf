"""``bopask``: one command line for the model side.

Each subcommand lives in its own module and is imported only when used, so ``bopask --help`` is
instant and a missing optional dependency of one subcommand does not break the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module exposing ``main(argv) -> int``, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("bopask_vlm.clients.serve", "start a vLLM OpenAI-compatible server for a model directory"),
    "ask": ("bopask_vlm.clients.ask", "ask one question about one image through a configured client"),
    "datagen": ("bopask_vlm.datagen.cli", "generate BOP-ASK question/answer shards from BOP scenes"),
    "synth": ("bopask_vlm.datagen.synthetic_cli", "write synthetic BOP-format tabletop scenes"),
    "train": ("bopask_vlm.train.cli", "supervised fine-tuning (transformers + peft) on generated shards"),
    "bench": ("bopask_vlm.eval.cli", "run the BOP-Ask-core style benchmark with any client"),
}


def _usage() -> str:
    lines = ["usage: bopask <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`bopask <command> --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"bopask: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
