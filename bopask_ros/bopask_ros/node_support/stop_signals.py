"""SIGINT / SIGTERM for a node's ``main``: a stop request the main loop reads, not an exception.

rclpy's default (``rclpy.init`` installs its handler, chained to Python's) shuts the context down from
its own thread and then Python raises ``KeyboardInterrupt`` in the main thread at whatever bytecode it is
running. Both ends race with the executor: the ``KeyboardInterrupt`` can land inside rclpy (CI once
caught a half-built ``rclpy.task.Task`` whose ``__del__`` then failed), and a context shut down while
``spin()`` builds its wait set raises ``RCLError``. A goal in flight also loses its result, as nothing
spins to send it.

So the node's main initialises rclpy with ``SignalHandlerOptions.NO`` and installs :class:`StopSignals`:
the first SIGINT or SIGTERM only sets :attr:`StopSignals.requested`; the main loop then stops spinning,
ends the goals in flight with a reason, sends their results and shuts down in order (the context stays
valid until it is done). A second signal raises ``KeyboardInterrupt``, so a stop that hangs can still be
forced with another Ctrl-C (``ros2 launch`` escalates SIGINT, SIGTERM, SIGKILL).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Handler of :data:`STOP_SIGNALS`: the first sets :attr:`requested`, a second raises KeyboardInterrupt.

    A context manager: installed on enter, the previous handlers restored on exit. Only the main thread can
    install signal handlers (:class:`ValueError` otherwise)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """True once a stop signal came."""
        return self._event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until a stop signal came (True) or ``timeout_s`` passed (False)."""
        return self._event.wait(timeout_s)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._event.is_set():
            raise KeyboardInterrupt(f"second stop signal ({signal.Signals(signum).name}): forced")
        self._event.set()

    def install(self) -> StopSignals:
        global _active
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("StopSignals.install() must be called from the main thread")
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self)
        _active = self
        return self

    def reassert(self) -> bool:
        """Install this handler again where a library replaced it (MoveItPy's ``rclcpp::init`` installs rclcpp's
        handlers, which would shut its context down on Ctrl-C while a trajectory still runs); the previous
        handlers to restore stay those of :meth:`install`. Only from the main thread: False elsewhere."""
        if threading.current_thread() is not threading.main_thread() or not self._previous:
            return False
        for s in STOP_SIGNALS:
            signal.signal(s, self)
        return True

    def restore(self) -> None:
        global _active
        for s, prev in self._previous.items():
            # None: the previous handler was not set from Python; the default then
            signal.signal(s, prev if prev is not None else signal.SIG_DFL)
        self._previous.clear()
        if _active is self:
            _active = None

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()


_active: StopSignals | None = None  # the installed one


def reassert_stop_signals() -> bool:
    """:meth:`StopSignals.reassert` of the installed handler, if any (False: none installed, or not the main
    thread)."""
    return _active.reassert() if _active is not None else False
