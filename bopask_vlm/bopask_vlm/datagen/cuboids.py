"""3D cuboids of objects from ``models_info`` boxes and poses, corners in the BOP-ASK order:
bottom face (0-3) then top face (4-7), each counter-clockwise seen from above; top i above bottom i.
"Bottom" is the box face nearest the table in the world frame (the box axis most aligned with world z)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.geometry import transform_points


def box_corners_model(min_xyz: NDArray[np.float64], size: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 8 corners of a model-frame box (any order)."""
    c = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    return np.asarray(min_xyz, float) + c * np.asarray(size, float)


def cuboid_world(min_xyz: NDArray[np.float64], size: NDArray[np.float64],
                 T_world_obj: NDArray[np.float64]) -> NDArray[np.float64]:
    """(8, 3) world corners in BOP-ASK order (world z up)."""
    T = np.asarray(T_world_obj, float)
    R = T[:3, :3]
    up_axis = int(np.argmax(np.abs(R[2, :])))  # model axis most aligned with world z
    sign = np.sign(R[2, up_axis]) or 1.0
    mn, sz = np.asarray(min_xyz, float), np.asarray(size, float)
    # bottom face: the model-frame face on the low-world-z side of the up axis
    other = [a for a in range(3) if a != up_axis]
    low = mn[up_axis] if sign > 0 else mn[up_axis] + sz[up_axis]
    high = mn[up_axis] + sz[up_axis] if sign > 0 else mn[up_axis]
    face = []
    for i, j in ((0, 0), (1, 0), (1, 1), (0, 1)):
        p = np.zeros(3)
        p[up_axis] = low
        p[other[0]] = mn[other[0]] + i * sz[other[0]]
        p[other[1]] = mn[other[1]] + j * sz[other[1]]
        face.append(p)
    bottom_m = np.array(face)
    bottom_w = transform_points(T, bottom_m)
    c = bottom_w.mean(axis=0)
    ang = np.arctan2(bottom_w[:, 1] - c[1], bottom_w[:, 0] - c[0])
    order = np.argsort(ang)  # increasing angle about world +z: counter-clockwise seen from above
    # start at the corner with the smallest world x + y (a fixed, view-free rule)
    bottom_m = bottom_m[order]
    bottom_w = bottom_w[order]
    start = int(np.argmin(bottom_w[:, 0] + bottom_w[:, 1]))
    bottom_m = np.roll(bottom_m, -start, axis=0)
    top_m = bottom_m.copy()
    top_m[:, up_axis] = high
    return transform_points(T, np.vstack([bottom_m, top_m]))


def box_center_world(min_xyz: NDArray[np.float64], size: NDArray[np.float64],
                     T_world_obj: NDArray[np.float64]) -> NDArray[np.float64]:
    return transform_points(T_world_obj, (np.asarray(min_xyz) + np.asarray(size) / 2.0)[None])[0]
