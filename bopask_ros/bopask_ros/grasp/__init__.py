"""Grasps: a 6-DoF gripper pose from a 5-keypoint answer and depth."""
