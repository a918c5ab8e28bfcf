"""Offline dataset generation: BOP scenes to BOP-ASK question/answer records.

``generate(dataset_root, out_dir, seed, ...)`` writes sharded JSONL of :class:`bopask_vlm.records.QARecord`;
``synthetic.make_scene`` writes synthetic BOP scenes; ``bop_reader`` reads the BOP layout.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate"]


def generate(dataset_root: Any, out_dir: Any, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """See :func:`bopask_vlm.datagen.runner.generate` (imported lazily)."""
    from bopask_vlm.datagen.runner import generate as _generate

    return _generate(dataset_root, out_dir, seed, **kwargs)
