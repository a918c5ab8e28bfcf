"""The objects of a simulated tabletop, each as one trimesh in its model frame (metres, centred on its bounding box)
that feeds both pybullet and the BOP models.

Two scene families (:data:`SCENE_FAMILIES`):

- ``primitives`` (the original conditions): the synthetic scenes' catalogue (named, coloured primitives and the
  real LineMOD watering can when ``../shared/data`` holds it) plus three ``pybullet_data`` models (duck, jenga
  block, lego brick) as their convex hulls, 0.12 kg each.
- ``mixed`` (closer to a real table): the same objects beside ``pybullet_data``'s mug, bunny and teddy and its
  1,000 procedurally generated objects (``random_urdfs/NNN``), every mesh scaled to a graspable size (one
  horizontal extent at most :data:`MAX_GRASP_EXTENT`, under the Panda hand's 8 cm opening), masses from the mesh
  volume and a density drawn per object (clipped to :data:`MASS_RANGE`). Concave meshes collide as their convex
  pieces (pybullet's V-HACD, cached in :func:`bopask_sim.world.cache_dir`), the BOP model is the mesh itself.

The primitives and the real mesh come from :mod:`bopask_vlm.datagen.synthetic` (one catalogue for the synthetic
data and the simulator).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from bopask_vlm.datagen import synthetic

#: ``primitives``: today's catalogue and conditions; ``mixed``: meshes of many shapes besides them
SCENE_FAMILIES = ("primitives", "mixed")
#: the smaller horizontal extent of a mixed-family mesh (model frame) never exceeds this (Panda opening 0.08 m)
MAX_GRASP_EXTENT = 0.065
#: masses of the mixed family (kg): volume x density, clipped to this
MASS_RANGE = (0.05, 1.0)
#: densities drawn per object (kg/m^3): light wood and hollow plastic to solid plastic
DENSITY_RANGE = (400.0, 1200.0)
#: first BOP id of the procedurally generated objects: ``random_urdfs/NNN`` is object ``RANDOM_ID0 + NNN``
RANDOM_ID0 = 100
NUM_RANDOM = 1000
#: generated objects filling less of their convex hull than this are left out (thin twisted shells, about 10 % of
#: them, and one empty file): V-HACD's convex pieces of such a shell are several times its volume, so the physics
#: and the datagen's mesh would disagree
MIN_HULL_FILL = 0.35


@dataclass(frozen=True)
class SimObject:
    """One object type: BOP id, name, catalogue entry (shape drives the resting pose), mass (kg), friction."""

    obj_id: int
    name: str
    entry: synthetic.CatalogObject
    mass: float = 0.12
    friction: float = 1.0
    source: str = "primitive"  # primitive | real_mesh | pybullet_data (convex hull) | pybullet_mesh | random_urdf

    @property
    def color(self) -> tuple[int, int, int]:
        return self.entry.color

    @property
    def is_mesh(self) -> bool:
        """A mesh (not a pybullet primitive shape)."""
        return self.source != "primitive"


#: pybullet_data models: (obj_id, name, file, scale, rotation about x (deg) to stand them up, colour RGB)
PYBULLET_MODELS: tuple[tuple[int, str, str, float, float, tuple[int, int, int]], ...] = (
    (9, "yellow duck", "duck.obj", 0.05, 90.0, (240, 220, 70)),
    (10, "wooden jenga block", "jenga/jenga.obj", 1.0, 0.0, (205, 160, 105)),
    (11, "pink lego brick", "lego/lego.obj", 0.1, 0.0, (235, 110, 170)),
)
_PB_SCALES = {"jenga/jenga.obj": (0.15, 0.05, 0.03)}
#: the mixed family's named pybullet_data meshes: (obj_id, name, file, largest extent (m), rotation about x (deg)
#: to stand them up, colour RGB); the teddy's file is a set of convex pieces, merged into one surface
MIXED_MODELS: tuple[tuple[int, str, str, float, float, tuple[int, int, int]], ...] = (
    (12, "white mug", "objects/mug.obj", 0.11, 0.0, (230, 230, 225)),
    (13, "grey bunny", "bunny.obj", 0.11, 0.0, (160, 150, 145)),
    (14, "brown teddy bear", "teddy2_VHACD_CHs.obj", 0.12, 90.0, (150, 95, 55)),
)
#: colour names of the generated objects (the nearest by RGB names an object)
_COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40), "orange": (235, 130, 40), "yellow": (230, 210, 50), "green": (60, 170, 70),
    "teal": (40, 150, 150), "blue": (50, 80, 210), "purple": (130, 60, 170), "pink": (235, 120, 180),
    "brown": (130, 85, 45), "grey": (140, 140, 140), "white": (230, 230, 230), "black": (40, 40, 40),
}


def _data_path(fname: str) -> str:
    import pybullet_data

    return os.path.join(pybullet_data.getDataPath(), fname)


def catalogue(use_real_mesh: bool = True, pybullet_models: bool = True) -> list[SimObject]:
    """The ``primitives`` family: every object type such a scene may hold; the real watering can replaces object 5
    only when its mesh exists."""
    out = []
    for e in synthetic.catalog(use_real_mesh):
        src = "real_mesh" if e.shape == "mesh" else "primitive"
        out.append(SimObject(e.obj_id, e.name, e, mass=0.15 if src == "real_mesh" else 0.12, source=src))
    if pybullet_models:
        for oid, name, _f, _s, _r, col in PYBULLET_MODELS:
            out.append(SimObject(oid, name, synthetic.CatalogObject(oid, name, "mesh", (), col), mass=0.1,
                                 source="pybullet_data"))
    return out


def _density(obj_id: int) -> float:
    return float(np.random.default_rng([obj_id, 271828]).uniform(*DENSITY_RANGE))


def mass_from_volume(mesh: Any, obj_id: int) -> float:
    """Volume (the mesh's when closed, else 40 % of its convex hull's: a cup's wall) x the object's density,
    clipped to :data:`MASS_RANGE`."""
    vol = float(mesh.volume) if mesh.is_watertight and mesh.volume > 0 else 0.4 * float(mesh.convex_hull.volume)
    return float(np.clip(vol * _density(obj_id), *MASS_RANGE))


def _random_colour(n: int) -> tuple[tuple[int, int, int], str]:
    from pathlib import Path

    txt = Path(_data_path(f"random_urdfs/{n:03d}/{n:03d}.urdf")).read_text()
    m = re.search(r'rgba="([^"]+)"', txt)
    rgb = tuple(int(round(float(v) * 255)) for v in m.group(1).split()[:3]) if m else (128, 128, 128)
    name = min(_COLOUR_NAMES, key=lambda k: sum((a - b) ** 2 for a, b in zip(_COLOUR_NAMES[k], rgb)))
    return rgb, name  # type: ignore[return-value]


def random_usable(n: int) -> bool:
    """Whether ``random_urdfs/NNN`` is used: a closed mesh filling at least :data:`MIN_HULL_FILL` of its hull."""
    m = _mesh_of(RANDOM_ID0 + n)
    return m is not None and m.is_watertight and float(m.volume) >= MIN_HULL_FILL * float(m.convex_hull.volume)


def random_object(n: int) -> SimObject:
    """``random_urdfs/NNN`` as a mixed-family object (BOP id ``RANDOM_ID0 + n``), named by its colour and shape
    ("blue chip", "red blob", "green bar": as a person would say it; a scene holds one of each name)."""
    if not 0 <= n < NUM_RANDOM:
        raise ValueError(f"pybullet_data has random_urdfs 000..{NUM_RANDOM - 1:03d}, not {n}")
    if not random_usable(n):
        raise ValueError(f"random_urdfs/{n:03d} is empty or too thin a shell (fills < {MIN_HULL_FILL} of its hull)")
    oid = RANDOM_ID0 + n
    rgb, cname = _random_colour(n)
    name = f"{cname} {_shape_word(_mesh_of(oid))}"
    return SimObject(oid, name, synthetic.CatalogObject(oid, name, "mesh", (), rgb),
                     mass=mass_from_volume(_mesh_of(oid), oid), source="random_urdf")


def _shape_word(mesh: Any) -> str:
    e = np.sort(mesh.extents)
    if e[0] < 0.45 * e[1]:
        return "chip"
    if e[1] < 0.6 * e[2]:
        return "bar"
    return "blob"


@lru_cache(maxsize=2)
def mixed_catalogue(use_real_mesh: bool = True) -> tuple[tuple[SimObject, ...], tuple[SimObject, ...], int]:
    """The ``mixed`` family: (the primitives family with masses from volume, the named meshes, the number of
    generated objects); generated objects are built on demand by :func:`random_object`."""
    base = []
    for o in catalogue(use_real_mesh, pybullet_models=True):
        base.append(dataclasses.replace(o, mass=mass_from_volume(object_mesh(o), o.obj_id)))
    named = []
    for oid, name, _f, _size, _r, col in MIXED_MODELS:
        e = synthetic.CatalogObject(oid, name, "mesh", (), col)
        named.append(SimObject(oid, name, e, mass=mass_from_volume(_mesh_of(oid), oid), source="pybullet_mesh"))
    return tuple(base), tuple(named), NUM_RANDOM


def pick_mixed(n: int, rng: np.random.Generator, use_real_mesh: bool = True,
               shares: tuple[float, float, float] = (0.5, 0.15, 0.35)) -> list[SimObject]:
    """``n`` distinct objects (distinct names) of the mixed family: each slot a primitive-family object, a named mesh
    or a generated object with probabilities ``shares`` (half from the primitives family: the datagen's trajectories
    need flat tops and bottoms, which the generated objects seldom have)."""
    base, named, randoms = mixed_catalogue(use_real_mesh)
    out: list[SimObject] = []
    names: set[str] = set()
    while len(out) < n:
        kind = int(rng.choice(3, p=np.asarray(shares) / np.sum(shares)))
        if kind == 0:
            o = base[int(rng.integers(len(base)))]
        elif kind == 1:
            o = named[int(rng.integers(len(named)))]
        else:
            k = int(rng.integers(randoms))
            if not random_usable(k):
                continue
            o = random_object(k)
        if o.name in names:  # one "blue chip" per scene: a name says which object
            continue
        names.add(o.name)
        out.append(o)
    return out


def _stand_up(m: Any, rot_x: float) -> None:
    import trimesh

    if rot_x:
        m.apply_transform(trimesh.transformations.rotation_matrix(np.radians(rot_x), [1, 0, 0]))


def _centre_of_mass(m: Any) -> np.ndarray:
    return np.asarray(m.center_mass if m.is_watertight and m.volume > 0 else m.convex_hull.center_mass, float)


def rests_stably(m: Any, margin: float = 0.08) -> bool:
    """Whether the mesh stands as it is: its centre of mass above the footprint of its lowest points (within 1 % of
    its height), at least ``margin`` x its smaller horizontal extent inside that footprint's edge."""
    from shapely.geometry import MultiPoint, Point

    v = np.asarray(m.vertices)
    foot = MultiPoint(v[v[:, 2] <= v[:, 2].min() + 0.01 * np.ptp(v[:, 2])][:, :2]).convex_hull
    c = Point(*_centre_of_mass(m)[:2])
    return bool(foot.area > 0 and foot.contains(c) and foot.exterior.distance(c) >= margin * min(m.extents[:2]))


def _rest_upright(m: Any) -> Any:
    """The mesh as it stands if that is stable (:func:`rests_stably`), else turned onto its most probable stable
    resting pose (trimesh's quasi-static estimate from the true centre of mass)."""
    import trimesh

    if rests_stably(m):
        return m
    transforms, _probs = trimesh.poses.compute_stable_poses(m, center_mass=_centre_of_mass(m), n_samples=1)
    if len(transforms):
        m.apply_transform(transforms[0])
    return m


def _graspable(m: Any, largest: float) -> Any:
    """Scaled so that its largest extent is ``largest`` and its smaller horizontal extent at most
    :data:`MAX_GRASP_EXTENT`, then centred on its bounding box."""
    e = m.extents
    s = min(largest / float(e.max()), MAX_GRASP_EXTENT / float(min(e[0], e[1])))
    m.apply_scale(s)
    m.apply_translation(-m.bounds.mean(axis=0))
    return m


@lru_cache(maxsize=256)
def _mesh_of(oid: int) -> Any:
    import trimesh

    if RANDOM_ID0 <= oid < RANDOM_ID0 + NUM_RANDOM:
        n = oid - RANDOM_ID0
        m = trimesh.load(_data_path(f"random_urdfs/{n:03d}/{n:03d}.obj"), force="mesh")
        if len(m.faces) == 0:  # one file of the set is empty
            return None
        # lying on its flattest side: the smallest extent up (where it rests on the table)
        order = {0: [1, 2, 0], 1: [2, 0, 1], 2: [0, 1, 2]}[int(np.argmin(m.extents))]
        T = np.eye(4)
        T[:3, :3] = np.eye(3)[order]  # rows pick the new x, y, z; a permutation matrix, det +1 (cyclic)
        m.apply_transform(T)
        largest = float(np.random.default_rng([oid, 31337]).uniform(0.045, 0.12))
        return _graspable(_rest_upright(m), largest)
    named = next((mm for mm in MIXED_MODELS if mm[0] == oid), None)
    if named is not None:
        _, _, fname, largest, rot_x, _ = named
        m = trimesh.load(_data_path(fname), force="mesh")
        if "VHACD_CHs" in fname:  # convex pieces: their union is the object's surface
            m = trimesh.boolean.union([p.convex_hull for p in m.split(only_watertight=False)], engine="manifold")
        _stand_up(m, rot_x)
        return _graspable(_rest_upright(m), largest)
    _, _, fname, scale, rot_x, _ = next(mm for mm in PYBULLET_MODELS if mm[0] == oid)
    m = trimesh.load(_data_path(fname), force="mesh", process=False)
    m.apply_scale(np.asarray(_PB_SCALES.get(fname, (scale,) * 3)))
    # the simulator's collision shape of a moving mesh is its convex hull: the BOP model is the same hull, so
    # datagen's grasps and the physics agree
    m = m.convex_hull
    _stand_up(m, rot_x)
    m.apply_translation(-m.bounds.mean(axis=0))
    return m


def is_concave(mesh: Any, tol: float = 0.9) -> bool:
    """Whether the mesh fills less than ``tol`` of its convex hull (then it collides as convex pieces)."""
    if not mesh.is_watertight or mesh.volume <= 0:
        return True
    return float(mesh.volume) < tol * float(mesh.convex_hull.volume)


def object_mesh(obj: SimObject) -> Any:
    """The object's trimesh in its model frame (metres, bounding box centred on the origin); a copy."""
    if obj.source in ("pybullet_data", "pybullet_mesh", "random_urdf"):
        return _mesh_of(obj.obj_id).copy()
    return synthetic.object_mesh(obj.entry)  # the synthetic scenes' own meshes (boxes, cylinders, ..., the real can)
