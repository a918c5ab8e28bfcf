"""``bopask goal``: send one task goal to bopask_node and print its feedback and result (rclpy).

The pip-installed ROS 2 core (``make ros``) has no ``ros2`` command line (ros2cli is not on PyPI), so this is
the way to ask the node something there; on a full ROS installation ``ros2 action send_goal`` does the same.
Needs bopask_msgs on the paths (``source scripts/ros_paths.sh``) and the node's DDS domain (``ROS_DOMAIN_ID``).

Examples::

    bopask goal grasp "the mustard bottle"                      # plan only, feedback of each stage
    bopask goal trajectory "the mustard bottle" "the blue bowl"
    bopask goal spatial "the mug" "the box" --relation "left of"
    bopask goal depth "the mug" "the box"
    bopask goal pose "the mug" --no-planning-scene --node /robot1/bopask_node

Each feedback message prints as ``[ 0.12 s] stage (attempt N): detail``; the result prints as YAML. Exit
status 0 when the result's status is SUCCEEDED, 1 for any other outcome (the status names it), 2 when the
goal could not be sent (no server, rejected, bad arguments), 130 on Ctrl-C (the goal is canceled first).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bopask_vlm.help_format import DefaultsFormatter

#: task -> (action server name under the node, interface name in bopask_msgs.action, descriptions it takes)
TASKS: dict[str, tuple[str, str, int]] = {
    "grasp": ("grasp", "Grasp", 1),
    "pose": ("pose", "Pose", 1),
    "trajectory": ("trajectory", "Trajectory", 2),
    "rearrangement": ("rearrangement", "Rearrangement", 1),
    "spatial": ("yes_no", "YesNoQuestion", 2),
    "depth": ("yes_no", "YesNoQuestion", 2),
}

#: TaskStatus codes (bopask_msgs/msg/TaskStatus.msg) -> names
STATUS_NAMES = ("SUCCEEDED", "VLM_ERROR", "INVALID_ANSWER", "LIFT_FAILED", "TF_FAILED", "SAFETY_REJECTED",
                "PLAN_FAILED", "EXECUTION_FAILED", "CANCELED", "REJECTED", "NO_FRAME")


class GoalError(RuntimeError):
    """The goal could not be sent or was not accepted."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bopask goal", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("task", choices=list(TASKS), help="the action: grasp, pose, trajectory, rearrangement, or a "
                                                     "yes/no question (spatial, depth)")
    p.add_argument("objects", nargs="+", help="object description(s): one, or two for trajectory (object, target) "
                                              "and spatial/depth (A, B)")
    p.add_argument("--execute", action="store_true",
                   help="grasp/trajectory: execute the motion (the node's allow_execution must be true too)")
    p.add_argument("--relation", default="", help="spatial: left of, right of, in front of, behind, above, below")
    p.add_argument("--question", default="", help="the question sent to the model instead of the template")
    p.add_argument("--no-planning-scene", action="store_true",
                   help="pose: do not add the object's box to MoveIt's planning scene")
    p.add_argument("--node", default="/bopask_node", help="the node's fully qualified name (namespace included)")
    p.add_argument("--server-timeout", type=float, default=10.0, help="seconds to wait for the action server")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the result")
    p.add_argument("--quiet", action="store_true", help="no feedback lines, the result only")
    return p


def goal_message(action_cls: Any, task: str, objects: Sequence[str], *, execute: bool = False, relation: str = "",
                 question: str = "", planning_scene: bool = True) -> Any:
    """The ``action_cls.Goal`` for ``task`` (its descriptions counted: a clear error before anything is sent)."""
    want = TASKS[task][2]
    if len(objects) != want:
        raise GoalError(f"{task} takes {want} object description{'s' if want > 1 else ''}, got {len(objects)}")
    if relation and task != "spatial":
        raise GoalError("--relation is for spatial questions only")
    if execute and task not in ("grasp", "trajectory"):
        raise GoalError("--execute is for grasp and trajectory goals only")
    if task == "grasp":
        return action_cls.Goal(object_description=objects[0], execute=execute, question=question)
    if task == "pose":
        return action_cls.Goal(object_description=objects[0], add_to_planning_scene=planning_scene,
                               question=question)
    if task == "trajectory":
        return action_cls.Goal(object_description=objects[0], target_description=objects[1], execute=execute,
                               question=question)
    if task == "rearrangement":
        return action_cls.Goal(object_description=objects[0], question=question)
    return action_cls.Goal(task=task, object_a=objects[0], object_b=objects[1], relation=relation, question=question)


def to_plain(msg: Any) -> Any:
    """A ROS message as plain Python (dicts, lists, numbers, strings), for printing as YAML."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: to_plain(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (str, bytes, bool, int, float)) or msg is None:
        return msg
    if hasattr(msg, "tolist"):  # numpy arrays, array.array
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [to_plain(m) for m in msg]
    return str(msg)


def race_free_action_client(node: Any, action_type: Any, name: str) -> Any:
    """An rclpy ActionClient without rclpy 7.1's send/response race (ros2/rclpy#1123): the Jazzy wheels' client
    sends a request and only then files its future, so a response the spinning thread takes in between is dropped
    ("Ignoring unexpected goal response") and the goal hangs. As upstream's fix (ros2/rclpy#1308, not in these
    wheels), one lock covers sending and filing, and taking responses (tests/_ros_helpers.py does the same)."""
    from rclpy.action import ActionClient

    class RaceFreeActionClient(ActionClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._race_lock = threading.RLock()
            super().__init__(*args, **kwargs)

        def send_goal_async(self, *args: Any, **kwargs: Any) -> Any:
            with self._race_lock:
                return super().send_goal_async(*args, **kwargs)

        def _cancel_goal_async(self, goal_handle: Any) -> Any:
            with self._race_lock:
                return super()._cancel_goal_async(goal_handle)

        def _get_result_async(self, goal_handle: Any) -> Any:
            with self._race_lock:
                return super()._get_result_async(goal_handle)

        def take_data(self) -> Any:
            with self._race_lock:
                return super().take_data()

    return RaceFreeActionClient(node, action_type, name)


def _wait(fut: Any, timeout_s: float, what: str, executor: Any = None) -> Any:
    """The future's result: spinning ``executor`` here until it is done, or (None) waiting for a node that another
    thread spins."""
    if executor is not None:
        executor.spin_until_future_complete(fut, timeout_sec=timeout_s)
        if not fut.done():
            raise TimeoutError(f"no {what} within {timeout_s:g} s")
        return fut.result()
    done = threading.Event()
    fut.add_done_callback(lambda _: done.set())
    if not done.wait(timeout_s):
        raise TimeoutError(f"no {what} within {timeout_s:g} s")
    return fut.result()


def _settle_discovery(ac: Any, action_cls: Any, timeout_s: float, executor: Any = None) -> None:
    """After ``wait_for_server``: one answered result request for a goal id that does not exist, so the server has
    discovered this client's readers too (else Fast DDS may drop the goal's response and the goal is lost)."""
    from rclpy.action.client import ClientGoalHandle
    from unique_identifier_msgs.msg import UUID

    probe = ClientGoalHandle(ac, UUID(uuid=list(uuid.uuid4().bytes)), action_cls.Impl.SendGoalService.Response())
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            _wait(probe.get_result_async(), min(1.0, max(0.05, end - time.monotonic())), "probe", executor)
            return
        except TimeoutError:
            continue
    raise GoalError(f"the action server answered nothing within {timeout_s:g} s")


def send_goal(node: Any, task: str, goal: Any, action_cls: Any, *, node_name: str = "/bopask_node",
              server_timeout_s: float = 10.0, timeout_s: float = 60.0,
              on_feedback: Any = None, executor: Any = None) -> Any:
    """Send ``goal`` to ``<node_name>/<action>``, call ``on_feedback(StageFeedback)`` for each feedback, return the
    result message. ``executor``: spun here while waiting (the command line: no thread); None: ``node`` is spun by
    an executor in another thread. Raises GoalError, TimeoutError."""
    name = f"{node_name.rstrip('/')}/{TASKS[task][0]}"
    ac = race_free_action_client(node, action_cls, name)
    try:
        if not ac.wait_for_server(timeout_sec=server_timeout_s):
            raise GoalError(f"no action server {name} within {server_timeout_s:g} s (is bopask_node running, in this "
                            "ROS_DOMAIN_ID, under that name?)")
        _settle_discovery(ac, action_cls, server_timeout_s, executor)
        cb = (lambda fb: on_feedback(fb.feedback.feedback)) if on_feedback else None
        handle = _wait(ac.send_goal_async(goal, feedback_callback=cb), server_timeout_s, "goal response", executor)
        if not handle.accepted:
            raise GoalError(f"{name} rejected the goal (another goal running with busy_policy reject, or bad goal "
                            "fields: the node's log says which)")
        try:
            return _wait(handle.get_result_async(), timeout_s, "result", executor).result
        except (TimeoutError, KeyboardInterrupt):
            try:
                _wait(handle.cancel_goal_async(), 5.0, "cancel response", executor)
            except TimeoutError:
                pass
            raise
    finally:
        ac.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        import bopask_msgs.action as actions

        action_cls = getattr(actions, TASKS[args.task][1])
    except (ImportError, AttributeError) as e:
        print(f"bopask goal: needs rclpy and the built bopask_msgs ({e}): `make ros && source scripts/ros_paths.sh`, "
              "or a sourced ROS 2 workspace", file=sys.stderr)
        return 2
    try:
        goal = goal_message(action_cls, args.task, args.objects, execute=args.execute, relation=args.relation,
                            question=args.question, planning_scene=not args.no_planning_scene)
    except GoalError as e:
        print(f"bopask goal: {e}", file=sys.stderr)
        return 2
    import yaml

    context = rclpy.Context()
    rclpy.init(args=None, context=context)
    node = rclpy.create_node(f"bopask_goal_{uuid.uuid4().hex[:8]}", context=context)
    executor = SingleThreadedExecutor(context=context)  # spun by this thread while it waits: no spin thread
    executor.add_node(node)
    t0 = time.monotonic()

    def feedback(fb: Any) -> None:
        if not args.quiet:
            detail = f": {fb.detail}" if fb.detail else ""
            print(f"[{fb.elapsed:6.2f} s] {fb.stage} (attempt {fb.attempt}){detail}", flush=True)

    rc = 2
    try:
        result = send_goal(node, args.task, goal, action_cls, node_name=args.node,
                           server_timeout_s=args.server_timeout, timeout_s=args.timeout, on_feedback=feedback,
                           executor=executor)
        code = int(result.status.code)
        name = STATUS_NAMES[code] if code < len(STATUS_NAMES) else str(code)
        plain = to_plain(result)
        if code != 0:  # a failed goal's poses and points are empty: its status and attempts say what happened
            plain = {k: v for k, v in plain.items()
                     if k == "status" or k == "attempts" and v or k == "answer" and v.get("raw_text")}
        print(yaml.safe_dump({"result": plain}, sort_keys=False, width=120).rstrip())
        print(f"{args.task}: {name} in {time.monotonic() - t0:.2f} s"
              + (f": {result.status.reason}" if result.status.reason else ""))
        rc = 0 if code == 0 else 1
    except GoalError as e:
        print(f"bopask goal: {e}", file=sys.stderr)
    except TimeoutError as e:
        print(f"bopask goal: {e} (the goal was canceled)", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("bopask goal: interrupted (the goal was canceled)", file=sys.stderr)
        rc = 130
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return rc


if __name__ == "__main__":
    sys.exit(main())
