"""The main loop of bopask's ROS processes: spin until a stop signal, then end in order.

:func:`spin_until_stopped` replaces ``executor.spin()`` (see :mod:`bopask_ros.node_support.stop_signals` for why rclpy's
signal handlers are off): it spins in short slices until a stop signal or an outside ``rclpy.shutdown``;
:func:`drain` then keeps spinning, for at most ``grace_s``, while goals are still running, so their
results reach the clients before the context goes away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rclpy.executors import ExternalShutdownException

from bopask_ros.node_support.stop_signals import StopSignals


def spin_until_stopped(executor: Any, stop: StopSignals, slice_s: float = 0.1) -> str:
    """Spin ``executor`` until ``stop`` is requested or its context shuts down; returns which
    (``"signal"`` / ``"shutdown"``). ``slice_s`` bounds how long a signal waits to be seen (Python runs the
    handler only once the main thread leaves ``rcl_wait``)."""
    try:
        while executor.context.ok():
            if stop.requested:
                return "signal"
            executor.spin_once(timeout_sec=slice_s)
    except ExternalShutdownException:
        pass
    return "signal" if stop.requested else "shutdown"


def drain(executor: Any, busy: Callable[[], bool], grace_s: float, slice_s: float = 0.05) -> bool:
    """Spin while ``busy()`` (goals still running) for at most ``grace_s``; True when they all ended."""
    deadline = time.monotonic() + grace_s
    try:
        while busy() and executor.context.ok():
            if time.monotonic() >= deadline:
                return False
            executor.spin_once(timeout_sec=slice_s)
    except ExternalShutdownException:
        return not busy()
    for _ in range(5):  # a last few slices: result requests that came with the final state
        if not executor.context.ok():
            break
        executor.spin_once(timeout_sec=0.01)
    return not busy()


def shutdown_executor(executor: Any, timeout_s: float = 2.0, poll_s: float = 0.01) -> bool:
    """Wait (at most ``timeout_s``) for the callbacks ``executor`` has dispatched to its threads, then
    ``executor.shutdown()``; True when they all finished. Call it once spinning has stopped, before
    destroying the nodes.

    rclpy 7.1 (Jazzy) ``Executor.shutdown(timeout_sec)`` does not wait itself: its wait sits behind
    ``if not self._is_shutdown`` just after setting it (``MultiThreadedExecutor`` waits for its threads
    only in later releases, ros2/rclpy#1309). It also destroys the executor's guard condition, which every
    callback task triggers as it ends: a task still running then fails with InvalidHandle, printed at exit
    as "exception was never retrieved". The dispatched tasks are the executor's ``_futures`` (private;
    where a release lacks it there is nothing to wait for here)."""
    tasks = getattr(executor, "_futures", None)
    finished = True
    if isinstance(tasks, list):
        deadline = time.monotonic() + timeout_s
        while any(not t.done() for t in list(tasks)):
            if time.monotonic() >= deadline:
                finished = False
                break
            time.sleep(poll_s)
    executor.shutdown(timeout_sec=0)
    return finished
