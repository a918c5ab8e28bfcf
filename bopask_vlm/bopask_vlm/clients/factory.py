"""Build a client from a config dict (YAML/JSON): ``{"type": "oracle" | "openai" | "transformers", ...}``.

``contract``: the answer contract of the model (:mod:`bopask_vlm.contract`): a trained model's directory
or its ``bopask_model.json``, or ``"served"`` (an ``openai`` client: the card in the directory the server
reports as the model's ``root`` in ``/v1/models``, readable where the server runs on this machine, as
``bopask serve`` does). Convention, answer form (the constrained decoding of an ``openai`` client: the text
grammar or the JSON schema) and resize policy then come from it; an explicit ``convention`` or
``structured`` / ``json_mode`` that contradicts it raises :class:`~bopask_vlm.contract.ContractError`
before any request. A ``transformers`` client reads the contract beside its weights itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bopask_vlm.clients.base import VLMClient
from bopask_vlm.contract import AnswerContract, ContractError, read_contract

#: The ``structured`` setting of an ``openai`` client for each answer form of a contract.
STRUCTURED_FOR_FORM = {"text": "text_grammar", "json": "json_schema"}


def served_contract(base_url: str, model: str, timeout_s: float = 5.0) -> AnswerContract:
    """The contract of a model served by vLLM: the card in the ``root`` directory ``/v1/models`` reports."""
    import httpx

    url = base_url.rstrip("/")
    url = (url if url.endswith("/v1") else url + "/v1") + "/models"
    try:
        r = httpx.get(url, timeout=timeout_s)
        r.raise_for_status()
        entries = r.json()["data"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        raise ContractError(f"cannot read the served models from {url}: {e}") from e
    entry = next((m for m in entries if isinstance(m, dict) and m.get("id") == model), None)
    if entry is None:
        raise ContractError(f"{url} serves no model {model!r} (it serves {[m.get('id') for m in entries]})")
    root = entry.get("root")
    if not root or not Path(root).is_dir():
        raise ContractError(f"the served model's directory {root!r} is not readable here: give the contract as "
                            "a path (the trained model's directory or its bopask_model.json)")
    return read_contract(root)


def _load_contract(source: Any, cfg: dict[str, Any]) -> AnswerContract:
    if isinstance(source, AnswerContract):
        return source
    if str(source) == "served":
        return served_contract(cfg.get("base_url", "http://127.0.0.1:8000/v1"), cfg.get("model", "default"))
    return read_contract(source)


def make_client(config: dict[str, Any]) -> VLMClient:
    """``type`` picks the backend; the other keys are its constructor's arguments, plus ``contract``.

    - ``oracle``: convention, json_mode
    - ``openai``: base_url, model, convention, structured, timeout_s, retries, max_tokens, api_key_env
    - ``transformers``: model_dir, convention, max_new_tokens, device, dtype, answer_form
    """
    cfg = {k: v for k, v in dict(config).items() if not (k == "convention" and v in (None, ""))}
    kind = str(cfg.pop("type", "oracle")).lower()
    source = cfg.pop("contract", None)
    contract = _load_contract(source, cfg) if source not in (None, "") else None
    if kind == "oracle":
        from bopask_vlm.clients.oracle import OracleClient

        if contract is not None:
            cfg["convention"] = contract.resolve_convention(cfg.get("convention"), "oracle client")
            form = None if "json_mode" not in cfg else ("json" if cfg["json_mode"] else "text")
            cfg["json_mode"] = contract.resolve_form(form, "oracle client") == "json"
        client: VLMClient = OracleClient(**cfg)
    elif kind in ("openai", "vllm"):
        from bopask_vlm.clients.openai_client import OpenAICompatibleClient

        if contract is not None:
            cfg["convention"] = contract.resolve_convention(cfg.get("convention"), "openai client")
            wanted = STRUCTURED_FOR_FORM[contract.answer_form]
            given = cfg.get("structured")
            if given not in (None, "", "none", wanted):
                raise ContractError(f"openai client: structured={given!r} contradicts the model's contract (answer "
                                    f"form {contract.answer_form!r}: {wanted!r}; {contract.source})")
            cfg["structured"] = given or wanted
        client = OpenAICompatibleClient(**cfg)
    elif kind == "transformers":
        from bopask_vlm.clients.transformers_client import TransformersClient

        if "model_dir" not in cfg and "model" in cfg:
            cfg["model_dir"] = cfg.pop("model")
        if contract is not None:
            cfg["convention"] = contract.resolve_convention(cfg.get("convention"), "transformers client")
            cfg["answer_form"] = contract.resolve_form(cfg.get("answer_form"), "transformers client")
        client = TransformersClient(**cfg)
    else:
        raise ValueError(f"unknown client type {kind!r} (oracle, openai, transformers)")
    if contract is not None and contract.resize is not None:
        client.resize = contract.resize
    return client
