"""Camera-set checks, the depth-validity judgement and the TF first wait, ROS-free (issue 21, items 6, 7, 8, 10)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bopask_ros.perception.camera_sync import CameraSync, DepthHealth, depth_valid_fraction, frame_size_mismatch
from bopask_ros.perception.tf_buffer import (
    ConnectivityError,
    ExtrapolationError,
    FrameNotFoundError,
    InvalidTransformError,
    TransformError,
    TransformWait,
    map_tf2_error,
)


def test_frame_sizes_name_the_stream_at_fault():
    assert frame_size_mismatch((240, 320), (240, 320), (320, 240)) is None
    why = frame_size_mismatch((240, 320), (240, 320), (640, 480))
    assert why.startswith("camera_info is 640x480 but the colour image is 320x240")
    why = frame_size_mismatch((240, 320), (480, 640), (320, 240))
    assert why.startswith("depth is 640x480") and "aligned_depth_to_color" in why
    assert frame_size_mismatch((240, 320), None, (320, 240)) is None


def test_unpaired_stamps_are_reported_once_per_call_with_the_spread():
    sync = CameraSync(slop_s=0.0)
    assert sync.add("color", 1_000_000_000, "c") is None and sync.take_mismatch() is None  # partners may come
    assert sync.add("info", 1_000_000_000, "i") is None and sync.take_mismatch() is None
    assert sync.add("depth", 1_030_000_000, "d") is None  # 30 ms late: never pairs with slop 0
    why = sync.take_mismatch()
    assert why is not None and "depth message stamped 1.030 s pairs with nothing" in why and "spread 30.0 ms" in why
    assert sync.take_mismatch() is None and sync.stats.unpaired == 1
    assert sync.add("depth", 1_000_000_000, "d0") is not None  # the matching one pairs


@pytest.mark.parametrize("fill,bad", [(0.0, True), (np.inf, True), (-1.0, True), (np.nan, True), (0.8, False)])
def test_dead_depth_is_judged_as_a_whole(fill, bad):
    d = np.full((120, 160), fill, np.float32)
    assert (depth_valid_fraction(d) == 0.0) == bad
    assert (DepthHealth(0.2).judge(d) is not None) == bad


def test_the_fraction_is_a_parameter_and_counts_the_central_region():
    d = np.zeros((100, 100), np.float32)
    d[25:75, 25:50] = 0.7  # half the central region (the middle 50 %) is valid, the border is not
    assert depth_valid_fraction(d) == pytest.approx(0.5)
    assert DepthHealth(0.4).judge(d) is None and "50 %" in DepthHealth(0.6).judge(d)


def test_depth_health_reports_an_episode_once():
    h = DepthHealth(0.2)
    good, dead = np.full((10, 10), 0.5), np.zeros((10, 10))
    events = [h.update(x) for x in (good, dead, dead, dead, good, good, dead)]
    assert [e[0] if e else None for e in events] == [None, "bad", None, None, "good", None, "bad"]
    assert h.episodes == 2


def test_a_goal_reuses_the_verdict_of_the_frame_the_callback_judged(monkeypatch):
    """A goal judges the very array the camera callback judged (one pass over the image, not two); any other array,
    equal or not, is judged afresh."""
    import bopask_ros.perception.camera_sync as cs

    passes = []
    real = cs.depth_valid_fraction
    monkeypatch.setattr(cs, "depth_valid_fraction", lambda d, roi: passes.append(1) or real(d, roi))
    h = DepthHealth(0.2)
    good = np.full((10, 10), 0.5)
    assert h.update(good) is None and h.judge(good) is None and len(passes) == 1
    dead = np.zeros((10, 10))
    assert h.judge(dead) is not None and len(passes) == 2
    assert h.judge(good.copy()) is None and len(passes) == 3


# -- the TF wait -----------------------------------------------------------------------------------------
class LateTF:
    """Stands in for a tf2 buffer whose camera transform arrives ``after_s`` after start (a /tf_static published by
    another process after the node started): a lookup raises LookupException-like errors until then, each try
    waiting up to the given time as tf2's lookup_transform(timeout=...) does."""

    def __init__(self, after_s: float) -> None:
        self.ready_at = time.monotonic() + after_s
        self.tries = 0

    def __call__(self, wait_s: float):
        self.tries += 1
        end = time.monotonic() + wait_s
        while time.monotonic() < end and time.monotonic() < self.ready_at:
            time.sleep(0.005)
        if time.monotonic() < self.ready_at:
            raise FrameNotFoundError("frame camera_color_optical_frame does not exist")
        return "T"


def test_the_first_lookup_waits_longer_then_the_normal_timeout_holds():
    w = TransformWait(timeout_s=0.1, first_timeout_s=2.0, slice_s=0.05)
    t0 = time.monotonic()
    assert w.run(LateTF(0.4)) == "T" and 0.35 < time.monotonic() - t0 < 1.5
    assert w.ready
    t0 = time.monotonic()
    with pytest.raises(FrameNotFoundError, match=r"waited 0\.1"):
        w.run(LateTF(5.0))
    assert time.monotonic() - t0 < 1.0  # tf_timeout_s 0.1, not the first 2.0 s


def test_a_tf_that_never_comes_says_so_after_the_first_wait():
    w = TransformWait(timeout_s=0.05, first_timeout_s=0.3, slice_s=0.05)
    with pytest.raises(FrameNotFoundError, match="no transform has come since the node started"):
        w.run(LateTF(10.0))


def test_a_cancel_ends_the_tf_wait_within_a_slice():
    w = TransformWait(timeout_s=5.0, first_timeout_s=5.0, slice_s=0.05)
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    t0 = time.monotonic()
    with pytest.raises(TransformError, match="canceled while waiting"):
        w.run(LateTF(10.0), flag.is_set)
    assert time.monotonic() - t0 < 0.2 + 0.5  # (5 s without the cancel; margin for a loaded machine)


def test_malformed_input_is_not_waited_for():
    def bad(wait_s):
        raise InvalidTransformError("frame id is empty")

    t0 = time.monotonic()
    with pytest.raises(InvalidTransformError):
        TransformWait(1.0, 5.0).run(bad)
    assert time.monotonic() - t0 < 0.05


def test_tf2_exceptions_map_to_the_core_errors():
    import types

    tf2 = types.ModuleType("tf2_ros")  # stands in for tf2_ros' exception hierarchy (tf2_py), not installable here

    class TransformException(Exception):
        pass

    for name in ("LookupException", "ConnectivityException", "ExtrapolationException", "InvalidArgumentException"):
        setattr(tf2, name, type(name, (TransformException,), {}))
    tf2.TransformException = TransformException
    e = map_tf2_error(tf2.ConnectivityException("world and map are not connected"), tf2)
    assert type(e) is ConnectivityError and "not connected" in str(e)
    assert type(map_tf2_error(tf2.ExtrapolationException("future"), tf2)) is ExtrapolationError
    assert type(map_tf2_error(tf2.LookupException("x"), tf2)) is FrameNotFoundError
    assert type(map_tf2_error(tf2.InvalidArgumentException("x"), tf2)) is InvalidTransformError
    assert type(map_tf2_error(TransformException("x"), tf2)) is TransformError
    assert map_tf2_error(RuntimeError("x"), tf2) is None
