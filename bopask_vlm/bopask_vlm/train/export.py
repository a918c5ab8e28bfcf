"""Write a trained model as a directory that the transformers client loads and ``vllm serve`` serves.

Layout of an exported directory::

    config.json, model*.safetensors      merged weights (LoRA merged, or full fine-tuning), or
    adapter_config.json, adapter_model.safetensors   a LoRA adapter alone (``merge_lora: false``; a LoRA
                                          run also writes its adapter to ``output_dir/adapter``)
    tokenizer*, chat_template.jinja, preprocessor_config.json, ...   the processor files of the base model,
                                          with the training run's image resize bounds written in
    bopask_model.json                     the model card: the answer contract (:mod:`bopask_vlm.contract`:
                                          answer form, coordinate convention, resize policy, prompt
                                          version) and provenance (base model, steps, ...)

``bopask_model.json`` is what serving, the clients, the node and evaluation read: the form to constrain
decoding to and how to convert answers back to original-image pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bopask_vlm.contract import MODEL_CARD_FILE, AnswerContract

MODEL_INFO_FILE = MODEL_CARD_FILE

#: Files of a model directory that are not the processor's (weights, model config, indexes).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_NOT_PROCESSOR = {"config.json", "generation_config.json", "model.safetensors.index.json", "adapter_config.json",
                  MODEL_INFO_FILE, "trainer_state.json", "training_args.bin"}


class ExportError(RuntimeError):
    """A model cannot be exported or its directory is incomplete."""


def copy_processor_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy tokenizer / chat template / image processor files (everything but weights and model config)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ExportError(f"base model directory {src} does not exist (a hub id must be downloaded first)")
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.name in _NOT_PROCESSOR or f.suffix in _WEIGHT_SUFFIXES:
            continue
        shutil.copy2(f, dst / f.name)
        copied.append(f.name)
    return copied


def set_image_bounds(model_dir: str | Path, min_pixels: int | None, max_pixels: int | None) -> None:
    """Record the image resize bounds used in training in the exported preprocessor config (both the
    ``size`` dict of transformers 5 and the ``min_pixels``/``max_pixels`` keys that vLLM and older code read)."""
    if min_pixels is None and max_pixels is None:
        return
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        raise ExportError(f"{path} missing: cannot record the image resize bounds")
    cfg = json.loads(path.read_text())
    size = dict(cfg.get("size") or {})
    if min_pixels is not None:
        size["shortest_edge"] = cfg["min_pixels"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = cfg["max_pixels"] = int(max_pixels)
    cfg["size"] = size
    path.write_text(json.dumps(cfg, indent=2))


def write_model_info(model_dir: str | Path, coord_convention: str, *, answer_form: str = "text",
                     prompt_version: int | None = None, **extra: Any) -> Path:
    """Write ``bopask_model.json``: the answer contract (form, convention, the directory's own resize policy
    from its ``preprocessor_config.json``, prompt version) plus provenance."""
    from bopask_vlm.prompts import PROMPT_VERSION

    out = Path(model_dir)
    contract = AnswerContract(answer_form=answer_form, coord_convention=str(coord_convention),
                              resize=resize_policy_of_dir(out),
                              prompt_version=PROMPT_VERSION if prompt_version is None else prompt_version)
    path = out / MODEL_INFO_FILE
    path.write_text(json.dumps({**extra, **contract.to_card()}, indent=2, sort_keys=True))
    return path


def resize_policy_of_dir(model_dir: str | Path) -> Any:
    """The ``ResizePolicy`` (Qwen-VL ``smart_resize``) of a directory's ``preprocessor_config.json``, the
    bounds its processor loads with; None where the file or its pixel bounds are absent."""
    from bopask_vlm.answers.coords import ResizePolicy

    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    size = cfg.get("size") or {}
    lo = size.get("shortest_edge", cfg.get("min_pixels"))
    hi = size.get("longest_edge", cfg.get("max_pixels"))
    if not (lo and hi and cfg.get("patch_size") and cfg.get("merge_size")):
        return None
    return ResizePolicy(int(cfg["patch_size"]) * int(cfg["merge_size"]), int(lo), int(hi))


def read_model_info(model_dir: str | Path) -> dict[str, Any]:
    """``bopask_model.json`` of a model directory ({} when absent: an untrained base model)."""
    path = Path(model_dir) / MODEL_INFO_FILE
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    if "coord_convention" not in info:
        raise ExportError(f"{path} has no coord_convention")
    return info


def export_model(
    model: Any,
    base_model_dir: str | Path,
    out_dir: str | Path,
    *,
    coord_convention: str,
    answer_form: str = "text",
    merge_lora: bool = True,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (a transformers model, or a peft model wrapping one) as a servable directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    adapter = is_peft and not merge_lora
    if is_peft and merge_lora:
        model = model.merge_and_unload()
    if adapter:
        model.save_pretrained(out)  # adapter_config.json + adapter_model.safetensors
    else:
        model.save_pretrained(out)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(out)
    return finalize_model_dir(out, base_model_dir, coord_convention=coord_convention, answer_form=answer_form,
                              lora_adapter=adapter,
                              merged=is_peft and merge_lora, min_pixels=min_pixels, max_pixels=max_pixels,
                              info=info)


def finalize_model_dir(
    model_dir: str | Path,
    base_model_dir: str | Path,
    *,
    coord_convention: str,
    answer_form: str = "text",
    lora_adapter: bool,
    merged: bool,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Complete a directory holding saved weights (or an adapter): processor files of the base model, the
    training image bounds, and ``bopask_model.json``."""
    out = Path(model_dir)
    copy_processor_files(base_model_dir, out)
    set_image_bounds(out, min_pixels, max_pixels)
    write_model_info(
        out, coord_convention, answer_form=answer_form, base_model=str(base_model_dir), lora_adapter=bool(lora_adapter),
        merged=bool(merged), min_pixels=min_pixels, max_pixels=max_pixels, **(info or {}),
    )
    return out
