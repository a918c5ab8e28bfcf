"""Everything about an object model that does not depend on the scene, computed once per model and reused
by every scene and worker: its collision geometry in the model frame (a quadric-decimated copy where the
visual mesh is large, kept within a distance tolerance of it), its convex hull, and its grasp candidates
with their self-collision verdicts. A scene only places these by the instance's pose.

:class:`ModelGeometry` is plain numpy (picklable, cheap to ship to process-pool or Ray workers); the FCL
objects built from it are cached per process by :func:`model_shapes`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.datagen.collision import CollisionWorld, Shape
from bopask_vlm.datagen.grasps import AntipodalSampler, GraspCandidates, gripper_shape

#: Visual meshes with more faces than this get a decimated collision mesh.
MAX_COLLISION_FACES = 5000
#: Largest distance allowed between the visual surface and the decimated collision surface (metres).
DECIMATION_TOLERANCE = 1e-3


class ModelGeometryError(ValueError):
    """A model mesh that cannot be read or used."""


@dataclass(frozen=True)
class ModelGeometry:
    """Scene-independent geometry of one object model, model frame, metres."""

    obj_id: int
    key: str  # content hash of the mesh file + seed: names the per-process FCL cache entry
    n_faces: int  # faces of the visual mesh
    collision_vertices: NDArray[np.float64]
    collision_faces: NDArray[np.int64]
    decimated: bool
    deviation: float  # largest sampled distance between visual and collision surfaces (0 if not decimated)
    hull_vertices: NDArray[np.float64]
    hull_faces: NDArray[np.int64]
    grasps: GraspCandidates
    self_free: NDArray[np.bool_]  # (K,) the open hand at the candidate does not touch the object itself


def surface_deviation(a: Any, b: Any, n: int = 5000) -> float:
    """Largest distance from points sampled on either surface (and their vertices) to the other surface."""
    import open3d as o3d
    import trimesh

    def one_way(src: Any, dst: Any) -> float:
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(np.asarray(dst.vertices, np.float32)),
                            o3d.core.Tensor(np.asarray(dst.faces, np.uint32)))
        pts, _ = trimesh.sample.sample_surface(src, n, seed=0)
        q = np.vstack([pts, src.vertices]).astype(np.float32)
        return float(scene.compute_distance(o3d.core.Tensor(q)).numpy().max())

    return max(one_way(a, b), one_way(b, a))


def decimate(mesh: Any, tolerance: float = DECIMATION_TOLERANCE, start_faces: int = 2000) -> tuple[Any, float]:
    """The coarsest quadric decimation (trimesh + fast-simplification, aggression 3; 2000, 4000, ... faces) of ``mesh``
    whose surface stays within ``tolerance`` of the original, and that deviation; ``(mesh, 0.0)`` when
    none beats half the original face count."""
    target = start_faces
    while target <= len(mesh.faces) // 2:
        d = mesh.simplify_quadric_decimation(face_count=target, aggression=3)  # 7 (default): 4.5 mm at 2000
        dev = surface_deviation(mesh, d)
        if dev <= tolerance:
            return d, dev
        target *= 2
    return mesh, 0.0


def load_mesh_m(path: str | Path) -> Any:
    """A BOP model (mm) as a trimesh in metres; a corrupt or empty file is a :class:`ModelGeometryError`
    (the reader's own checks: :func:`bopask_vlm.datagen.bop_reader.load_model_mesh`)."""
    from bopask_vlm.datagen.bop_reader import BopFormatError, load_model_mesh

    try:
        m = load_model_mesh(path)
    except BopFormatError as e:
        raise ModelGeometryError(str(e)) from e
    m.apply_scale(0.001)
    return m


def build_model_geometry(path: str | Path, obj_id: int, seed: int, *, max_faces: int = MAX_COLLISION_FACES,
                         tolerance: float = DECIMATION_TOLERANCE,
                         sampler: AntipodalSampler | None = None) -> ModelGeometry:
    """Collision mesh, hull, grasp candidates and their self-collision verdicts of one model file.

    Deterministic in (file content, ``seed``): the grasp sampler's generator is seeded from both, never
    from the scene or worker that asks first."""
    p = Path(path)
    try:
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
    except OSError as e:
        raise ModelGeometryError(f"unreadable model mesh {p}: {e}") from e
    mesh = load_mesh_m(p)
    coll, dev = decimate(mesh, tolerance) if len(mesh.faces) > max_faces else (mesh, 0.0)
    hull = mesh.convex_hull
    rng = np.random.default_rng([int(seed), int(digest[:8], 16)])
    cands = (sampler or AntipodalSampler()).candidates(mesh, rng)
    mg = ModelGeometry(int(obj_id), f"{digest[:16]}-{int(seed)}", len(mesh.faces),
                       np.asarray(coll.vertices, float), np.asarray(coll.faces, np.int64), coll is not mesh, dev,
                       np.asarray(hull.vertices, float), np.asarray(hull.faces, np.int64), cands,
                       np.ones(len(cands), bool))
    return ModelGeometry(**{**mg.__dict__, "self_free": self_free(model_shapes(mg)[0], cands.T_mesh_gripper)})


def self_free(shape: Shape, T_mesh_gripper: NDArray[np.float64]) -> NDArray[np.bool_]:
    """For each (K, 4, 4) hand pose in the mesh frame: the open hand does not touch ``shape`` (at identity).
    Boxes are tested for all poses at once; FCL runs only where they overlap."""
    import fcl

    hand = gripper_shape()
    own = CollisionWorld(table_top=None)
    own.add("self", shape)
    boxes = hand.bounds_many(T_mesh_gripper)
    lo, hi = own.boxes[0]
    near = np.flatnonzero(((boxes[:, 0] <= hi) & (lo <= boxes[:, 1])).all(axis=1))
    free = np.ones(len(T_mesh_gripper), bool)
    probe, target, request = fcl.CollisionObject(hand.geom, fcl.Transform()), own.objects[0], fcl.CollisionRequest()
    for k in near:
        T = T_mesh_gripper[k]
        probe.setTransform(fcl.Transform(np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3])))
        free[k] = not fcl.collide(probe, target, request, fcl.CollisionResult())
    return free


_SHAPES: dict[str, tuple[Shape, Shape]] = {}


def model_shapes(mg: ModelGeometry) -> tuple[Shape, Shape]:
    """(collision shape, convex-hull shape) of a model, built once per process and model."""
    s = _SHAPES.get(mg.key)
    if s is None:
        import trimesh

        coll = trimesh.Trimesh(mg.collision_vertices, mg.collision_faces, process=False)
        hull = trimesh.Trimesh(mg.hull_vertices, mg.hull_faces, process=False)
        # boxes of the collision shape from its own hull: a decimated mesh may stand out of the visual one
        s = (Shape.from_mesh(coll), Shape.from_mesh(hull, hull.vertices))
        _SHAPES[mg.key] = s
    return s


def clear_shape_cache() -> None:
    """Forget the FCL shapes built in this process (they are rebuilt from the model geometry on use)."""
    _SHAPES.clear()


def model_paths(models_dir: str | Path) -> dict[int, Path]:
    """``obj_id -> obj_%06d.ply`` of every model listed in ``models_info.json`` whose mesh file exists."""
    from bopask_vlm.datagen.bop_reader import read_models_info

    return {k: v.path for k, v in read_models_info(models_dir).items() if v.path is not None}


def build_models(models_dir: str | Path, seed: int, obj_ids: list[int] | None = None
                 ) -> tuple[dict[int, ModelGeometry], dict[int, str]]:
    """Model geometry of the models in ``models_dir`` (all, or ``obj_ids``), and the error of each that failed."""
    out: dict[int, ModelGeometry] = {}
    bad: dict[int, str] = {}
    for oid, path in sorted(model_paths(models_dir).items()):
        if obj_ids is not None and oid not in obj_ids:
            continue
        try:
            out[oid] = build_model_geometry(path, oid, seed)
        except ModelGeometryError as e:
            bad[oid] = str(e)
    return out, bad
