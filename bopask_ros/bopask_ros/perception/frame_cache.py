"""The latest synchronised RGB-D frame, and the age check a goal's snapshot must pass. ROS-free.

Time can go backwards: a bag replayed in a loop, a simulator or a clock reset. Frames carry the time
``epoch`` of :class:`bopask_ros.perception.camera_sync.CameraSync` (it starts a new one whenever the stamps of
its sets go backwards): within an epoch a frame older than the cached one is a late arrival and is
ignored; a frame of a newer epoch always replaces the cached one, however old its stamp. A goal's
snapshot refuses a frame stamped ahead of the goal's clock by more than ``max_future_s`` (the clock
went back, e.g. ``/clock`` of a looping bag, and no frame of the new pass has come yet) as well as a
frame older than ``max_age_s``, so no goal runs on the last frame of a previous pass.
"""

from __future__ import annotations

import threading

from bopask_ros.pipeline import Frame


class NoFrameError(RuntimeError):
    """No frame yet, or the latest one is too old (or too far ahead of the clock) for a goal."""


class FrameCache:
    def __init__(self, max_age_s: float = 1.0, max_future_s: float = 0.5) -> None:
        self.max_age_s = float(max_age_s)
        self.max_future_s = float(max_future_s)
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._epoch = 0
        self.frames_seen = 0
        self.resets = 0

    def update(self, frame: Frame, epoch: int = 0) -> bool:
        """Offer a frame of time ``epoch``; True when it became the cached frame."""
        with self._lock:
            self.frames_seen += 1
            newer_epoch = epoch > self._epoch
            if self._frame is None or newer_epoch or (epoch == self._epoch and frame.stamp >= self._frame.stamp):
                if newer_epoch and self._frame is not None:
                    self.resets += 1
                self._frame, self._epoch = frame, max(epoch, self._epoch)
                return True
            return False

    def clear(self) -> None:
        """Forget the cached frame (e.g. when the node's clock jumps back)."""
        with self._lock:
            self._frame = None

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frame

    def snapshot(self, now: float) -> Frame:
        """The latest frame if it is at most ``max_age_s`` old and at most ``max_future_s`` ahead at ``now``
        (seconds, the clock of the frame stamps)."""
        with self._lock:
            f = self._frame
        if f is None:
            raise NoFrameError("no synchronised colour + depth + camera_info frame received yet")
        age = now - f.stamp
        if age > self.max_age_s:
            raise NoFrameError(f"latest frame is {age:.2f} s old (max_frame_age_s {self.max_age_s})")
        if -age > self.max_future_s:
            raise NoFrameError(f"latest frame is stamped {-age:.2f} s ahead of the clock (the clock went back, "
                               "e.g. a bag loop; waiting for a frame of the new pass)")
        return f
