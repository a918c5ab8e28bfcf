"""The Panda hand's collision geometry in the M2T2 skeleton frame (x closing, z approach), for grasp checks.

Boxes around the palm and the two open fingers (``trimesh.creation.box``: the meshes give the vertices for the
table check and the RViz markers; the point-in-box tests are numpy on the boxes' own axes, which trimesh's
ray-based ``contains`` would do ~100x slower for thousands of points and hundreds of poses). Sizes: the
franka_description hand (palm 0.204 x 0.063 x 0.0584 m up to the finger joints), fingers 2 cm across and
2.1 cm deep from ``FINGER_BASE_Z`` to ``FINGER_TIP_Z`` of :mod:`bopask_vlm.gripper`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from numpy.typing import NDArray

from bopask_vlm.gripper import FINGER_BASE_Z, FINGER_TIP_Z, MAX_OPENING

__all__ = ["FINGER_HALF_DEPTH", "FINGER_THICKNESS", "HandBox", "hand_boxes", "hand_mesh", "points_in_boxes"]

#: finger size across the closing axis (its thickness, m) and half its extent along the gripper's y
FINGER_THICKNESS = 0.02
FINGER_HALF_DEPTH = 0.0105
PALM_HALF = (0.102, 0.0315)


@dataclass(frozen=True)
class HandBox:
    """An axis-aligned box in the skeleton frame: ``lo``/``hi`` corners and a name."""

    name: str
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]

    def mesh(self) -> trimesh.Trimesh:
        c = (self.lo + self.hi) / 2.0
        return trimesh.creation.box(extents=self.hi - self.lo, transform=trimesh.transformations.translation_matrix(c))


def hand_boxes(opening: float = MAX_OPENING, sweep: float = 0.0) -> list[HandBox]:
    """Palm and fingers at ``opening`` (m between the finger pads); ``sweep`` extends every box back along the
    approach (-z) by that much: the volume the hand passes through from the pre-grasp."""
    h = float(opening) / 2.0
    z0 = -float(sweep)
    palm = HandBox("palm", np.array([-PALM_HALF[0], -PALM_HALF[1], z0]), np.array([PALM_HALF[0], PALM_HALF[1], FINGER_BASE_Z]))
    left = HandBox("left finger", np.array([h, -FINGER_HALF_DEPTH, FINGER_BASE_Z + z0]),
                   np.array([h + FINGER_THICKNESS, FINGER_HALF_DEPTH, FINGER_TIP_Z]))
    right = HandBox("right finger", np.array([-h - FINGER_THICKNESS, -FINGER_HALF_DEPTH, FINGER_BASE_Z + z0]),
                    np.array([-h, FINGER_HALF_DEPTH, FINGER_TIP_Z]))
    return [palm, left, right]


def hand_mesh(opening: float = MAX_OPENING) -> trimesh.Trimesh:
    """The hand at ``opening`` as one mesh (skeleton frame)."""
    return trimesh.util.concatenate([b.mesh() for b in hand_boxes(opening)])


def points_in_boxes(local: NDArray[np.float64], boxes: list[HandBox], margin: float = 0.0) -> NDArray[np.int64]:
    """Per pose, how many points lie inside any box. ``local``: (K, N, 3) points in each pose's skeleton frame
    (NaN rows count as outside)."""
    inside = np.zeros(local.shape[:2], dtype=bool)
    for b in boxes:
        with np.errstate(invalid="ignore"):
            inside |= np.all((local >= b.lo - margin) & (local <= b.hi + margin), axis=2)
    return inside.sum(axis=1)
