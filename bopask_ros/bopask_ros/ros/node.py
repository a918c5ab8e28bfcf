"""bopask_node: the ROS 2 node. Converts messages, wires callbacks, and runs the ROS-free
:class:`bopask_ros.pipeline.TaskPipeline` behind one action server per task.

- RealSense colour, aligned depth and camera_info: three plain sensor-data subscriptions paired by
  stamp in the ROS-free :class:`bopask_ros.perception.camera_sync.CameraSync` (``sync_slop_s`` 0 = the identical
  stamps realsense-ros publishes with ``enable_sync``), the latest frame kept in
  :class:`bopask_ros.perception.frame_cache.FrameCache` (time going backwards, e.g. a bag loop, is followed).
- Actions ``~/grasp``, ``~/pose``, ``~/trajectory``, ``~/rearrangement``, ``~/yes_no`` (bopask_msgs).
  One goal runs at a time (:class:`GoalGate`: reject or queue); feedback at each stage; cancel is
  checked between stages, interrupts the wait for the VLM, and stops a running motion of the goal it
  is for; a canceled goal ends CANCELED.
- The camera pose (``tf_source``): ``tf2`` (tf2_ros buffer on the node's clock + listener, the robot
  default) or ``calibration`` (a fixed extrinsic from ``calibration_file`` / ``calibration.*``: the
  node then needs no TF tree and runs on a pip-installed ROS 2 core).
- Motion (``motion_backend``): ``moveit`` (moveit_py, imported only when chosen), ``sim`` (the pybullet simulator
  of bopask_sim, :mod:`bopask_ros.ros.sim_backend`; :mod:`bopask_ros.ros.sim_bringup` runs the node with the
  simulator's camera) or ``none``. The result of an executed goal gives the backend's own reason (what the robot
  did; in the simulator what physically happened: lifted, slipped, collision ...).
- The VLM (``vlm_client``): an OpenAI-compatible server (vLLM), or the oracle answering from QA records.
- RViz markers (cleared with DELETEALL before each result's) and the 2D answer on a debug image.
Runs in a MultiThreadedExecutor with a reentrant callback group (ros2/examples action servers).

``python -m bopask_ros.ros.node --ros-args --params-file config/bopask_node.yaml -p tf_source:=calibration ...``
"""

from __future__ import annotations

import array
import concurrent.futures
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.logging import LoggingSeverity, get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from bopask_ros.node_support.conversions import (
    MessageFactory,
    array_to_image_fields,
    build_result,
    camera_from_info,
    depth_from_image,
    rgb_from_image,
)
from bopask_ros.node_support.goal_gate import GoalGate
from bopask_ros.node_support.markers import result_markers
from bopask_ros.node_support.params import PARAMS, CameraCalibration, NodeParams, ParamError, calibration_of
from bopask_ros.node_support.stop_signals import StopSignals, reassert_stop_signals
from bopask_ros.perception.camera_sync import CameraSync, DepthHealth, frame_size_mismatch
from bopask_ros.perception.frame_cache import FrameCache, NoFrameError
from bopask_ros.perception.tf_buffer import TransformError, TransformWait, map_tf2_error
from bopask_ros.pipeline import Frame, Goal, PipelineResult, ResultStatus, Stage, TaskPipeline
from bopask_ros.ros.fast_log import CallSite, log_at
from bopask_ros.ros.inline_goal import execute_inline
from bopask_ros.ros.spin import drain, shutdown_executor, spin_until_stopped
from bopask_vlm.answers import Task
from bopask_vlm.clients import VLMError
from bopask_vlm.clients.deadline import DaemonWorkers, VLMCanceled, cancel_scope, current_cancel
from bopask_vlm.geometry import make_transform
from bopask_vlm.goal_fields import GoalFieldError, GoalFields, validate_goal_fields

ACTIONS = {  # action name -> (interface class name, task)
    "grasp": ("Grasp", Task.GRASP),
    "pose": ("Pose", Task.POSE),
    "trajectory": ("Trajectory", Task.TRAJECTORY),
    "rearrangement": ("Rearrangement", Task.REARRANGEMENT),
    "yes_no": ("YesNoQuestion", None),
}


# where the goal's result line says it comes from (rclpy's logger would look it up per line: ros/fast_log.py)
_RESULT_SITE = CallSite("BopaskNode._execute", __file__, 0)


class StartupError(RuntimeError):
    """The node cannot start with these parameters (the message says what to change)."""


@functools.cache
def _lookup_class(type_name: str) -> Any:
    """ROS type name ("geometry_msgs/msg/Pose", "bopask_msgs/action/Grasp_Result") -> rclpy class (cached: every
    message of a result is built through it, and ``importlib.import_module`` per call cost ~3 us each)."""
    import importlib

    pkg, kind, name = type_name.split("/")
    if kind == "action" and "_" in name:
        base, part = name.rsplit("_", 1)
        return getattr(getattr(importlib.import_module(f"{pkg}.action"), base), part)
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


# -- camera pose sources ---------------------------------------------------------------------------
class Tf2Adapter:
    """tf2_ros.Buffer with the ROS-free TransformBuffer's lookup signature and errors (tf2's Lookup, Connectivity,
    Extrapolation exceptions as FrameNotFoundError, ConnectivityError, ExtrapolationError). The buffer runs on the
    node's clock (``Buffer(node=...)``), so sim time and its jumps (bag loops) are followed. A lookup waits in
    slices (:class:`bopask_ros.perception.tf_buffer.TransformWait`): ``first_timeout_s`` until the first transform
    came, then ``timeout_s``; the goal's cancel (:func:`bopask_vlm.clients.deadline.current_cancel`) ends it."""

    def __init__(self, node: Node, timeout_s: float, first_timeout_s: float | None = None) -> None:
        try:
            import tf2_ros
        except ImportError as e:
            raise StartupError("tf_source tf2 needs tf2_ros, which is not installed (it is not on PyPI; on a "
                               "pip-installed ROS 2 core use tf_source:=calibration with calibration_file:=...)"
                               ) from e
        self._tf2 = tf2_ros
        self.buffer = tf2_ros.Buffer(node=node)
        self.listener = tf2_ros.TransformListener(self.buffer, node)
        self.timeout_s = timeout_s
        self.wait = TransformWait(timeout_s, first_timeout_s)

    def lookup_transform(self, target: str, source: str, stamp: float | None) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        when = Time() if not stamp else Time(nanoseconds=int(round(stamp * 1e9)))

        def once(wait_s: float) -> Any:
            try:
                return self.buffer.lookup_transform(target, source, when, timeout=Duration(seconds=wait_s))
            except Exception as e:
                mapped = map_tf2_error(e, self._tf2)
                if mapped is None:
                    raise
                raise mapped from e

        t = self.wait.run(once, current_cancel())
        r, p = t.transform.rotation, t.transform.translation
        return make_transform([r.x, r.y, r.z, r.w], [p.x, p.y, p.z])


class CalibrationTF:
    """A fixed camera extrinsic (``tf_source: calibration``) behind the TransformBuffer lookup: the
    calibration's static transform(s) in a :class:`bopask_ros.perception.tf_buffer.TransformBuffer`, one per image
    frame id seen. Without a calibration every lookup fails with a reason that says what to set."""

    def __init__(self, calibration: CameraCalibration | None) -> None:
        self.calibration = calibration
        self._buffers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def lookup_transform(self, target: str, source: str, stamp: float | None = None) -> np.ndarray:
        cal = self.calibration
        if cal is None:
            raise TransformError("missing calibration: tf_source is calibration but neither calibration_file nor "
                                 "calibration.parent_frame is set")
        with self._lock:
            buf = self._buffers.get(source)
            if buf is None:
                buf = self._buffers[source] = cal.transform_buffer(source)
        try:
            return buf.lookup_transform(target, source, None)
        except TransformError as e:
            raise type(e)(f"missing calibration for {source} -> {target}: the calibration gives "
                          f"{cal.parent_frame} -> {cal.child_frame} ({e})") from e


# -- the VLM -----------------------------------------------------------------------------------------
SHUTTING_DOWN = "the node is shutting down"


class CancellableClient:
    """A VLM client whose ``ask`` returns as soon as the calling goal is canceled or the node stops.

    A client that can abort its own request (``supports_cancel``: the OpenAI client) runs on the goal's thread
    under :func:`bopask_vlm.clients.deadline.cancel_scope`: a cancel closes its connection and ends its retries,
    so nothing of the goal is left running. Any other client (oracle, transformers) runs on
    :class:`~bopask_vlm.clients.deadline.DaemonWorkers`: a queued request is dropped on cancel, a running one is
    abandoned (its answer dropped when it comes) and never holds the process at exit."""

    def __init__(self, client: Any, poll_s: float = 0.05, workers: int = 4) -> None:
        self.client = client
        self.model = getattr(client, "model", "")
        self.poll_s = float(poll_s)
        self._workers: DaemonWorkers | None = None
        self._n_workers = int(workers)
        self._local = threading.local()
        self._closed = threading.Event()

    def set_cancel(self, canceled: Callable[[], bool] | None) -> None:
        """The cancel flag of the goal running on this thread (None: none)."""
        self._local.canceled = canceled

    def ask(self, request: Any) -> Any:
        canceled = getattr(self._local, "canceled", None)
        if self._closed.is_set():
            raise VLMError(SHUTTING_DOWN)
        if canceled is None:
            return self.client.ask(request)

        def stop() -> bool:
            return self._closed.is_set() or canceled()

        if getattr(self.client, "supports_cancel", False):
            try:
                with cancel_scope(stop):
                    return self.client.ask(request)
            except VLMCanceled:
                if self._closed.is_set():
                    raise VLMError(SHUTTING_DOWN) from None
                raise VLMCanceled("canceled while waiting for the VLM answer") from None
        if self._workers is None:
            self._workers = DaemonWorkers(self._n_workers)
        try:
            fut = self._workers.submit(self.client.ask, request)
        except RuntimeError:  # shut down between the check and the submit
            raise VLMError(SHUTTING_DOWN) from None
        while True:
            try:
                return fut.result(timeout=self.poll_s)
            except concurrent.futures.TimeoutError:
                if stop():
                    fut.cancel()  # a queued request never runs
                    if self._closed.is_set():
                        raise VLMError(SHUTTING_DOWN) from None
                    raise VLMCanceled("canceled while waiting for the VLM answer") from None
            except concurrent.futures.CancelledError:
                raise VLMError(SHUTTING_DOWN) from None

    def shutdown(self) -> None:
        """Stop: requests in flight end within ``poll_s`` with :data:`SHUTTING_DOWN` (an OpenAI request's
        connection is closed), and so do those asked from now on; no thread is waited for."""
        self._closed.set()
        if self._workers is not None:
            self._workers.shutdown()


class RecordIndex:
    """The QA records the oracle answers from (``vlm_client: oracle``), found by task and objects."""

    def __init__(self, path: str) -> None:
        from bopask_vlm.eval.runner import load_records

        if not path:
            raise StartupError("vlm_client oracle needs oracle_records (a QA records JSONL, e.g. a bag's "
                               "bopask_records.jsonl)")
        try:
            self.records = load_records([path])
        except Exception as e:
            raise StartupError(f"oracle_records {path!r} cannot be read: {type(e).__name__}: {e}") from e
        if not self.records:
            raise StartupError(f"oracle_records {path!r} holds no records")

    def find(self, goal: Goal) -> Any:
        task = Task(goal.task).value
        want = [o.strip() for o in goal.objects if o and o.strip()]
        for rec in self.records:
            if Task(rec.task).value != task or [o.description for o in rec.objects] != want:
                continue
            if goal.question and goal.question != rec.question:
                continue
            if goal.relation and goal.relation not in rec.question:
                continue
            return rec
        return None


# -- the node ------------------------------------------------------------------------------------------
class BopaskNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        """``node_kwargs`` go to rclpy's Node (e.g. ``context``, ``cli_args``)."""
        # the MoveIt config arrives as parameter overrides from the launch file (moveit_py reads it)
        super().__init__("bopask_node", automatically_declare_parameters_from_overrides=True, **node_kwargs)
        for spec in PARAMS:
            if not self.has_parameter(spec.name):
                self.declare_parameter(spec.name, spec.default, ParameterDescriptor(description=spec.description))
        self.params = NodeParams.from_mapping({p.name: self.get_parameter(p.name).value for p in PARAMS})
        self.safety = self.params.safety()
        self.factory = MessageFactory(_lookup_class)
        self.cb = ReentrantCallbackGroup()
        self.sync = CameraSync(self.params["sync_slop_s"], self.params["sync_queue_size"])
        self.depth_health = DepthHealth(self.params["min_depth_valid_fraction"])
        self.frames = FrameCache(self.params["max_frame_age_s"], self.params["max_frame_lead_s"])
        self.gate = GoalGate(self.params["busy_policy"], self.params["queue_size"])
        self._pending: dict[int, tuple[Any, int]] = {}  # id(goal request) -> (request, ticket), until accepted
        self._bound: dict[bytes, int] = {}  # goal id -> ticket
        self._tickets_lock = threading.Lock()
        self._running_goal: bytes | None = None
        self._active_goals = 0  # execute callbacks running (under _tickets_lock)
        self._closed = False
        self._warned_distortion = False
        # markers, the debug image and the result's log line go out after the result, off the goal's thread
        # (bench_node: they were on the path from the last stage to the result)
        self._after = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="after_result")
        self.tf = self._make_tf()
        self.records = RecordIndex(self.params["oracle_records"]) if self.params["vlm_client"] == "oracle" else None
        self.planner = self._make_planner()

        from bopask_vlm.clients import make_client

        self.client = CancellableClient(make_client(self.params.client_config()))
        self.pipeline = TaskPipeline(self.client, self.tf, base_frame=self.params["planning_frame"],
                                     safety=self.safety, planner=self.planner,
                                     waypoint_height=self.params["waypoint_height"],
                                     table_height=self.safety.table_height,
                                     grasp_refine=self.params["grasp_refine"], max_attempts=self.params["max_attempts"])
        self._subscribe()
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray

        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.debug_pub = self.create_publisher(Image, "~/debug_image", 2)
        self.servers = [
            ActionServer(self, _lookup_class(f"bopask_msgs/action/{iface}"), f"~/{name}",
                         execute_callback=self._executor_for(name), goal_callback=self._goal_callback_for(name),
                         handle_accepted_callback=self._on_accepted, cancel_callback=self._on_cancel,
                         callback_group=self.cb)
            for name, (iface, _) in ACTIONS.items()
        ]
        vlm = ("oracle on " + self.params["oracle_records"] if self.records is not None
               else f"{self.params['vlm_endpoint']} ({self.params['vlm_model']})")
        self.get_logger().info(f"bopask_node ready: VLM {vlm}, tf_source {self.params['tf_source']}, "
                               f"motion_backend {self.params['motion_backend']}, planning frame "
                               f"{self.params['planning_frame']}, execution "
                               f"{'allowed' if self.params['allow_execution'] else 'disabled'}")

    # -- set-up ----------------------------------------------------------------------------------
    def _make_tf(self) -> Any:
        self.calibration: CameraCalibration | None = None
        if self.params["tf_source"] == "tf2":
            return Tf2Adapter(self, self.params["tf_timeout_s"], self.params["tf_first_timeout_s"])
        cal = calibration_of(self.params)
        if cal is None and self.params["motion_backend"] == "sim":
            from bopask_ros.ros.sim_backend import default_sim_calibration

            cal = default_sim_calibration()  # the one the simulator's camera stands at
        self.calibration = cal
        if cal is None:
            self.get_logger().warn("tf_source calibration without a calibration (calibration_file or "
                                   "calibration.parent_frame): every goal that needs the camera pose fails")
        elif cal.parent_frame != self.params["planning_frame"]:
            self.get_logger().warn(f"the calibration's parent {cal.parent_frame} is not the planning frame "
                                   f"{self.params['planning_frame']}: lookups will fail")
        return CalibrationTF(cal)

    def _make_planner(self) -> Any:
        """The motion backend named by ``motion_backend``: one entry per backend (a :class:`Planner` or None),
        each imported only when chosen; a new backend is one more entry here."""
        backends: dict[str, Callable[[], Any]] = {
            "none": lambda: None,
            "moveit": self._moveit_planner,
            "sim": self._sim_planner,
        }
        name = self.params["motion_backend"]
        if name not in backends:
            raise StartupError(f"motion_backend {name!r} is not one of {sorted(backends)}")
        return backends[name]()

    def _moveit_planner(self) -> Any:
        if not self.has_parameter("robot_description_semantic"):
            raise StartupError("motion_backend moveit needs the MoveIt config as parameters (tabletop.launch.py "
                               "passes it); use motion_backend:=none to answer, lift and check without MoveIt")
        try:
            from bopask_ros.ros.moveit_adapter import MoveItPlanner
        except ImportError as e:
            raise StartupError(f"motion_backend moveit needs moveit_py: {e}") from e

        own = {s.name for s in PARAMS} | {"use_sim_time"}
        config: dict[str, Any] = {}
        for name, param in self._parameters.items():  # dotted names back into the nested dict moveit_py takes
            if name in own:
                continue
            *path, leaf = name.split(".")
            node = config
            for key in path:
                node = node.setdefault(key, {})
            node[leaf] = param.value
        # moveit_py's own node must run on the same clock (replay with a robot: /clock), else it never sees a
        # current state
        use_sim_time = bool(self.get_parameter("use_sim_time").value)
        # MoveItPy's rclcpp::init replaces the process's SIGINT/SIGTERM handlers: the node's own go back on
        return MoveItPlanner("bopask_moveit_py", config, self.params, self.safety, use_sim_time=use_sim_time,
                             after_start=reassert_stop_signals, box_lifetime_s=self.params["object_box_lifetime_s"])

    def _sim_planner(self) -> Any:
        """The simulator (``sim.*`` parameters), its camera placed by the node's calibration (with ``tf_source
        calibration`` the very one the node lifts with; else the calibration parameters, else the repository's
        file), the node's safety envelope and lift distance."""
        try:
            from bopask_ros.ros.sim_backend import default_sim_calibration, make_sim_planner
        except ImportError as e:
            raise StartupError(f"motion_backend sim needs bopask_sim and pybullet: {e}") from e
        cal = self.calibration or calibration_of(self.params) or default_sim_calibration()
        try:
            planner = make_sim_planner(self.params, cal)
        except (ValueError, OSError) as e:
            raise StartupError(f"motion_backend sim: {e}") from e
        world = planner.world
        self.get_logger().info(f"simulator: scene {world.seed} with {', '.join(i.name for i in world.instances)}; "
                               f"camera {world.camera.width}x{world.camera.height} on {self.params['color_topic']} "
                               "(published by bopask_ros.ros.sim_bringup)")
        return planner

    def _subscribe(self) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        # best effort (sensor data QoS) matches both reliable and best-effort camera publishers
        self.camera_subs = [
            self.create_subscription(msg_type, self.params[topic], self._camera_callback(stream),
                                     qos_profile_sensor_data, callback_group=self.cb)
            for stream, msg_type, topic in (("color", Image, "color_topic"), ("depth", Image, "depth_topic"),
                                            ("info", CameraInfo, "camera_info_topic"))
        ]

    def _camera_callback(self, stream: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self._on_camera(stream, msg)

        return callback

    def _on_camera(self, stream: str, msg: Any) -> None:
        """One camera message: into the sync, and a completed set into the frame cache. Nothing raised
        here may leave the callback (it would end the executor's spin): bad messages are logged and dropped."""
        try:
            st = msg.header.stamp
            stamp_ns = int(st.sec) * 1_000_000_000 + int(st.nanosec)
        except Exception as e:  # no header: this message is the bad one
            self.get_logger().warn(f"dropping {stream} message: {type(e).__name__}: {e}", throttle_duration_sec=5.0)
            return
        try:
            synced = self.sync.add(stream, stamp_ns, msg)
        except Exception as e:
            self.get_logger().warn(f"dropping {stream} message: {type(e).__name__}: {e}", throttle_duration_sec=5.0)
            return
        if synced is None:
            mismatch = self.sync.take_mismatch()
            if mismatch is not None:
                self.get_logger().warn(f"camera streams do not pair: {mismatch}", throttle_duration_sec=5.0)
            return
        self._on_camera_set(synced)

    def _on_camera_set(self, synced: Any) -> None:
        """A paired set: each message converted on its own (a failure names its stream), the sizes checked
        against each other, the depth judged; then into the frame cache. Nothing raises out of here."""
        parts: dict[str, Any] = {}
        for stream, convert in (("color", lambda: rgb_from_image(synced.color)),
                                ("depth", lambda: depth_from_image(synced.depth, self.params["depth_scale"])),
                                ("info", lambda: camera_from_info(synced.info))):
            try:
                parts[stream] = convert()
            except Exception as e:  # this stream's message is the bad one
                self.get_logger().warn(f"dropping the frame: bad {stream} message: {type(e).__name__}: {e}",
                                       throttle_duration_sec=5.0)
                return
        rgb, depth, camera = parts["color"], parts["depth"], parts["info"]
        try:
            why = frame_size_mismatch(rgb.shape[:2], None if depth is None else depth.shape[:2],
                                      (int(camera.width), int(camera.height)))
            if why is not None:
                self.get_logger().warn(f"dropping the frame: {why}", throttle_duration_sec=5.0)
                return
            info = synced.info
            if not self._warned_distortion and any(abs(float(v)) > 0 for v in info.d):
                self._warned_distortion = True
                self.get_logger().warn(
                    f"camera_info has {info.distortion_model} coefficients {list(info.d)}: they are undistorted as "
                    "OpenCV's (forward) Brown-Conrady. realsense-ros labels the colour stream's inverse "
                    "Brown-Conrady as plumb_bob; see bopask_ros.node_support.conversions.camera_from_info")
            if depth is not None:
                event = self.depth_health.update(depth)
                if event is not None and event[0] == "bad":  # once per episode of bad depth
                    self.get_logger().warn(f"{event[1]}: goals that need depth will fail until it recovers")
                elif event is not None:
                    self.get_logger().info("the depth image is valid again")
            frame = Frame(rgb=rgb, depth_m=depth, camera=camera, stamp=synced.stamp_ns * 1e-9,
                          frame_id=synced.color.header.frame_id)
            self.frames.update(frame, synced.epoch)
        except Exception as e:  # any bad set is dropped, the node goes on
            self.get_logger().warn(f"dropping the frame: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

    # -- actions ---------------------------------------------------------------------------------
    def _goal_callback_for(self, name: str) -> Callable[[Any], GoalResponse]:
        iface, task = ACTIONS[name]

        def on_goal(goal_request: Any) -> GoalResponse:
            try:  # a goal's own bad fields are refused here, with the reason, before it takes a place
                self._fields_of(goal_request, task)
            except GoalFieldError as e:
                self.get_logger().warn(f"{iface} goal rejected: bad goal: {e}")
                return GoalResponse.REJECT
            return self._on_goal(goal_request)

        return on_goal

    def _fields_of(self, req: Any, task: Task | None) -> GoalFields:
        """The goal's fields checked by :func:`bopask_vlm.goal_fields.validate_goal_fields` (GoalFieldError)."""
        limit = self.params["goal_max_description_chars"]
        if task is None:
            return validate_goal_fields(req.task, [req.object_a, req.object_b], req.relation or None,
                                        req.question or None, yes_no=True, max_chars=limit)
        objects = [req.object_description]
        if task is Task.TRAJECTORY:
            objects.append(req.target_description)
        return validate_goal_fields(task, objects, None, req.question or None, max_chars=limit)

    def _on_goal(self, goal_request: Any) -> GoalResponse:
        ticket, why = self.gate.admit()  # (drops the tickets of goals that never came to exist)
        with self._tickets_lock:
            for key, (_, t) in list(self._pending.items()):
                if not self.gate.holds(t):
                    del self._pending[key]
            if ticket is not None:
                # rclpy hands the same request object to the goal handle; holding it keeps its id unique
                self._pending[id(goal_request)] = (goal_request, ticket)
        if ticket is None:
            self.get_logger().warn(f"goal rejected: {why}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, goal_handle: Any) -> None:
        """The goal exists (its response was sent): bind its ticket so it no longer expires, then run it."""
        with self._tickets_lock:
            req, ticket = self._pending.pop(id(goal_handle.request), (None, None))
            if req is goal_handle.request and ticket is not None and self.gate.bind(ticket):
                self._bound[bytes(goal_handle.goal_id.uuid)] = ticket
        # in this thread, not one executor round trip later (bopask_ros.ros.inline_goal; bench_node)
        if not execute_inline(goal_handle):
            goal_handle.execute()

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        # stop the motion only for the goal that is running; a queued goal just leaves the queue
        if self.planner is not None and self._running_goal == bytes(goal_handle.goal_id.uuid):
            try:
                self.planner.stop()
            except Exception as e:  # stopping must never take the node down
                self.get_logger().error(f"stop_execution failed: {e}")
        return CancelResponse.ACCEPT

    def _executor_for(self, name: str) -> Callable[[Any], Any]:
        iface, task = ACTIONS[name]

        def execute(goal_handle: Any) -> Any:
            return self._execute(goal_handle, iface, task)

        return execute

    def _goal_of(self, req: Any, task: Task | None) -> Goal:
        fields = self._fields_of(req, task)  # (GoalFieldError is a ValueError: "bad goal")
        if task is None:
            goal = Goal(fields.task, list(fields.objects), relation=fields.relation, question=fields.question)
        else:
            # the robot moves only when the goal asks and the node allows it (whatever the motion backend)
            execute = bool(getattr(req, "execute", False)) and bool(self.params["allow_execution"])
            goal = Goal(fields.task, list(fields.objects), question=fields.question, plan_only=not execute,
                        add_to_planning_scene=bool(getattr(req, "add_to_planning_scene", False)))
        if self.records is not None:
            goal.record = self.records.find(goal)
        return goal

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _execute(self, goal_handle: Any, iface: str, task: Task | None) -> Any:
        gid = bytes(goal_handle.goal_id.uuid)
        with self._tickets_lock:
            ticket = self._bound.pop(gid, None)
            self._active_goals += 1
        if ticket is None or not self.gate.holds(ticket):  # never bound, or expired: ask again
            ticket = self.gate.admit()[0]
            if ticket is not None:
                self.gate.bind(ticket)
        frame_id = self.params["planning_frame"]

        def finish(status: ResultStatus, reason: str, code: str | None = None) -> Any:
            msg = build_result(self.factory, iface, PipelineResult(status, reason), frame_id=frame_id,
                               stamp=self._now())
            if code is not None:
                msg.status.code = getattr(msg.status, code)
            if status == ResultStatus.CANCELED:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            log_at(self.get_logger(), LoggingSeverity.INFO, f"{iface}: {msg.status.code} {reason}", _RESULT_SITE)
            return msg

        try:
            if ticket is None:
                return finish(ResultStatus.PLAN_FAILED, "busy: another goal is executing", "REJECTED")
            if not self.gate.acquire(ticket, lambda: goal_handle.is_cancel_requested):
                return finish(ResultStatus.CANCELED, "canceled while queued")
            self._running_goal = gid
            t_start = time.monotonic()
            try:
                goal = self._goal_of(goal_handle.request, task)
            except ValueError as e:
                return finish(ResultStatus.INVALID_ANSWER, f"bad goal: {e}", "REJECTED")
            if self.records is not None and goal.record is None:
                return finish(ResultStatus.VLM_ERROR, f"the oracle has no record for {Task(goal.task).value} "
                              f"{list(goal.objects)}")
            try:
                frame = self.frames.snapshot(self._now())
            except NoFrameError as e:
                return finish(ResultStatus.LIFT_FAILED, str(e), "NO_FRAME")
            if not Task(goal.task).is_yes_no and frame.depth_m is not None:
                dead = self.depth_health.judge(frame.depth_m)  # the answer would be lifted without depth
                if dead is not None:
                    return finish(ResultStatus.LIFT_FAILED, dead)

            def feedback(stage: Stage) -> None:
                attempt = int(getattr(self.pipeline, "current_attempt", 0))
                detail = f"attempt {attempt + 1}" if attempt else ""
                goal_handle.publish_feedback(self.factory.feedback(iface, stage.value, detail, time.monotonic() - t_start,
                                                                   attempt))

            canceled = lambda: goal_handle.is_cancel_requested  # noqa: E731
            self.client.set_cancel(canceled)
            try:
                with cancel_scope(canceled):  # (the TF wait reads it)
                    result = self.pipeline.run(frame, goal, feedback=feedback, cancel=canceled)
            finally:
                self.client.set_cancel(None)
            if result.status != ResultStatus.SUCCEEDED and goal_handle.is_cancel_requested:
                # whatever a canceled goal was doing when it stopped (waiting for the VLM, planning,
                # executing), it ends CANCELED
                if result.status != ResultStatus.CANCELED:
                    result.reason = f"canceled: {result.reason}"
                result.status = ResultStatus.CANCELED
            plan = result.plan
            if result.status == ResultStatus.SUCCEEDED and plan is not None and plan.executed and plan.reason:
                result.reason = plan.reason  # what the robot did (the simulator: what physically happened)
            self._after_result(self._publish_visuals, frame, result)
            msg = build_result(self.factory, iface, result, frame_id=frame_id, stamp=frame.stamp,
                               question=goal.question or "", model=self.params["vlm_model"],
                               pre_grasp_distance=self.safety.pre_grasp_distance, camera_frame_id=frame.frame_id)
            if result.status == ResultStatus.SUCCEEDED:
                goal_handle.succeed()
            elif result.status == ResultStatus.CANCELED:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            self._after_result(log_at, self.get_logger(), LoggingSeverity.INFO,
                               f"{iface}: {result.status.value} {result.reason}", _RESULT_SITE)
            return msg
        except Exception as e:  # the node keeps serving whatever one goal does
            self.get_logger().error(f"{iface} goal failed: {type(e).__name__}: {e}")
            try:
                goal_handle.abort()
            except Exception:  # already terminal
                pass
            return build_result(self.factory, iface, PipelineResult(ResultStatus.PLAN_FAILED, f"internal error: {e}"),
                                frame_id=frame_id, stamp=self._now())
        finally:
            if self._running_goal == gid:
                self._running_goal = None
            if ticket is not None:
                self.gate.release(ticket)
            with self._tickets_lock:
                self._active_goals -= 1

    @property
    def active_goals(self) -> int:
        """Goals whose execute callback is running (waiting in the queue included)."""
        with self._tickets_lock:
            return self._active_goals

    def stop_goals(self) -> None:
        """Stop the robot's motion first (MoveIt: without waiting; the goal's thread stops the execution while
        MoveIt still runs), then goals waiting on the VLM (or asking it from now on) end with "the node is
        shutting down"."""
        if self.planner is not None and self.params["motion_backend"] == "moveit":
            try:
                self.planner.stop()
            except Exception as e:  # stopping must never keep the node from shutting down
                self.get_logger().error(f"stopping the motion failed: {e}")
        self.client.shutdown()

    def close(self) -> None:
        """Release what the node holds outside ROS (the VLM worker threads, a simulator). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop_goals()
        self._after.shutdown(wait=True)
        close = getattr(self.planner, "close", None)
        if close is not None and self.params["motion_backend"] == "sim":
            close()

    def _after_result(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the after-result thread (in order), or here once that is shut down."""
        try:
            self._after.submit(fn, *args)
        except RuntimeError:
            fn(*args)

    # -- visualisation ---------------------------------------------------------------------------
    def _publish_visuals(self, frame: Frame, result: PipelineResult) -> None:
        # built only for a subscriber (RViz, a recorder): both topics are volatile, so an unmatched reader would
        # not get them either, and drawing a full-size debug image per goal is milliseconds of CPU
        try:
            if self.params["publish_markers"] and self.marker_pub.get_subscription_count() > 0:
                self.marker_pub.publish(self._marker_array(result, frame.stamp))
            if (self.params["publish_debug_image"] and result.answer is not None
                    and self.debug_pub.get_subscription_count() > 0):
                from sensor_msgs.msg import Image

                from bopask_ros.node_support.debug_image import debug_image

                fields = array_to_image_fields(debug_image(frame.rgb, frame.camera, result), "rgb8")
                fields["data"] = array.array("B", fields["data"].tobytes())  # rclpy's fast path for uint8[]
                msg = Image(**fields)
                msg.header = self.factory.header(frame.frame_id, frame.stamp)
                self.debug_pub.publish(msg)
        except Exception as e:  # a drawing failure must not fail the goal
            self.get_logger().warn(f"visualisation failed: {type(e).__name__}: {e}")

    def _marker_array(self, result: PipelineResult, stamp: float) -> Any:
        """DELETEALL (the previous result's markers go), then this result's markers."""
        from geometry_msgs.msg import Point
        from std_msgs.msg import ColorRGBA
        from visualization_msgs.msg import Marker, MarkerArray

        out = MarkerArray()
        clear = Marker(action=Marker.DELETEALL)
        clear.header = self.factory.header(self.params["planning_frame"], stamp)
        out.markers.append(clear)
        for i, m in enumerate(result_markers(result)):
            mk = Marker(ns=m.ns, id=i, type=m.type, action=Marker.ADD)
            mk.header = self.factory.header(self.params["planning_frame"], stamp)
            mk.scale.x, mk.scale.y, mk.scale.z = m.scale
            mk.color = ColorRGBA(r=m.color[0], g=m.color[1], b=m.color[2], a=m.color[3])
            mk.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in m.points]
            mk.pose.orientation.w = 1.0
            out.markers.append(mk)
        return out


SHUTDOWN_GRACE_S = 3.0  # how long a stop waits for goals in flight to end and their results to go out


def stop_and_drain(executor: Any, stop: StopSignals, node: BopaskNode, grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """Spin until a stop signal or an outside shutdown; then end the node's goals (``node.stop_goals()``) and keep
    spinning while they send their results, for at most ``grace_s``."""
    why = spin_until_stopped(executor, stop)
    if why == "shutdown":  # the context is gone: nothing more can be sent
        return
    log = node.get_logger()
    log.info(f"stop signal: ending {node.active_goals} goal(s) in flight, then shutting down")
    node.stop_goals()  # not close(): a simulator stays up for the camera spun meanwhile
    if not drain(executor, lambda: node.active_goals > 0, grace_s):
        log.warn(f"{node.active_goals} goal(s) still running after {grace_s:.1f} s; shutting down anyway")


def main(args: list[str] | None = None) -> int:
    """Spin the node until SIGINT / SIGTERM / shutdown; 0 on a clean stop, 2 when it cannot start.

    rclpy's signal handlers are off (:mod:`bopask_ros.node_support.stop_signals`): a stop signal ends the spin, the goals
    in flight end with the reason "the node is shutting down" and their results are sent (for at most
    ``SHUTDOWN_GRACE_S``), then the node and the context shut down in order. A second Ctrl-C forces it."""
    with StopSignals() as stop:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = BopaskNode()
        except (StartupError, ParamError) as e:
            get_logger("bopask_node").fatal(f"cannot start: {e}")
            rclpy.try_shutdown()
            return 2
        rc = serve(stop, node)
    exit_unless_joined(rc, THREAD_JOIN_S)
    return rc


THREAD_JOIN_S = 1.0  # after the ordered shutdown: how long threads still running may hold the exit


def exit_unless_joined(rc: int, timeout_s: float) -> None:
    """Return once every other non-daemon thread has ended; if one is still running after ``timeout_s`` (a
    callback stuck in a driver or a motion; Python would wait for it at exit), end the process now with ``rc``."""
    end = time.monotonic() + timeout_s
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, end - time.monotonic()))
    stuck = [t.name for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if stuck:
        print(f"bopask_node: {len(stuck)} thread(s) still running after the shutdown ({', '.join(stuck[:4])}); "
              "exiting without them", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(rc)


def serve(stop: StopSignals, node: BopaskNode, others: tuple[Node, ...] = ()) -> int:
    """Spin ``node`` (and ``others``, e.g. the simulator's camera) in a MultiThreadedExecutor until a stop,
    end its goals (:func:`stop_and_drain`), then shut down in order: the executor's callbacks, the nodes, the
    context. 0."""
    # every goal holds an executor thread while it runs or waits in the queue: with fewer threads than the running
    # goal, the queued ones and the camera, cancel and goal callbacks, a full queue starves the cancels (seen: a
    # queue of 3 behind a hanging request with 4 threads answered no cancel for 30 s)
    executor = MultiThreadedExecutor(num_threads=max(4, (os.cpu_count() or 2)) + node.gate.queue_size + 1)
    for n in (node, *others):
        executor.add_node(n)
    forced = False
    try:
        stop_and_drain(executor, stop, node)
    except KeyboardInterrupt:  # the second stop signal: no more waiting
        forced = True
    finally:
        node.stop_goals()  # (again: a forced stop may have come before the drain's)
        try:
            shutdown_executor(executor, timeout_s=0.0 if forced else 2.0)
        except KeyboardInterrupt:  # a second signal while waiting for the callbacks
            executor.shutdown(timeout_sec=0)
        for n in others:
            n.destroy_node()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
