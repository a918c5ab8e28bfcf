"""The simulated RealSense against pybullet's pitfalls: column-major matrices, the OpenGL camera's flipped
y/z, the non-linear depth buffer; and its placement from the calibration file the robot side reads."""

from __future__ import annotations

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim.camera import (
    CalibrationError,
    T_parent_optical,
    d435_camera,
    linear_depth,
    read_calibration,
)
from bopask_sim.world import SimWorld
from bopask_vlm.geometry import transform_points


@pytest.fixture(scope="module")
def world():
    w = SimWorld(2, 5)
    yield w
    w.close()


def test_d435_intrinsics():
    for (w, h), fx in (((640, 480), 615.4), ((1280, 720), 923.1)):
        cam = d435_camera(w, h)
        assert (cam.width, cam.height) == (w, h) and cam.K[0, 0] == pytest.approx(fx)
        hfov = 2 * np.degrees(np.arctan(w / 2 / cam.K[0, 0]))
        assert 54 < hfov < 70  # the D435 colour camera's field of view at 4:3 and 16:9


def test_linear_depth_inverts_the_depth_buffer():
    near, far = 0.05, 4.0
    z = np.array([0.1, 0.5, 1.0, 3.0])
    d = (far * (z - near) / (z * (far - near)))  # what OpenGL stores for these distances
    np.testing.assert_allclose(linear_depth(d, near, far), z, rtol=1e-5)


def test_depth_and_pixels_agree_with_pybullet_ray_casts(world):
    """Back-projecting the rendered depth with the camera model lands where pybullet's own ray from the camera
    centre through that pixel hits: intrinsics (principal point off centre), view matrix order, y/z flip and
    depth linearisation are all right, to the millimetre."""
    import pybullet as p

    r = world.render()
    cam, T_wc = world.camera, world.T_world_camera
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(60):
        u, v = int(rng.integers(20, cam.width - 20)), int(rng.integers(20, cam.height - 20))
        z = float(r.depth_m[v, u])
        if not z > 0:
            continue
        p_cam = cam.rays(np.array([[u, v]], float))[0] * z
        p_world = transform_points(T_wc, p_cam[None])[0]
        ray_end = T_wc[:3, 3] + (p_world - T_wc[:3, 3]) * 1.5
        hit = p.rayTest(T_wc[:3, 3].tolist(), ray_end.tolist(), physicsClientId=world.client)[0]
        if hit[0] < 0:
            continue
        np.testing.assert_allclose(hit[3], p_world, atol=4e-3)
        assert hit[0] == r.seg[v, u]  # the same body as the segmentation says
        hits += 1
    assert hits > 30


def test_objects_project_where_they_are_seen(world):
    """Each object's centre projects inside its segmentation mask (no mirrored or flipped image)."""
    r = world.render()
    T_cw = np.linalg.inv(world.T_world_camera)
    seen = 0
    for inst in world.instances:
        mask = r.seg == inst.body
        if mask.sum() < 50:
            continue
        c = transform_points(T_cw, world.object_pose(inst)[:3, 3][None])
        u, v = np.rint(world.camera.project(c)[0]).astype(int)
        ys, xs = np.nonzero(mask)
        assert abs(u - xs.mean()) < 12 and abs(v - ys.mean()) < 12, inst.name
        seen += 1
    assert seen >= 3


def test_camera_placed_by_the_calibration_file(repo_root):
    cal = read_calibration(repo_root / "bopask_ros" / "config" / "camera_calibration.yaml")
    assert cal["parent_frame"] == "panda_link0" and cal["child_frame"] == "camera_link"
    T = T_parent_optical(cal)
    np.testing.assert_allclose(T[:3, 3], cal["translation"])
    # camera_link looks along its x; the optical frame along its z: the same direction, towards the robot
    # and down 0.75 rad (the file's rpy)
    z = T[:3, 2]
    assert z[0] < 0 and np.degrees(np.arcsin(-z[2])) == pytest.approx(np.degrees(0.75), abs=0.1)
    assert T[2, 1] < 0  # image y (down) has a downward component in the base frame
    opt = dict(cal, child_frame="camera_color_optical_frame")
    # a calibration of the optical frame itself is used as it is (no link -> optical turn)
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(T_parent_optical(opt)[:3, :3], Rotation.from_quat(cal["rotation"]).as_matrix(),
                               atol=1e-12)
    assert not np.allclose(T_parent_optical(opt)[:3, :3], T[:3, :3])
    with pytest.raises(CalibrationError, match="unit quaternion"):
        read_calibration({"translation": [0, 0, 1], "rotation": [0, 0, 0, 3]})
    with pytest.raises(CalibrationError):
        read_calibration({"translation": [0, 0]})


def test_depth_noise_and_holes(world):
    f = world.capture()
    ideal = f.depth_ideal_m
    ok = np.isfinite(f.depth_m)
    holes = (ideal > 0) & ~ok
    assert 0.001 < holes.mean() < 0.2  # some holes (edges, blobs), most pixels kept
    err = f.depth_m[ok] - ideal[ok]
    assert 0.0005 < np.std(err) < 0.01  # RealSense-like millimetre noise at ~1 m
    np.testing.assert_allclose(np.round(f.depth_m[ok] * 1000), f.depth_m[ok] * 1000, atol=1e-3)  # 1 mm steps
