"""The objects of a simulated tabletop: the synthetic scenes' catalogue (named, coloured primitives and the real
LineMOD watering can when ``../shared/data`` holds it) plus a few ``pybullet_data`` models, each as one trimesh in
its model frame (metres, centred on its bounding box) that feeds both pybullet and the BOP models.

The primitives and the real mesh come from :mod:`bopask_vlm.datagen.synthetic` (one catalogue for the synthetic
data and the simulator).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from bopask_vlm.datagen import synthetic


@dataclass(frozen=True)
class SimObject:
    """One object type: BOP id, name, catalogue entry (shape drives the resting pose), mass (kg), friction."""

    obj_id: int
    name: str
    entry: synthetic.CatalogObject
    mass: float = 0.12
    friction: float = 1.0
    source: str = "primitive"  # primitive | real_mesh | pybullet_data

    @property
    def color(self) -> tuple[int, int, int]:
        return self.entry.color


#: pybullet_data models: (obj_id, name, file, scale, rotation about x (deg) to stand them up, colour RGB)
PYBULLET_MODELS: tuple[tuple[int, str, str, float, float, tuple[int, int, int]], ...] = (
    (9, "yellow duck", "duck.obj", 0.05, 90.0, (240, 220, 70)),
    (10, "wooden jenga block", "jenga/jenga.obj", 1.0, 0.0, (205, 160, 105)),
    (11, "pink lego brick", "lego/lego.obj", 0.1, 0.0, (235, 110, 170)),
)
_PB_SCALES = {"jenga/jenga.obj": (0.15, 0.05, 0.03)}


def catalogue(use_real_mesh: bool = True, pybullet_models: bool = True) -> list[SimObject]:
    """Every object type a scene may hold; the real watering can replaces object 5 only when its mesh exists."""
    out = []
    for e in synthetic.catalog(use_real_mesh):
        src = "real_mesh" if e.shape == "mesh" else "primitive"
        out.append(SimObject(e.obj_id, e.name, e, mass=0.15 if src == "real_mesh" else 0.12, source=src))
    if pybullet_models:
        for oid, name, _f, _s, _r, col in PYBULLET_MODELS:
            out.append(SimObject(oid, name, synthetic.CatalogObject(oid, name, "mesh", (), col), mass=0.1,
                                 source="pybullet_data"))
    return out


@lru_cache(maxsize=32)
def _pybullet_mesh(oid: int) -> Any:
    import pybullet_data
    import trimesh

    _, _, fname, scale, rot_x, _ = next(m for m in PYBULLET_MODELS if m[0] == oid)
    m = trimesh.load(os.path.join(pybullet_data.getDataPath(), fname), force="mesh", process=False)
    m.apply_scale(np.asarray(_PB_SCALES.get(fname, (scale,) * 3)))
    # the simulator's collision shape of a moving mesh is its convex hull: the BOP model is the same hull, so
    # datagen's grasps and the physics agree
    m = m.convex_hull
    if rot_x:
        m.apply_transform(trimesh.transformations.rotation_matrix(np.radians(rot_x), [1, 0, 0]))
    m.apply_translation(-m.bounds.mean(axis=0))
    return m


def object_mesh(obj: SimObject) -> Any:
    """The object's trimesh in its model frame (metres, bounding box centred on the origin); a copy."""
    if obj.source == "pybullet_data":
        return _pybullet_mesh(obj.obj_id).copy()
    return synthetic.object_mesh(obj.entry)  # the synthetic scenes' own meshes (boxes, cylinders, ..., the real can)
