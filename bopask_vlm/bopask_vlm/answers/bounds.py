"""Where a task's 2D answer points may lie: one rule for the JSON schema, both parsers and validation.

Decisions (issue 13, point 5), per point:

- **inside the image**: trajectory waypoints, rearrangement points, the grasp centre and both finger
  bases. They are lifted with the depth at their pixel, so they must be on the image.
- **within half an image outside the border** (:data:`MARGIN`): the 8 cuboid corners of a pose answer
  (an object at the border has corners that project outside; they are lifted by ray geometry) and the
  two grasp finger tips (used by PnP only, never looked up in the depth image).

In the units of a coordinate extent ``W x H`` (what the model sees, :func:`model_extent`), which the
schema and the parsers use:

==============  ===========================  ====================================
region          real-valued coordinates      integer coordinates
==============  ===========================  ====================================
inside          ``0 <= x <= W``               ``0 <= x <= ceil(W) - 1``
margin          ``-W/2 <= x <= 3W/2``         ``ceil(-W/2) <= x <= ceil(3W/2) - 1``
==============  ===========================  ====================================

(an integer ``W`` is the first pixel or bin past the edge, hence ``ceil(W) - 1``). Without an extent
there are no coordinate bounds at all (neither in the schema nor in the parsers): ground truth and
model output are then only checked for shape and finiteness.

Validation in original-image pixels (pixel centres at integers, :func:`outside_points`, used by the
VLM clients and the ROS pipeline): inside is ``-0.5 <= u < w - 0.5``, the margin ``-w/2 <= u < 3w/2``.
In the pixel convention every value the schema allows passes validation and the next integer does not.
In the scaled conventions (0-1000, 0-1, resized pixels) the schema knows only the model's extent, so its
last inside value may map up to one original pixel past the last pixel centre; validation then rejects
that answer with a reason (the conventions put pixel centre 0 at 0 and ``w`` at the extent).
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike

from bopask_vlm.answers.types import Task

#: How far outside the image, as a fraction of its size on each side, a margin point may lie.
MARGIN = 0.5


class Region(str, Enum):
    INSIDE = "inside"
    MARGIN = "margin"


_GRASP_REGIONS = (Region.INSIDE, Region.INSIDE, Region.INSIDE, Region.MARGIN, Region.MARGIN)


def point_region(task: Task | str, index: int) -> Region:
    """The region point ``index`` of a ``task`` answer must lie in."""
    task = Task(task)
    if task is Task.POSE:
        return Region.MARGIN
    if task is Task.GRASP:
        return _GRASP_REGIONS[index]
    return Region.INSIDE


def coord_range(region: Region, extent: float, integer: bool) -> tuple[float, float]:
    """Inclusive ``(lo, hi)`` of one coordinate whose axis spans ``extent`` in the answer's units."""
    if region is Region.INSIDE:
        return (0.0, float(math.ceil(extent) - 1)) if integer else (0.0, float(extent))
    if integer:
        return float(math.ceil(-MARGIN * extent)), float(math.ceil((1 + MARGIN) * extent) - 1)
    return -MARGIN * float(extent), (1 + MARGIN) * float(extent)


def out_of_range(task: Task | str, points: ArrayLike, width: float | None, height: float | None,
                 integer: bool) -> list[int]:
    """Indices of ``points`` (answer units) outside their region for an extent ``width x height``;
    with no extent only the integer rule applies."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    bad = []
    for i, (x, y) in enumerate(p.tolist()):
        if integer and not (float(x).is_integer() and float(y).is_integer()):
            bad.append(i)
            continue
        if width is None or height is None:
            continue
        region = point_region(task, i)
        (xlo, xhi), (ylo, yhi) = coord_range(region, width, integer), coord_range(region, height, integer)
        if not (xlo <= x <= xhi and ylo <= y <= yhi):
            bad.append(i)
    return bad


def outside_points(task: Task | str, points: ArrayLike, width: int, height: int) -> list[int]:
    """Indices of ``points`` (original-image pixels) outside where ``task`` allows them (see module doc):
    the check of a converted answer before it is lifted."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    bad = []
    for i, (u, v) in enumerate(p.tolist()):
        if point_region(task, i) is Region.INSIDE:
            ok = -0.5 <= u < width - 0.5 and -0.5 <= v < height - 0.5
        else:
            ok = -MARGIN * width <= u < (1 + MARGIN) * width and -MARGIN * height <= v < (1 + MARGIN) * height
        if not ok:  # NaN fails every comparison: outside
            bad.append(i)
    return bad
