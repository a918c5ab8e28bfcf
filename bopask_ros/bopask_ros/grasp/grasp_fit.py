"""A grasp's 5 image keypoints to a 6-DoF parallel-jaw gripper pose and opening width (ROS-free).

How (decided and tested in tests/test_grasp_fit.py):

1. **Pose from the 2D points alone (PnP).** The keypoints are the fixed M2T2 Panda skeleton
   (:mod:`bopask_vlm.gripper`): a rigid, known-size, planar object (bases and tips in the gripper's
   x-z plane; the centre is the bases' midpoint). ``cv2.solvePnPGeneric`` with ``SOLVEPNP_IPPE`` gives
   the (up to) two planar solutions, each refined by ``cv2.solvePnPRefineLM``. This needs no depth, so
   keypoints on holes, on the background or in free space (bases and centre always are) do not hurt.
2. **Depth picks and validates.** Every keypoint and the grasp point (between the finger pads,
   ``GRASP_DEPTH`` along the approach axis) gets the robust patch depth of :class:`DepthLifter`
   (holes give no reading and are ignored). A point of the skeleton cannot lie much behind the visible
   surface at its pixel (unless occluded), so among the PnP solutions the one with the fewest such
   violations wins, then the lower reprojection error; but when the lifter has a support plane, the one whose
   approach points clearly (30 deg) more into it, from above, wins unless it has 3 more violations (a far
   finger hidden behind the object reads as one).
3. **Range from depth.** PnP's range is its weak direction (with 1 px noise on a grasp ~1 m away it
   is off by ~2 cm along the ray against ~2 mm laterally), so the skeleton gives the orientation and the ray
   of the grasp point, and depth gives the range: the grasp point (between the finger pads) lies inside the
   object, between the visible surface at its pixel and that surface plus the largest opening, most likely
   about half the object's thickness behind it (its extent across the fingers, :func:`measure_width`, at
   least 2 cm). The gripper slides along the grasp point's
   ray (rotation kept) to the mean of PnP's range distribution (sigma: the pixel noise the fit residual
   shows, over the skeleton's apparent size), fused with depth's own guess (half the thickness behind the
   surface plus 8 mm, sd 14 mm), restricted to that interval (which also ends where the ray comes within the
   tips' clearance of the support plane, when there is one): PnP's range where it is sharp
   (exact keypoints stay exact; a uniformly mis-scaled skeleton, which fits without residual, moves onto the
   interval's nearest end), the interval's middle where PnP is vague. Where the surface at the grasp point's
   pixel is an object's (1 cm or more above the support plane) and PnP's range lies more than 2 ``_DEPTH_SIGMA``
   from depth's own guess, depth decides alone (``range_source="depth"``): a skeleton scaled by a few per cent
   fits PnP without residual, and its range is centimetres off. Otherwise a PnP range more than 3 sigma (the
   declared ``pixel_sigma`` or the residual's, whichever is larger) behind the
   interval disagrees with depth and the grasp is rejected (the gripper would be inside or behind what the
   camera sees); one more than 3 sigma in front keeps PnP's range (thin parts such as handles show the
   background there) and says so in the reason. Finger tips below the support plane (when the lifter has
   one) slide the gripper back along the ray until they clear it by 6 mm, within 3 sigma (beyond, the safety
   envelope decides).
4. **Width.** The skeleton is fixed at the Panda's full opening, so the 2D answer carries no width:
   ``width = MAX_OPENING`` (0.08 m). :func:`measure_width` optionally measures the object's extent along
   the closing axis from depth (clipped to the opening range); ``fit_grasp(..., measure=True)`` uses it.

Per-keypoint ``rules``: ``DEPTH`` where the keypoint lies on the visible surface (its depth agrees with
the fitted pose), ``NONE`` where it is in free space and placed by the skeleton alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from bopask_ros.perception.lifting import DepthLifter, LiftError, LiftRule
from bopask_vlm.gripper import GRASP_DEPTH, MAX_OPENING, skeleton_points

__all__ = ["GraspFit", "fit_grasp", "measure_width"]

_OBJ = skeleton_points().copy()
_OBJ[:, 1] = 0.0  # the 0.06 mm y offset of the bases/tips is below any pixel: treat the skeleton as planar
_SKEL = skeleton_points()
_GRASP_POINT = np.array([0.0, 0.0, GRASP_DEPTH])
#: RMS reprojection residual -> per-coordinate pixel noise for 10 coordinates and 6 pose parameters
_RESIDUAL_TO_SIGMA = float(np.sqrt(10.0 / 4.0))
#: the finger tips of a fitted grasp stay this far above the support plane (m; the default safety envelope
#: asks for 5 mm)
TIP_CLEARANCE = 0.006
#: integer pixels (answers come rounded): uniform +-0.5 px, sigma 0.29 px
_ROUNDING_SIGMA_PX = 0.29
#: the grasp point lies at least this far into an object behind its visible surface interval (m)
_MIN_THICKNESS = 0.02
#: depth's guess of the grasp point: half the object's thickness behind the visible surface plus this (m), with
#: this spread; measured on the simulator's datagen grasps (bopask_sim, 45 grasps on 10 scenes, seeds 0-9, inside
#: bopask_sim.evaluate.TUNING_SEEDS, which sim-eval's default seeds avoid: the grasp point lies 3.2 cm behind the
#: surface at its pixel, median; half the measured width + 8 mm: bias 1.5 mm, sd 14 mm)
_DEPTH_OFFSET = 0.008
_DEPTH_SIGMA = 0.014
#: PnP's range is kept (fused with depth's) while it lies within this many ``_DEPTH_SIGMA`` of depth's own guess;
#: beyond, depth decides (issue 19: a skeleton scaled by 5 % is ~5 cm off in range at 1 m and fits without residual)
_PNP_AGREES = 2.0
#: a visible surface this far above the support plane is an object's (m)
_OBJECT_HEIGHT = 0.01
#: the mirror PnP solution whose approach is this much closer to "down into the support" is preferred
_MIRROR_ANGLE_DEG = 30.0


def _pnp_range_sigma(T: NDArray[np.float64], K: NDArray[np.float64], size_px: float) -> float:
    """Standard deviation (m) of PnP's grasp point along its viewing ray for 1 px of keypoint noise: first-order
    propagation of the pose covariance ``(J^T J)^-1`` of the 10 reprojected coordinates."""
    rvec = cv2.Rodrigues(T[:3, :3])[0]
    tvec = T[:3, 3].reshape(3, 1)
    _, J = cv2.projectPoints(_SKEL, rvec, tvec, K, np.zeros(5))
    J = J[:, :6]
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return float(T[2, 3]) / max(size_px, 1e-6)
    gp0 = T[:3, :3] @ _GRASP_POINT + T[:3, 3]
    ray = gp0 / np.linalg.norm(gp0)
    G = np.zeros(6)
    eps = 1e-6
    for k in range(6):
        dv = np.zeros(6)
        dv[k] = eps
        Rk = cv2.Rodrigues(rvec + dv[:3, None])[0]
        G[k] = ((Rk @ _GRASP_POINT + T[:3, 3] + dv[3:]) - gp0) @ ray / eps
    var = float(G @ cov @ G)
    return float(np.sqrt(var)) if np.isfinite(var) and var > 0 else float(T[2, 3]) / max(size_px, 1e-6)


def _depth_above_support(lifter: DepthLifter, p: NDArray[np.float64], height: float) -> float | None:
    """Depth (z) at which the ray through ``p`` comes ``height`` above the support plane going away from the
    camera; None without a plane or for a ray that does not descend towards it."""
    try:
        plane = lifter.support_plane()
    except ValueError:
        return None
    rate = float(np.asarray(plane.normal, float) @ p) / float(p[2])  # plane distance change per metre of z
    if rate >= -1e-9:
        return None
    return float((height - plane.offset) / rate)


def _clear_support(T: NDArray[np.float64], lifter: DepthLifter, valid: bool, range_source: str, sigma_z: float,
                   notes: list[str]) -> tuple[NDArray[np.float64], bool, str]:
    try:
        plane = lifter.support_plane()
    except ValueError:
        return T, valid, range_source
    n = np.asarray(plane.normal, float)
    tips = (_SKEL[3:5] @ T[:3, :3].T + T[:3, 3])
    lowest = float(np.min(plane.signed_distance(tips)))
    if lowest >= TIP_CLEARANCE:
        return T, valid, range_source
    gp = T[:3, :3] @ _GRASP_POINT + T[:3, 3]
    if float(plane.signed_distance(gp)[0]) < 0.0075:
        return T, valid, range_source  # the grasp point is not clearly above that plane: not its support
    rate = float(n @ gp)  # change of every point's plane distance per unit scale along the ray
    if abs(rate) < 1e-9:
        return T, valid, range_source
    f = 1.0 + (TIP_CLEARANCE - lowest) / rate
    shift = abs(f - 1.0) * float(np.linalg.norm(gp))
    if f <= 0 or shift > 3.0 * sigma_z:  # not a range error (or not the support): left to the safety envelope
        notes.append(f"finger tips {-lowest:.3f} m below the support plane, more than PnP's range uncertainty")
        return T, valid, range_source
    T = T.copy()
    T[:3, 3] += gp * (f - 1.0)
    notes.append(f"slid {shift:.3f} m back along the ray: the finger tips were {-lowest:.3f} m below the "
                 f"support surface")
    return T, valid, "pnp+depth" if range_source == "pnp" else range_source


def _on_object(lifter: DepthLifter, gp: NDArray[np.float64], d_g: float) -> bool:
    """Whether the visible surface at the grasp point's pixel (depth ``d_g`` on the grasp point's ray) is an
    object's: at least ``_OBJECT_HEIGHT`` above the support plane; True without a plane (nothing says it is not)."""
    try:
        plane = lifter.support_plane()
    except ValueError:
        return True
    surface = gp * (d_g / float(gp[2]))
    return float(plane.signed_distance(surface[None])[0]) >= _OBJECT_HEIGHT


def _into_support(lifter: DepthLifter) -> NDArray[np.float64] | None:
    """Unit vector into the support plane (camera frame), or None without a plane."""
    try:
        plane = lifter.support_plane()
    except ValueError:
        return None
    n = np.asarray(plane.normal, float)
    return -n / np.linalg.norm(n)


def _truncated_mean(mu: float, sigma: float, lo: float, hi: float) -> float:
    """Mean of N(mu, sigma) restricted to [lo, hi]: PnP's range where it is sharp, the interval's middle where
    PnP is vaguer than the depth interval is wide."""
    from scipy.stats import truncnorm

    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    m = float(truncnorm.mean(a, b, loc=mu, scale=sigma))
    return m if np.isfinite(m) else float(np.clip(mu, lo, hi))


@dataclass
class GraspFit:
    """Result of :func:`fit_grasp`. ``T_cam_gripper`` maps gripper-frame points into the camera frame."""

    T_cam_gripper: NDArray[np.float64]
    width: float
    valid: bool
    reason: str
    residual_px: float
    rules: list[LiftRule]
    keypoints_3d: NDArray[np.float64] = field(default_factory=lambda: np.full((5, 3), np.nan))
    #: "pnp" (no object depth at the grasp point) | "pnp+depth" (PnP's range, slid onto the depth interval) |
    #: "depth" (the object's depth decided the range: PnP's disagreed with it)
    range_source: str = "pnp"


def _pose(rvec: NDArray[np.float64], tvec: NDArray[np.float64]) -> NDArray[np.float64]:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rvec)[0]
    T[:3, 3] = tvec.reshape(3)
    return T


def _invalid(reason: str, residual: float = float("nan")) -> GraspFit:
    return GraspFit(np.full((4, 4), np.nan), float(MAX_OPENING), False, reason, residual, [LiftRule.NONE] * 5)


def fit_grasp(keypoints_2d: ArrayLike, lifter: DepthLifter, *, pixel_sigma: float = 1.0,
              max_residual_px: float | None = None, measure: bool = False) -> GraspFit:
    """Fit the M2T2 gripper skeleton to 5 keypoints (center, left base, right base, left tip, right tip).

    Bad input (shape, non-finite values) raises :class:`LiftError`; a grasp that cannot be trusted
    returns ``valid=False`` with the reason. Keypoints may lie (slightly) outside the image: PnP uses
    them, depth does not.
    """
    try:
        kp = np.asarray(keypoints_2d, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise LiftError(f"grasp keypoints must be numbers of shape (5, 2): {e}") from e
    if kp.shape != (5, 2):
        raise LiftError(f"grasp keypoints must have shape (5, 2), got {kp.shape}")
    if not np.all(np.isfinite(kp)):
        raise LiftError("grasp keypoints contain NaN or inf")
    if not isinstance(lifter, DepthLifter):
        raise LiftError(f"lifter must be a DepthLifter, got {type(lifter).__name__}")
    cam = lifter.camera
    base_px = float(np.linalg.norm(kp[1] - kp[2]))
    tip_px = float(np.linalg.norm(kp[3] - kp[4]))
    if max(base_px, tip_px) < 3.0:
        return _invalid(f"grasp too small in the image (finger bases {base_px:.1f} px apart)")
    if max_residual_px is None:
        max_residual_px = max(3.0 * pixel_sigma, 0.08 * max(base_px, tip_px))
    # PnP on undistorted pixels (any distortion model CameraModel supports), zero distortion
    kp_u = np.ascontiguousarray((cam.rays(kp) @ cam.K.T)[:, :2]) if cam.is_distorted else kp
    dist = np.zeros(5)
    try:
        n, rvecs, tvecs, _ = cv2.solvePnPGeneric(_OBJ, kp_u, cam.K, dist, flags=cv2.SOLVEPNP_IPPE)
    except cv2.error as e:
        return _invalid(f"PnP failed: {str(e).strip().splitlines()[-1]}")
    cands: list[tuple[NDArray[np.float64], float]] = []
    for rv, tv in zip(rvecs[:n], tvecs[:n]):
        rv, tv = rv.copy(), tv.copy()
        try:
            cv2.solvePnPRefineLM(_SKEL, kp_u, cam.K, dist, rv, tv)  # the true (0.06 mm non-planar) skeleton
        except cv2.error:
            pass
        T = _pose(rv, tv)
        pts = _SKEL @ T[:3, :3].T + T[:3, 3]
        if np.any(pts[:, 2] <= 0.01) or not np.all(np.isfinite(T)):
            continue
        res = cam.project(pts) - kp
        cands.append((T, float(np.sqrt(np.mean(np.sum(res**2, axis=1))))))
    if not cands:
        return _invalid("PnP found no gripper pose in front of the camera")

    # robust depth at the keypoints and at each candidate's grasp point (holes -> NaN, ignored)
    gp_px = np.stack([cam.project((T[:3, :3] @ _GRASP_POINT + T[:3, 3])[None])[0] for T, _ in cands])
    query = np.concatenate([kp, gp_px])
    inside = cam.in_image(query)
    d = np.full(query.shape[0], np.nan)
    if np.any(inside):
        pd = lifter.patch_depth(query[inside])
        d[np.flatnonzero(inside)] = np.where(pd.valid, pd.z, np.nan)
    d_kp = d[:5]

    def violations(T: NDArray[np.float64]) -> int:
        z = (_SKEL @ T[:3, :3].T + T[:3, 3])[:, 2]
        tol = np.maximum(0.01, 0.03 * z)
        with np.errstate(invalid="ignore"):
            return int(np.sum(z - d_kp > tol))

    # depth only arbitrates between solutions that explain the pixels about equally well
    best_res = min(c[1] for c in cands)
    # (within twice the best residual, or within the noise the best fit's residual shows, at least integer
    # rounding: noisy keypoints often fit the wrong mirror solution a pixel better)
    noise_px = max(_ROUNDING_SIGMA_PX, _RESIDUAL_TO_SIGMA * best_res)
    plausible = [i for i, c in enumerate(cands)
                 if c[1] <= max(2.0 * best_res + 0.25 * pixel_sigma, best_res + 1.5 * noise_px)]
    order = sorted(plausible, key=lambda i: (violations(cands[i][0]), cands[i][1]))
    # planar PnP's two mirror solutions explain noisy pixels about equally well, and depth tells them apart only
    # weakly (the far finger of a true grasp is often hidden behind the object, which reads as a violation):
    # the one approaching the support surface from above wins when their approaches differ clearly (the mirror
    # of a top-down grasp approaches sideways or from below), unless depth speaks clearly against it
    if len(order) > 1 and violations(cands[order[1]][0]) <= violations(cands[order[0]][0]) + 2:
        down = _into_support(lifter)
        if down is not None:
            ang = [float(np.degrees(np.arccos(np.clip(cands[i][0][:3, 2] @ down, -1, 1)))) for i in order[:2]]
            if ang[1] + _MIRROR_ANGLE_DEG < ang[0]:
                order[0], order[1] = order[1], order[0]
    best = order[0]
    T, residual = cands[best]
    T = T.copy()
    notes: list[str] = []
    if len(cands) > 1 and order[0] != int(np.argmin([c[1] for c in cands])):
        notes.append("depth chose the planar PnP solution with the higher reprojection error")
    valid = True
    if residual > max_residual_px:
        valid = False
        notes.append(f"keypoints do not fit the gripper skeleton (RMS {residual:.1f} px > {max_residual_px:.1f} px)")

    # range along the grasp point's ray: from depth, PnP only inside the depth interval
    range_source = "pnp"
    gp = T[:3, :3] @ _GRASP_POINT + T[:3, 3]
    z_g, d_g = float(gp[2]), float(d[5 + best])
    # PnP's 1-sigma range uncertainty at 1 px noise, from the skeleton's geometry as seen (a skeleton seen
    # foreshortened pins its range down far less than one seen face-on): for the accept/reject decision
    # scaled by the declared noise (or more, when the fit residual shows more); for the estimate by the noise
    # the residual shows, at least integer rounding for integer keypoints (exact keypoints stay exact; a uniformly mis-scaled
    # skeleton fits without residual and is only moved onto the nearest end of the depth interval)
    res_sigma_px = _RESIDUAL_TO_SIGMA * residual
    range_1px = _pnp_range_sigma(T, cam.K, base_px)
    sigma_z = range_1px * max(pixel_sigma, res_sigma_px) + 0.002
    integer = bool(np.all(kp == np.rint(kp)))  # a model's answer, rounded: at least that much noise
    floor_px = _ROUNDING_SIGMA_PX if integer else 0.02
    sigma_est = range_1px * max(res_sigma_px, floor_px * min(pixel_sigma, 1.0)) + 1e-4
    if np.isfinite(d_g):
        tol = max(0.005, 0.01 * d_g)
        w_obj = measure_width(T, lifter, margin=0.0)
        thick = float(np.clip(w_obj if w_obj is not None else MAX_OPENING, _MIN_THICKNESS, MAX_OPENING))
        # the grasp point lies between the finger pads, inside the object: not in front of the visible surface,
        # not deeper behind it than the largest opening (an object's extent along the ray is not its width
        # across the fingers: measured, it often lies deeper than that width)
        lo, hi = d_g - tol, d_g + MAX_OPENING + tol
        # ... nor below the support plane: where the grasp point's ray comes within the tips' clearance of it
        z_floor = _depth_above_support(lifter, gp, TIP_CLEARANCE + 0.002)
        if z_floor is not None and lo < z_floor < hi:
            hi = z_floor
        c = d_g + 0.5 * thick + _DEPTH_OFFSET  # depth's own guess of the grasp point's range
        if _on_object(lifter, gp, d_g) and abs(z_g - c) > _PNP_AGREES * _DEPTH_SIGMA:
            # the object's depth is there and PnP's range disagrees with it (a scaled skeleton fits PnP without
            # residual, so its range cannot be trusted over the depth image): depth decides
            # the thickness measured at PnP's wrong range sees a wrongly scaled closing line: measure it again with
            # the grasp point 2 cm behind the surface, then place it
            T_near = T.copy()
            T_near[:3, 3] += gp * ((d_g + _MIN_THICKNESS) / z_g - 1.0)
            w_near = measure_width(T_near, lifter, margin=0.0)
            thick = float(np.clip(w_near if w_near is not None else _MIN_THICKNESS, _MIN_THICKNESS, MAX_OPENING))
            target = float(np.clip(d_g + 0.5 * thick + _DEPTH_OFFSET, lo, hi))
            T[:3, 3] += gp * (target / z_g - 1.0)
            range_source = "depth"
            notes.append(f"range from depth: moved {target - z_g:+.3f} m along the ray (PnP's range disagreed "
                         f"with the object's depth; object {thick:.3f} m thick behind the surface)")
        elif z_g > hi + 3.0 * sigma_z:
            valid = False
            notes.append(f"grasp point {z_g - d_g:.3f} m behind the visible surface (PnP range disagrees with "
                         f"the depth by more than 3 sigma = {3 * sigma_z:.3f} m)")
        elif z_g < lo - 3.0 * sigma_z:
            notes.append(f"grasp point {d_g - z_g:.3f} m in front of the visible surface (thin part or background): "
                         f"range from PnP")
        else:
            # depth's own guess: half the thickness behind the surface, plus _DEPTH_OFFSET; fused with PnP
            s_d = _DEPTH_SIGMA
            w_p, w_d = 1.0 / sigma_est**2, 1.0 / s_d**2
            target = _truncated_mean((z_g * w_p + c * w_d) / (w_p + w_d), float(np.sqrt(1.0 / (w_p + w_d))), lo, hi)
            if abs(target - z_g) > 5e-4:
                T[:3, 3] += gp * (target / z_g - 1.0)  # slide along the grasp point's ray, rotation kept
                range_source = "pnp+depth"
                notes.append(f"slid {target - z_g:+.3f} m along the ray onto the depth at the grasp point "
                             f"(object {thick:.3f} m thick behind the surface)")
    else:
        notes.append("no depth at the grasp point: range from PnP only")

    # the fingers cannot reach into the support surface either: tips below it (a range or tilt error of a
    # low grasp) slide the gripper back along the grasp point's ray within PnP's uncertainty (beyond it, the
    # safety envelope, which knows the table, decides)
    T, valid, range_source = _clear_support(T, lifter, valid, range_source, sigma_z, notes)

    kp3 = _SKEL @ T[:3, :3].T + T[:3, 3]
    tol_kp = np.maximum(0.01, 0.03 * kp3[:, 2])
    with np.errstate(invalid="ignore"):
        on_surface = np.abs(kp3[:, 2] - d_kp) <= tol_kp
    rules = [LiftRule.DEPTH if s else LiftRule.NONE for s in on_surface]
    width = float(MAX_OPENING)
    if measure:
        w = measure_width(T, lifter)
        if w is not None:
            width = w
            notes.append(f"width measured from depth: {w:.3f} m")
    reason = "; ".join(notes) if notes else "ok"
    return GraspFit(T, width, valid, reason, residual, rules, kp3, range_source)


def measure_width(T_cam_gripper: ArrayLike, lifter: DepthLifter, margin: float = 0.01,
                  samples: int = 61) -> float | None:
    """Extent of the object between the fingers along the closing axis, plus ``margin``, clipped to
    [0, MAX_OPENING]; ``None`` when the depth shows nothing between the fingers.

    Pixels along the projected closing line through the grasp point are lifted onto the visible surface. The
    object is the run of those surface points around the grasp point's pixel that is continuous in depth (no
    jump to the background), stands above the support plane (when there is one) and lies within the
    gripper's reach (within 4 cm of the finger plane, 6 cm of the grasp depth); its extent is the spread of the
    points' coordinates along the closing axis. The surface points are where the pixel rays meet the object,
    not on the closing line itself: an object seen obliquely shows its top face behind or in front of the line
    (a 4 cm box seen at 45 degrees measured 1.5 cm when only points near the line counted).
    """
    T = np.asarray(T_cam_gripper, dtype=np.float64)
    half = MAX_OPENING / 2 + 0.01
    xs = np.linspace(-half, half, samples)
    line = np.stack([xs, np.zeros_like(xs), np.full_like(xs, GRASP_DEPTH)], axis=1) @ T[:3, :3].T + T[:3, 3]
    px = lifter.camera.project(line)
    ok = lifter.camera.in_image(px) & np.all(np.isfinite(px), axis=1)
    if not np.any(ok):
        return None
    pts = np.full((samples, 3), np.nan)
    lp = lifter.lift(px[ok], mode="surface")
    pts[np.flatnonzero(ok)[lp.valid]] = lp.points[lp.valid]
    good = np.all(np.isfinite(pts), axis=1)
    local = np.full_like(pts, np.nan)
    local[good] = (pts[good] - T[:3, 3]) @ T[:3, :3]
    with np.errstate(invalid="ignore"):
        good &= (np.abs(local[:, 1]) < 0.04) & (np.abs(local[:, 2] - GRASP_DEPTH) < 0.06)
    try:
        plane = lifter.support_plane()
        with np.errstate(invalid="ignore"):
            good &= ~(np.abs(plane.signed_distance(np.nan_to_num(pts))) < 0.005)
    except ValueError:
        pass
    idx = np.flatnonzero(good)
    if idx.size < 2:
        return None
    c = int(idx[np.argmin(np.abs(xs[idx]))])
    if abs(xs[c]) > MAX_OPENING / 4:
        return None  # nothing near the grasp point itself
    step = float(xs[1] - xs[0])
    run = [c]
    for direction in (-1, 1):
        last, k, gap = c, c + direction, 0
        while 0 <= k < samples:
            if good[k]:
                jump = abs(float(pts[k, 2] - pts[last, 2]))
                if jump > 0.015 + 3.0 * step * abs(k - last):
                    break  # a depth edge: the background, not the object
                run.append(k)
                last, gap = k, 0
            else:
                gap += 1
                if gap > 3:
                    break  # a hole wider than a few samples ends the object
            k += direction
    ext = float(np.ptp(local[run, 0])) + margin
    return float(np.clip(ext, 0.0, MAX_OPENING))
