"""bopask_node: the ROS 2 node. Converts messages, wires callbacks, and runs the ROS-free
:class:`bopask_ros.pipeline.TaskPipeline` behind one action server per task.

- RealSense colour, aligned depth and camera_info, time-synchronised (message_filters
  ApproximateTimeSynchronizer), keep the latest frame (:class:`FrameCache`).
- Actions ``~/grasp``, ``~/pose``, ``~/trajectory``, ``~/rearrangement``, ``~/yes_no`` (bopask_msgs).
  One goal runs at a time (:class:`GoalGate`: reject or queue); feedback at each stage; cancel is
  checked between stages and stops a running MoveIt execution.
- tf2 for the camera pose at the image stamp; MoveIt 2 through moveit_py (optional: without a
  MoveIt config the node answers and lifts, and plans nothing).
- Markers of lifted points / gripper / waypoints and the 2D answer on a debug image.
Runs in a MultiThreadedExecutor with reentrant callback groups (ros2/examples action servers).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from bopask_ros.conversions import (
    MessageFactory,
    array_to_image_fields,
    build_result,
    camera_from_info,
    depth_from_image,
    rgb_from_image,
    stamp_to_sec,
)
from bopask_ros.frame_cache import FrameCache, NoFrameError
from bopask_ros.goal_gate import GoalGate
from bopask_ros.markers import result_markers
from bopask_ros.params import PARAMS, NodeParams
from bopask_ros.pipeline import Frame, Goal, PipelineResult, ResultStatus, Stage, TaskPipeline
from bopask_ros.tf_buffer import ExtrapolationError, FrameNotFoundError, TransformError
from bopask_vlm.answers import Task
from bopask_vlm.geometry import make_transform

ACTIONS = {  # action name -> (interface class name, task)
    "grasp": ("Grasp", Task.GRASP),
    "pose": ("Pose", Task.POSE),
    "trajectory": ("Trajectory", Task.TRAJECTORY),
    "rearrangement": ("Rearrangement", Task.REARRANGEMENT),
    "yes_no": ("YesNoQuestion", None),
}


def _lookup_class(type_name: str) -> Any:
    """ROS type name ("geometry_msgs/msg/Pose", "bopask_msgs/action/Grasp_Result") -> rclpy class."""
    import importlib

    pkg, kind, name = type_name.split("/")
    if kind == "action" and "_" in name:
        base, part = name.rsplit("_", 1)
        return getattr(getattr(importlib.import_module(f"{pkg}.action"), base), part)
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class Tf2Adapter:
    """tf2_ros.Buffer with the ROS-free TransformBuffer's lookup signature and errors."""

    def __init__(self, node: Node, timeout_s: float) -> None:
        import tf2_ros

        self._tf2 = tf2_ros
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)
        self.timeout_s = timeout_s

    def lookup_transform(self, target: str, source: str, stamp: float | None) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        when = Time() if not stamp else Time(nanoseconds=int(stamp * 1e9))
        try:
            t = self.buffer.lookup_transform(target, source, when, timeout=Duration(seconds=self.timeout_s))
        except self._tf2.ExtrapolationException as e:
            raise ExtrapolationError(str(e)) from e
        except self._tf2.LookupException as e:
            raise FrameNotFoundError(str(e)) from e
        except self._tf2.TransformException as e:
            raise TransformError(str(e)) from e
        r, p = t.transform.rotation, t.transform.translation
        return make_transform([r.x, r.y, r.z, r.w], [p.x, p.y, p.z])


class BopaskNode(Node):
    def __init__(self) -> None:
        # the MoveIt config arrives as parameter overrides from the launch file (moveit_py reads it)
        super().__init__("bopask_node", automatically_declare_parameters_from_overrides=True)
        for spec in PARAMS:
            if not self.has_parameter(spec.name):
                self.declare_parameter(spec.name, spec.default, ParameterDescriptor(description=spec.description))
        self.params = NodeParams.from_mapping({p.name: self.get_parameter(p.name).value for p in PARAMS})
        self.safety = self.params.safety()
        self.factory = MessageFactory(_lookup_class)
        self.cb = ReentrantCallbackGroup()
        self.frames = FrameCache(self.params["max_frame_age_s"])
        self.gate = GoalGate(self.params["busy_policy"], self.params["queue_size"])
        self._tickets: dict[int, int] = {}
        self._tickets_lock = threading.Lock()
        self.tf = Tf2Adapter(self, self.params["tf_timeout_s"])
        self.planner = self._make_planner()

        from bopask_vlm.clients import make_client

        self.client = make_client(self.params.client_config())
        self.pipeline = TaskPipeline(self.client, self.tf, base_frame=self.params["planning_frame"],
                                     safety=self.safety, planner=self.planner,
                                     waypoint_height=self.params["waypoint_height"],
                                     table_height=self.safety.table_height)
        self._subscribe()
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray

        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.debug_pub = self.create_publisher(Image, "~/debug_image", 2)
        self.servers = [
            ActionServer(self, _lookup_class(f"bopask_msgs/action/{iface}"), f"~/{name}",
                         execute_callback=self._executor_for(name), goal_callback=self._on_goal,
                         cancel_callback=self._on_cancel, callback_group=self.cb)
            for name, (iface, _) in ACTIONS.items()
        ]
        self.get_logger().info(f"bopask_node ready: VLM {self.params['vlm_endpoint']} ({self.params['vlm_model']}), "
                               f"planning frame {self.params['planning_frame']}, "
                               f"execution {'allowed' if self.params['allow_execution'] else 'disabled'}")

    # -- set-up ----------------------------------------------------------------------------------
    def _make_planner(self) -> Any:
        if not self.has_parameter("robot_description_semantic"):
            # moveit_py needs the MoveIt config passed as parameters (tabletop.launch.py does)
            self.get_logger().warn("no MoveIt config given: goals are answered and lifted, not planned")
            return None
        from bopask_ros.ros.moveit_adapter import MoveItPlanner

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
        return MoveItPlanner("bopask_moveit_py", config, self.params, self.safety)

    def _subscribe(self) -> None:
        import message_filters
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        def sub(msg_type: Any, topic: str) -> Any:
            # best effort matches both reliable and best-effort camera publishers; older message_filters
            # releases take no callback_group keyword
            try:
                return message_filters.Subscriber(self, msg_type, topic, qos_profile_sensor_data, callback_group=self.cb)
            except TypeError:
                return message_filters.Subscriber(self, msg_type, topic, qos_profile_sensor_data)

        subs = [sub(Image, self.params["color_topic"]), sub(Image, self.params["depth_topic"]),
                sub(CameraInfo, self.params["camera_info_topic"])]
        self.sync = message_filters.ApproximateTimeSynchronizer(subs, queue_size=10, slop=self.params["sync_slop_s"])
        self.sync.registerCallback(self._on_frame)

    def _on_frame(self, color: Any, depth: Any, info: Any) -> None:
        try:
            frame = Frame(rgb=rgb_from_image(color), depth_m=depth_from_image(depth, self.params["depth_scale"]),
                          camera=camera_from_info(info), stamp=stamp_to_sec(color.header.stamp),
                          frame_id=color.header.frame_id)
        except ValueError as e:
            self.get_logger().warn(f"dropping frame: {e}", throttle_duration_sec=5.0)
            return
        self.frames.update(frame)

    # -- actions ---------------------------------------------------------------------------------
    def _on_goal(self, goal_request: Any) -> GoalResponse:
        ticket, why = self.gate.admit()
        if ticket is None:
            self.get_logger().warn(f"goal rejected: {why}")
            return GoalResponse.REJECT
        # rclpy hands the same request object to the goal handle: key the ticket by it
        with self._tickets_lock:
            self._tickets[id(goal_request)] = ticket
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        if self.planner is not None and self.gate.busy:
            try:
                self.planner.stop()
            except Exception as e:  # stopping must never take the node down
                self.get_logger().error(f"stop_execution failed: {e}")
        return CancelResponse.ACCEPT

    def _executor_for(self, name: str):
        iface, task = ACTIONS[name]

        def execute(goal_handle: Any) -> Any:
            return self._execute(goal_handle, iface, task)

        return execute

    def _goal_of(self, req: Any, task: Task | None) -> Goal:
        if task is None:
            task = Task(req.task)
            objects = [req.object_a, req.object_b]
            return Goal(task, objects, relation=req.relation or None, question=req.question or None)
        objects = [req.object_description]
        if task is Task.TRAJECTORY:
            objects.append(req.target_description)
        execute = bool(getattr(req, "execute", False))
        return Goal(task, objects, question=req.question or None, plan_only=not execute)

    def _execute(self, goal_handle: Any, iface: str, task: Task | None) -> Any:
        with self._tickets_lock:
            ticket = self._tickets.pop(id(goal_handle.request), None)
        if ticket is None:
            ticket = self.gate.admit()[0]
        t_start = time.monotonic()
        stamp_now = self.get_clock().now().nanoseconds * 1e-9
        frame_id = self.params["planning_frame"]
        result: PipelineResult
        try:
            if ticket is None:
                goal_handle.abort()
                res = PipelineResult(ResultStatus.PLAN_FAILED, "busy: another goal is executing")
                msg = build_result(self.factory, iface, res, frame_id=frame_id, stamp=stamp_now)
                msg.status.code = msg.status.REJECTED
                return msg
            if not self.gate.acquire(ticket, lambda: goal_handle.is_cancel_requested):
                goal_handle.canceled()
                return build_result(self.factory, iface, PipelineResult(ResultStatus.CANCELED, "canceled while queued"),
                                    frame_id=frame_id, stamp=stamp_now)
            try:
                goal = self._goal_of(goal_handle.request, task)
                frame = self.frames.snapshot(stamp_now)
            except NoFrameError as e:
                goal_handle.abort()
                res = PipelineResult(ResultStatus.LIFT_FAILED, str(e))
                msg = build_result(self.factory, iface, res, frame_id=frame_id, stamp=stamp_now)
                msg.status.code = msg.status.NO_FRAME
                return msg
            except ValueError as e:
                goal_handle.abort()
                msg = build_result(self.factory, iface, PipelineResult(ResultStatus.INVALID_ANSWER, f"bad goal: {e}"),
                                   frame_id=frame_id, stamp=stamp_now)
                msg.status.code = msg.status.REJECTED
                return msg

            def feedback(stage: Stage) -> None:
                goal_handle.publish_feedback(self.factory.feedback(iface, stage.value, "", time.monotonic() - t_start))

            result = self.pipeline.run(frame, goal, feedback=feedback, cancel=lambda: goal_handle.is_cancel_requested)
            self._publish_visuals(frame, result)
            msg = build_result(self.factory, iface, result, frame_id=frame_id, stamp=frame.stamp,
                               question=goal.question or "", model=self.params["vlm_model"],
                               pre_grasp_distance=self.safety.pre_grasp_distance)
            if result.status == ResultStatus.SUCCEEDED:
                goal_handle.succeed()
            elif result.status == ResultStatus.CANCELED:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            self.get_logger().info(f"{iface}: {result.status.value} {result.reason}")
            return msg
        except Exception as e:  # the node keeps serving whatever one goal does
            self.get_logger().error(f"{iface} goal failed: {type(e).__name__}: {e}")
            goal_handle.abort()
            return build_result(self.factory, iface, PipelineResult(ResultStatus.PLAN_FAILED, f"internal error: {e}"),
                                frame_id=frame_id, stamp=stamp_now)
        finally:
            if ticket is not None:
                self.gate.release(ticket)

    def _publish_visuals(self, frame: Frame, result: PipelineResult) -> None:
        try:
            if self.params["publish_markers"]:
                self.marker_pub.publish(self._marker_array(result, frame.stamp))
            if self.params["publish_debug_image"] and result.answer is not None:
                from sensor_msgs.msg import Image

                from bopask_vlm.viz import draw_answer

                img = draw_answer(frame.rgb, result.answer)
                msg = Image(**array_to_image_fields(img, "rgb8"))
                msg.header = self.factory.header(frame.frame_id, frame.stamp)
                self.debug_pub.publish(msg)
        except Exception as e:
            self.get_logger().warn(f"visualisation failed: {e}")

    def _marker_array(self, result: PipelineResult, stamp: float) -> Any:
        from geometry_msgs.msg import Point
        from std_msgs.msg import ColorRGBA
        from visualization_msgs.msg import Marker, MarkerArray

        out = MarkerArray()
        for i, m in enumerate(result_markers(result)):
            mk = Marker(ns=m.ns, id=i, type=m.type, action=Marker.ADD)
            mk.header = self.factory.header(self.params["planning_frame"], stamp)
            mk.scale.x, mk.scale.y, mk.scale.z = m.scale
            mk.color = ColorRGBA(r=m.color[0], g=m.color[1], b=m.color[2], a=m.color[3])
            mk.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in m.points]
            mk.pose.orientation.w = 1.0
            out.markers.append(mk)
        return out


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = BopaskNode()
    executor = MultiThreadedExecutor(num_threads=max(4, (os.cpu_count() or 2)))
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
