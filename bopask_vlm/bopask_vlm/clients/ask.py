"""``bopask ask``: one question about one image through a configured client; prints the answer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _load_config(path: str | None, endpoint: str | None, model: str | None, contract: str | None = None,
                 convention: str | None = None) -> dict:
    if path:
        text = Path(path).read_text()
        if path.endswith((".yaml", ".yml")):
            import yaml

            cfg = dict(yaml.safe_load(text))
        else:
            cfg = dict(json.loads(text))
    elif endpoint:
        cfg = {"type": "openai", "base_url": endpoint, "model": model or "default"}
    elif model:
        cfg = {"type": "transformers", "model_dir": model}
    else:
        raise ValueError("give --config, --endpoint or --model")
    if contract:
        cfg["contract"] = contract
    if convention:
        cfg["convention"] = convention
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="bopask ask", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("image", help="RGB image file")
    p.add_argument("task", choices=["pose", "grasp", "trajectory", "rearrangement", "spatial", "depth"],
                   help="what to ask")
    p.add_argument("objects", nargs="+", help="object description(s): one, or two for trajectory/spatial/depth")
    p.add_argument("--relation", default=None, help="spatial relation, e.g. 'left of'")
    p.add_argument("--config", default=None, help="client config (YAML/JSON)")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL (vLLM)")
    p.add_argument("--model", default=None, help="served model name, or a model directory for transformers")
    p.add_argument("--contract", default=None,
                   help="the model's answer contract: a trained model directory, its bopask_model.json, or 'served' "
                        "(read from the server's model directory); convention and answer form come from it")
    p.add_argument("--convention", default=None,
                   help="coordinate convention of a model without a contract (with one, it must agree)")
    p.add_argument("--overlay", default=None, help="write the answer drawn on the image to this file")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    import cv2

    from bopask_vlm.answers import answer_to_json
    from bopask_vlm.clients import VLMError, VLMRequest, make_client
    from bopask_vlm.goal_fields import GoalFieldError, validate_goal_fields

    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"bopask ask: cannot read image {args.image}", file=sys.stderr)
        return 2
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    try:  # the same goal-field checks as the node's and replay's
        fields = validate_goal_fields(args.task, list(args.objects), args.relation)
    except GoalFieldError as e:
        print(f"bopask ask: bad goal: {e}", file=sys.stderr)
        return 2
    try:
        client = make_client(_load_config(args.config, args.endpoint, args.model, args.contract, args.convention))
        resp = client.ask(VLMRequest(fields.task, rgb, list(fields.objects), relation=fields.relation))
    except (VLMError, ValueError) as e:
        print(f"bopask ask: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"answer": answer_to_json(resp.answer), "raw": resp.raw_text,
                      "latency_s": round(resp.latency_s, 4), "model": resp.model}))
    if args.overlay:
        from bopask_vlm.viz import draw_answer

        cv2.imwrite(args.overlay, draw_answer(rgb, resp.answer)[:, :, ::-1])
    return 0
