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
   violations wins, then the lower reprojection error.
3. **Range along the ray.** The grasp point sits between the finger pads, i.e. inside the grasped
   object: not in front of the visible surface at its pixel and not deeper behind it than the largest
   opening. When the PnP distance breaks that by less than PnP's own range uncertainty (from the
   pixel noise and the skeleton's apparent size), the gripper is slid along the ray of its grasp point
   to the nearest end of the depth interval (rotation kept). A grasp point deeper behind the surface
   than that is flagged invalid (the gripper would be inside or behind what the camera sees); one in
   front of the surface beyond the uncertainty is kept (thin parts such as handles show the
   background there) and said in the reason.
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

from bopask_ros.lifting import DepthLifter, LiftError, LiftRule
from bopask_vlm.gripper import GRASP_DEPTH, MAX_OPENING, skeleton_points

__all__ = ["GraspFit", "fit_grasp", "measure_width"]

_OBJ = skeleton_points().copy()
_OBJ[:, 1] = 0.0  # the 0.06 mm y offset of the bases/tips is below any pixel: treat the skeleton as planar
_SKEL = skeleton_points()
_GRASP_POINT = np.array([0.0, 0.0, GRASP_DEPTH])


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
    range_source: str = "pnp"  # "pnp" | "pnp+depth" (slid along the ray onto the depth interval)


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
    plausible = [i for i, c in enumerate(cands) if c[1] <= 2.0 * best_res + 0.25 * pixel_sigma]
    order = sorted(plausible, key=lambda i: (violations(cands[i][0]), cands[i][1]))
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

    # range along the grasp point's ray
    range_source = "pnp"
    gp = T[:3, :3] @ _GRASP_POINT + T[:3, 3]
    z_g, d_g = float(gp[2]), float(d[5 + best])
    size_px = max(base_px, 1e-6)
    sigma_z = 3.0 * z_g * pixel_sigma / size_px + 0.002  # PnP range uncertainty from the apparent size
    if np.isfinite(d_g):
        tol = max(0.005, 0.01 * d_g)
        lo, hi = d_g - tol, d_g + MAX_OPENING + tol
        if z_g < lo or z_g > hi:
            target = lo if z_g < lo else hi
            if abs(target - z_g) <= sigma_z:
                T[:3, 3] += gp * (target / z_g - 1.0)  # slide along the grasp point's ray, rotation kept
                range_source = "pnp+depth"
                notes.append(f"slid {target - z_g:+.3f} m along the ray onto the depth at the grasp point")
            elif z_g > hi:
                valid = False
                notes.append(f"grasp point {z_g - d_g:.3f} m behind the visible surface (deeper than the opening)")
            else:
                notes.append(f"grasp point {d_g - z_g:.3f} m in front of the visible surface (thin part or background)")
    else:
        notes.append("no depth at the grasp point: range from PnP only")

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
                  samples: int = 41) -> float | None:
    """Extent of the visible surface between the fingers along the closing axis, plus ``margin``,
    clipped to [0, MAX_OPENING]; ``None`` when the depth shows nothing between the fingers.

    Pixels along the projected closing line through the grasp point are lifted; points within a slab
    around the finger plane (|y| < 2 cm, approach within 3 cm of the grasp depth) count as the object.
    """
    T = np.asarray(T_cam_gripper, dtype=np.float64)
    xs = np.linspace(-MAX_OPENING / 2, MAX_OPENING / 2, samples)
    line = np.stack([xs, np.zeros_like(xs), np.full_like(xs, GRASP_DEPTH)], axis=1) @ T[:3, :3].T + T[:3, 3]
    px = lifter.camera.project(line)
    ok = lifter.camera.in_image(px)
    if not np.any(ok):
        return None
    lp = lifter.lift(px[ok], mode="surface")
    if not np.any(lp.valid):
        return None
    Tinv_R = T[:3, :3].T
    local = (lp.points[lp.valid] - T[:3, 3]) @ Tinv_R.T
    sel = (np.abs(local[:, 1]) < 0.02) & (np.abs(local[:, 2] - GRASP_DEPTH) < 0.03) \
        & (np.abs(local[:, 0]) <= MAX_OPENING / 2)
    if np.count_nonzero(sel) < 2:
        return None
    ext = float(local[sel, 0].max() - local[sel, 0].min()) + margin
    return float(np.clip(ext, 0.0, MAX_OPENING))
