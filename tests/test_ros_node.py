"""The rclpy node, end to end on a ROS machine: skipped where rclpy (or bopask_msgs built by
colcon) is absent, as here. On a robot machine, after `colcon build` and sourcing install/setup.bash:
`pytest tests/test_ros_node.py`.

It starts bopask_node against a local stand-in VLM endpoint that is unreachable, publishes a
synthetic frame, sends a grasp goal and checks the goal ends with a clear VLM_ERROR status while
the node keeps serving a second goal."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy is not available (ROS 2 not sourced)"),
    pytest.mark.skipif(importlib.util.find_spec("bopask_msgs") is None, reason="bopask_msgs is not built"),
]


def test_grasp_goal_with_vlm_down_aborts_with_reason_and_node_keeps_serving():
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from bopask_msgs.action import Grasp
    from bopask_ros.conversions import array_to_image_fields
    from bopask_ros.ros.node import BopaskNode

    rclpy.init(args=["--ros-args", "-p", "vlm_endpoint:=http://127.0.0.1:9/v1", "-p", "vlm_retries:=0",
                     "-p", "vlm_timeout_s:=1.0", "-p", "max_frame_age_s:=100.0"])
    try:
        node = BopaskNode()
        node.set_parameters([Parameter("publish_debug_image", value=False)])
        client_node = rclpy.create_node("bopask_test_client")
        ex = MultiThreadedExecutor()
        ex.add_node(node)
        ex.add_node(client_node)
        threading.Thread(target=ex.spin, daemon=True).start()

        pub_c = client_node.create_publisher(Image, node.params["color_topic"], 10)
        pub_d = client_node.create_publisher(Image, node.params["depth_topic"], 10)
        pub_i = client_node.create_publisher(CameraInfo, node.params["camera_info_topic"], 10)
        stamp = client_node.get_clock().now().to_msg()
        color = Image(**array_to_image_fields(np.zeros((48, 64, 3), np.uint8), "rgb8"))
        depth = Image(**array_to_image_fields(np.full((48, 64), 800, np.uint16), "16UC1"))
        info = CameraInfo(width=64, height=48, k=[50.0, 0, 32, 0, 50, 24, 0, 0, 1], d=[0.0] * 5,
                          distortion_model="plumb_bob")
        for m in (color, depth, info):
            m.header.stamp = stamp
            m.header.frame_id = "camera_color_optical_frame"
        for _ in range(20):
            pub_c.publish(color)
            pub_d.publish(depth)
            pub_i.publish(info)
            time.sleep(0.05)
        ac = ActionClient(client_node, Grasp, "/bopask_node/grasp")
        assert ac.wait_for_server(timeout_sec=10)
        for _ in range(2):  # the node survives the first failure and answers the second goal the same way
            goal = Grasp.Goal(object_description="the mug")
            fut = ac.send_goal_async(goal)
            while not fut.done():
                time.sleep(0.05)
            res_fut = fut.result().get_result_async()
            while not res_fut.done():
                time.sleep(0.05)
            result = res_fut.result().result
            assert result.status.code == result.status.VLM_ERROR
            assert "cannot reach" in result.status.reason
    finally:
        rclpy.shutdown()
