"""bopask_msgs interface definitions for ``rosbags``, without ROS.

Registers every ``.msg`` of bopask_msgs, and the Goal / Result / Feedback parts of every
``.action`` (as ``bopask_msgs/action/<Name>_Goal`` etc., the names rosidl gives them), in a
``rosbags`` typestore, so bags can carry our results and tests can check field names and types
against the real ROS 2 message classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ACTION_PARTS = ("Goal", "Result", "Feedback")


class InterfaceError(RuntimeError):
    """The bopask_msgs definitions cannot be found or do not parse."""


def msgs_dir() -> Path:
    """The bopask_msgs package directory: the source tree beside this package, or an installed
    ``share/bopask_msgs`` (BOPASK_MSGS_DIR overrides)."""
    env = os.environ.get("BOPASK_MSGS_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "bopask_msgs")
    prefix = os.environ.get("AMENT_PREFIX_PATH", "")
    candidates += [Path(p) / "share" / "bopask_msgs" for p in prefix.split(os.pathsep) if p]
    for c in candidates:
        if (c / "msg").is_dir():
            return c
    raise InterfaceError(f"bopask_msgs not found (looked in {', '.join(map(str, candidates))})")


def split_action(text: str) -> tuple[str, str, str]:
    """The goal, result and feedback parts of an ``.action`` definition."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == "---":
            parts.append([])
        else:
            parts[-1].append(line)
    if len(parts) != 3:
        raise InterfaceError(f"an action needs exactly two '---' separators, found {len(parts) - 1}")
    goal, result, feedback = ("\n".join(p) for p in parts)
    return goal, result, feedback


def interface_texts(root: Path | None = None) -> dict[str, str]:
    """``{"bopask_msgs/msg/Name": definition, "bopask_msgs/action/Name_Goal": ..., ...}``."""
    root = root or msgs_dir()
    out: dict[str, str] = {}
    for f in sorted((root / "msg").glob("*.msg")):
        out[f"bopask_msgs/msg/{f.stem}"] = f.read_text()
    for f in sorted((root / "action").glob("*.action")):
        for part, text in zip(ACTION_PARTS, split_action(f.read_text())):
            out[f"bopask_msgs/action/{f.stem}_{part}"] = text
    return out


def register_bopask_types(typestore: Any, root: Path | None = None) -> list[str]:
    """Register bopask_msgs in a rosbags ``typestore``; returns the registered type names.

    Definitions that use sibling messages by short name (``TaskStatus status``) are resolved to
    ``bopask_msgs/msg/...`` as rosidl does for the same package.
    """
    from rosbags.typesys import get_types_from_msg

    texts = interface_texts(root)
    msg_names = {name.rsplit("/", 1)[1] for name in texts if "/msg/" in name}
    types: dict[str, Any] = {}
    for name, text in texts.items():
        lines = []
        for line in text.splitlines():
            stripped = line.split("#", 1)[0].strip()
            head = stripped.split()[0] if stripped else ""
            base = head.split("[", 1)[0]
            if base in msg_names and "=" not in stripped:
                line = line.replace(base, f"bopask_msgs/msg/{base}", 1)
            lines.append(line)
        try:
            types.update(get_types_from_msg("\n".join(lines), name))
        except Exception as e:  # rosbags raises its own parse errors; say which file
            raise InterfaceError(f"{name} does not parse: {e}") from e
    typestore.register(types)
    return sorted(types)
