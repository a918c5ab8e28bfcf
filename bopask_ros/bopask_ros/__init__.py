"""bopask_ros: the robot side. Everything here is ROS-free except the subpackage :mod:`bopask_ros.ros`,
the only one that imports rclpy, tf2_ros, moveit_py or ROS message packages."""
