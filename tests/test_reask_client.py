"""Re-asking a model (issue 19): the failure named in front of the question, and the OpenAI-compatible client's
samples (``n``, temperature) on a re-ask, against a local fake of vLLM's chat completions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _vlm_helpers import FakeChatServer

from bopask_vlm.answers import Task
from bopask_vlm.clients import OpenAICompatibleClient, VLMRequest
from bopask_vlm.reask_prompts import FAILURE_TEMPLATES, failure_feedback

IMG = np.zeros((480, 640, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def server():
    s = FakeChatServer()
    yield s
    s.close()


def test_every_failure_kind_has_a_template_naming_the_answer():
    pts = np.array([[412.0, 300.0], [0, 0], [0, 0], [0, 0], [0, 0]])
    for kind in ("no_object", "collides", "too_wide", "no_contact", "unreachable", "unsafe", "lift_failed"):
        assert kind in FAILURE_TEMPLATES
        text = failure_feedback(kind, "IK found no solution.", pts)
        assert "(412, 300)" in text and "IK found no solution" in text and "different answer" in text
    assert "The path at (412, 300)" in failure_feedback("unsafe", "x", pts, "trajectory")
    assert failure_feedback("something new", "x", None).startswith("No motion plan was found")


def test_a_first_ask_is_greedy_and_a_re_ask_samples_with_the_failure_in_front(server):
    good = json.dumps({"waypoints": [[10, 20], [600, 400]]})
    server.mode, server.content, server.contents = "ok", good, None
    server.bodies.clear()
    c = OpenAICompatibleClient(base_url=server.url, model="m", retries=0, reask_samples=3, reask_temperature=0.8)
    c.ask(VLMRequest(Task.TRAJECTORY, IMG, ["the whisk", "the colander"]))
    first = server.bodies[-1]
    assert first["temperature"] == 0.0 and "n" not in first
    # the re-ask: three samples; the first lies outside the image, the second is a valid answer
    server.contents = [json.dumps({"waypoints": [[10, 20], [900, 400]]}), json.dumps({"waypoints": [[30, 40], [500, 300]]}),
                       good]
    fb = failure_feedback("unreachable", "pre-grasp: no IK solution", np.array([[600.0, 400.0]]), "trajectory")
    r = c.ask(VLMRequest(Task.TRAJECTORY, IMG, ["the whisk", "the colander"], attempt=1, feedback=fb))
    body = server.bodies[-1]
    assert body["n"] == 3 and body["temperature"] == 0.8
    text = body["messages"][0]["content"][1]["text"]
    assert text.startswith("The robot cannot reach the path at (600, 400)") and "the whisk to the colander" in text
    assert r.answer.points.tolist() == [[30, 40], [500, 300]]
    server.contents = None


def test_bad_re_ask_settings_are_clear_errors():
    with pytest.raises(ValueError, match="reask_samples"):
        OpenAICompatibleClient(reask_samples=0)
    with pytest.raises(ValueError, match="reask_temperature"):
        OpenAICompatibleClient(reask_temperature=-1.0)
