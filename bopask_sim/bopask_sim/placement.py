"""Where the objects of a scene start: resting poses on the table top (z = 0) whose footprints (the convex hull of
the placed mesh projected on the table) keep at least ``min_gap`` between them, some of them placed close on
purpose (a gap drawn between ``min_gap`` and ``near_gap``) or touching (:class:`Clutter`). Footprint distances are
shapely's exact polygon distances; the synthetic scenes' placement (``synthetic.place_objects``, circles
``gap`` apart) stays the ``primitives`` family's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_sim.objects import SimObject
from bopask_vlm.geometry import make_transform

#: footprints this close count as touching (m): objects placed touching start this far apart, then settle
TOUCH_GAP = 0.0005


class PlacementError(ValueError):
    """The objects do not fit on the area with the requested gaps."""


@dataclass(frozen=True)
class Clutter:
    """How tightly objects are placed.

    ``min_gap``: smallest footprint gap (m) between objects that are not touching; ``p_touch``: chance that an
    object is placed touching one already placed; ``p_near``: chance that it is placed at a gap drawn uniformly
    in ``[min_gap, near_gap]`` from one already placed (otherwise anywhere on the area, ``min_gap`` from all);
    ``p_lying``: chance that a cylinder (can, bottle, mug) lies on its side.
    """

    min_gap: float = 0.005
    near_gap: float = 0.02
    p_touch: float = 0.25
    p_near: float = 0.35
    p_lying: float = 0.4

    def __post_init__(self) -> None:
        if self.min_gap < 0 or self.near_gap < self.min_gap:
            raise PlacementError(f"need 0 <= min_gap <= near_gap, got {self.min_gap}, {self.near_gap}")
        if not (0 <= self.p_touch and 0 <= self.p_near and self.p_touch + self.p_near <= 1 and 0 <= self.p_lying <= 1):
            raise PlacementError("p_touch, p_near, p_lying must be probabilities (p_touch + p_near <= 1)")


def _rot_z(a: float) -> NDArray[np.float64]:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def resting_rotation(obj: SimObject, rng: np.random.Generator, p_lying: float) -> NDArray[np.float64]:
    """Boxes on any face, cylinders upright or lying (``p_lying``), the rest as their model frame stands, then a
    random yaw."""
    R = np.eye(3)
    shape = obj.entry.shape if obj.source == "primitive" else "mesh"
    if shape == "box" and rng.random() < 0.35:
        R = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]) if rng.random() < 0.5 else \
            np.array([[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]])
    elif shape == "cylinder" and rng.random() < p_lying:
        R = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # axis (model z) along world y
    return _rot_z(float(rng.uniform(-np.pi, np.pi))) @ R


def footprint(mesh: Any, T: NDArray[np.float64]) -> Any:
    """The shapely polygon of the mesh placed at ``T`` projected on the table (its convex hull)."""
    from shapely.geometry import MultiPoint

    v = np.asarray(mesh.convex_hull.vertices) @ T[:3, :3].T + T[:3, 3]
    return MultiPoint(v[:, :2]).convex_hull


def _pose(R: NDArray[np.float64], mesh: Any, xy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Footprint centre (bounding box) at ``xy``, bottom on z = 0."""
    v = np.asarray(mesh.vertices) @ R.T
    c = (v[:, :2].max(0) + v[:, :2].min(0)) / 2
    return make_transform(R, np.array([xy[0] - c[0], xy[1] - c[1], -v[:, 2].min()]))


def _slide_to_gap(local: Any, other: Any, centre: NDArray[np.float64], direction: NDArray[np.float64],
                  gap: float) -> NDArray[np.float64]:
    """Footprint centre along the ray from ``centre`` in ``direction`` where the footprint ``local`` (centred on
    the origin) is ``gap`` from ``other`` (bisection to 0.1 mm)."""
    from shapely.affinity import translate

    lo, hi = 0.0, 0.5
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        xy = centre + mid * direction
        if translate(local, xy[0], xy[1]).distance(other) < gap:
            lo = mid
        else:
            hi = mid
    return centre + hi * direction


def place(objs: list[SimObject], meshes: dict[int, Any], rng: np.random.Generator, area: float,
          clutter: Clutter, tries: int = 400) -> tuple[list[NDArray[np.float64]], list[tuple[int, int]]]:
    """World poses of the objects resting on z = 0 inside the ``area`` x ``area`` square around the origin, and the
    pairs placed touching. Every other pair's footprints are at least ``clutter.min_gap`` apart."""
    from shapely.affinity import translate

    poses: list[NDArray[np.float64]] = []
    prints: list[Any] = []
    touching: list[tuple[int, int]] = []
    half = area / 2
    for k, obj in enumerate(objs):
        mesh = meshes[obj.obj_id]
        for _ in range(tries):
            R = resting_rotation(obj, rng, clutter.p_lying)
            local = footprint(mesh, _pose(R, mesh, np.zeros(2)))  # footprint centred on the origin
            u = rng.random()
            mode = "free" if not prints else "touch" if u < clutter.p_touch else \
                "near" if u < clutter.p_touch + clutter.p_near else "free"
            if mode == "free":
                xy = rng.uniform(-half, half, size=2)
                j, gap = -1, clutter.min_gap
            else:
                j = int(rng.integers(len(prints)))
                gap = TOUCH_GAP if mode == "touch" else float(rng.uniform(clutter.min_gap, clutter.near_gap))
                a = float(rng.uniform(-np.pi, np.pi))
                c = np.asarray(prints[j].centroid.coords[0])
                xy = _slide_to_gap(local, prints[j], c, np.array([math.cos(a), math.sin(a)]), gap)
            T = _pose(R, mesh, xy)
            fp = translate(local, xy[0], xy[1])
            lo_x, lo_y, hi_x, hi_y = fp.bounds
            if lo_x < -half or lo_y < -half or hi_x > half or hi_y > half:
                continue
            ok = all(fp.distance(q) >= (TOUCH_GAP * 0.5 if i == j and mode == "touch" else clutter.min_gap)
                     for i, q in enumerate(prints))
            if ok:
                break
        else:
            raise PlacementError(f"could not place object {k + 1} of {len(objs)} on a {area} m square with gaps "
                                 f">= {clutter.min_gap} m; use fewer objects")
        if mode == "touch":
            touching.append((j, k))
        poses.append(T)
        prints.append(fp)
    return poses, touching
