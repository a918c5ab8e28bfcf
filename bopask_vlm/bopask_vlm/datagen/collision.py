"""Collision checks for dataset generation on python-fcl, with geometry built once per shape and placed by
pose.

A :class:`Shape` holds one FCL geometry (``fcl.Convex`` for a convex mesh, else a ``fcl.BVHModel``) in the
shape's own frame, plus its convex-hull vertices for bounding boxes. A :class:`CollisionWorld` places
shapes by 4x4 pose (many instances may share one Shape: the geometry is never copied or rebuilt) above a
table, the half-space ``z < table_top``, and answers "which objects does this shape at this pose touch".

Why not trimesh's ``CollisionManager``: its ``add_object``/``in_collision_single`` build the FCL geometry of
the mesh on every call (the BVH of a 45k-face LineMOD mesh took 0.19 s, per scene), and it maps contacts to
names by geometry, so two instances sharing one geometry could not be told apart. Here the names come from
the narrow-phase pair that collided, and a bounding-box test skips pairs that cannot touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

TABLE = "table"


@dataclass
class Shape:
    """FCL geometry of a mesh in its own frame, and the mesh's convex-hull vertices (for boxes and the table)."""

    geom: Any  # fcl.Convex | fcl.BVHModel
    hull_vertices: NDArray[np.float64]  # (H, 3)
    convex: bool
    faces: NDArray[np.int64] | None = None  # of a convex shape's mesh, indexing hull_vertices (:meth:`inflated`)

    @classmethod
    def from_mesh(cls, mesh: Any, hull_vertices: NDArray[np.float64] | None = None) -> Shape:
        """``fcl.Convex`` if ``mesh`` is convex, else a BVH (the rule trimesh's CollisionManager uses).
        ``hull_vertices``: default, the mesh's own vertices if it is convex (so that ``faces`` index them),
        else those of its convex hull."""
        from trimesh.collision import mesh_to_BVH, mesh_to_convex

        convex = bool(mesh.is_convex)
        geom = mesh_to_convex(mesh) if convex else mesh_to_BVH(mesh)
        if hull_vertices is None:
            hull_vertices = mesh.vertices if convex else mesh.convex_hull.vertices
        hv = np.asarray(hull_vertices, float)
        return cls(geom, hv, convex, np.asarray(mesh.faces, np.int64) if convex else None)

    def inflated(self, margin: float) -> Shape:
        """A convex shape grown by ``margin`` along each of its frame's axes (scaled about its box centre):
        checks with it keep about ``margin`` of clearance."""
        import fcl

        if not self.convex or self.faces is None:
            raise ValueError("only a convex shape can be inflated")
        lo, hi = self.hull_vertices.min(0), self.hull_vertices.max(0)
        c, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-6)
        v = c + (self.hull_vertices - c) * ((half + margin) / half)
        fs = np.concatenate([np.full((len(self.faces), 1), 3, np.int64), self.faces], axis=1)
        return Shape(fcl.Convex(v, len(fs), fs.reshape(-1)), v, True, self.faces)

    def bounds(self, T: NDArray[np.float64]) -> NDArray[np.float64]:
        """(2, 3) world axis-aligned box of the shape at pose ``T`` (exact: from its hull vertices)."""
        v = self.hull_vertices @ T[:3, :3].T + T[:3, 3]
        return np.stack([v.min(0), v.max(0)])

    def bounds_many(self, Ts: NDArray[np.float64]) -> NDArray[np.float64]:
        """(K, 2, 3) world boxes of the shape at each of the (K, 4, 4) poses ``Ts``."""
        v = Ts[:, :3, :3] @ self.hull_vertices.T + Ts[:, :3, 3, None]  # (K, 3, V)
        return np.stack([v.min(axis=2), v.max(axis=2)], axis=1)


@dataclass
class Placed:
    """A shape at a world pose, with its world box."""

    shape: Shape
    T: NDArray[np.float64]

    @property
    def bounds(self) -> NDArray[np.float64]:
        return self.shape.bounds(self.T)


def _tf(T: NDArray[np.float64]) -> Any:
    import fcl

    return fcl.Transform(np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3]))


class CollisionWorld:
    """Named shapes placed by pose over a table (the half-space below ``table_top``; None: no table)."""

    def __init__(self, table_top: float | None = 0.0) -> None:
        import fcl

        self.table_top = table_top
        self.names: list[str] = []
        self.objects: list[Any] = []
        self.boxes = np.zeros((0, 2, 3))
        self._request = fcl.CollisionRequest()  # boolean query: one contact is enough
        self._probe: dict[int, Any] = {}

    def add(self, name: str, shape: Shape, T: NDArray[np.float64] | None = None) -> None:
        import fcl

        if name == TABLE:
            raise ValueError(f"{TABLE!r} names the table")
        T = np.eye(4) if T is None else np.asarray(T, float)
        self.names.append(name)
        self.objects.append(fcl.CollisionObject(shape.geom, _tf(T)))
        self.boxes = np.concatenate([self.boxes, shape.bounds(T)[None]])

    def hits_table(self, boxes: NDArray[np.float64]) -> NDArray[np.bool_]:
        """For each (K, 2, 3) world box of a shape: does it reach below the table top (exact for boxes
        made from hull vertices: the lowest vertex is the lowest point)."""
        if self.table_top is None:
            return np.zeros(len(boxes), bool)
        return boxes[:, 0, 2] < self.table_top

    def colliding(self, shape: Shape, T: NDArray[np.float64], *, skip: frozenset[str] = frozenset(),
                  table: bool = True, box: NDArray[np.float64] | None = None) -> set[str]:
        """Names of the objects (and ``"table"``) that ``shape`` at pose ``T`` touches; objects named in
        ``skip`` are not tested. ``box``: the shape's world box at ``T`` when the caller has it already
        (e.g. for many poses at once, :meth:`Shape.bounds_many`)."""
        import fcl

        box = shape.bounds(T) if box is None else box
        out: set[str] = set()
        if table and self.table_top is not None and box[0, 2] < self.table_top:
            out.add(TABLE)
        if not self.objects:
            return out
        near = np.flatnonzero(((self.boxes[:, 0] <= box[1]) & (box[0] <= self.boxes[:, 1])).all(axis=1))
        if near.size == 0:
            return out
        probe = self._probe.get(id(shape))
        if probe is None or probe[0] is not shape:
            probe = (shape, fcl.CollisionObject(shape.geom, _tf(T)))
            self._probe[id(shape)] = probe
        else:
            probe[1].setTransform(_tf(T))
        for i in near:
            name = self.names[i]
            if name in skip:
                continue
            if fcl.collide(probe[1], self.objects[i], self._request, fcl.CollisionResult()):
                out.add(name)
        return out

    def collides_translated(self, shape: Shape, T: NDArray[np.float64], offsets: NDArray[np.float64], *,
                            skip: frozenset[str] = frozenset()) -> bool:
        """Whether ``shape`` at pose ``T`` moved by any of the (N, 3) ``offsets`` touches the table or an
        object not in ``skip``. All offsets' boxes are tested at once; FCL runs only where boxes overlap."""
        import fcl

        offsets = np.atleast_2d(np.asarray(offsets, float))
        box = shape.bounds(T)
        boxes = box[None] + offsets[:, None, :]  # a translation moves the box with it
        if self.table_top is not None and bool((boxes[:, 0, 2] < self.table_top).any()):
            return True
        if not self.objects:
            return False
        live = np.array([n not in skip for n in self.names])
        over = (((self.boxes[None, :, 0] <= boxes[:, None, 1]) & (boxes[:, None, 0] <= self.boxes[None, :, 1])).all(axis=2)
                & live[None])
        rows = np.flatnonzero(over.any(axis=1))
        if rows.size == 0:
            return False
        probe = fcl.CollisionObject(shape.geom, _tf(T))
        Tk = T.copy()
        for r in rows:
            Tk[:3, 3] = T[:3, 3] + offsets[r]
            probe.setTransform(_tf(Tk))
            for i in np.flatnonzero(over[r]):
                if fcl.collide(probe, self.objects[i], self._request, fcl.CollisionResult()):
                    return True
        return False
