"""In-process client: a Qwen2.5-VL / Qwen2-VL checkpoint directory (or a LoRA adapter on one) run
with transformers, for development and evaluation without a server. Greedy decoding.

The model's answer contract (:mod:`bopask_vlm.contract`: answer form, coordinate convention, resize
policy) is read from ``bopask_model.json`` beside the weights (written by ``bopask train``); an explicit
``convention`` or ``answer_form`` that contradicts it is refused (:class:`~bopask_vlm.contract.ContractError`).
A model without a card (a base model) takes the constructor's (default: pixels of the resized input, as
Qwen2.5-VL grounds; text answers).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from bopask_vlm.answers import CoordConvention, ResizePolicy
from bopask_vlm.clients.base import VLMClient, VLMError, VLMRequest
from bopask_vlm.contract import MODEL_CARD_FILE, AnswerContract, ContractError, find_contract

MODEL_INFO_FILE = MODEL_CARD_FILE


def read_convention(model_dir: Path, default: CoordConvention | str) -> CoordConvention:
    """The convention of a model directory's contract, else ``default``."""
    contract = find_contract(model_dir)
    return contract.coord_convention if contract is not None else CoordConvention(default)


class TransformersClient(VLMClient):
    def __init__(self, model_dir: str | Path, convention: CoordConvention | str | None = None,
                 max_new_tokens: int = 256, device: str = "cpu", dtype: str = "float32",
                 answer_form: str | None = None) -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        from bopask_vlm.train.processor import load_processor

        path = Path(model_dir)
        adapter = (path / "adapter_config.json").is_file()
        base_dir = path
        if adapter:
            base_dir = Path(json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"])
        if not (base_dir / "config.json").is_file():
            raise VLMError(f"{base_dir} is not a model directory (no config.json)")
        self.model = str(path)
        self.contract: AnswerContract | None = find_contract(path)
        if self.contract is not None:
            self.convention = self.contract.resolve_convention(convention, "transformers client")
            self.answer_form = self.contract.resolve_form(answer_form, "transformers client")
        else:
            self.convention = CoordConvention(convention or CoordConvention.RESIZED_PIXELS)
            self.answer_form = answer_form or "text"
        self.max_new_tokens = int(max_new_tokens)
        self.device = device
        proc_dir = path if (path / "preprocessor_config.json").is_file() else base_dir
        self.processor = load_processor(proc_dir)
        ip = self.processor.image_processor
        size = getattr(ip, "size", None) or {}
        min_px = getattr(ip, "min_pixels", None) or size.get("shortest_edge")
        max_px = getattr(ip, "max_pixels", None) or size.get("longest_edge")
        if min_px and max_px:
            self.resize = ResizePolicy(factor=int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2)),
                                       min_pixels=int(min_px), max_pixels=int(max_px))
        if self.contract is not None and self.contract.resize is not None:
            if self.resize is not None and self.resize != self.contract.resize:
                raise ContractError(f"{proc_dir}: the processor resizes with {self.resize}, the contract says "
                                    f"{self.contract.resize} ({self.contract.source})")
            self.resize = self.contract.resize
        net = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=getattr(torch, dtype))
        if adapter:
            from peft import PeftModel

            net = PeftModel.from_pretrained(net, path)
        self.net = net.to(device).eval()
        self._lock = threading.Lock()  # one generate at a time on one model

    def generate(self, request: VLMRequest, question: str) -> tuple[str, bool]:
        import torch
        from PIL import Image

        messages: list[dict[str, Any]] = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": question}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[prompt], images=[Image.fromarray(request.image)], return_tensors="pt")
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with self._lock, torch.inference_mode():
            out = self.net.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        text = self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return text, self.answer_form == "json"
