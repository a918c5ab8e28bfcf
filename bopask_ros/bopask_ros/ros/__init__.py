"""The only part of bopask_ros that talks to ROS: every module here may import rclpy, tf2_ros,
moveit_py or ROS message packages; nothing outside this subpackage imports from it.

- :mod:`bopask_ros.ros.node`: the rclpy node (action servers, camera subscriptions, markers).
- :mod:`bopask_ros.ros.moveit_adapter`: MoveIt 2 (moveit_py) behind the pipeline's Planner protocol.
"""
