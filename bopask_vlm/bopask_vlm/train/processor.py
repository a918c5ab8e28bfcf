"""Load a model directory's multimodal processor, also where torchvision is absent.

transformers 5 loads every processor attribute eagerly, and the only video processors need torchvision,
so ``AutoProcessor.from_pretrained`` fails for Qwen2-VL/Qwen2.5-VL checkpoints without it, even for images
only (huggingface/transformers#48558). :func:`load_processor` tries ``AutoProcessor`` first and, for the
Qwen2/2.5-VL family, falls back to the same processor class assembled from the directory's tokenizer,
torchvision-free image processor (``backend="pil"``) and chat template, without a video processor: images
and text work exactly as with ``AutoProcessor``; passing videos raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ProcessorLoadError(RuntimeError):
    """The model directory's processor cannot be loaded."""


def _qwen_vl_processor_without_video(model_dir: Path, **image_kwargs: Any) -> Any:
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLProcessor

    model_type = _model_type(model_dir)
    classes = {"qwen2_5_vl": Qwen2_5_VLProcessor, "qwen2_vl": Qwen2VLProcessor}
    if model_type not in classes:
        raise ProcessorLoadError(f"no torchvision-free processor for model type {model_type!r} in {model_dir}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    image_processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil", **image_kwargs)
    # ProcessorMixin.__init__ type-checks a video processor (a torchvision class), so set the attributes that
    # the class's own __init__ sets, and leave the video processor out.
    proc = object.__new__(classes[model_type])
    proc.tokenizer = tokenizer
    proc.image_processor = image_processor
    proc.video_processor = None
    template = model_dir / "chat_template.jinja"
    proc.chat_template = template.read_text() if template.is_file() else tokenizer.chat_template
    proc.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    proc.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    proc.image_token_id = tokenizer.convert_tokens_to_ids(proc.image_token)
    proc.video_token_id = tokenizer.convert_tokens_to_ids(proc.video_token)
    return proc


def load_processor(model_dir: str | Path, **image_kwargs: Any) -> Any:
    """The processor of a local model directory (``AutoProcessor``, or the torchvision-free fallback).

    ``image_kwargs`` (e.g. ``min_pixels``, ``max_pixels``) go to the image processor.
    """
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ProcessorLoadError(f"{path} is not a model directory (no config.json)")
    if not is_torchvision_available() and _model_type(path) in _QWEN_VL_TYPES:
        return _qwen_vl_processor_without_video(path, **image_kwargs)
    try:
        return AutoProcessor.from_pretrained(path, **image_kwargs)
    except ImportError as e:
        if "torchvision" not in str(e).lower():
            raise
        return _qwen_vl_processor_without_video(path, **image_kwargs)


_QWEN_VL_TYPES = ("qwen2_5_vl", "qwen2_vl")


def _model_type(path: Path) -> str:
    try:
        return str(json.loads((path / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError):
        return ""
