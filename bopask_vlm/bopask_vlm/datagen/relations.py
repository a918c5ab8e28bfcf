"""Spatial relations in the world frame as seen from the camera, and relative depth.

For a frame, "forward" is the camera's viewing direction projected onto the table (away from the camera)
and "left" is world z x forward. A is *left of* B when A's centre lies more than ``margin`` further along
"left"; *in front of* B when it is more than ``margin`` nearer the camera along "forward"; *above* B when
A's bottom is at or above B's top and their footprints overlap. *Closer* compares the distances of the
object centres to the camera centre (with a margin). Ambiguous pairs give None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RELATIONS = ("left of", "right of", "in front of", "behind", "above", "below")


@dataclass(frozen=True)
class ObjectGeom:
    center: NDArray[np.float64]  # world, box centre
    bottom: float  # world z of the lowest corner
    top: float
    xy_min: NDArray[np.float64]
    xy_max: NDArray[np.float64]


def geom_from_corners(corners_world: NDArray[np.float64]) -> ObjectGeom:
    c = np.asarray(corners_world, float)
    return ObjectGeom(c.mean(0), float(c[:, 2].min()), float(c[:, 2].max()), c[:, :2].min(0), c[:, :2].max(0))


def view_axes(T_world_cam: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(forward, left) unit vectors on the table for this camera."""
    f = T_world_cam[:3, 2].copy()
    f[2] = 0.0
    if np.linalg.norm(f) < 1e-6:  # looking straight down: image up is forward
        f = -T_world_cam[:3, 1].copy()
        f[2] = 0.0
    f /= np.linalg.norm(f)
    left = np.cross([0.0, 0.0, 1.0], f)
    return f, left


def relation_holds(rel: str, a: ObjectGeom, b: ObjectGeom, T_world_cam: NDArray[np.float64],
                   margin: float = 0.03) -> bool | None:
    """True/False when clear, None when the relation is ambiguous for this pair and view."""
    f, left = view_axes(T_world_cam)
    d = a.center - b.center
    if rel in ("left of", "right of"):
        s = float(d @ left) * (1 if rel == "left of" else -1)
    elif rel in ("in front of", "behind"):
        s = float(-(d @ f)) * (1 if rel == "in front of" else -1)
    elif rel in ("above", "below"):
        top, bot = (a, b) if rel == "above" else (b, a)
        overlap = bool(np.all(top.xy_min < bot.xy_max) and np.all(bot.xy_min < top.xy_max))
        return overlap and top.bottom >= bot.top - 0.01
    else:
        raise ValueError(f"unknown relation {rel!r}; expected one of {RELATIONS}")
    if abs(s) < margin:
        return None
    return s > 0


def closer(a: ObjectGeom, b: ObjectGeom, T_world_cam: NDArray[np.float64], margin: float = 0.03) -> bool | None:
    eye = T_world_cam[:3, 3]
    da, db = np.linalg.norm(a.center - eye), np.linalg.norm(b.center - eye)
    if abs(da - db) < margin:
        return None
    return bool(da < db)
