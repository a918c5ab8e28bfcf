"""bopask_ros: the robot side. Everything here but node.py and moveit_adapter.py is ROS-free."""
