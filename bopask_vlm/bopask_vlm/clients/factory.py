"""Build a client from a config dict (YAML/JSON): ``{"type": "oracle" | "openai" | "transformers", ...}``."""

from __future__ import annotations

from typing import Any

from bopask_vlm.clients.base import VLMClient


def make_client(config: dict[str, Any]) -> VLMClient:
    """``type`` picks the backend; the other keys are its constructor's arguments.

    - ``oracle``: convention, json_mode
    - ``openai``: base_url, model, convention, structured, timeout_s, retries, max_tokens, api_key_env
    - ``transformers``: model_dir, convention, max_new_tokens, device, dtype
    """
    cfg = dict(config)
    kind = str(cfg.pop("type", "oracle")).lower()
    if kind == "oracle":
        from bopask_vlm.clients.oracle import OracleClient

        return OracleClient(**cfg)
    if kind in ("openai", "vllm"):
        from bopask_vlm.clients.openai_client import OpenAICompatibleClient

        return OpenAICompatibleClient(**cfg)
    if kind == "transformers":
        from bopask_vlm.clients.transformers_client import TransformersClient

        if "model_dir" not in cfg and "model" in cfg:
            cfg["model_dir"] = cfg.pop("model")
        return TransformersClient(**cfg)
    raise ValueError(f"unknown client type {kind!r} (oracle, openai, transformers)")
