"""Grasp keypoints -> 6-DoF gripper pose on synthetic scenes with holes and background at the keypoints."""

from __future__ import annotations

import numpy as np
import pytest
from _lifting_helpers import make_camera, punch_holes, render_scene
from scipy.spatial.transform import Rotation

from bopask_ros.grasp.grasp_fit import fit_grasp, measure_width
from bopask_ros.perception.lifting import DepthLifter, LiftError, LiftRule
from bopask_vlm.geometry import make_transform, rotation_angle_deg
from bopask_vlm.gripper import FLIP_Z, GRASP_DEPTH, MAX_OPENING, canonical_for_view, keypoints_2d

SMALL_BOX = {"kind": "box", "centre": (0.05, -0.05), "size": (0.05, 0.05, 0.06), "yaw": 0.4}
OBJECTS = [SMALL_BOX, {"kind": "cylinder", "centre": (0.05, 0.15), "radius": 0.03, "height": 0.12}]


@pytest.fixture(scope="module")
def scene():
    return render_scene(make_camera(640, 480), objects=OBJECTS)


def _grasps(scene, n: int, seed: int):
    """Collision-free-ish grasps on the small box: top-down (tilted up to 25 deg), fingers closing across it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        yaw = 0.4 + rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.15, 0.15)
        R = Rotation.from_euler("zyx", [yaw, rng.uniform(-0.45, 0.45), rng.uniform(-0.45, 0.45)]).as_matrix()
        R = R @ np.diag([1.0, -1.0, -1.0])  # approach (+z of the gripper) points down
        grasp_point = np.array([0.05, -0.05, 0.045]) + rng.uniform(-0.005, 0.005, 3)
        T_world = make_transform(R, grasp_point - R @ np.array([0.0, 0.0, GRASP_DEPTH]))
        out.append(canonical_for_view(scene.T_cam_world @ T_world, scene.camera))
    return out


def _errors(fit, T):
    return (np.linalg.norm(fit.T_cam_gripper[:3, 3] - T[:3, 3]), rotation_angle_deg(fit.T_cam_gripper, T))


def test_exact_keypoints_with_holes_and_background(scene):
    """Keypoints on holes and on the table behind: pose within 5 mm / 3 deg (exactly, in fact)."""
    for k, T in enumerate(_grasps(scene, 8, seed=1)):
        kp = keypoints_2d(T, scene.camera)
        # holes at the centre and one tip (bigger than the patch), random holes elsewhere
        depth = punch_holes(scene.depth_m, kp[[0, 3 + k % 2]], radius=6, rng=np.random.default_rng(k), n_random=40)
        lf = DepthLifter(scene.camera, depth, plane=scene.plane_cam)
        assert not lf.lift(kp[[0]], mode="surface").valid[0]  # the centre really is a hole
        fit = fit_grasp(kp, lf)
        assert fit.valid, fit.reason
        dt, dr = _errors(fit, T)
        assert dt < 0.005 and dr < 3.0, (k, dt, dr, fit.reason)
        assert fit.residual_px < 0.1
        assert fit.width == pytest.approx(MAX_OPENING)
        assert len(fit.rules) == 5 and all(isinstance(r, LiftRule) for r in fit.rules)
        np.testing.assert_allclose(scene.camera.project(fit.keypoints_3d), kp, atol=0.05)


def test_integer_pixel_keypoints(scene):
    """Answers come as integer pixels: 0.5 px rounding; the range is then only as good as PnP allows
    (about 1 % of the distance at 100 px between the finger bases): measured median < 5 mm, all < 1.5 %."""
    dts, drs = [], []
    for T in _grasps(scene, 12, seed=2):
        kp = np.rint(keypoints_2d(T, scene.camera))
        fit = fit_grasp(kp, DepthLifter(scene.camera, scene.depth_m, plane=scene.plane_cam))
        assert fit.valid, fit.reason
        dt, dr = _errors(fit, T)
        assert dt < 0.015 * np.linalg.norm(T[:3, 3]) and dr < 3.0, (dt, dr)
        dts.append(dt)
        drs.append(dr)
    assert np.median(dts) < 0.005 and np.median(drs) < 1.5


def test_left_right_swapped_is_the_same_physical_grasp(scene):
    T = _grasps(scene, 1, seed=3)[0]
    kp = keypoints_2d(T, scene.camera)
    lf = DepthLifter(scene.camera, scene.depth_m)
    swapped = kp[[0, 2, 1, 4, 3]]
    fit = fit_grasp(swapped, lf)
    assert fit.valid
    # the fit honours the labels: the flipped pose, which is the same grasp turned 180 deg about z
    dt, dr = _errors(fit, T @ FLIP_Z)
    assert dt < 0.005 and dr < 3.0


def test_keypoints_not_a_gripper_are_flagged(scene):
    T = _grasps(scene, 1, seed=4)[0]
    kp = keypoints_2d(T, scene.camera)
    lf = DepthLifter(scene.camera, scene.depth_m)
    bad = kp.copy()
    bad[3] += [40.0, -30.0]  # one tip far off the rigid skeleton
    fit = fit_grasp(bad, lf)
    assert not fit.valid and "skeleton" in fit.reason
    tiny = np.repeat(kp[:1], 5, axis=0) + np.random.default_rng(0).normal(0, 0.3, (5, 2))
    fit = fit_grasp(tiny, lf)
    assert not fit.valid and "too small" in fit.reason


def test_grasp_behind_the_visible_surface_is_invalid(scene):
    """The same keypoints with depth that puts a wall 15 cm in front of the grasp: not a trustworthy target."""
    T = _grasps(scene, 1, seed=5)[0]
    kp = keypoints_2d(T, scene.camera)
    wall = np.full_like(scene.depth_m, float(T[2, 3]) - 0.05)
    fit = fit_grasp(kp, DepthLifter(scene.camera, wall))
    assert not fit.valid and "behind the visible surface" in fit.reason


@pytest.mark.parametrize("scale", [1.03, 0.97])
def test_range_slides_onto_depth_within_pnp_uncertainty(scene, scale):
    """Keypoints drawn 3 % too large (too small) put PnP's grasp point about 2 cm in front of (behind)
    a surface it actually touches; depth slides the gripper back along the ray."""
    T = _grasps(scene, 1, seed=6)[0]
    kp = keypoints_2d(T, scene.camera)
    gp_true = (T @ np.array([0, 0, GRASP_DEPTH, 1.0]))[:3]
    # a fronto-parallel surface through the true grasp point (a flat object gripped at its face)
    wall = np.full_like(scene.depth_m, gp_true[2]) if scale > 1 else \
        np.full_like(scene.depth_m, gp_true[2] - MAX_OPENING)
    lf = DepthLifter(scene.camera, wall)
    no_depth = DepthLifter(scene.camera, np.full_like(scene.depth_m, np.nan), plane=scene.plane_cam)
    plain = fit_grasp(kp[0] + (kp - kp[0]) * scale, no_depth)  # PnP alone: the range it gets wrong
    fit = fit_grasp(kp[0] + (kp - kp[0]) * scale, lf)
    assert fit.valid and fit.range_source == "pnp+depth" and "slid" in fit.reason, fit.reason
    assert plain.range_source == "pnp"
    gp_plain = (plain.T_cam_gripper @ np.array([0, 0, GRASP_DEPTH, 1.0]))[:3]
    gp_fit = (fit.T_cam_gripper @ np.array([0, 0, GRASP_DEPTH, 1.0]))[:3]
    assert np.linalg.norm(gp_plain - gp_true) > 0.012
    assert np.linalg.norm(gp_fit - gp_true) < 0.008
    # slid along the ray: the grasp point still projects where it did
    np.testing.assert_allclose(scene.camera.project(gp_fit[None]), scene.camera.project(gp_plain[None]), atol=1e-6)


def test_measured_width(scene):
    """Across the 5 cm box the measured width is the box width plus the margin, not the full opening."""
    R = Rotation.from_euler("z", 0.4).as_matrix() @ np.diag([1.0, -1.0, -1.0])
    T_world = make_transform(R, np.array([0.05, -0.05, 0.05]) - R @ np.array([0.0, 0.0, GRASP_DEPTH]))
    T = canonical_for_view(scene.T_cam_world @ T_world, scene.camera)
    lf = DepthLifter(scene.camera, scene.depth_m)
    w = measure_width(T, lf, margin=0.01)
    assert w is not None and 0.045 < w < 0.07
    fit = fit_grasp(keypoints_2d(T, scene.camera), lf, measure=True)
    assert fit.width == pytest.approx(w, abs=0.005)


def test_bad_input(scene):
    lf = DepthLifter(scene.camera, scene.depth_m)
    with pytest.raises(LiftError, match=r"\(5, 2\)"):
        fit_grasp(np.zeros((4, 2)), lf)
    with pytest.raises(LiftError, match="NaN"):
        fit_grasp(np.full((5, 2), np.nan), lf)
    with pytest.raises(LiftError, match="DepthLifter"):
        fit_grasp(np.zeros((5, 2)), object())


def test_keypoints_partly_outside_the_image(scene):
    """A grasp at the image border: PnP still uses the keypoints outside, depth only those inside."""
    from bopask_vlm.geometry import CameraModel

    T = _grasps(scene, 1, seed=8)[0]
    kp = keypoints_2d(T, scene.camera)
    u0 = int(np.floor(kp[:, 0].min())) + 6  # crop the image so that the leftmost keypoint falls outside
    K = scene.camera.K.copy()
    K[0, 2] -= u0
    cam = CameraModel(K=K, width=scene.camera.width - u0, height=scene.camera.height)
    lf = DepthLifter(cam, scene.depth_m[:, u0:])
    kp_c = kp - [u0, 0.0]
    assert not cam.in_image(kp_c).all() and cam.in_image(kp_c).any()
    fit = fit_grasp(kp_c, lf)
    assert fit.valid, fit.reason
    dt, dr = _errors(fit, T)
    assert dt < 0.005 and dr < 3.0


def test_distorted_camera():
    """plumb_bob and equidistant lenses: keypoints are undistorted before PnP."""
    from bopask_vlm.geometry import CameraModel

    base = make_camera(640, 480)
    for model, d in (("plumb_bob", [0.09, -0.06, 0.001, -0.001, 0.0]), ("equidistant", [0.04, -0.01, 0.0, 0.0])):
        cam = CameraModel(K=base.K, width=640, height=480, D=np.array(d), distortion_model=model)
        sc = render_scene(cam, objects=OBJECTS)
        T = _grasps(sc, 1, seed=9)[0]
        kp = keypoints_2d(T, cam)
        fit = fit_grasp(kp, DepthLifter(cam, sc.depth_m))
        assert fit.valid, fit.reason
        dt, dr = _errors(fit, T)
        assert dt < 0.002 and dr < 0.5 and fit.residual_px < 0.05, (model, dt, dr)


@pytest.mark.parametrize("yaw", [0.0, 0.4, np.pi / 2, 1.0])
def test_measured_width_of_a_box_seen_at_45_degrees(yaw):
    """A 4 cm box seen 45 degrees from above: the top face the camera sees lies off the closing line (it
    measured 1.5 cm when only points near the line counted); the width is the box's."""
    cam = make_camera(640, 480)
    e = np.radians(45)
    sc = render_scene(cam, eye=(-0.6 * np.cos(e), 0.0, 0.6 * np.sin(e)), target=(0, 0, 0.02),
                      objects=[{"kind": "box", "centre": (0.0, 0.0), "size": (0.04, 0.04, 0.04), "yaw": yaw}])
    R = Rotation.from_euler("z", yaw).as_matrix() @ np.diag([1.0, -1.0, -1.0])
    T = canonical_for_view(sc.T_cam_world @ make_transform(R, np.array([0, 0, 0.02]) - R @ [0, 0, GRASP_DEPTH]), cam)
    w = measure_width(T, DepthLifter(cam, sc.depth_m), margin=0.0)
    assert w is not None and 0.036 < w < 0.046, w


def test_range_from_depth_under_keypoint_noise():
    """1 px and 2 px Gaussian noise on the keypoints of grasps ~1 m away: PnP alone is off along the ray by
    centimetres along the ray; with the range from depth the grasp point's median error stays about 1 cm."""
    cam = make_camera(640, 480)
    sc = render_scene(cam, eye=(-0.68, 0.05, 0.72), target=(0.05, -0.05, 0.03), objects=OBJECTS)
    assert 0.9 < np.linalg.norm(sc.T_cam_world[:3, 3]) < 1.1
    lf = DepthLifter(cam, sc.depth_m, plane=sc.plane_cam)
    no_depth = DepthLifter(cam, np.full_like(sc.depth_m, np.nan), plane=sc.plane_cam)
    rng = np.random.default_rng(11)
    # (1 px: 10.9 mm median since depth decides a range more than 2.8 cm off its own guess, issue 19; 10.3 before)
    for sigma, med, p90 in ((1.0, 0.0115, 0.02), (2.0, 0.012, 0.025)):
        err_fit, range_fit, range_pnp = [], [], []
        for T in _grasps(sc, 30, seed=12):
            kp = keypoints_2d(T, cam) + rng.normal(0, sigma, (5, 2))
            gp_true = (T @ [0, 0, GRASP_DEPTH, 1.0])[:3]
            fit, pnp = fit_grasp(kp, lf), fit_grasp(kp, no_depth)
            assert fit.valid, fit.reason
            ray = gp_true / np.linalg.norm(gp_true)
            d_fit = (fit.T_cam_gripper @ [0, 0, GRASP_DEPTH, 1.0])[:3] - gp_true
            d_pnp = (pnp.T_cam_gripper @ [0, 0, GRASP_DEPTH, 1.0])[:3] - gp_true
            err_fit.append(np.linalg.norm(d_fit))
            range_fit.append(abs(d_fit @ ray))
            range_pnp.append(abs(d_pnp @ ray))
        assert np.median(err_fit) < med and np.percentile(err_fit, 90) < p90, (sigma, np.median(err_fit))
        # along the ray, where PnP is weak (measured here: 1 px 10.8 vs 10.3 mm median, 17 vs 22 mm p90 since depth
        # decides ranges more than 2.8 cm off its own guess (issue 19; 8.9 mm and 16 mm before);
        # 2 px 10.9 vs 31 mm, 22 vs 67 mm)
        gain = 0.8 if sigma < 2 else 0.5
        assert np.median(range_fit) < np.median(range_pnp) * (1.1 if sigma < 2 else gain)
        assert np.percentile(range_fit, 90) < gain * np.percentile(range_pnp, 90)


@pytest.mark.parametrize("scale", [0.6, 0.9, 0.95, 1.05, 1.1, 1.2])
def test_scaled_skeleton_takes_its_range_from_the_objects_depth(scene, scale):
    """A skeleton drawn 5-40 % too small or too large fits PnP without residual and puts its grasp point
    centimetres off along the ray, in front of or far behind the small box it aims at; the box's depth is at the
    grasp point's pixel, so depth decides the range (issue 19): within 3.5 cm of the truth along the ray."""
    T = _grasps(scene, 1, seed=13)[0]
    kp = keypoints_2d(T, scene.camera)
    lf = DepthLifter(scene.camera, scene.depth_m, plane=scene.plane_cam)
    gp_true = (T @ np.array([0, 0, GRASP_DEPTH, 1.0]))[:3]
    fit = fit_grasp(kp[0] + (kp - kp[0]) * scale, lf)
    no_depth = DepthLifter(scene.camera, np.full_like(scene.depth_m, np.nan), plane=scene.plane_cam)
    plain = fit_grasp(kp[0] + (kp - kp[0]) * scale, no_depth)
    gp = (fit.T_cam_gripper @ np.array([0, 0, GRASP_DEPTH, 1.0]))[:3]
    gp_plain = (plain.T_cam_gripper @ np.array([0, 0, GRASP_DEPTH, 1.0]))[:3]
    assert fit.valid and fit.range_source == "depth", fit.reason
    # along the viewing direction (the scaled skeleton's grasp point also sits on another pixel: refinement's job)
    ray = gp_true / np.linalg.norm(gp_true)
    err, err_plain = abs((gp - gp_true) @ ray), abs((gp_plain - gp_true) @ ray)
    assert err_plain > 0.02  # PnP's own range is far off
    # depth's guess (half the measured thickness behind the top, +8 mm) is ~1-3 cm off this synthetic grasp
    assert err < 0.035 and err < 0.6 * err_plain, (err, err_plain, fit.reason)


def test_finger_tips_kept_above_the_support_plane():
    """A low top-down grasp (grasp point 1.2 cm above the table) with 2 px noise: range and tilt errors would put
    the finger tips into the table (depth's own range guess, half the box's width behind its top, would too);
    the depth interval ends where the ray nears the table, and tips still below it slide the gripper back."""
    from bopask_ros.grasp.grasp_fit import TIP_CLEARANCE
    from bopask_vlm.gripper import skeleton_points

    cam = make_camera(640, 480)
    sc = render_scene(cam, eye=(-0.6, 0.05, 0.6), target=(0.05, -0.05, 0.0),
                      objects=[{"kind": "box", "centre": (0.05, -0.05), "size": (0.05, 0.05, 0.024), "yaw": 0.4}])
    R = Rotation.from_euler("z", 0.4).as_matrix() @ np.diag([1.0, -1.0, -1.0])
    T = canonical_for_view(sc.T_cam_world @ make_transform(R, np.array([0.05, -0.05, 0.012]) - R @ [0, 0, GRASP_DEPTH]),
                           cam)
    lf = DepthLifter(cam, sc.depth_m, plane=sc.plane_cam)
    rng = np.random.default_rng(21)
    heights = []
    for _ in range(30):
        fit = fit_grasp(keypoints_2d(T, cam) + rng.normal(0, 2.0, (5, 2)), lf)
        if not fit.valid:
            continue
        tips = skeleton_points()[3:5] @ fit.T_cam_gripper[:3, :3].T + fit.T_cam_gripper[:3, 3]
        low = float(np.min(sc.plane_cam.signed_distance(tips)))
        assert low >= TIP_CLEARANCE - 1e-6 or "more than PnP's range uncertainty" in fit.reason, (low, fit.reason)
        gp = fit.T_cam_gripper[:3, :3] @ [0, 0, GRASP_DEPTH] + fit.T_cam_gripper[:3, 3]
        heights.append(float(sc.plane_cam.signed_distance(gp)[0]))
    assert len(heights) >= 25 and abs(np.median(heights) - 0.012) < 0.004, np.median(heights)
