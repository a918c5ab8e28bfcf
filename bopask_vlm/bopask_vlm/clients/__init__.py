"""VLM backends behind one interface: OpenAI-compatible (vLLM), transformers, oracle.

The transformers client is imported lazily (``bopask_vlm.clients.transformers_client``): it pulls
in torch.
"""

from bopask_vlm.clients.base import (
    VLMAnswerError,
    VLMClient,
    VLMError,
    VLMRequest,
    VLMResponse,
    VLMServerError,
    decode_answer,
    validate_answer,
)
from bopask_vlm.clients.factory import make_client
from bopask_vlm.clients.openai_client import OpenAICompatibleClient
from bopask_vlm.clients.oracle import OracleClient


def __getattr__(name: str):  # lazy: torch only when the transformers client is used
    if name == "TransformersClient":
        from bopask_vlm.clients.transformers_client import TransformersClient

        return TransformersClient
    raise AttributeError(name)


__all__ = [
    "OpenAICompatibleClient",
    "OracleClient",
    "TransformersClient",
    "VLMAnswerError",
    "VLMClient",
    "VLMError",
    "VLMRequest",
    "VLMResponse",
    "VLMServerError",
    "decode_answer",
    "make_client",
    "validate_answer",
]
