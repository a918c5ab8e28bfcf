"""One ``--help`` style for every bopask command: each option shows its default.

argparse's :class:`~argparse.ArgumentDefaultsHelpFormatter` appends ``(default: X)`` to every option; this
one keeps the description's own line breaks (the module docstrings hold usage examples) and leaves out
defaults that say nothing (``None``, a flag's ``False``, ``--help`` itself) or that the help already
words (it mentions "default").
"""

from __future__ import annotations

import argparse
import re

__all__ = ["DefaultsFormatter", "first_line"]


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``formatter_class`` for every bopask parser: defaults shown, descriptions verbatim."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        d = action.default
        if (d is None or d is False or d is argparse.SUPPRESS or isinstance(d, (list, tuple, str)) and not d
                or "default" in help_.lower() or not action.option_strings and action.nargs not in ("?", "*")):
            return help_
        return super()._get_help_string(action)


def first_line(doc: str | None) -> str:
    """The first line of a docstring as a command's one-line help: no ``name:`` prefix, closing aside or full stop."""
    line = next((ln.strip() for ln in (doc or "").splitlines() if ln.strip()), "")
    if line.startswith("``") and ":" in line:
        line = line.split(":", 1)[1].strip()
    return re.sub(r"\s*\([^()]*\)\s*\.?$|\.$", "", line)  # no closing aside in parentheses, no full stop
