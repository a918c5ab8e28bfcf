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
    fit_plane_ransac,
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
    plane, _ = fit_plane_ransac(pts, distance_threshold, iterations=200,
                                min_inlier_fraction=min_inlier_fraction, seed=seed)
    return world_from_plane(plane), plane


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
