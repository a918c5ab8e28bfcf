"""What the ROS node needs, without ROS: parameters, message conversions, the goal gate, RViz markers, stop signals, message-type names."""
