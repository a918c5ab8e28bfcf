"""The world frame of a scene: RANSAC fit of the support plane from depth (z up along its normal, origin on
the plane, x away from the camera), as BOP-ASK does. Viewpoint-independent work uses this frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.geometry import (
    CameraModel,
    Plane,
    PlaneFitError,
    backproject_depth,
    invert_transform,
    world_from_plane,
)

__all__ = ["PlaneFitError", "SceneWorld", "fit_world_frame"]


def fit_world_frame(depth_m: NDArray[np.float32], camera: CameraModel, *, stride: int = 4, seed: int = 0,
                    distance_threshold: float = 0.008, min_inlier_fraction: float = 0.25,
                    ) -> tuple[NDArray[np.float64], Plane]:
    """``(T_cam_world, plane_cam)`` from one depth image. Raises :class:`PlaneFitError` when no support
    plane holds at least ``min_inlier_fraction`` of the valid depth points (e.g. no table in view)."""
    pts = backproject_depth(depth_m, camera, stride=stride)
    if pts.shape[0] < 100:
        raise PlaneFitError(f"too few valid depth points ({pts.shape[0]}) to fit the support plane")
    plane = ransac_plane(pts, distance_threshold, min_inlier_fraction, seed)
    return world_from_plane(plane), plane


def ransac_plane(points: NDArray[np.float64], distance_threshold: float = 0.008, min_inlier_fraction: float = 0.25,
                 seed: int = 0, iterations: int = 200) -> Plane:
    """Seeded RANSAC + least-squares refinement, bit-for-bit reproducible.

    ``geometry.fit_plane_ransac`` (open3d ``segment_plane``) runs its iterations on several threads and
    its result varied between runs in one process, which breaks resumable, deterministic generation;
    this numpy version scores all hypotheses at once (~10 ms for 20k points).
    """
    P = np.asarray(points, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(P), size=(iterations, 3))
    a, b, c = P[idx[:, 0]], P[idx[:, 1]], P[idx[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-9
    n, a = n[ok] / norm[ok, None], a[ok]
    if len(n) == 0:
        raise PlaneFitError("degenerate depth points: no plane hypothesis")
    sub = P[:: max(1, len(P) // 4000)]
    counts = (np.abs(sub @ n.T - np.sum(n * a, axis=1)) < distance_threshold).sum(axis=0)
    best = int(np.argmax(counts))
    normal, off = n[best], -float(n[best] @ a[best])
    for _ in range(3):  # refine: least squares on the inliers of all points
        inl = np.abs(P @ normal + off) < distance_threshold
        if inl.sum() < 3:
            break
        Q = P[inl]
        ctr = Q.mean(axis=0)
        nn = np.linalg.svd(Q - ctr, full_matrices=False)[2][-1]
        normal, off = (nn if nn @ normal >= 0 else -nn), -float((nn if nn @ normal >= 0 else -nn) @ ctr)
    inl = np.abs(P @ normal + off) < distance_threshold
    if inl.sum() < min_inlier_fraction * len(P):
        raise PlaneFitError(f"no dominant plane: best plane holds {int(inl.sum())} of {len(P)} depth points "
                            f"within {distance_threshold} m (need {min_inlier_fraction:.0%})")
    return Plane(normal, off).facing((0.0, 0.0, 0.0))


@dataclass
class SceneWorld:
    """Objects of a static scene in the world frame and each frame's camera pose in it."""

    T_world_obj: list[NDArray[np.float64]]  # per gt instance
    obj_ids: list[int]
    T_world_cam: dict[int, NDArray[np.float64]]
    plane_cam0: Plane

    @classmethod
    def from_frames(cls, T_cam_obj_by_im: dict[int, list[NDArray[np.float64]]], obj_ids: list[int],
                    ref_im: int, T_cam_world_ref: NDArray[np.float64], plane_ref: Plane) -> SceneWorld:
        """Objects placed from the reference frame; other frames' cameras from the first instance's pose
        (objects are static, so ``T_cam_k_cam_ref = T_cam_k_obj @ inv(T_cam_ref_obj)``)."""
        T_world_cam_ref = invert_transform(T_cam_world_ref)
        objs = [T_world_cam_ref @ T for T in T_cam_obj_by_im[ref_im]]
        cams = {}
        for im, Ts in T_cam_obj_by_im.items():
            T_ck_cref = Ts[0] @ invert_transform(T_cam_obj_by_im[ref_im][0])
            cams[im] = T_world_cam_ref @ invert_transform(T_ck_cref)
        return cls(objs, list(obj_ids), cams, plane_ref)

    def T_cam_world(self, im_id: int) -> NDArray[np.float64]:
        return invert_transform(self.T_world_cam[im_id])
