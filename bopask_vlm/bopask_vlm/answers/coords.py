"""Coordinate conventions of VLMs, converted to original-image pixels at this boundary only.

- ``pixels``: pixels of the original image (BOP-ASK's own answers were integer pixels).
- ``resized_pixels``: pixels of the image the model actually sees after its processor resized it
  (Qwen2.5-VL grounds in absolute coordinates of its ``smart_resize`` input: sides multiples of
  28, area between ``min_pixels`` and ``max_pixels``).
- ``normalized_1``: x / width and y / height in [0, 1] (the SpaceTools copies of BOP-ASK questions).
- ``normalized_1000``: the same times 1000 (Qwen2-VL, Molmo-style boxes).

Every conversion is a per-axis scale ``model = original * s``, so a round trip is exact up to
float error, and within half a pixel after rounding to the convention's text precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from bopask_vlm.answers.types import Answer, YesNoAnswer

QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280


class CoordConvention(str, Enum):
    PIXELS = "pixels"
    RESIZED_PIXELS = "resized_pixels"
    NORMALIZED_1 = "normalized_1"
    NORMALIZED_1000 = "normalized_1000"

    @property
    def decimals(self) -> int:
        """Decimals to print coordinates with in text answers (0: integers)."""
        return 3 if self is CoordConvention.NORMALIZED_1 else 0

    @property
    def integer(self) -> bool:
        return self.decimals == 0


@dataclass(frozen=True)
class ResizePolicy:
    """How a model's processor resizes images (Qwen2-VL / Qwen2.5-VL ``smart_resize``)."""

    factor: int = QWEN_FACTOR
    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model's input for an original ``width`` x ``height`` image."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        h, w = smart_resize(int(height), int(width), factor=self.factor, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)
        return int(w), int(h)


def model_extent(convention: CoordConvention | str, width: int, height: int,
                 resize: ResizePolicy | None = None) -> tuple[float, float]:
    """The coordinate range (x_max, y_max) of the convention for an original image size."""
    c = CoordConvention(convention)
    if c is CoordConvention.PIXELS:
        return float(width), float(height)
    if c is CoordConvention.NORMALIZED_1:
        return 1.0, 1.0
    if c is CoordConvention.NORMALIZED_1000:
        return 1000.0, 1000.0
    w, h = (resize or ResizePolicy()).resized_size(width, height)
    return float(w), float(h)


def _scale(convention: CoordConvention | str, width: int, height: int,
           resize: ResizePolicy | None) -> np.ndarray:
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid image size {width}x{height}")
    ex, ey = model_extent(convention, width, height, resize)
    return np.array([ex / width, ey / height])


def to_model(answer: Answer, convention: CoordConvention | str, width: int, height: int,
             resize: ResizePolicy | None = None) -> Answer:
    """Original-image pixels -> the model's convention."""
    if isinstance(answer, YesNoAnswer):
        return answer
    return answer.with_points(answer.points * _scale(convention, width, height, resize))


def from_model(answer: Answer, convention: CoordConvention | str, width: int, height: int,
               resize: ResizePolicy | None = None) -> Answer:
    """The model's convention -> original-image pixels."""
    if isinstance(answer, YesNoAnswer):
        return answer
    return answer.with_points(answer.points / _scale(convention, width, height, resize))
