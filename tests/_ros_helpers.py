"""Helpers of the ROS tests (real rclpy, real DDS): the node in its own process, a client node in the
test process, camera publishers on the realsense-ros topic names, and a stand-in VLM server.

Every test session gets its own DDS domain (``ROS_DOMAIN_ID`` from the process id) and discovery stays
on this machine, so ROS tests of other checkouts running at the same time do not see each other.
"""

from __future__ import annotations

import array
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NODE_YAML = REPO / "bopask_ros" / "config" / "bopask_node.yaml"
DOMAIN_ID = 10 + os.getpid() % 90


def ros_env() -> dict[str, str]:
    """The environment of this session's DDS domain (also set in this process before rclpy.init)."""
    # (ROS_LOCALHOST_ONLY is Jazzy's deprecated spelling of the discovery range: it must stay unset)
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    env = {"ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "RCUTILS_COLORIZED_OUTPUT": "0", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    return dict(os.environ)


def node_source_path() -> str:
    """PYTHONPATH with this checkout's packages first (the node process imports the code under test)."""
    parts = [str(REPO / "bopask_vlm"), str(REPO / "bopask_ros"), str(REPO / "bopask_sim"),
             os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


class NodeProcess:
    """``python -m <module> --ros-args --params-file <config yaml> -p ...`` in its own process; ``module``: the
    node (``bopask_ros.ros.node``) or the simulator bring-up (``bopask_ros.ros.sim_bringup``)."""

    def __init__(self, params: dict[str, Any], log: Path, namespace: str = "",
                 module: str = "bopask_ros.ros.node") -> None:
        args = [sys.executable, "-m", module, "--ros-args", "--params-file", str(NODE_YAML)]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        for k, v in params.items():
            args += ["-p", f"{k}:={json.dumps(v) if isinstance(v, (list, bool)) else v}"]
        env = ros_env()
        env["PYTHONPATH"] = node_source_path()
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=REPO)

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self, timeout_s: float = 20.0, sig: signal.Signals = signal.SIGINT) -> int:
        """SIGINT (Ctrl-C), or ``sig``, and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log_file.close()


class RosClient:
    """rclpy in the test process: a client node spun by a MultiThreadedExecutor in a thread."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        ros_env()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)


def action_client(node: Any, action_type: Any, name: str) -> Any:
    """An rclpy ActionClient without rclpy 7.1's send/response race (ros2/rclpy#1123): the product's own
    (:func:`bopask_ros.ros.goal_cli.race_free_action_client`, what ``bopask goal`` uses). The Jazzy wheels'
    ``send_goal_async`` sends and only then files its future, so a test client spinning in its own executor
    thread lost a goal response now and then."""
    from bopask_ros.ros.goal_cli import race_free_action_client

    return race_free_action_client(node, action_type, name)


def wait_for_action(ac: Any, timeout_s: float = 60.0) -> bool:
    """``ac.wait_for_server`` and then discovery settled both ways before the first goal.

    ``wait_for_server`` is true once *this* process has discovered the server's services; the server may not yet
    have discovered this client's response readers, and Fast DDS then drops the goal response ("failed to send
    response (timeout)", seen under load): the goal is lost. So one round trip on each of the action's two other
    services follows, answered by the server only once it can reach us: a cancel request and a result request for
    a goal id that does not exist (nothing is canceled; the result comes back STATUS_UNKNOWN). The goal service's
    endpoints are discovered in the same exchange. True once both answered within ``timeout_s``."""
    import uuid

    from action_msgs.msg import GoalStatus
    from rclpy.action.client import ClientGoalHandle
    from unique_identifier_msgs.msg import UUID

    end = time.monotonic() + timeout_s
    if not ac.wait_for_server(timeout_sec=timeout_s):
        return False
    probe = ClientGoalHandle(ac, UUID(uuid=list(uuid.uuid4().bytes)), ac._action_type.Impl.SendGoalService.Response())
    for send in (probe.cancel_goal_async, probe.get_result_async):
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            fut = send()
            try:
                reply = wait_future(fut, min(2.0, left), "probe")
            except TimeoutError:
                continue  # lost on the way (the very case): ask again
            if send == probe.get_result_async:
                assert reply.status == GoalStatus.STATUS_UNKNOWN, reply
            break
    return True


def wait_future(fut: Any, timeout_s: float, what: str) -> Any:
    """An rclpy future's result, woken by its done callback (no polling delay)."""
    done = threading.Event()
    fut.add_done_callback(lambda _: done.set())
    if not done.wait(timeout_s):
        raise TimeoutError(f"{what} not received within {timeout_s} s")
    return fut.result()


class GoalRun:
    """One goal through an ActionClient: acceptance, feedback stages, result."""

    def __init__(self, client: Any, goal: Any) -> None:
        self.stages: list[str] = []
        self._fut = client.send_goal_async(goal, feedback_callback=lambda fb: self.stages.append(fb.feedback.feedback.stage))
        self._result_fut: Any = None
        self.handle: Any = None

    def accepted(self, timeout_s: float = 30.0) -> bool:
        self.handle = wait_future(self._fut, timeout_s, "goal response")
        if self.handle.accepted and self._result_fut is None:
            self._result_fut = self.handle.get_result_async()
        return bool(self.handle.accepted)

    def result(self, timeout_s: float = 60.0) -> tuple[int, Any]:
        """(action GoalStatus code, the result message)."""
        if self.handle is None:
            assert self.accepted(timeout_s), "goal was rejected"
        if self._result_fut is None:
            self._result_fut = self.handle.get_result_async()
        r = wait_future(self._result_fut, timeout_s, "goal result")
        return r.status, r.result

    def done(self) -> bool:
        if self.handle is None or self._result_fut is None:
            return False
        return self._result_fut.done()

    def cancel(self) -> Any:
        fut = self.handle.cancel_goal_async()
        wait_for(fut.done, 30.0, "cancel response")
        return fut.result()


class FeedbackTap:
    """The feedback of every goal of one action, read from the action's feedback topic itself: rclpy's
    ActionClient drops feedback that arrives after the goal's result, and the last stage (published just
    before the result) can arrive after it."""

    def __init__(self, client: RosClient, action_cls: Any, action_name: str) -> None:
        self.stages: dict[bytes, list[str]] = {}
        self.attempts: dict[bytes, list[int]] = {}  # the attempt each feedback message names
        client.node.create_subscription(action_cls.Impl.FeedbackMessage, f"{action_name}/_action/feedback",
                                        self._on, 50)

    def _on(self, msg: Any) -> None:
        self.stages.setdefault(bytes(msg.goal_id.uuid), []).append(msg.feedback.feedback.stage)
        self.attempts.setdefault(bytes(msg.goal_id.uuid), []).append(int(msg.feedback.feedback.attempt))

    def of(self, run: GoalRun, n: int, timeout_s: float = 10.0) -> list[str]:
        """The stages of ``run``'s goal once ``n`` have come (or what came within the timeout)."""
        gid = bytes(run.handle.goal_id.uuid)
        try:
            wait_for(lambda: len(self.stages.get(gid, [])) >= n, timeout_s, "the feedback")
        except TimeoutError:
            pass
        return list(self.stages.get(gid, []))


def image_msg(arr: np.ndarray, encoding: str, frame_id: str) -> Any:
    from sensor_msgs.msg import Image

    a = np.ascontiguousarray(arr)
    msg = Image(height=int(a.shape[0]), width=int(a.shape[1]), encoding=encoding, is_bigendian=0,
                step=int(a.strides[0]), data=array.array("B", a.tobytes()))
    msg.header.frame_id = frame_id
    return msg


def info_msg(K: np.ndarray, width: int, height: int, frame_id: str, d: list[float] | None = None) -> Any:
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=width, height=height, k=[float(v) for v in np.asarray(K).reshape(-1)],
                     d=list(d if d is not None else [0.0] * 5), distortion_model="plumb_bob",
                     p=[float(K[0][0]), 0.0, float(K[0][2]), 0.0, 0.0, float(K[1][1]), float(K[1][2]), 0.0,
                        0.0, 0.0, 1.0, 0.0])
    msg.header.frame_id = frame_id
    return msg


class CameraPublisher:
    """Publishes one RGB-D frame on the realsense-ros topics at ``rate_hz``, each capture stamped now on
    all three messages (realsense-ros with enable_sync). ``frame_id``, ``paused`` can change while it runs."""

    COLOR = "/camera/camera/color/image_raw"
    DEPTH = "/camera/camera/aligned_depth_to_color/image_raw"
    INFO = "/camera/camera/color/camera_info"

    def __init__(self, client: RosClient, rgb: np.ndarray, depth_mm: np.ndarray, K: np.ndarray,
                 frame_id: str = "camera_color_optical_frame", rate_hz: float = 10.0, prefix: str = "",
                 sim_start_s: float | None = None, paused: bool = False) -> None:
        """``prefix``: put before the topic names; ``sim_start_s``: publish ``/clock`` (sim time starting
        there, advancing with the frames) and stamp the frames with it; :meth:`jump` sets it (a bag loop).
        ``paused``: start paused (set before the thread starts, so not a single frame goes out)."""
        from sensor_msgs.msg import CameraInfo, Image

        self.client = client
        self.COLOR, self.DEPTH, self.INFO = (prefix + t for t in (self.COLOR, self.DEPTH, self.INFO))
        self.sim_ns: int | None = None if sim_start_s is None else int(sim_start_s * 1e9)
        self.clock_pub = None
        if sim_start_s is not None:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = client.node.create_publisher(Clock, "/clock", 10)
        self.frame_id = frame_id
        self.color = image_msg(rgb, "rgb8", frame_id)
        self.depth = image_msg(depth_mm.astype(np.uint16), "16UC1", frame_id)
        self.info = info_msg(K, rgb.shape[1], rgb.shape[0], frame_id)
        node = client.node
        # realsense-ros' default image QoS (SYSTEM_DEFAULT: reliable, keep last); the node subscribes best effort
        self.pubs = [node.create_publisher(Image, self.COLOR, 5), node.create_publisher(Image, self.DEPTH, 5),
                     node.create_publisher(CameraInfo, self.INFO, 5)]
        self.period = 1.0 / rate_hz
        self.paused = threading.Event()
        if paused:
            self.paused.set()
        self.published = 0
        self.stamp_offset_ns: dict[str, int] = {}  # per stream ("color", "depth", "info"): stamped this much later
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def jump(self, to_s: float) -> None:
        """Sim time jumps to ``to_s`` (e.g. back: a bag replayed in a loop)."""
        self.sim_ns = int(to_s * 1e9)

    def _stamp(self) -> Any:
        if self.sim_ns is None:
            return self.client.node.get_clock().now().to_msg()
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        t = Time(sec=self.sim_ns // 1_000_000_000, nanosec=self.sim_ns % 1_000_000_000)
        self.clock_pub.publish(Clock(clock=t))
        self.sim_ns += int(self.period * 1e9)
        return t

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.paused.is_set():
                stamp = self._stamp()
                for stream, msg, pub in zip(("color", "depth", "info"), (self.color, self.depth, self.info), self.pubs):
                    offset = self.stamp_offset_ns.get(stream, 0)
                    if offset:
                        from builtin_interfaces.msg import Time

                        ns = stamp.sec * 1_000_000_000 + stamp.nanosec + offset
                        msg.header.stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
                    else:
                        msg.header.stamp = stamp
                    msg.header.frame_id = self.frame_id
                    pub.publish(msg)
                self.published += 1
            self._stop.wait(self.period)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- a stand-in VLM server ------------------------------------------------------------------------------
class FakeVLMServer:
    """A stand-in for a vLLM OpenAI-compatible server (no model can be served in a CI test): answers
    ``/v1/chat/completions`` with ``answer(task, question) -> (content, delay_s)``. It can be stopped and
    started again on the same port (the VLM going down and coming back)."""

    def __init__(self, answer: Callable[[str, str], tuple[str, float]]) -> None:
        self.answer = answer
        self.requests: list[str] = []
        self.finished: list[str] = []  # questions whose (possibly slow) answer was sent
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                question = body["messages"][0]["content"][1]["text"]
                task = body.get("response_format", {}).get("json_schema", {}).get("name", "bopask_").split("_", 1)[1]
                srv.requests.append(question)
                content, delay = srv.answer(task, question)
                time.sleep(delay)
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content},
                                                "finish_reason": "stop"}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass
                srv.finished.append(question)

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def write_calibration(path: Path, parent_frame: str, child_frame: str, T_parent_child: Any) -> Path:
    """A calibration file in the layout of ``config/camera_calibration.yaml`` (``tf_source: calibration``)."""
    import yaml

    from bopask_vlm.geometry import quat_from_matrix

    T = np.asarray(T_parent_child, dtype=float)
    path.write_text(yaml.safe_dump({"parent_frame": parent_frame, "child_frame": child_frame,
                                    "translation": [float(v) for v in T[:3, 3]],
                                    "rotation": [float(v) for v in quat_from_matrix(T[:3, :3])]}))
    return path
