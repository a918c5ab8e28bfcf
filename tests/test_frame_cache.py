"""The frame cache: age checks, late frames, and time going backwards (bag loops, clock resets)."""

from __future__ import annotations

import pytest

from bopask_ros.perception.frame_cache import FrameCache, NoFrameError
from bopask_ros.pipeline import Frame
from bopask_vlm.geometry import CameraModel

CAM = CameraModel(K=[[500, 0, 2], [0, 500, 2], [0, 0, 1]], width=4, height=4)


def frame(stamp: float) -> Frame:
    return Frame(rgb=None, depth_m=None, camera=CAM, stamp=stamp)


def test_no_frame_yet_stale_and_late_frames():
    c = FrameCache(max_age_s=0.5)
    with pytest.raises(NoFrameError, match="no synchronised"):
        c.snapshot(10.0)
    assert c.update(frame(10.0))
    assert not c.update(frame(9.0))  # a late frame of the same epoch is ignored
    assert c.snapshot(10.2).stamp == 10.0
    with pytest.raises(NoFrameError, match="old"):
        c.snapshot(11.0)


def test_bag_loop_a_frame_of_the_new_epoch_replaces_the_last_frame_of_the_first_pass():
    c = FrameCache(max_age_s=1.0, max_future_s=0.5)
    for t in (100.0, 101.0, 102.0):
        c.update(frame(t), epoch=0)
    # the bag loops: /clock goes back to 100.0 before the new pass's first frame arrives
    with pytest.raises(NoFrameError, match="ahead of the clock"):
        c.snapshot(100.0)
    assert c.update(frame(100.0), epoch=1)  # older stamp, newer epoch: taken
    assert c.snapshot(100.05).stamp == 100.0 and c.resets == 1
    assert not c.update(frame(102.0), epoch=0)  # a straggler of the old pass cannot come back


def test_clear_forgets_the_frame():
    c = FrameCache()
    c.update(frame(1.0))
    c.clear()
    assert c.latest() is None
    with pytest.raises(NoFrameError):
        c.snapshot(1.0)
