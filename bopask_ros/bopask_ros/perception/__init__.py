"""Perception: depth lifting, colour/depth/camera_info pairing, the latest-frame cache, the camera-to-planning-frame transform."""
