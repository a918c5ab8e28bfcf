"""Parallel-jaw (Franka Panda) grasps: antipodal candidates sampled on the object mesh, rejected when the
open gripper collides with the table or any object (python-fcl, :mod:`bopask_vlm.datagen.collision`),
scored, and the best few kept per object. The source of candidates is pluggable (:class:`GraspSource`):
a network such as M2T2 can supply ``T_world_gripper`` candidates where a GPU exists.

Candidates are poses in the mesh's own frame (:class:`GraspCandidates`): dataset generation samples them
once per object model (:mod:`bopask_vlm.datagen.model_geometry`) and, per scene, only places them by the
instance's pose, scores them (the top-down term depends on the pose) and checks them against the table and
the other objects. All poses are world frame once placed (z up, table top at z = 0); gripper frame as
:mod:`bopask_vlm.gripper`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bopask_vlm import gripper as G
from bopask_vlm.datagen.collision import TABLE, CollisionWorld, Shape

__all__ = ["TABLE", "AntipodalSampler", "Grasp", "GraspCandidates", "GraspResult", "GraspSource", "collision_world",
           "compute_grasps", "gripper_mesh", "gripper_shape", "pose_from_contacts", "select_grasps"]

#: Score weights: approach from above, grasp centre near the box centre, antipodality.
W_TOPDOWN, W_CENTRED, W_ANTIPODAL = 0.55, 0.25, 0.2


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


@dataclass
class GraspCandidates:
    """K candidate grasps in a mesh's own frame, with the pose-independent part of their score."""

    T_mesh_gripper: NDArray[np.float64]  # (K, 4, 4)
    width: NDArray[np.float64]  # (K,) distance between the two contacts
    static_score: NDArray[np.float64]  # (K,) centring and antipodality terms
    contacts: NDArray[np.float64]  # (K, 2, 3) the two contact points on the mesh surface

    def __len__(self) -> int:
        return len(self.width)

    @classmethod
    def empty(cls) -> GraspCandidates:
        return cls(np.zeros((0, 4, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 2, 3)))

    def placed(self, T_world_mesh: NDArray[np.float64]) -> NDArray[np.float64]:
        """(K, 4, 4) world poses of the candidates for the mesh at ``T_world_mesh``."""
        return np.einsum("ij,kjl->kil", T_world_mesh, self.T_mesh_gripper)

    def scores(self, T_world_gripper: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scores of the placed candidates: the top-down term is ``-z_approach . world_z`` (clipped at 0)."""
        return W_TOPDOWN * np.maximum(0.0, -T_world_gripper[:, 2, 2]) + self.static_score


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


_HAND: list[Shape] = []


def gripper_shape() -> Shape:
    """The open hand's collision :class:`Shape`, built once per process."""
    if not _HAND:
        m = gripper_mesh()
        _HAND.append(Shape.from_mesh(m, m.vertices))  # all box corners: the exact hull extremes
    return _HAND[0]


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
    """Antipodal contact pairs on the mesh surface (ray cast along the inward normal), each tried with
    ``n_approach`` approach directions evenly spaced about the closing axis (random phase per pair);
    scored by top-down approach (once placed), antipodality and centring on the mesh's bounding box."""

    def __init__(self, n_points: int = 64, n_approach: int = 8, min_width: float = 0.004,
                 antipodal_cos: float = 0.9) -> None:
        self.n_points, self.n_approach = n_points, n_approach
        self.min_width, self.antipodal_cos = min_width, antipodal_cos

    def candidates(self, mesh: Any, rng: np.random.Generator) -> GraspCandidates:
        """Candidates in ``mesh``'s own frame (vectorised over contact pairs and approaches)."""
        import trimesh

        pts, tri = trimesh.sample.sample_surface(mesh, self.n_points, seed=int(rng.integers(2**31)))
        nrm = mesh.face_normals[tri]
        locs, idx_ray, idx_tri = mesh.ray.intersects_location(pts - nrm * 1e-4, -nrm, multiple_hits=False)
        order = np.argsort(idx_ray, kind="stable")  # the ray engine's hit order is not part of the contract
        locs, idx_ray, idx_tri = locs[order], idx_ray[order], idx_tri[order]
        p, q = pts[idx_ray], locs
        w = np.linalg.norm(q - p, axis=1)
        ok = (w > self.min_width) & (w < G.MAX_OPENING - 0.004)
        x = (q - p) / np.maximum(w, 1e-12)[:, None]
        # friction cone at the far contact: its outward normal within acos(antipodal_cos) of the line
        anti = np.einsum("ij,ij->i", mesh.face_normals[idx_tri], x)
        ok &= anti >= self.antipodal_cos
        p, q, w, x, anti = p[ok], q[ok], w[ok], x[ok], anti[ok]
        n = len(w)
        if n == 0:
            return GraspCandidates.empty()
        c = (p + q) / 2
        # a reference direction perpendicular to x: the mesh axis least aligned with it, made orthogonal
        ref = np.eye(3)[np.argmin(np.abs(x), axis=1)]
        z0 = ref - np.einsum("ij,ij->i", ref, x)[:, None] * x
        z0 /= np.linalg.norm(z0, axis=1, keepdims=True)
        y0 = np.cross(z0, x)
        off = rng.uniform(0, 2 * np.pi / self.n_approach, size=n)
        a = off[:, None] + 2 * np.pi * np.arange(self.n_approach)[None] / self.n_approach  # (n, A)
        z = np.cos(a)[..., None] * z0[:, None] + np.sin(a)[..., None] * y0[:, None]  # (n, A, 3)
        xx = np.broadcast_to(x[:, None], z.shape)
        T = np.zeros((n, self.n_approach, 4, 4))
        T[..., :3, 0], T[..., :3, 1], T[..., :3, 2] = xx, np.cross(z, xx), z
        T[..., :3, 3] = c[:, None] - z * G.GRASP_DEPTH
        T[..., 3, 3] = 1.0
        lo, hi = mesh.bounds
        centroid, diam = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
        centred = 1.0 - np.minimum(1.0, np.linalg.norm(c - centroid, axis=1) / max(diam / 2, 1e-3))
        static = W_CENTRED * centred + W_ANTIPODAL * (anti - self.antipodal_cos) / (1 - self.antipodal_cos)
        rep = self.n_approach
        return GraspCandidates(T.reshape(-1, 4, 4), np.repeat(w, rep), np.repeat(static, rep),
                               np.repeat(np.stack([p, q], axis=1), rep, axis=0))

    def propose(self, mesh_world: Any, rng: np.random.Generator) -> list[Grasp]:
        """:class:`GraspSource` form: candidates of a world-frame mesh as scored :class:`Grasp` objects."""
        cands = self.candidates(mesh_world, rng)
        s = cands.scores(cands.T_mesh_gripper)
        return [Grasp(T, float(w), float(v)) for T, w, v in zip(cands.T_mesh_gripper, cands.width, s)]


def _distinct(centre: NDArray[np.float64], R: NDArray[np.float64], kept_c: list[NDArray[np.float64]],
              kept_R: list[NDArray[np.float64]], min_dist: float = 0.012, min_angle_deg: float = 25.0) -> bool:
    """False when a kept grasp is both within ``min_dist`` (grasp centre) and ``min_angle_deg`` of this one."""
    if not kept_c:
        return True
    d = np.linalg.norm(np.asarray(kept_c) - centre, axis=1)
    cosang = (np.einsum("kij,ij->k", np.asarray(kept_R), R) - 1) / 2
    close = (d < min_dist) & (np.degrees(np.arccos(np.clip(cosang, -1, 1))) < min_angle_deg)
    return not bool(close.any())


def select_grasps(T_world_gripper: NDArray[np.float64], width: NDArray[np.float64], score: NDArray[np.float64],
                  index: int, world: CollisionWorld, *, keep: int = 5,
                  self_free: NDArray[np.bool_] | None = None) -> GraspResult:
    """Check candidates of instance ``index`` best score first until ``keep`` distinct free ones are kept.

    A candidate touching the table or the object itself is discarded; one touching only other objects
    names them as blockers (the smallest set, best score, of the candidates checked is reported when none
    is free). ``self_free``: the object's own-collision verdicts, precomputed per model in the model frame
    (then the object itself is skipped here); None checks it in ``world`` (name ``str(index)``).
    """
    hand = gripper_shape()
    n = len(width)
    name = str(index)
    if n == 0:
        return GraspResult([], 0, 0, [])
    order = np.argsort(-score, kind="stable")
    boxes = hand.bounds_many(T_world_gripper)
    discard = world.hits_table(boxes)
    if self_free is not None:
        discard |= ~np.asarray(self_free, bool)
    skip = frozenset({name}) if self_free is not None else frozenset()
    centres = T_world_gripper[:, :3, :3] @ G.skeleton_points()[0] + T_world_gripper[:, :3, 3]
    kept: list[Grasp] = []
    kept_c: list[NDArray[np.float64]] = []
    kept_R: list[NDArray[np.float64]] = []
    n_free = 0
    best_block: tuple[int, float, list[int]] | None = None
    for g in order:
        if len(kept) >= keep:  # best ones found: the rest need no check (n_free is then a lower bound)
            break
        if discard[g]:
            continue
        names = world.colliding(hand, T_world_gripper[g], skip=skip, table=False, box=boxes[g])
        if not names:
            n_free += 1
            if _distinct(centres[g], T_world_gripper[g, :3, :3], kept_c, kept_R):
                kept.append(Grasp(T_world_gripper[g].copy(), float(width[g]), float(score[g])))
                kept_c.append(centres[g])
                kept_R.append(T_world_gripper[g, :3, :3])
            continue
        if name in names:
            continue
        blk = sorted(int(b) for b in names)
        key = (len(blk), -float(score[g]), blk)
        if best_block is None or key[:2] < best_block[:2]:
            best_block = key
    blockers = best_block[2] if (n_free == 0 and best_block is not None) else []
    return GraspResult(kept, n, n_free, blockers)


def collision_world(meshes_world: list[Any], table_top: float = 0.0) -> CollisionWorld:
    """A :class:`CollisionWorld` with the table top at ``table_top`` and every world-frame mesh (name =
    its index) at the identity pose."""
    cw = CollisionWorld(table_top)
    for i, m in enumerate(meshes_world):
        cw.add(str(i), Shape.from_mesh(m))
    return cw


def compute_grasps(meshes_world: list[Any], rng: np.random.Generator, *, source: GraspSource | None = None,
                   keep: int = 5, table_top: float = 0.0, cm: CollisionWorld | None = None) -> list[GraspResult]:
    """Grasps of every world-frame mesh, collision-checked against the table and all objects (incl. itself).

    The general form for arbitrary meshes and grasp sources; dataset generation uses per-model candidates
    (:mod:`bopask_vlm.datagen.model_geometry`) and :func:`select_grasps` directly."""
    cm = cm or collision_world(meshes_world, table_top)
    results = []
    for i, m in enumerate(meshes_world):
        if source is None:
            c = AntipodalSampler().candidates(m, rng)
            T, w, s = c.T_mesh_gripper, c.width, c.scores(c.T_mesh_gripper)
        else:
            gs = source.propose(m, rng)
            T = np.array([g.T_world_gripper for g in gs]).reshape(-1, 4, 4)
            w, s = np.array([g.width for g in gs]), np.array([g.score for g in gs])
        results.append(select_grasps(T, w, s, i, cm, keep=keep))
    return results
