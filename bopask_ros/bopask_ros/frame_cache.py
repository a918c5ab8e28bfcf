"""The latest synchronised RGB-D frame, and the age check a goal's snapshot must pass. ROS-free."""

from __future__ import annotations

import threading

from bopask_ros.pipeline import Frame


class NoFrameError(RuntimeError):
    """No frame yet, or the latest one is too old for a goal."""


class FrameCache:
    def __init__(self, max_age_s: float = 1.0) -> None:
        self.max_age_s = float(max_age_s)
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self.frames_seen = 0

    def update(self, frame: Frame) -> None:
        with self._lock:
            if self._frame is None or frame.stamp >= self._frame.stamp:
                self._frame = frame
            self.frames_seen += 1

    def snapshot(self, now: float) -> Frame:
        """The latest frame if it is at most ``max_age_s`` old at ``now`` (seconds, same clock)."""
        with self._lock:
            f = self._frame
        if f is None:
            raise NoFrameError("no synchronised colour + depth + camera_info frame received yet")
        age = now - f.stamp
        if age > self.max_age_s:
            raise NoFrameError(f"latest frame is {age:.2f} s old (max_frame_age_s {self.max_age_s})")
        return f
