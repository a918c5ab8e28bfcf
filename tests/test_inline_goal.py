"""bopask_ros.ros.inline_goal with real rclpy (Jazzy wheels): an accepted goal runs in the thread that accepted
it, its result reaches the client, and a cancel is served while the goal runs inline (it ends CANCELED)."""

from __future__ import annotations

import threading

import pytest
from _ros_helpers import action_client, ros_env, wait_for, wait_future

pytestmark = [pytest.mark.ros]


@pytest.fixture
def ros():
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    ros_env()
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    nodes = []

    def node(name):
        n = rclpy.create_node(name, context=context)
        executor.add_node(n)
        nodes.append(n)
        return n

    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield node
    executor.shutdown(timeout_sec=2.0)
    for n in nodes:
        n.destroy_node()
    rclpy.try_shutdown(context=context)
    spinner.join(5.0)


def _server(node, accepted_hook, block=None):
    from rclpy.action import ActionServer
    from rclpy.callback_groups import ReentrantCallbackGroup

    from bopask_msgs.action import YesNoQuestion
    from bopask_ros.ros.inline_goal import execute_inline

    seen = {}

    def execute(goal_handle):
        seen["execute_thread"] = threading.current_thread().name
        if block is not None:
            block.wait(10.0)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.succeed()
        result = YesNoQuestion.Result()
        result.status.reason = f"answered {goal_handle.request.object_a}"
        return result

    def on_accepted(goal_handle):
        seen["accepted_thread"] = threading.current_thread().name
        accepted_hook(goal_handle)
        seen["inline"] = execute_inline(goal_handle)

    from rclpy.action import CancelResponse

    server = ActionServer(node, YesNoQuestion, "inline_test", execute_callback=execute,
                          handle_accepted_callback=on_accepted, cancel_callback=lambda gh: CancelResponse.ACCEPT,
                          callback_group=ReentrantCallbackGroup())
    return server, seen


def test_goal_runs_in_the_accepting_thread_and_its_result_arrives(ros):
    from action_msgs.msg import GoalStatus

    from bopask_msgs.action import YesNoQuestion

    server_node, client_node = ros("inline_server"), ros("inline_client")
    _, seen = _server(server_node, lambda gh: None)
    client = action_client(client_node, YesNoQuestion, "inline_test")
    assert client.wait_for_server(timeout_sec=20)
    for i in range(3):
        handle = wait_future(client.send_goal_async(YesNoQuestion.Goal(task="spatial", object_a=f"mug {i}")), 20,
                             "goal response")
        assert handle.accepted
        res = wait_future(handle.get_result_async(), 20, "result")
        assert res.status == GoalStatus.STATUS_SUCCEEDED and res.result.status.reason == f"answered mug {i}"
        assert seen["inline"] is True and seen["execute_thread"] == seen["accepted_thread"]


def test_a_cancel_is_served_while_the_goal_runs_inline(ros):
    from action_msgs.msg import GoalStatus

    from bopask_msgs.action import YesNoQuestion

    server_node, client_node = ros("inline_server2"), ros("inline_client2")
    release = threading.Event()
    _, seen = _server(server_node, lambda gh: None, block=release)
    client = action_client(client_node, YesNoQuestion, "inline_test")
    assert client.wait_for_server(timeout_sec=20)
    handle = wait_future(client.send_goal_async(YesNoQuestion.Goal(task="spatial", object_a="cup")), 20,
                         "goal response")
    wait_for(lambda: "execute_thread" in seen, 20, "the execute callback")
    cancel = wait_future(handle.cancel_goal_async(), 20, "cancel response")
    assert len(cancel.goals_canceling) == 1
    release.set()
    res = wait_future(handle.get_result_async(), 20, "result")
    assert res.status == GoalStatus.STATUS_CANCELED and seen["inline"] is True


def test_a_raising_or_unfinished_callback_still_answers_the_client(ros):
    """As rclpy's own ``_execute_goal``: a callback that raises gets an empty result, a goal left active is
    aborted, and the client's result request is answered either way."""
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionServer
    from rclpy.callback_groups import ReentrantCallbackGroup

    from bopask_msgs.action import YesNoQuestion
    from bopask_ros.ros.inline_goal import execute_inline

    server_node, client_node = ros("inline_server3"), ros("inline_client3")
    ran = []

    def execute(goal_handle):
        if goal_handle.request.object_a == "raise":
            raise RuntimeError("the callback failed")
        result = YesNoQuestion.Result()
        result.status.reason = "left active"
        return result  # no terminal state set

    ActionServer(server_node, YesNoQuestion, "inline_test3", execute_callback=execute,
                 handle_accepted_callback=lambda gh: ran.append(execute_inline(gh)),
                 callback_group=ReentrantCallbackGroup())
    client = action_client(client_node, YesNoQuestion, "inline_test3")
    assert client.wait_for_server(timeout_sec=20)
    for name, reason in (("raise", ""), ("unfinished", "left active")):
        handle = wait_future(client.send_goal_async(YesNoQuestion.Goal(task="spatial", object_a=name)), 20,
                             "goal response")
        res = wait_future(handle.get_result_async(), 20, "result")
        assert res.status == GoalStatus.STATUS_ABORTED and res.result.status.reason == reason
    assert ran == [True, True]


def test_a_waiting_result_request_is_answered_from_the_goal_thread(ros):
    """The result request that came while the goal ran is answered as the goal ends, in the goal's own thread (no
    executor task and main-thread wake-up in between)."""
    import time

    from action_msgs.msg import GoalStatus

    from bopask_msgs.action import YesNoQuestion

    server_node, client_node = ros("inline_server4"), ros("inline_client4")
    release = threading.Event()
    server, seen = _server(server_node, lambda gh: None, block=release)
    sent = []
    send = server._send_result_response  # rclpy's; wrapped to see which thread answers

    def spy(header, future):
        sent.append(threading.current_thread().name)
        return send(header, future)

    server._send_result_response = spy
    client = action_client(client_node, YesNoQuestion, "inline_test")
    assert client.wait_for_server(timeout_sec=20)
    handle = wait_future(client.send_goal_async(YesNoQuestion.Goal(task="spatial", object_a="jar")), 20,
                         "goal response")
    wait_for(lambda: "execute_thread" in seen, 20, "the execute callback")
    result = handle.get_result_async()
    time.sleep(1.0)  # the result request reaches the server while the goal still runs
    release.set()
    res = wait_future(result, 20, "result")
    assert res.status == GoalStatus.STATUS_SUCCEEDED and res.result.status.reason == "answered jar"
    assert sent == [seen["execute_thread"]]
