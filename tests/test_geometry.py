"""bopask_vlm.geometry: camera models (CameraInfo, BOP), depth encodings, projection, SE(3), planes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from bopask_vlm.geometry import (
    CameraModel,
    GeometryError,
    Plane,
    PlaneFitError,
    backproject_depth,
    depth_to_metres,
    fit_plane_ransac,
    invert_transform,
    make_transform,
    matrix_from_quat,
    quat_from_matrix,
    quat_multiply,
    rotation_angle_deg,
    slerp_transform,
    transform_points,
    world_from_plane,
    xyz_quat_from_transform,
)

finite = st.floats(-10.0, 10.0, allow_nan=False)
quats = st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)
poses = st.builds(lambda q, x, y, z: make_transform(q, (x, y, z)), quats, finite, finite, finite)
points = st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=8).map(np.array)

# A RealSense D435 colour CameraInfo as published by realsense2_camera (1280x720).
D435_INFO = {
    "width": 1280, "height": 720, "distortion_model": "plumb_bob", "d": [0.0, 0.0, 0.0, 0.0, 0.0],
    "k": [909.1, 0.0, 641.7, 0.0, 908.6, 358.2, 0.0, 0.0, 1.0],
}


def test_camera_from_camera_info_dict_and_object():
    cam = CameraModel.from_camera_info(D435_INFO)
    assert (cam.width, cam.height, cam.fx, cam.cy) == (1280, 720, 909.1, 358.2)
    assert not cam.is_distorted

    class Msg:  # attribute access like a ROS message (uppercase K/D of ROS 1 also accepted)
        K = D435_INFO["k"]
        D = [0.1, -0.2, 0.0, 0.0, 0.05]
        width, height, distortion_model = 1280, 720, "plumb_bob"

    cam2 = CameraModel.from_camera_info(Msg())
    assert cam2.is_distorted and cam2.D.shape == (5,)
    info = cam.to_camera_info_dict()
    assert CameraModel.from_camera_info(info).K.tolist() == cam.K.tolist()
    with pytest.raises(GeometryError, match="none of the fields"):
        CameraModel.from_camera_info({"width": 3, "height": 3})
    with pytest.raises(GeometryError, match="invalid intrinsics"):
        CameraModel(K=np.zeros((3, 3)), width=10, height=10)
    with pytest.raises(GeometryError, match="image size"):
        CameraModel(K=np.eye(3), width=0, height=10)


def test_camera_from_bop_scene_camera(real_frame_dir):
    entry = json.loads((real_frame_dir / "camera.json").read_text())
    cam = CameraModel.from_bop(entry, 640, 480)
    assert cam.fx == pytest.approx(572.4114) and cam.cy == pytest.approx(242.04899)
    with pytest.raises(GeometryError, match="cam_K"):
        CameraModel.from_bop({"depth_scale": 1.0}, 640, 480)


def test_depth_encodings():
    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    m = depth_to_metres(mm, "16UC1")
    assert m.dtype == np.float32 and np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.0)
    assert depth_to_metres(mm, "16UC1", depth_scale=0.1)[1, 0] == pytest.approx(0.15)
    f = np.array([[0.0, np.nan], [np.inf, 1.25]], dtype=np.float32)
    out = depth_to_metres(f, "32FC1")
    assert np.isnan(out[:, 0]).all() and np.isnan(out[0, 1]) and out[1, 1] == pytest.approx(1.25)
    with pytest.raises(GeometryError, match="integer"):
        depth_to_metres(f, "16UC1")
    with pytest.raises(GeometryError, match="unsupported"):
        depth_to_metres(mm, "bgr8")
    with pytest.raises(GeometryError, match="2D"):
        depth_to_metres(np.zeros((2, 2, 1), np.uint16))


@pytest.mark.parametrize("dist", [None, [0.1, -0.25, 0.001, -0.002, 0.08]])
def test_project_deproject_round_trip(dist):
    cam = CameraModel.from_camera_info(dict(D435_INFO, d=dist or []))
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 0], [1279, 719], size=(200, 2))
    z = rng.uniform(0.3, 3.0, size=200)
    P = cam.deproject(uv, z)
    np.testing.assert_allclose(P[:, 2], z)
    np.testing.assert_allclose(cam.project(P), uv, atol=1e-6)
    assert np.isnan(cam.project([[0.0, 0.0, -1.0]])).all()


def test_equidistant_round_trip():
    cam = CameraModel.from_camera_info(dict(D435_INFO, distortion_model="equidistant", d=[0.05, -0.01, 0.002, 0.0]))
    assert cam.is_distorted
    rng = np.random.default_rng(1)
    uv = rng.uniform([100, 100], [1180, 620], size=(100, 2))
    P = cam.deproject(uv, rng.uniform(0.3, 3.0, size=100))
    np.testing.assert_allclose(cam.project(P), uv, atol=1e-6)
    plain = CameraModel.from_camera_info(D435_INFO)
    assert np.abs(plain.rays(uv) - cam.rays(uv)).max() > 1e-3  # the distortion really is applied
    with pytest.raises(GeometryError, match="not supported"):
        CameraModel.from_camera_info(dict(D435_INFO, distortion_model="magic", d=[0.1])).rays(uv)


def test_backproject_depth_and_scaled_camera():
    cam = CameraModel(K=np.array([[100.0, 0, 15.5], [0, 100.0, 11.5], [0, 0, 1]]), width=32, height=24)
    d = np.full((24, 32), 2.0, np.float32)
    d[0, 0] = np.nan
    pts = backproject_depth(d, cam)
    assert pts.shape == (32 * 24 - 1, 3) and np.allclose(pts[:, 2], 2.0)
    with pytest.raises(GeometryError, match="32x24"):
        backproject_depth(d[:-1], cam)
    half = cam.scaled(16, 12)
    p = np.array([[0.1, -0.05, 1.0]])
    np.testing.assert_allclose((half.project(p) + 0.5) * 2.0, cam.project(p) + 0.5)


def test_in_image():
    cam = CameraModel.from_camera_info(D435_INFO)
    inside = cam.in_image([[0, 0], [1279.4, 719.4], [-0.6, 3], [3, 720], [np.nan, 1]])
    assert inside.tolist() == [True, True, False, False, False]


@settings(max_examples=60, deadline=None)
@given(quats)
def test_property_quaternion_round_trip(q):
    q = np.asarray(q) / np.linalg.norm(q)
    R = matrix_from_quat(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    q2 = quat_from_matrix(R)
    assert q2[3] >= 0.0
    if abs(q[3]) > 1e-6:  # w = 0: q and -q both have w >= 0
        np.testing.assert_allclose(q2, q if q[3] >= 0 else -q, atol=1e-9)
    np.testing.assert_allclose(matrix_from_quat(q2), R, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(quats, quats)
def test_property_quaternion_product_matches_matrices(q1, q2):
    R = matrix_from_quat(quat_multiply(q1, q2))
    np.testing.assert_allclose(R, matrix_from_quat(q1) @ matrix_from_quat(q2), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(poses, poses, points)
def test_property_se3(Ta, Tb, P):
    Ti = invert_transform(Ta)
    np.testing.assert_allclose(Ti @ Ta, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(transform_points(Ti, transform_points(Ta, P)), P, atol=1e-8)
    np.testing.assert_allclose(transform_points(Ta @ Tb, P), transform_points(Ta, transform_points(Tb, P)), atol=1e-8)
    # distances are preserved
    if len(P) > 1:
        d0 = np.linalg.norm(P[1:] - P[:-1], axis=1)
        d1 = np.linalg.norm(transform_points(Ta, P)[1:] - transform_points(Ta, P)[:-1], axis=1)
        np.testing.assert_allclose(d0, d1, atol=1e-8)
    t, q = xyz_quat_from_transform(Ta)
    np.testing.assert_allclose(make_transform(q, t), Ta, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(poses, poses, st.floats(0.0, 1.0))
def test_property_slerp(T0, T1, a):
    T = slerp_transform(T0, T1, a)
    np.testing.assert_allclose(slerp_transform(T0, T1, 0.0), T0, atol=1e-9)
    np.testing.assert_allclose(slerp_transform(T0, T1, 1.0), T1, atol=1e-9)
    total = rotation_angle_deg(T0, T1)
    assert rotation_angle_deg(T0, T) + rotation_angle_deg(T, T1) == pytest.approx(total, abs=1e-4)


def test_bad_transforms():
    with pytest.raises(GeometryError):
        make_transform(np.eye(2))
    with pytest.raises(GeometryError):
        make_transform(None, [1, 2])
    with pytest.raises(GeometryError, match="zero-length"):
        matrix_from_quat([0, 0, 0, 0])
    with pytest.raises(GeometryError):
        transform_points(np.eye(4), np.zeros((3, 2)))


def test_plane_intersection_transform_and_world_frame():
    plane = Plane(np.array([0.0, -0.6, -0.8]), 1.0)  # seen from the origin, normal towards it
    assert plane.facing().normal.tolist() == plane.normal.tolist()
    rays = np.array([[0.0, 0.0, 1.0], [0.1, 0.3, 1.0], [0.0, -2.0, 1.0]])
    hit = plane.intersect_rays(rays)
    np.testing.assert_allclose(plane.signed_distance(hit[:2]), 0.0, atol=1e-12)
    assert np.isnan(hit[2]).all()  # behind the camera
    up = plane.intersect_rays(rays[:2], height=0.1)
    np.testing.assert_allclose(plane.signed_distance(up), 0.1, atol=1e-12)
    T = make_transform(Rotation.from_euler("xyz", [0.3, -0.2, 1.0]).as_matrix(), (0.5, -0.1, 2.0))
    moved = plane.transformed(T)
    np.testing.assert_allclose(moved.signed_distance(transform_points(T, hit[:2])), 0.0, atol=1e-12)
    T_cam_world = world_from_plane(plane)
    # world z is the normal, the origin is on the plane, the camera is above it
    np.testing.assert_allclose(T_cam_world[:3, 2], plane.normal)
    assert plane.signed_distance(T_cam_world[:3, 3])[0] == pytest.approx(0.0, abs=1e-12)
    cam_in_world = invert_transform(T_cam_world)[:3, 3]
    assert cam_in_world[2] == pytest.approx(1.0)


def test_fit_plane_ransac():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.5, 0.5, size=(3000, 2))
    table = np.column_stack([xy, np.full(3000, 0.0)]) + rng.normal(0, 0.002, (3000, 3)) * [0, 0, 1]
    clutter = rng.uniform([-0.2, -0.2, 0.02], [0.2, 0.2, 0.3], size=(1000, 3))
    T = make_transform(Rotation.from_euler("x", 2.3).as_matrix(), (0.0, 0.1, 1.0))
    pts = transform_points(T, np.vstack([table, clutter]))
    plane, inliers = fit_plane_ransac(pts, distance_threshold=0.008)
    expected = Plane(np.array([0, 0, 1.0]), 0.0).transformed(T).facing()
    assert abs(plane.normal @ expected.normal) > 0.9999 and abs(plane.offset - expected.offset) < 2e-3
    assert 2800 < inliers.size < 3100
    with pytest.raises(PlaneFitError):
        fit_plane_ransac(rng.uniform(-1, 1, size=(500, 3)), distance_threshold=0.001, min_inlier_fraction=0.5)
    with pytest.raises(PlaneFitError, match="at least 3"):
        fit_plane_ransac(np.zeros((2, 3)))
