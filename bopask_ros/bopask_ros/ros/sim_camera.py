"""The simulator's camera as a RealSense driver: a small rclpy node that renders the pybullet world the motion
backend executes in and publishes what realsense-ros publishes with ``align_depth.enable`` and ``enable_sync``:
colour (rgb8), aligned depth (16UC1 millimetres, 0 = no reading) and the colour CameraInfo, all three with one
stamp and the frame id ``camera_color_optical_frame``.

It shares the world object with the backend (one process, :mod:`bopask_ros.ros.sim_bringup`), so a frame after
a grasp shows the lifted object. pybullet is not thread-safe: a capture takes the world's lock without waiting
(``SimWorld.lock``, held by the backend for a whole motion); a tick that finds it taken publishes nothing, so
no frame shows a half-stepped world and no executor thread blocks on the simulator.
"""

from __future__ import annotations

import array
import threading
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from bopask_ros.node_support.conversions import array_to_image_fields
from bopask_ros.ros.sim_backend import camera_info_fields, depth_mm


def _image(fields: dict[str, Any]) -> Any:
    from sensor_msgs.msg import Image

    fields = dict(fields)
    fields["data"] = array.array("B", fields["data"].tobytes())  # rclpy's fast path for uint8[]
    return Image(**fields)


class SimCamera(Node):
    """Publishes ``world.capture()`` on ``color_topic``, ``depth_topic``, ``info_topic`` at ``rate_hz``."""

    def __init__(self, world: Any, color_topic: str, depth_topic: str, info_topic: str, rate_hz: float = 2.0,
                 **node_kwargs: Any) -> None:
        super().__init__("bopask_sim_camera", **node_kwargs)
        from sensor_msgs.msg import CameraInfo, Image

        if not rate_hz > 0:
            raise ValueError(f"sim camera rate must be > 0 Hz, got {rate_hz}")
        self.world = world
        # realsense-ros' default image QoS (reliable, keep last); the bopask node subscribes best effort
        self.color_pub = self.create_publisher(Image, color_topic, 2)
        self.depth_pub = self.create_publisher(Image, depth_topic, 2)
        self.info_pub = self.create_publisher(CameraInfo, info_topic, 2)
        self._info = camera_info_fields(world.camera)
        self.published = 0
        self.skipped = 0  # ticks that found the world busy (a motion running)
        self._busy = threading.Lock()
        self.timer = self.create_timer(1.0 / rate_hz, self._tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"simulated camera {world.camera.width}x{world.camera.height} at {rate_hz:g} Hz on "
                               f"{color_topic}, {depth_topic}, {info_topic}")

    def _tick(self) -> None:
        try:
            self.publish_once(wait=False)
        except Exception as e:  # a failed render must not end the executor's spin
            self.get_logger().warn(f"simulated camera: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

    def publish_once(self, wait: bool = True) -> bool:
        """Capture and publish one frame; False when the world was busy and ``wait`` is false."""
        from sensor_msgs.msg import CameraInfo

        if not self.world.lock.acquire(blocking=wait):
            self.skipped += 1
            return False
        try:
            stamp = self.get_clock().now()  # the time of the state rendered
            frame = self.world.capture()
        finally:
            self.world.lock.release()
        header_stamp = stamp.to_msg()
        color = _image(array_to_image_fields(frame.rgb, "rgb8"))
        depth = _image(array_to_image_fields(depth_mm(frame.depth_m), "16UC1"))
        info = CameraInfo(**self._info)
        for msg in (color, depth, info):
            msg.header.stamp = header_stamp
            msg.header.frame_id = frame.frame_id
        self.color_pub.publish(color)
        self.depth_pub.publish(depth)
        self.info_pub.publish(info)
        self.published += 1
        return True
