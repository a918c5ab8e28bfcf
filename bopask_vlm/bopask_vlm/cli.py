"""``bopask``: one command line for the model side.

Each subcommand lives in its own module and is imported only when used, so ``bopask --help`` is
instant and a missing optional dependency of one subcommand does not break the others.

Other installed packages add subcommands through the entry-point group ``bopask.commands`` (name = the
subcommand, value = ``module:function`` taking ``argv`` and returning an exit code), e.g. ``bopask_sim``
registers ``sim-eval``; this package never imports them. Built-in names win over plugins.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

#: subcommand -> (module exposing ``main(argv) -> int``, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("bopask_vlm.clients.serve", "start a vLLM OpenAI-compatible server for a model directory"),
    "ask": ("bopask_vlm.clients.ask", "ask one question about one image through a configured client"),
    "datagen": ("bopask_vlm.datagen.cli", "generate BOP-ASK question/answer shards from BOP scenes"),
    "synth": ("bopask_vlm.datagen.synthetic_cli", "write synthetic BOP-format tabletop scenes"),
    "train": ("bopask_vlm.train.cli", "supervised fine-tuning (transformers + peft) on generated shards"),
    "bench": ("bopask_vlm.eval.cli", "run the BOP-Ask-core style benchmark with any client"),
}


#: the entry-point group other packages register subcommands in
PLUGIN_GROUP = "bopask.commands"


def plugins() -> dict[str, object]:
    """Installed plugin subcommands: name -> ``importlib.metadata.EntryPoint`` (not loaded)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in SUBCOMMANDS}


def plugin_help(ep: object) -> str:
    """A plugin's one-line help: the first line of its module's docstring, read without importing the module
    (``bopask --help`` stays instant), followed by the package it comes from."""
    import ast
    import importlib.util

    module = ep.value.split(":")[0]  # type: ignore[attr-defined]
    package = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(module)
        text = Path(spec.origin).read_text() if spec and spec.origin else ""
        doc = ast.get_docstring(ast.parse(text)) if text else None
    except (ImportError, OSError, SyntaxError, ValueError):
        doc = None
    from bopask_vlm.help_format import first_line

    line = first_line(doc).replace("``", "")
    return f"{line} ({package})" if line else f"(plugin: {package})"


def _usage() -> str:
    lines = ["usage: bopask <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    for name, ep in sorted(plugins().items()):
        lines.append(f"  {name:<9} {plugin_help(ep)}")
    lines += ["", "`bopask <command> --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.main(rest) or 0)
    ep = plugins().get(name)
    if ep is None:
        print(f"bopask: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        fn = ep.load()
    except Exception as e:  # a broken plugin must not hide the others: say which and why
        print(f"bopask: the plugin command {name!r} ({ep.value}) cannot be loaded: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 2
    return int(fn(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
