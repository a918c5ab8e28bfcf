"""The oracle: answers from ground truth, through the same text format and parser as a model.

It is the upper bound in evaluation and the stand-in model for testing everything downstream
(replay, lifting, the node) without a GPU. The ground truth is written in the oracle's coordinate
convention and text precision, then decoded exactly like a model's output, so rounding and
conversion losses are those a perfect model would have.
"""

from __future__ import annotations

from bopask_vlm.answers import CoordConvention, answer_from_record, answer_to_json, answer_to_text, to_model
from bopask_vlm.clients.base import VLMClient, VLMError, VLMRequest


class OracleClient(VLMClient):
    def __init__(self, convention: CoordConvention | str = CoordConvention.PIXELS, json_mode: bool = False,
                 model: str = "oracle") -> None:
        self.convention = CoordConvention(convention)
        self.json_mode = json_mode
        self.model = model

    def generate(self, request: VLMRequest, question: str) -> tuple[str, bool]:
        if request.record is None:
            raise VLMError("the oracle client needs the ground-truth record in the request")
        gt = to_model(answer_from_record(request.record), self.convention, request.width, request.height,
                      self.resize)
        if self.json_mode:
            import json

            return json.dumps(answer_to_json(gt, decimals=self.convention.decimals)), True
        return answer_to_text(gt, decimals=self.convention.decimals), False
