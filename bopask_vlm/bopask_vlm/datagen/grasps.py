"""Parallel-jaw (Franka Panda) grasps: antipodal candidates sampled on the object mesh, rejected when the
open gripper collides with the table or any object (python-fcl through trimesh's CollisionManager),
scored, and the best few kept per object. The source of candidates is pluggable (:class:`GraspSource`):
a network such as M2T2 can supply ``T_world_gripper`` candidates where a GPU exists.

All poses are world frame (z up, table top at z = 0); gripper frame as :mod:`bopask_vlm.gripper`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bopask_vlm import gripper as G

TABLE = "table"


@dataclass
class Grasp:
    T_world_gripper: NDArray[np.float64]
    width: float
    score: float


@dataclass
class GraspResult:
    """Grasps of one object: the kept collision-free ones and, if none is free, who blocks it."""

    kept: list[Grasp]
    n_candidates: int
    n_free: int  # collision-free candidates checked (checking stops once ``keep`` grasps are kept)
    blockers: list[int] = field(default_factory=list)  # instance indices to move first (empty if none)

    @property
    def blocked(self) -> bool:
        return self.n_candidates > 0 and self.n_free == 0


class GraspSource(Protocol):
    """Proposes candidate grasps for one object mesh (world frame)."""

    def propose(self, mesh_world: Any, rng: np.random.Generator) -> list[Grasp]: ...


def gripper_mesh(opening: float = G.MAX_OPENING) -> Any:
    """Collision geometry of the open Panda hand: palm box and two finger boxes (gripper frame)."""
    import trimesh

    palm = trimesh.creation.box(extents=(0.20, 0.06, 0.055))
    palm.apply_translation((0, 0, 0.0275))
    fz0, fz1 = G.FINGER_BASE_Z - 0.004, G.FINGER_TIP_Z
    parts = [palm]
    for s in (-1.0, 1.0):
        f = trimesh.creation.box(extents=(0.018, 0.022, fz1 - fz0))
        f.apply_translation((s * (opening / 2 + 0.009), 0, (fz0 + fz1) / 2))
        parts.append(f)
    # the finger bridge between palm and finger bases
    b = trimesh.creation.box(extents=(opening + 0.036, 0.022, fz0 - 0.055))
    b.apply_translation((0, 0, (0.055 + fz0) / 2))
    parts.append(b)
    return trimesh.util.concatenate(parts)


def pose_from_contacts(center: NDArray[np.float64], closing: NDArray[np.float64],
                       approach: NDArray[np.float64]) -> NDArray[np.float64]:
    """Gripper pose whose grasp point (``GRASP_DEPTH`` along +z) is ``center``, x along ``closing``."""
    x = closing / np.linalg.norm(closing)
    z = approach - (approach @ x) * x
    z /= np.linalg.norm(z)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = center - z * G.GRASP_DEPTH
    return T


class AntipodalSampler:
    """Antipodal contact pairs on the mesh surface (ray cast along the inward normal), each tried with a
    few approach directions about the closing axis; scored by top-down approach, antipodality and centring."""

    def __init__(self, n_points: int = 64, n_approach: int = 6, min_width: float = 0.004,
                 antipodal_cos: float = 0.9) -> None:
        self.n_points, self.n_approach = n_points, n_approach
        self.min_width, self.antipodal_cos = min_width, antipodal_cos

    def propose(self, mesh_world: Any, rng: np.random.Generator) -> list[Grasp]:
        import trimesh

        pts, tri = trimesh.sample.sample_surface(mesh_world, self.n_points, seed=int(rng.integers(2**31)))
        nrm = mesh_world.face_normals[tri]
        origins = pts - nrm * 1e-4
        locs, idx_ray, idx_tri = mesh_world.ray.intersects_location(origins, -nrm, multiple_hits=False)
        centroid = mesh_world.bounding_box.centroid
        diam = float(np.linalg.norm(mesh_world.extents))
        out: list[Grasp] = []
        for loc, r, t in zip(locs, idx_ray, idx_tri):
            p, q = pts[r], loc
            w = float(np.linalg.norm(q - p))
            if not (self.min_width < w < G.MAX_OPENING - 0.004):
                continue
            x = (q - p) / w
            # friction cone at the far contact: its outward normal within acos(antipodal_cos) of the line
            anti = float(mesh_world.face_normals[t] @ x)
            if anti < self.antipodal_cos:
                continue
            c = (p + q) / 2
            # approach directions perpendicular to x, starting from the most top-down one
            down = np.array([0.0, 0.0, -1.0])
            z0 = down - (down @ x) * x
            if np.linalg.norm(z0) < 1e-3:
                z0 = np.cross(x, [1.0, 0.0, 0.0])
            z0 /= np.linalg.norm(z0)
            y0 = np.cross(z0, x)
            off = float(rng.uniform(0, 2 * np.pi / self.n_approach))
            for k in range(self.n_approach):
                a = off + 2 * np.pi * k / self.n_approach
                z = np.cos(a) * z0 + np.sin(a) * y0
                topdown = max(0.0, float(-z[2]))
                centred = 1.0 - min(1.0, float(np.linalg.norm(c - centroid)) / max(diam / 2, 1e-3))
                score = 0.55 * topdown + 0.25 * centred + 0.2 * (anti - self.antipodal_cos) / (1 - self.antipodal_cos)
                out.append(Grasp(pose_from_contacts(c, x, z), w, score))
        return out


def _distinct(g: Grasp, kept: list[Grasp], min_dist: float = 0.012, min_angle_deg: float = 25.0) -> bool:
    for k in kept:
        d = np.linalg.norm(G.keypoints_3d(g.T_world_gripper)[0] - G.keypoints_3d(k.T_world_gripper)[0])
        cosang = (np.trace(g.T_world_gripper[:3, :3].T @ k.T_world_gripper[:3, :3]) - 1) / 2
        if d < min_dist and np.degrees(np.arccos(np.clip(cosang, -1, 1))) < min_angle_deg:
            return False
    return True


def table_box(size: float = 2.0, top: float = 0.0) -> Any:
    import trimesh

    t = trimesh.creation.box(extents=(size, size, 0.1))
    t.apply_translation((0, 0, top - 0.05))
    return t


def collision_world(meshes_world: list[Any], table_top: float = 0.0) -> Any:
    """A CollisionManager with the table (name ``table``) and every instance (name = its index)."""
    import trimesh

    cm = trimesh.collision.CollisionManager()
    cm.add_object(TABLE, table_box(top=table_top))
    for i, m in enumerate(meshes_world):
        cm.add_object(str(i), m)
    return cm


_FCL_GEOM: dict[int, tuple[Any, Any]] = {}


def in_collision(cm: Any, mesh: Any, T: NDArray[np.float64]) -> set[str]:
    """Names of the manager's objects that ``mesh`` at pose ``T`` touches.

    Same as ``cm.in_collision_single(mesh, T, return_names=True)`` but with the mesh's FCL geometry
    (BVH) built once and reused: trimesh rebuilds it on every call, which dominated the run time.
    """
    import fcl

    entry = _FCL_GEOM.get(id(mesh))
    if entry is None or entry[0] is not mesh:
        entry = (mesh, cm._get_fcl_obj(mesh))  # trimesh 5.2 internal: mesh -> fcl BVHModel/Convex
        _FCL_GEOM[id(mesh)] = entry
        if len(_FCL_GEOM) > 256:
            _FCL_GEOM.pop(next(iter(_FCL_GEOM)))
    geom = entry[1]
    o = fcl.CollisionObject(geom, fcl.Transform(T[:3, :3], T[:3, 3]))
    cdata = fcl.CollisionData(request=fcl.CollisionRequest(num_max_contacts=100000, enable_contact=True))
    cm._manager.collide(o, cdata, fcl.defaultCollisionCallback)
    if not cdata.result.is_collision:
        return set()
    names = set()
    for c in cdata.result.contacts:
        cg = c.o2 if c.o1 == geom else c.o1
        names.add(cm._extract_name(cg))
    return names


def compute_grasps(meshes_world: list[Any], rng: np.random.Generator, *, source: GraspSource | None = None,
                   keep: int = 5, table_top: float = 0.0, cm: Any = None) -> list[GraspResult]:
    """Grasps of every instance, collision-checked against the table and all objects (incl. itself)."""
    src = source or AntipodalSampler()
    cm = cm or collision_world(meshes_world, table_top)
    hand = gripper_mesh()
    results = []
    for i, m in enumerate(meshes_world):
        cands = sorted(src.propose(m, rng), key=lambda g: -g.score)
        kept: list[Grasp] = []
        n_free = 0
        best_block: tuple[int, float, list[int]] | None = None
        for g in cands:
            if len(kept) >= keep:  # best ones found: the rest need no check (n_free is then a lower bound)
                break
            names = in_collision(cm, hand, g.T_world_gripper)
            if not names:
                n_free += 1
                if len(kept) < keep and _distinct(g, kept):
                    kept.append(g)
                continue
            if TABLE in names or str(i) in names:
                continue
            blk = sorted(int(n) for n in names)
            key = (len(blk), -g.score, blk)
            if best_block is None or key[:2] < best_block[:2]:
                best_block = key
        blockers = best_block[2] if (n_free == 0 and best_block is not None) else []
        results.append(GraspResult(kept, len(cands), n_free, blockers))
    return results
