"""Stopping a node's main on SIGINT / SIGTERM (:mod:`bopask_ros.node_support.stop_signals`, :mod:`bopask_ros.ros.spin`): the
handler alone, and with real rclpy in a child process, where a stop signal must end the spin loop without an
exception from inside the executor. Why rclpy's own handlers are off: the last test shows what they do (CI once
caught their KeyboardInterrupt inside ``rclpy.task.Task.__init__``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from _ros_helpers import node_source_path, ros_env

from bopask_ros.node_support.stop_signals import StopSignals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_requests_a_stop_second_raises_and_handlers_come_back(sig):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as stop:
        assert signal.getsignal(signal.SIGINT) is stop and signal.getsignal(signal.SIGTERM) is stop
        assert not stop.requested and not stop.wait(0.01)
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.wait(0) and stop.received == [sig]
        with pytest.raises(KeyboardInterrupt, match="second stop signal"):
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_install_outside_the_main_thread_is_refused():
    errors: list[BaseException] = []

    def install() -> None:
        try:
            StopSignals().install()
        except ValueError as e:
            errors.append(e)

    th = threading.Thread(target=install)
    th.start()
    th.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])
    assert not isinstance(signal.getsignal(signal.SIGINT), StopSignals)


# A busy executor (a 1 kHz timer: tasks are built all the time) and a signal 1 s in; "ours" is what the
# node's main does, "rclpy" is rclpy's default handlers and executor.spin().
_SPIN = textwrap.dedent("""
    import os, signal, sys, threading
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from bopask_ros.ros.spin import drain, shutdown_executor, spin_until_stopped
    from bopask_ros.node_support.stop_signals import StopSignals
    mode, sig = sys.argv[1], getattr(signal, sys.argv[2])
    stop = StopSignals()
    if mode == "ours":
        stop.install()
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    else:
        rclpy.init()
    node = rclpy.create_node("stop_probe")
    ticks = []
    node.create_timer(0.001, lambda: ticks.append(1))
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    threading.Timer(1.0, os.kill, (os.getpid(), sig)).start()
    try:
        if mode == "ours":
            print("END", spin_until_stopped(executor, stop), "context ok", rclpy.ok(), flush=True)
            n = len(ticks)
            print("drained", drain(executor, lambda: len(ticks) < n + 20, grace_s=5.0), flush=True)
        else:
            executor.spin()
            print("END spin returned", flush=True)
    except KeyboardInterrupt:
        print("END KeyboardInterrupt", flush=True)
    except ExternalShutdownException:
        print("END ExternalShutdownException", flush=True)
    if mode == "ours":
        print("callbacks finished", shutdown_executor(executor), flush=True)
    else:
        executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown()
    stop.restore()
    print("ticks", len(ticks) > 100, flush=True)
""")


def _spin_and_signal(mode: str, sig: str) -> str:
    env = {**ros_env(), "PYTHONPATH": node_source_path()}
    r = subprocess.run([sys.executable, "-c", _SPIN, mode, sig], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


@pytest.mark.ros
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_spin_loop_with_the_context_still_up(sig):
    out = _spin_and_signal("ours", sig)
    # the context stays valid until main shuts it down, so draining can still run callbacks
    assert "END signal context ok True" in out and "drained True" in out and "ticks True" in out, out
    assert "callbacks finished True" in out, out
    assert "Traceback" not in out and "never retrieved" not in out, out


@pytest.mark.ros
def test_rclpy_default_handlers_raise_inside_the_executor():
    """What the main loop avoids: with rclpy's default SIGINT handling, ``KeyboardInterrupt`` comes out of
    ``executor.spin()`` from wherever the main thread was."""
    out = _spin_and_signal("rclpy", "SIGINT")
    assert "END KeyboardInterrupt" in out, out
