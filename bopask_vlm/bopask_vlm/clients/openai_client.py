"""OpenAI-compatible chat client for a vLLM server (``/v1/chat/completions``).

The image goes as a JPEG data URL; the answer is constrained by the task's JSON schema through
``response_format: {"type": "json_schema", ...}`` (vLLM's structured outputs; the old
``guided_json`` request field is silently ignored by current vLLM, so it is not used). Start the
server with the xgrammar backend and ``disable_any_whitespace`` (``bopask serve`` does), or a
random or weak model can loop on whitespace.

httpx is used directly rather than the ``openai`` SDK so that every failure maps to one of our
typed errors with the server's own words, and retries are ours to bound.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import numpy as np

from bopask_vlm.answers import CoordConvention, json_schema, model_extent
from bopask_vlm.clients.base import VLMAnswerError, VLMClient, VLMRequest, VLMServerError
from bopask_vlm.clients.deadline import (
    AttemptTimedOut,
    DeadlineHTTP,
    ResponseTooLarge,
    current_cancel,
    sleep_unless_canceled,
)


def encode_png_data_url(image_rgb: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an HxWx3 uint8 RGB image (lossless: the pixels a local model gets)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image_rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def encode_jpeg_data_url(image_rgb: np.ndarray, quality: int = 90) -> str:
    """``data:image/jpeg;base64,...`` of an HxWx3 uint8 RGB image."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


class OpenAICompatibleClient(VLMClient):
    """Client of an OpenAI-compatible server. ``structured``: "json_schema" (default), "text_grammar" (vLLM
    ``structured_outputs.regex`` of the text form, :func:`bopask_vlm.contract.text_regex`) or "none".
    :func:`~bopask_vlm.clients.make_client` with a ``contract`` sets convention, form and resize from it.
    ``jpeg_quality`` 100 sends the image as a lossless PNG (the pixels an in-process model gets)."""

    #: a request stops (connection closed, no retry) once the calling thread's cancel flag is set
    supports_cancel = True

    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: str = "default",
                 convention: CoordConvention | str = CoordConvention.PIXELS, structured: str = "json_schema",
                 timeout_s: float = 30.0, retries: int = 2, backoff_s: float = 0.5, max_tokens: int = 768,
                 api_key_env: str = "BOPASK_VLM_API_KEY", jpeg_quality: int = 90,
                 total_timeout_s: float | None = None, max_response_bytes: int = 1 << 20,
                 reask_samples: int = 1, reask_temperature: float = 0.7) -> None:
        """``timeout_s``: the total deadline of one attempt (connect to the last byte of the answer, whatever the
        server does); ``total_timeout_s``: of one question, retries and backoff included (None: ``timeout_s`` x
        attempts); ``max_response_bytes``: a larger answer is refused unread (an answer is a few hundred bytes).
        A request stops as soon as the cancel flag of the calling thread is set
        (:func:`bopask_vlm.clients.deadline.cancel_scope`): its connection is closed and no retry follows.
        ``reask_samples``, ``reask_temperature``: a re-ask (``request.attempt > 0``, the failure named in
        ``request.feedback``) is sampled at that temperature, ``n`` answers at once; the first that decodes is the
        answer (a first ask stays greedy, one answer)."""
        if int(reask_samples) < 1 or not 0.0 <= float(reask_temperature) <= 2.0:
            raise ValueError(f"reask_samples must be >= 1 and reask_temperature in [0, 2], got {reask_samples!r}, "
                             f"{reask_temperature!r}")
        self.reask_samples = int(reask_samples)
        self.reask_temperature = float(reask_temperature)
        if structured not in ("json_schema", "text_grammar", "none"):
            raise ValueError(f"structured must be 'json_schema', 'text_grammar' or 'none', got {structured!r}")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.convention = CoordConvention(convention)
        self.structured = structured
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_tokens = int(max_tokens)
        self.jpeg_quality = int(jpeg_quality)
        self.api_key = os.environ.get(api_key_env) or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.total_timeout_s = (self.timeout_s * (self.retries + 1) if total_timeout_s is None
                                else float(total_timeout_s))
        if not (self.timeout_s > 0 and self.total_timeout_s > 0):
            raise ValueError(f"timeouts must be > 0, got timeout_s={timeout_s!r} total_timeout_s={total_timeout_s!r}")
        self.http = DeadlineHTTP(max_bytes=int(max_response_bytes))
        self.attempts = 0  # total HTTP attempts made, for monitoring

    def request_body(self, request: VLMRequest, question: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": encode_png_data_url(request.image) if self.jpeg_quality >= 100
                                                    else encode_jpeg_data_url(request.image, self.jpeg_quality)}},
                {"type": "text", "text": question},
            ]}],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        if int(getattr(request, "attempt", 0)) > 0:  # a re-ask: other answers than the greedy one that failed
            body["temperature"] = self.reask_temperature
            if self.reask_samples > 1:
                body["n"] = self.reask_samples
        if self.structured == "json_schema":
            ex, ey = model_extent(self.convention, request.width, request.height, self.resize)
            schema = json_schema(request.task, ex, ey, integer=self.convention.integer)
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": f"bopask_{request.task.value}", "schema": schema,
                                                       "strict": True}}
        elif self.structured == "text_grammar":  # a text-trained model (its contract): BOP-ASK's text form
            from bopask_vlm.contract import text_regex

            body["structured_outputs"] = {"regex": text_regex(request.task, self.convention)}
        return body

    def _first_decodable(self, request: VLMRequest, choices: list[dict[str, Any]]) -> Any:
        """The content of the first choice that decodes into a valid answer (several only when a re-ask asked for
        ``n`` samples); else the first choice's (decoding it then says what is wrong)."""
        if len(choices) > 1:
            from bopask_vlm.clients.base import decode_answer

            for ch in choices:
                text = ch.get("message", {}).get("content")
                if not isinstance(text, str) or ch.get("finish_reason") == "length":
                    continue
                try:
                    decode_answer(request.task, text, self.convention, request.width, request.height,
                                  self.structured == "json_schema", self.resize)
                except VLMAnswerError:
                    continue
                choices[0] = ch  # the finish reason checked below is this choice's
                return text
        return choices[0]["message"]["content"]

    def generate(self, request: VLMRequest, question: str) -> tuple[str, bool]:
        import httpx

        body = json.dumps(self.request_body(request, question)).encode()
        url = f"{self.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        canceled = current_cancel()
        end = time.monotonic() + self.total_timeout_s  # the question's deadline, retries included
        last: str = ""
        made = 0
        for attempt in range(self.retries + 1):
            if attempt:
                backoff = self.backoff_s * 2 ** (attempt - 1)
                if time.monotonic() + backoff >= end:
                    break
                sleep_unless_canceled(backoff, canceled)
            left = end - time.monotonic()
            if left <= 0:
                break
            self.attempts += 1
            made += 1
            try:
                r = self.http.post(url, body, headers, min(self.timeout_s, left), canceled)
            except AttemptTimedOut as e:
                last = str(e)
                continue
            except ResponseTooLarge as e:  # the same server would answer the same: no retry
                raise VLMServerError(f"{url}: {e}") from e
            except httpx.HTTPError as e:
                last = f"cannot reach {url}: {type(e).__name__}: {e}"
                continue
            if r.status_code >= 500 or r.status_code == 429:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:  # our request is wrong: retrying will not help
                raise VLMServerError(f"{url} refused the request: HTTP {r.status_code}: {r.text[:300]}")
            try:
                data = json.loads(r.content)
                content = self._first_decodable(request, data["choices"])
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise VLMServerError(f"{url} answered something that is not a chat completion: "
                                     f"{type(e).__name__}: {r.text[:200]!r}") from e
            if not isinstance(content, str):
                raise VLMServerError(f"{url} answered no text content: {content!r}")
            if data["choices"][0].get("finish_reason") == "length":
                raise VLMAnswerError(f"answer cut off at max_tokens={self.max_tokens} (a runaway generation)",
                                     content)
            return content, self.structured == "json_schema"
        if not last:
            last = "no time left for an attempt"
        raise VLMServerError(f"VLM server failed after {made} attempt(s) within {self.total_timeout_s:.1f} s "
                             f"(the deadline per question, retries included): {last}")
