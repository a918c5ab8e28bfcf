"""Metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from bopask_vlm.eval.metrics import (
    NCE_CAP,
    Box3D,
    MetricError,
    box_from_corners_3d,
    box_from_corners_pnp,
    box_iou_3d,
    discrete_frechet,
    grasp_nce,
    grasp_pose_error,
    hull_iou_2d,
    path_clear,
    pose_iou_2d,
    rearrangement_scores,
    resample_polyline,
    trajectory_distance,
    trajectory_success,
    yes_no_correct,
)
from bopask_vlm.geometry import CameraModel, make_transform

R_MULTI = Rotation.from_euler("xyz", [30, -50, 70], degrees=True).as_matrix()


def _box(center=(0, 0, 0), R=None, size=(1, 1, 1)) -> Box3D:
    R = np.eye(3) if R is None else R
    return Box3D(np.asarray(center, float), np.asarray(R, float), np.asarray(size, float))


# ---- 3D IoU ----------------------------------------------------------------------------------

def test_identical_boxes_iou_one_for_any_rotation():
    for R in (np.eye(3), R_MULTI):
        b = _box((0.1, -0.2, 0.7), R, (0.05, 0.1, 0.2))
        assert box_iou_3d(b, b) == pytest.approx(1.0, abs=1e-9)


def test_disjoint_and_touching_boxes_iou_zero():
    assert box_iou_3d(_box(), _box((3, 0, 0))) == 0.0
    assert box_iou_3d(_box(), _box((1.0, 0, 0))) == pytest.approx(0.0, abs=1e-9)  # touching faces
    assert box_iou_3d(_box(R=R_MULTI), _box((0, 0, 2.0), R_MULTI)) == 0.0


def test_half_overlap_is_one_third_also_when_rotated_about_several_axes():
    # two unit cubes shifted by half an edge: intersection 1/2, union 3/2
    assert box_iou_3d(_box(), _box((0.5, 0, 0))) == pytest.approx(1 / 3, abs=1e-9)
    shift = R_MULTI @ np.array([0.5, 0, 0])
    assert box_iou_3d(_box((1, 2, 3), R_MULTI), _box(np.array([1, 2, 3]) + shift, R_MULTI)) == pytest.approx(
        1 / 3, abs=1e-9)


def test_square_turned_45_degrees_octagon():
    # unit square vs the same square turned 45 degrees: regular octagon of area 2 (sqrt2 - 1)
    Rz = Rotation.from_euler("z", 45, degrees=True).as_matrix()
    inter = 2 * (np.sqrt(2) - 1)
    expect = inter / (2 - inter)
    assert box_iou_3d(_box(), _box(R=Rz)) == pytest.approx(expect, abs=1e-9)
    # the same configuration seen in an arbitrarily rotated frame
    Ra, Rb = R_MULTI, R_MULTI @ Rz
    assert box_iou_3d(_box((0.3, 0, 1), Ra), _box((0.3, 0, 1), Rb)) == pytest.approx(expect, abs=1e-9)


def test_iou_matches_monte_carlo_for_random_rotations():
    rng = np.random.default_rng(0)
    a = _box((0, 0, 0), Rotation.from_rotvec([0.3, 1.0, -0.4]).as_matrix(), (1.0, 0.6, 0.8))
    b = _box((0.2, 0.1, -0.1), Rotation.from_rotvec([-0.8, 0.2, 0.9]).as_matrix(), (0.7, 0.9, 0.5))
    pts = rng.uniform(-1.2, 1.2, size=(400_000, 3))
    ia, ib = a.contains(pts), b.contains(pts)
    mc = (ia & ib).sum() / (ia | ib).sum()
    assert box_iou_3d(a, b) == pytest.approx(mc, abs=0.01)
    assert 0.05 < mc < 0.95  # the case is a real partial overlap


def test_box_from_corners_roundtrip_and_bad_input():
    b = _box((0.1, 0.2, 0.9), R_MULTI, (0.04, 0.08, 0.12))
    fit = box_from_corners_3d(b.corners())
    assert np.allclose(fit.size, b.size)
    assert box_iou_3d(fit, b) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(MetricError):
        box_from_corners_3d(np.zeros((7, 3)))
    with pytest.raises(MetricError):
        box_from_corners_3d(np.zeros((8, 3)))


@pytest.fixture(scope="module")
def camera() -> CameraModel:
    return CameraModel(K=np.array([[600, 0, 319.5], [0, 600, 239.5], [0, 0, 1.0]]), width=640, height=480)


def test_pnp_recovers_box_of_known_size(camera):
    b = _box((0.05, -0.02, 0.8), R_MULTI, (0.06, 0.10, 0.16))
    uv = camera.project(b.corners())
    # the answer's corner labelling need not match the object's axes: relabel corners (start at 2)
    relabel = [2, 3, 0, 1, 6, 7, 4, 5]
    fit, err = box_from_corners_pnp(uv[relabel], b.size, camera)
    assert err < 1e-3
    assert box_iou_3d(fit, b) == pytest.approx(1.0, abs=1e-3)
    # a corner moved by 15 px lowers the IoU but keeps it well above zero
    noisy = uv.copy()
    noisy[0] += 15
    fit2, err2 = box_from_corners_pnp(noisy, b.size, camera)
    assert err2 > 1.0 and 0.2 < box_iou_3d(fit2, b) < 0.999


# ---- 2D IoU ----------------------------------------------------------------------------------

def test_hull_iou_2d_and_pose_iou_needs_eight_points():
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    assert hull_iou_2d(sq, sq + [0.5, 0]) == pytest.approx(1 / 3)
    assert hull_iou_2d(sq, sq + [5, 0]) == 0.0
    gt = np.vstack([sq * 10, sq * 10 + [2, -3]])
    assert pose_iou_2d(gt, gt) == pytest.approx(1.0)
    assert pose_iou_2d(gt[:7], gt) == 0.0
    assert pose_iou_2d(None, gt) == 0.0
    with pytest.raises(MetricError):
        pose_iou_2d(gt, gt[:7])


# ---- grasps ----------------------------------------------------------------------------------

GT_GRASP = np.array([[100, 100], [90, 100], [110, 100], [90, 130], [110, 130.0]])  # width 20 px


def test_nce_exact_mirrored_shifted_and_capped():
    assert grasp_nce(GT_GRASP, GT_GRASP) == 0.0
    mirrored = GT_GRASP[[0, 2, 1, 4, 3]]
    assert grasp_nce(mirrored, GT_GRASP) == 0.0
    assert grasp_nce(GT_GRASP + [6.0, 8.0], GT_GRASP) == pytest.approx(10 / 20)  # 10 px / 20 px
    assert grasp_nce(GT_GRASP + [1000.0, 0], GT_GRASP) == NCE_CAP
    assert grasp_nce(GT_GRASP[:4], GT_GRASP) == NCE_CAP
    # mirror only some of the points: mean over the 5 of 0,20,20,20,20 / 20 direct; mirrored 0
    half = GT_GRASP.copy()
    half[1], half[2] = GT_GRASP[2], GT_GRASP[1]
    assert grasp_nce(half, GT_GRASP) == pytest.approx((0 + 20 + 20 + 0 + 0) / 5 / 20)
    with pytest.raises(MetricError):
        grasp_nce(GT_GRASP, np.zeros((5, 2)))


def test_grasp_pose_error_symmetric_about_approach_axis():
    from bopask_vlm.gripper import FLIP_Z

    T = make_transform(R_MULTI, [0.1, 0.2, 0.3])
    assert grasp_pose_error(T @ FLIP_Z, T) == pytest.approx((0.0, 0.0), abs=1e-4)
    T2 = make_transform(R_MULTI @ Rotation.from_euler("x", 10, degrees=True).as_matrix(), [0.1, 0.2, 0.33])
    t, r = grasp_pose_error(T2, T)
    assert t == pytest.approx(0.03) and r == pytest.approx(10.0, abs=1e-4)


# ---- trajectories ----------------------------------------------------------------------------

def test_frechet_hand_cases():
    assert discrete_frechet([[0, 0], [1, 0]], [[0, 1], [1, 1]]) == pytest.approx(1.0)
    # same points, opposite direction: Frechet sees the order (2 px), Hausdorff would not (0)
    assert discrete_frechet([[0, 0], [2, 0]], [[2, 0], [0, 0]]) == pytest.approx(2.0)
    # resampling makes a path independent of how its waypoints are spaced
    assert trajectory_distance([[0, 0], [10, 0]], [[0, 0], [3, 0], [10, 0]]) == pytest.approx(0.0, abs=1e-9)
    assert trajectory_distance([[0, 0], [10, 0]], [[0, 4], [10, 4]]) == pytest.approx(4.0)
    assert np.allclose(resample_polyline([[0, 0], [0, 10]], 3), [[0, 0], [0, 5], [0, 10]])


def test_trajectory_success_start_goal_and_clearance():
    start = np.zeros((100, 200), bool)
    start[40:60, 10:30] = True
    goal = np.zeros_like(start)
    goal[40:60, 160:180] = True
    path = [[20, 50], [100, 20], [170, 50]]
    assert trajectory_success(path, start, goal)
    assert not trajectory_success(path[::-1], start, goal)  # starts at B
    assert not trajectory_success([[20, 50], [100, 50]], start, goal)  # stops short
    assert trajectory_success([[20, 50], [150, 50]], start, goal, tolerance_px=10.5)
    assert not trajectory_success(None, start, goal)
    # a lifted path through another object's box fails; one passing above it succeeds
    obstacle = _box((0.5, 0, 0.05), np.eye(3), (0.1, 0.1, 0.1))
    low = [[0, 0, 0.05], [1, 0, 0.05]]
    high = [[0, 0, 0.05], [0.4, 0, 0.2], [0.6, 0, 0.2], [1, 0, 0.05]]
    assert not path_clear(low, [obstacle]) and path_clear(high, [obstacle])
    assert not trajectory_success(path, start, goal, path_3d=low, obstacles=[obstacle])
    assert trajectory_success(path, start, goal, path_3d=high, obstacles=[obstacle])


# ---- rearrangement, yes/no -------------------------------------------------------------------

def test_rearrangement_recall_precision():
    a = np.zeros((50, 50), bool)
    a[0:10, 0:10] = True
    b = np.zeros_like(a)
    b[30:40, 30:40] = True
    assert rearrangement_scores([[5, 5], [35, 35]], [a, b]) == (1.0, 1.0)
    assert rearrangement_scores([[5, 5], [20, 20]], [a, b]) == (0.5, 0.5)
    assert rearrangement_scores([[5, 5], [6, 6], [35, 35], [49, 0]], [a, b]) == (1.0, 0.75)
    assert rearrangement_scores([], [a, b]) == (0.0, 0.0)
    assert rearrangement_scores([], []) == (1.0, 1.0)
    assert rearrangement_scores([[5, 5]], []) == (1.0, 0.0)


def test_yes_no():
    assert yes_no_correct(True, True) and not yes_no_correct(False, True) and not yes_no_correct(None, False)


@settings(max_examples=25, deadline=None)
@given(rotvec=st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3), frac=st.floats(0.0, 0.95),
       axis=st.integers(0, 2))
def test_iou_of_a_box_slid_along_its_own_axis(rotvec, frac, axis):
    """A box slid by a fraction f of its edge along its own axis: IoU = (1 - f) / (1 + f), any rotation."""
    R = Rotation.from_rotvec(rotvec).as_matrix()
    size = np.array([0.3, 0.2, 0.1])
    a = _box((0.1, 0.2, 0.3), R, size)
    b = _box(a.center + R[:, axis] * frac * size[axis], R, size)
    assert box_iou_3d(a, b) == pytest.approx((1 - frac) / (1 + frac), abs=1e-7)
    assert box_iou_3d(b, a) == pytest.approx(box_iou_3d(a, b), abs=1e-9)



def _random_overlapping_pairs(n: int) -> list[tuple[Box3D, Box3D]]:
    rng = np.random.default_rng(0)
    pairs = []
    while len(pairs) < n:
        Ra, Rb = (Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix() for _ in range(2))
        ca = rng.normal(size=3) * 0.3
        a, b = _box(ca, Ra, rng.uniform(0.2, 1, 3)), _box(ca + rng.normal(size=3) * 0.3, Rb, rng.uniform(0.2, 1, 3))
        if box_iou_3d(a, b) > 0.01:
            pairs.append((a, b))
    return pairs


@pytest.mark.parametrize("scale", [1e-9, 1e-7, 1e-6, 1e-4, 1e-2, 1e3])
def test_iou_is_scale_free(scale):
    # issue 13: overlapping boxes below ~1e-6 m gave 0.0 (absolute LP/Qhull tolerances), the same boxes at
    # metre scale 0.07-0.27; IoU cannot depend on scale
    for a, b in _random_overlapping_pairs(6):
        ref = box_iou_3d(a, b)
        sa = _box(a.center * scale, a.R, a.size * scale)
        sb = _box(b.center * scale, b.R, b.size * scale)
        assert box_iou_3d(sa, sb) == pytest.approx(ref, rel=1e-6)
        assert box_iou_3d(sa, sa) == pytest.approx(1.0, abs=1e-9)
