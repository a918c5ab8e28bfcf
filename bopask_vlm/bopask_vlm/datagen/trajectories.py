"""Trajectories moving object A onto object B: only where B's top offers A a flat, big-enough support
(:func:`supports`: the flat faces at B's top and at A's bottom both hold A's centre of mass with a margin), an RRT in 3D (translation of A; goal bias 0.1) from A lifted
off the table to a placement resting on B, every state and edge collision-checked with A's convex hull grown
by ``CLEARANCE`` against the other objects' hulls and the table (python-fcl, shapes placed by pose:
:mod:`bopask_vlm.datagen.collision`), then shortened with Ramer-Douglas-Peucker and re-checked.

Why not OMPL here: OMPL's RNG seed is process-global and can be set only before the first planner is
made, so per-scene deterministic (and resumable, parallel) output could not be guaranteed; the planner
itself is ~40 lines of numpy. Why not the ``simplification`` package for RDP: it accepts (N, 2)
coordinates only, and these paths are 3D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.datagen.collision import TABLE, CollisionWorld, Placed

LIFT = 0.02  # A is lifted this much before moving, and placed this much above B
CLEARANCE = 0.004  # A's hull is grown this much for the checks (the world is fitted from depth: mm off)
GOAL_BIAS = 0.1
SUPPORT_TOL = 0.003  # faces whose vertices lie within this of B's top belong to its top
SUPPORT_TILT_DEG = 10.0  # ... and whose normal is at most this far from straight up
SUPPORT_MARGIN = 0.01  # A's centre of mass stays at least this far inside B's flat top
SUPPORT_TIP_DEG = 25.0  # ... and far enough that A tilted by this much still has it over the top (a tall A dropped 2 cm rocks)
SUPPORT_MIN_COVER = 0.6  # B's top carries at least this share of A's flat bottom (a long A rocks off a small B)


@dataclass
class Trajectory:
    a: int
    b: int
    path_world: NDArray[np.float64]  # (N, 3) positions of A's reference point; first = A, last = placement
    placement_world: NDArray[np.float64]  # (3,)


def flat_face_points(vertices: NDArray[np.float64], faces: NDArray[np.int64], side: str = "top",
                     tol: float = SUPPORT_TOL, max_tilt_deg: float = SUPPORT_TILT_DEG) -> NDArray[np.float64]:
    """The xy corners of a mesh's flat top (``side="top"``: faces facing up within ``max_tilt_deg`` whose
    vertices lie within ``tol`` of its highest point) or flat bottom (``"bottom"``: facing down, at its lowest
    point); ``vertices`` at the world pose (z up). None for a ball's or a cone's apex; a thin strip for the
    rim of a handle."""
    V = np.asarray(vertices, float)
    F = np.asarray(faces, np.int64).reshape(-1, 3)
    if side not in ("top", "bottom"):
        raise ValueError(f"side must be 'top' or 'bottom', got {side!r}")
    if not len(V) or not len(F):
        return np.zeros((0, 2))
    sgn = 1.0 if side == "top" else -1.0
    tri = V[F]  # (F, 3, 3)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ln = np.linalg.norm(nrm, axis=1)
    facing = np.zeros(len(F), bool)
    ok = ln > 1e-12
    facing[ok] = sgn * nrm[ok, 2] / ln[ok] >= np.cos(np.radians(max_tilt_deg))
    z = sgn * tri[:, :, 2]
    sel = facing & (z.min(axis=1) >= sgn * (V[:, 2].max() if side == "top" else V[:, 2].min()) - tol)
    return tri[sel, :, :2].reshape(-1, 2)


def in_polygon(points: NDArray[np.float64], corners: NDArray[np.float64]) -> NDArray[np.bool_]:
    """(M,) whether xy points lie in the convex hull of ``corners`` (all False when it has no area)."""
    from scipy.spatial import Delaunay, QhullError

    P = np.asarray(points, float).reshape(-1, 2)
    C = np.unique(np.round(np.asarray(corners, float).reshape(-1, 2), 9), axis=0)
    if len(C) < 3:
        return np.zeros(len(P), bool)
    try:
        return Delaunay(C).find_simplex(P) >= 0
    except QhullError:  # collinear: a line holds nothing
        return np.zeros(len(P), bool)


def supports(top: NDArray[np.float64], bottom: NDArray[np.float64], com_xy: NDArray[np.float64],
             com_height: float, margin: float = SUPPORT_MARGIN, tip_deg: float = SUPPORT_TIP_DEG,
             min_cover: float = SUPPORT_MIN_COVER) -> bool:
    """Whether B's flat ``top`` holds A's flat ``bottom`` (:func:`flat_face_points`, A's already moved to its
    placement) with A's centre of mass at ``com_xy``, ``com_height`` above A's bottom: a disc around it of
    radius ``max(margin, com_height * tan(tip_deg))`` (A pushed or tilted that much on release still has its
    centre of mass over the contact) lies inside both support polygons, and B's top carries at least
    ``min_cover`` of A's bottom (sampled on a grid)."""
    r = max(float(margin), float(com_height) * float(np.tan(np.radians(tip_deg))))
    ang = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    c = np.asarray(com_xy, float).reshape(2)
    circle = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    disc = np.vstack([c, c + r * circle, c + 0.5 * r * circle])
    if not (in_polygon(disc, top).all() and in_polygon(disc, bottom).all()):
        return False
    B = np.asarray(bottom, float).reshape(-1, 2)
    lo, hi = B.min(0), B.max(0)
    g = np.stack(np.meshgrid(*[np.linspace(lo[k], hi[k], 25) for k in range(2)]), axis=-1).reshape(-1, 2)
    g = g[in_polygon(g, bottom)]
    return bool(len(g) and in_polygon(g, top).mean() >= min_cover)


def can_support(b_vertices: NDArray[np.float64], b_faces: NDArray[np.int64], a_vertices: NDArray[np.float64],
                a_faces: NDArray[np.int64], a_hull: Placed, b_bounds: NDArray[np.float64]) -> bool:
    """Whether B (its mesh at its world pose, its world box) can hold A (its mesh and convex hull at their
    pose) placed as :func:`plan_move` places it: A's box bottom centre on B's box top centre, translated."""
    import trimesh

    s = a_hull.shape
    v = s.hull_vertices @ a_hull.T[:3, :3].T + a_hull.T[:3, 3]
    lo, hi = v.min(0), v.max(0)
    # a convex shape is its own hull, moved rigidly: its faces still close it (qhull only for a non-convex one)
    hull = trimesh.Trimesh(v, s.faces, process=False) if s.faces is not None else trimesh.convex.convex_hull(v)
    com = np.asarray(hull.center_mass if hull.volume > 1e-12 else v.mean(0), float)
    base = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    blo, bhi = np.asarray(b_bounds, float)
    shift = np.array([(blo[0] + bhi[0]) / 2, (blo[1] + bhi[1]) / 2]) - base[:2]
    bottom = flat_face_points(a_vertices, a_faces, "bottom") + shift
    return supports(flat_face_points(b_vertices, b_faces, "top"), bottom, com[:2] + shift, float(com[2] - base[2]))


def rdp(points: NDArray[np.float64], eps: float) -> NDArray[np.float64]:
    """Ramer-Douglas-Peucker simplification of an (N, D) polyline."""
    P = np.asarray(points, float)
    if len(P) < 3:
        return P
    a, b = P[0], P[-1]
    ab = b - a
    L = np.linalg.norm(ab)
    rel = P[1:-1] - a
    if L < 1e-12:
        d = np.linalg.norm(rel, axis=1)
    else:
        proj = np.clip(rel @ ab / L**2, 0, 1)
        d = np.linalg.norm(rel - proj[:, None] * ab, axis=1)
    i = int(np.argmax(d)) + 1
    if d[i - 1] > eps:
        return np.vstack([rdp(P[: i + 1], eps)[:-1], rdp(P[i:], eps)])
    return np.vstack([a, b])


class _Checker:
    """Collision test of A's convex hull (conservative, and fast for FCL), grown by ``clearance``,
    translated so that its reference point ``ref`` is at ``p``."""

    def __init__(self, cm: CollisionWorld, obj_a: Placed, a: int, ref: NDArray[np.float64],
                 clearance: float = CLEARANCE) -> None:
        self.cm, self.skip, self.ref = cm, frozenset({str(a)}), ref
        self.shape, self.T = (obj_a.shape.inflated(clearance) if clearance > 0 else obj_a.shape), obj_a.T

    def ok(self, p: NDArray[np.float64]) -> bool:
        return not self.cm.collides_translated(self.shape, self.T, (p - self.ref)[None], skip=self.skip)

    def edge_ok(self, p: NDArray[np.float64], q: NDArray[np.float64], step: float = 0.005) -> bool:
        """Every point at most ``step`` apart along p -> q (p itself excluded) is free (checked at once)."""
        n = max(1, int(np.ceil(np.linalg.norm(q - p) / step)))
        pts = p + (q - p) * (np.arange(1, n + 1)[:, None] / n)
        return not self.cm.collides_translated(self.shape, self.T, pts - self.ref, skip=self.skip)


def plan_move(a: int, b: int, objects: list[Placed], cm: CollisionWorld, rng: np.random.Generator, *,
              max_iters: int = 1500, step: float = 0.04, goal_tol: float = 1e-6,
              bounds_margin: float = 0.15, z_max: float = 0.45) -> Trajectory | None:
    """Path of A's bounding-box bottom centre from rest to resting on top of B; None if the RRT fails.
    ``objects``: every instance's convex hull at its world pose; ``cm`` holds them (name = index)."""
    (lo_a, hi_a), (lo_b, hi_b) = objects[a].bounds, objects[b].bounds
    ref = np.array([(lo_a[0] + hi_a[0]) / 2, (lo_a[1] + hi_a[1]) / 2, lo_a[2]])
    rest = ref.copy()
    start = rest + [0, 0, LIFT]
    placement = np.array([(lo_b[0] + hi_b[0]) / 2, (lo_b[1] + hi_b[1]) / 2, hi_b[2] + LIFT])
    chk = _Checker(cm, objects[a], a, ref)
    if not (chk.ok(start) and chk.ok(placement)):
        return None
    allb = np.array([o.bounds for o in objects])
    lo = np.array([*(allb[:, 0, :2].min(0) - bounds_margin), start[2]])
    hi = np.array([*(allb[:, 1, :2].max(0) + bounds_margin), z_max])
    nodes, parent = [start], [-1]
    found = -1
    for _ in range(max_iters):
        target = placement if rng.random() < GOAL_BIAS else rng.uniform(lo, hi)
        arr = np.asarray(nodes)
        i = int(np.argmin(np.linalg.norm(arr - target, axis=1)))
        d = target - arr[i]
        dist = float(np.linalg.norm(d))
        new = target if dist <= step else arr[i] + d / dist * step
        if not chk.edge_ok(arr[i], new):
            continue
        nodes.append(new)
        parent.append(i)
        if np.linalg.norm(new - placement) <= goal_tol or (
                np.linalg.norm(new - placement) <= step and chk.edge_ok(new, placement)):
            if np.linalg.norm(new - placement) > goal_tol:
                nodes.append(placement)
                parent.append(len(nodes) - 2)
            found = len(nodes) - 1
            break
    if found < 0:
        return None
    path = []
    k = found
    while k >= 0:
        path.append(nodes[k])
        k = parent[k]
    path = _shortcut(np.array(path[::-1]), chk)
    simp = rdp(path, 0.01)
    if not all(chk.edge_ok(p, q) for p, q in zip(simp[:-1], simp[1:])):
        simp = path
    return Trajectory(a, b, np.vstack([rest, simp]), placement)


def _shortcut(path: NDArray[np.float64], chk: _Checker) -> NDArray[np.float64]:
    """Greedy shortcutting: from each kept point jump to the farthest point reachable in a straight line."""
    out, i = [path[0]], 0
    while i < len(path) - 1:
        j = len(path) - 1
        while j > i + 1 and not chk.edge_ok(path[i], path[j]):
            j -= 1
        out.append(path[j])
        i = j
    return np.array(out)


def path_collision_free(traj: Trajectory, objects: list[Placed], cm: CollisionWorld, step: float = 0.005) -> bool:
    """Independent check of a path (after the lift): no contact with the table or objects other than A."""
    lo, hi = objects[traj.a].bounds
    ref = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    chk = _Checker(cm, objects[traj.a], traj.a, ref)
    P = traj.path_world[1:]
    return chk.ok(P[0]) and all(chk.edge_ok(p, q, step) for p, q in zip(P[:-1], P[1:]))


__all__ = ["GOAL_BIAS", "LIFT", "TABLE", "Trajectory", "can_support", "flat_face_points", "in_polygon", "path_collision_free", "plan_move",
           "rdp", "supports"]
