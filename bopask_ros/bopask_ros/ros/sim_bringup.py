"""bopask_node against the simulator, in one process (ROS composition style): :class:`BopaskNode` with
``motion_backend: sim`` and the simulator's camera (:class:`bopask_ros.ros.sim_camera.SimCamera`) on the
node's own camera topics, both spun by one MultiThreadedExecutor and sharing one pybullet world, so the camera
shows what the robot does.

``python -m bopask_ros.ros.sim_bringup --ros-args --params-file config/bopask_node.yaml -p tf_source:=calibration
-p vlm_client:=oracle -p oracle_records:=records.jsonl -p allow_execution:=true -p sim.scene_seed:=0``

``motion_backend`` is set to ``sim`` here whatever the parameters say (the parameters of the node and of the
``sim.*`` scene are bopask_node's, see :mod:`bopask_ros.node_support.params`).
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.logging import get_logger
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from bopask_ros.node_support.params import ParamError
from bopask_ros.node_support.stop_signals import StopSignals
from bopask_ros.ros.node import THREAD_JOIN_S, BopaskNode, StartupError, exit_unless_joined, serve
from bopask_ros.ros.sim_camera import SimCamera


def main(args: list[str] | None = None) -> int:
    """Spin the node and the simulated camera until SIGINT / SIGTERM / shutdown; 0 on a clean stop, 2 when it
    cannot start (stopping as :func:`bopask_ros.ros.node.main` does)."""
    with StopSignals() as stop:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = camera = None
        try:
            node = BopaskNode(parameter_overrides=[Parameter("motion_backend", value="sim")])
            p = node.params
            camera = SimCamera(node.planner.world, p["color_topic"], p["depth_topic"], p["camera_info_topic"],
                               p["sim.camera_rate_hz"])
        except (StartupError, ParamError, ValueError) as e:
            get_logger("bopask_sim_bringup").fatal(f"cannot start: {e}")
            if node is not None:
                node.close()
                node.destroy_node()
            rclpy.try_shutdown()
            return 2
        rc = serve(stop, node, (camera,))
    exit_unless_joined(rc, THREAD_JOIN_S)  # a simulator step or a callback stuck does not hold the exit
    return rc


if __name__ == "__main__":
    sys.exit(main())
