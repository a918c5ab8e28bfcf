"""TransformBuffer: tf2 semantics (static/dynamic, interpolation, chains, latest time, errors)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from bopask_ros.perception.tf_buffer import (
    ConnectivityError,
    ExtrapolationError,
    FrameNotFoundError,
    InvalidTransformError,
    TransformBuffer,
    TransformError,
)
from bopask_vlm.geometry import invert_transform, make_transform, rotation_angle_deg, transform_points

finite = st.floats(-5.0, 5.0, allow_nan=False)
quats = st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)
poses = st.builds(lambda q, x, y, z: make_transform(q, (x, y, z)), quats, finite, finite, finite)


def test_static_chain_and_inverse():
    buf = TransformBuffer()
    T_base_cam_mount = make_transform(Rotation.from_euler("z", 0.3).as_matrix(), (0.5, 0.0, 0.4))
    T_mount_optical = make_transform(Rotation.from_euler("xyz", [-np.pi / 2, 0, -np.pi / 2]).as_matrix(), (0, 0, 0.01))
    buf.set_transform(T_base_cam_mount, "base_link", "camera_link", 0.0, static=True)
    buf.set_transform(T_mount_optical, "camera_link", "/camera_color_optical_frame", 0.0, static=True)
    T = buf.lookup_transform("base_link", "camera_color_optical_frame", 123.4)
    np.testing.assert_allclose(T, T_base_cam_mount @ T_mount_optical, atol=1e-12)
    np.testing.assert_allclose(buf.lookup_transform("camera_color_optical_frame", "base_link"),
                               invert_transform(T), atol=1e-12)
    assert buf.lookup_transform("base_link", "base_link") .tolist() == np.eye(4).tolist()
    assert buf.parent_of("camera_color_optical_frame") == "camera_link"


def test_dynamic_interpolation_and_extrapolation():
    buf = TransformBuffer()
    T0 = make_transform(Rotation.from_euler("z", 0.0).as_matrix(), (0.0, 0.0, 0.0))
    T1 = make_transform(Rotation.from_euler("z", 1.0).as_matrix(), (1.0, 2.0, 0.0))
    buf.set_transform(T0, "odom", "base_link", 10.0)
    buf.set_transform(T1, "odom", "base_link", 12.0)
    Tm = buf.lookup_transform("odom", "base_link", 11.5)
    np.testing.assert_allclose(Tm[:3, 3], [0.75, 1.5, 0.0], atol=1e-12)
    assert rotation_angle_deg(Tm, Rotation.from_euler("z", 0.75).as_matrix()) < 1e-9
    np.testing.assert_allclose(buf.lookup_transform("odom", "base_link", 12.0), T1, atol=1e-12)
    with pytest.raises(ExtrapolationError, match="after the newest"):
        buf.lookup_transform("odom", "base_link", 12.5)
    with pytest.raises(ExtrapolationError, match="before the oldest"):
        buf.lookup_transform("odom", "base_link", 9.0)
    # latest (None or 0) = newest stamp of the chain
    np.testing.assert_allclose(buf.lookup_transform("odom", "base_link", None), T1, atol=1e-12)
    np.testing.assert_allclose(buf.lookup_transform("odom", "base_link", 0.0), T1, atol=1e-12)
    assert not buf.can_transform("odom", "base_link", 13.0)
    assert buf.can_transform("odom", "base_link", 11.0)


def test_latest_common_time_over_a_mixed_chain():
    """map->odom at 5..8 s, odom->base at 5..10 s, base->camera static: latest common time is 8 s."""
    buf = TransformBuffer()
    for t in (5.0, 6.0, 7.0, 8.0):
        buf.set_transform(make_transform(None, (t, 0, 0)), "map", "odom", t)
    for t in (5.0, 7.5, 10.0):
        buf.set_transform(make_transform(None, (0, t, 0)), "odom", "base_link", t)
    buf.set_transform(make_transform(None, (0, 0, 1)), "base_link", "camera", 0.0, static=True)
    assert buf.latest_common_time("map", "camera") == 8.0
    T = buf.lookup_transform("map", "camera")
    np.testing.assert_allclose(T[:3, 3], [8.0, 8.0, 1.0], atol=1e-12)
    with pytest.raises(ExtrapolationError):
        buf.lookup_transform("map", "camera", 9.0)  # odom->base has it, map->odom does not


def test_single_sample_link_only_answers_at_its_stamp():
    buf = TransformBuffer()
    buf.set_transform(make_transform(None, (1, 0, 0)), "a", "b", 3.0)
    assert buf.can_transform("a", "b", 3.0) and buf.can_transform("a", "b", None)
    with pytest.raises(ExtrapolationError):
        buf.lookup_transform("a", "b", 3.1)


def test_errors_are_typed():
    buf = TransformBuffer()
    buf.set_transform(make_transform(None, (1, 0, 0)), "a", "b", 0.0, static=True)
    buf.set_transform(make_transform(None, (1, 0, 0)), "x", "y", 0.0, static=True)
    with pytest.raises(FrameNotFoundError, match="'nope' does not exist"):
        buf.lookup_transform("a", "nope")
    with pytest.raises(LookupError):
        buf.lookup_transform("nope", "a")
    with pytest.raises(ConnectivityError, match="different trees"):
        buf.lookup_transform("a", "y")
    for bad in (np.eye(3), np.full((4, 4), np.nan), np.diag([1.0, 1.0, -1.0, 1.0]), 2 * np.eye(4)):
        with pytest.raises(InvalidTransformError):
            buf.set_transform(bad, "a", "c", 0.0)
    with pytest.raises(InvalidTransformError, match="own parent"):
        buf.set_transform(np.eye(4), "a", "/a", 0.0)
    with pytest.raises(InvalidTransformError, match="loop"):
        buf.set_transform(np.eye(4), "b", "a", 0.0)
    with pytest.raises(InvalidTransformError, match="empty"):
        buf.set_transform(np.eye(4), "", "q", 0.0)
    assert issubclass(ExtrapolationError, TransformError) and issubclass(FrameNotFoundError, TransformError)


def test_cache_time_drops_old_samples():
    buf = TransformBuffer(cache_time_s=2.0)
    for t in np.arange(0.0, 10.01, 0.5):
        buf.set_transform(make_transform(None, (t, 0, 0)), "odom", "base", float(t))
    assert buf.can_transform("odom", "base", 8.0)
    assert not buf.can_transform("odom", "base", 7.5)
    # out-of-order insertion keeps the samples sorted
    buf.set_transform(make_transform(None, (9.25, 0, 0)), "odom", "base", 9.25)
    np.testing.assert_allclose(buf.lookup_transform("odom", "base", 9.125)[0, 3], 9.125)


def test_tf_messages_as_recorded():
    """TFMessage / TransformStamped as rosbags decodes them (attribute access) and as dicts."""
    from types import SimpleNamespace as NS

    q = Rotation.from_euler("z", 0.5).as_quat()
    msg = NS(header=NS(stamp=NS(sec=100, nanosec=500_000_000), frame_id="base_link"),
             child_frame_id="camera_link",
             transform=NS(translation=NS(x=0.1, y=0.2, z=0.3), rotation=NS(x=q[0], y=q[1], z=q[2], w=q[3])))
    buf = TransformBuffer()
    assert buf.add_tf_message(NS(transforms=[msg]), static=True) == 1
    T = buf.lookup_transform("base_link", "camera_link", 100.5)
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.2, 0.3])
    d = {"header": {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": "odom"}, "child_frame_id": "base_link",
         "transform": {"translation": {"x": 1.0, "y": 0.0, "z": 0.0}, "rotation": {"x": 0, "y": 0, "z": 0, "w": 1}}}
    buf.set_transform_msg(d)
    assert buf.lookup_transform("odom", "camera_link", 1.0)[0, 3] == pytest.approx(1.1)
    with pytest.raises(InvalidTransformError):
        buf.set_transform_msg({"header": {}})


@settings(max_examples=40, deadline=None)
@given(poses, poses, poses, st.floats(0.0, 1.0))
def test_property_chain_composition(Tab, Tbc, Tbd, s):
    """lookup(a, c) = T_ab T_bc; lookup between siblings c and d goes through b; lookup(c, a) is the inverse."""
    buf = TransformBuffer()
    buf.set_transform(Tab, "a", "b", 0.0, static=True)
    buf.set_transform(Tbc, "b", "c", 1.0)
    buf.set_transform(Tbc, "b", "c", 2.0)
    buf.set_transform(Tbd, "b", "d", 0.0, static=True)
    t = 1.0 + s
    np.testing.assert_allclose(buf.lookup_transform("a", "c", t), Tab @ Tbc, atol=1e-9)
    np.testing.assert_allclose(buf.lookup_transform("c", "d", t), invert_transform(Tbc) @ Tbd, atol=1e-9)
    np.testing.assert_allclose(buf.lookup_transform("c", "a", t) @ buf.lookup_transform("a", "c", t), np.eye(4),
                               atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(poses, poses, st.floats(0.0, 1.0))
def test_property_interpolation(T0, T1, a):
    """Interpolated poses: translation linear, rotation on the geodesic (angle splits as a : 1 - a)."""
    buf = TransformBuffer()
    buf.set_transform(T0, "w", "x", 1.0)  # not at 0: stamp 0 means "latest", as in tf2
    buf.set_transform(T1, "w", "x", 2.0)
    T = buf.lookup_transform("w", "x", 1.0 + a)
    np.testing.assert_allclose(T[:3, 3], (1 - a) * T0[:3, 3] + a * T1[:3, 3], atol=1e-9)
    total = rotation_angle_deg(T0, T1)
    assert rotation_angle_deg(T0, T) == pytest.approx(a * total, abs=1e-4)
    assert rotation_angle_deg(T, T1) == pytest.approx((1 - a) * total, abs=1e-4)
    p = np.array([[0.3, -0.2, 0.1]])
    assert np.all(np.isfinite(transform_points(T, p)))
