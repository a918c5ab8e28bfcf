"""Recorded data: rosbag2 writer and reader, replay of a bag through the task pipeline, the demo."""
