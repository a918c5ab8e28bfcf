"""A log line for a hot path, without rclpy's per-call caller lookup.

rclpy's ``RcutilsLogger.log`` (rclpy 7.1, Jazzy: ``rclpy/impl/rcutils_logger.py``) builds a ``CallerId`` for every
enabled message: ``inspect.getframeinfo`` and ``os.path.realpath`` on each frame up the stack until one lies outside
rclpy (reading source lines through linecache and stat-ing files), only to key its filter contexts (throttle, once,
skip_first) and to give rcutils the caller's function, file and line. Profiled under ``benchmarks/bench_node.py``
the node's one info line per goal spent most of its time there (issue 20, the node's own overhead).

:func:`log_at` gives rcutils a caller fixed by the call site instead, and goes through the same C call as rclpy's
logger (so the line reaches the console and ``/rosout`` alike). It takes no filters; for a throttled or
once-only message use the logger itself. Where a release lacks the C entry point it falls back to the logger.
No rclpy API logs without the lookup, so this is hand-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rclpy.logging import LoggingSeverity


@dataclass(frozen=True)
class CallSite:
    """The caller rcutils is told about (its output format may show ``{function_name}``, ``{file_name}``,
    ``{line_number}``)."""

    function_name: str
    file_path: str
    line_number: int


def log_at(logger: Any, severity: LoggingSeverity, message: str, site: CallSite) -> bool:
    """Log ``message`` on ``logger`` (an rclpy ``RcutilsLogger``) at ``severity`` as if from ``site``; True when it
    was logged (False: the logger is not enabled for ``severity``)."""
    if not logger.is_enabled_for(severity):
        return False
    try:
        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

        emit = _rclpy.rclpy_logging_rcutils_log
    except (ImportError, AttributeError):
        return bool(logger.log(message, severity))
    emit(severity, logger.name, message, site.function_name, site.file_path, site.line_number)
    return True
