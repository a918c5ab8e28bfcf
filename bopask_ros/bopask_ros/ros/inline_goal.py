"""Run an accepted action goal in the thread that accepted it, instead of one executor round trip later.

rclpy's ``ServerGoalHandle.execute()`` (rclpy 7.1, Jazzy: ``rclpy/action/server.py``) moves the goal to
EXECUTING and then ``ActionServer.notify_execute`` puts ``ActionServer._execute_goal`` on the executor with
``create_task``: the executor's thread wakes on its guard condition, rebuilds its wait set and hands the task to
a pool thread, which only then runs the execute callback. For bopask_node that trip was one of the three
executor wake-ups per goal (goal request, execute, result request); profiled under ``benchmarks/bench_node.py``
it costs a main-thread iteration and a thread hand-over each goal, milliseconds on a loaded machine.

:func:`execute_inline` does what ``execute()`` and the scheduled task do, in order, in the calling thread (the
pool thread that ran the goal request and ``handle_accepted_callback``): the EXECUTE transition (skipped when a
cancel came first, as ``execute()`` skips it) and ``_execute_goal``, which calls the execute callback, aborts a
goal left active and sets the result (its result requests are answered from that future, in this thread).

What ``_execute_goal`` does for a synchronous callback is done here directly (call it; abort a goal it left
active; file the ``GetResultService.Response`` in the server's result future, whose done callbacks, the responses
to result requests already waiting, then run in this thread instead of as executor tasks), without its two debug
lines:
rclpy formats them before the level check, each printing the goal's UUID as a numpy array (``array2string``,
~170 us per line on the loaded 2-core machine, issue 20's profile). Where those names are missing, the
coroutine ``_execute_goal`` itself runs.

``_execute_goal``, ``_update_state``, ``_result_futures`` and ``_action_type`` are private to rclpy: where a
release lacks what is needed, or the execute callback is a coroutine, the function returns False before touching
the goal and the caller uses ``goal_handle.execute()``. No rclpy API offers a synchronous execute, so this is
hand-written.
"""

from __future__ import annotations

import inspect
import traceback
from typing import Any


def execute_inline(goal_handle: Any) -> bool:
    """Run ``goal_handle``'s execute callback now, in this thread (see the module docstring). True when it ran;
    False, with the goal untouched, where it cannot (then call ``goal_handle.execute()``)."""
    server = getattr(goal_handle, "_action_server", None)
    run = getattr(server, "_execute_goal", None)
    update = getattr(goal_handle, "_update_state", None)
    callback = getattr(server, "_execute_callback", None)
    if run is None or update is None or callback is None or inspect.iscoroutinefunction(callback):
        return False
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    if not goal_handle.is_cancel_requested:
        update(_rclpy.GoalEvent.EXECUTE)
    futures = getattr(server, "_result_futures", None)
    action_type = getattr(server, "_action_type", None)
    if isinstance(futures, dict) and action_type is not None:
        _execute_direct(server, action_type, futures, callback, goal_handle)
        return True
    coro = run(callback, goal_handle)
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()  # a synchronous callback never suspends: this is not rclpy's _execute_goal any more
    raise RuntimeError("rclpy's ActionServer._execute_goal suspended around a synchronous execute callback")


def _execute_direct(server: Any, action_type: Any, futures: dict[bytes, Any], callback: Any, goal_handle: Any) -> None:
    """rclpy 7.1's ``ActionServer._execute_goal`` for a synchronous callback, less its debug lines."""
    try:
        result = callback(goal_handle)
    except Exception as ex:  # as rclpy: an empty result still answers the client
        result = action_type.Result()
        server._logger.error(f"Error raised in execute callback: {ex}")
        traceback.print_exc()
    if goal_handle.is_active:
        server._logger.warning(f"Goal state not set, assuming aborted. Goal ID: {bytes(goal_handle.goal_id.uuid).hex()}")
        goal_handle.abort()
    response = action_type.Impl.GetResultService.Response()
    response.status = goal_handle.status
    response.result = result
    future = futures[bytes(goal_handle.goal_id.uuid)]
    # the executor is set on every future of the server each time the server runs (Executor._take_waitable); with it,
    # set_result schedules the waiting result requests' responses as executor tasks (a main-thread wake-up and a
    # hand-over to a pool thread before the client gets its result). Without it they are sent here, now. Should the
    # executor set it again in between, the responses go the scheduled way, as before.
    unset = getattr(future, "_set_executor", None)
    if unset is not None:
        unset(None)
    future.set_result(response)
