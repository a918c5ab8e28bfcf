"""The OpenAI-compatible client against a real vLLM server on CPU, serving a tiny random
Qwen2.5-VL with images: structured output must yield parseable, in-image answers for every task
even from random weights.

Needs the separate vLLM environment (``scripts/vllm_venv.sh``, ~4 min, ~6 GB); run with
``make test-vllm``. Skipped where ``.venv-vllm`` is absent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bopask_vlm.answers import Task, YesNoAnswer
from bopask_vlm.answers.bounds import Region, point_region
from bopask_vlm.clients import OpenAICompatibleClient, VLMRequest
from bopask_vlm.clients.serve import build_command

REPO = Path(__file__).resolve().parents[1]
VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"

pytestmark = [pytest.mark.vllm,
              pytest.mark.skipif(not VLLM_PY.exists(), reason="no .venv-vllm (run scripts/vllm_venv.sh)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _served(model_dir: Path, log_path: Path, start_timeout_s: float) -> Iterator[str]:
    """``model_dir`` served by vLLM CPU as ``bopask serve`` builds the command; yields the server's base URL
    once ``/health`` answers (at most ``start_timeout_s``), and stops the server afterwards."""
    import httpx

    port = _free_port()
    cmd = build_command(model_dir, python=str(VLLM_PY), port=port, max_model_len=1024, dtype="float32", cpu=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + start_timeout_s
        try:
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"vLLM exited with {proc.returncode}; see {log_path}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(2)
            else:
                raise RuntimeError(f"vLLM did not come up in {start_timeout_s:.0f} s; see {log_path}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):

    from bopask_vlm.testing.tiny_qwen import build_tiny_qwen25_vl

    model_dir = build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny") / "tiny-qwen25-vl", seed=0)
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    with _served(model_dir, log_path, 300) as url:
        yield f"{url}/v1", model_dir.name
    print(f"vLLM log: {log_path}", file=sys.stderr)


@pytest.mark.parametrize("task", list(Task))
def test_structured_output_parses_for_every_task(server, task):
    base_url, name = server
    client = OpenAICompatibleClient(base_url=base_url, model=name, convention="pixels", timeout_s=60, retries=1,
                                    max_tokens=400)
    img = (np.random.default_rng(3).random((240, 320, 3)) * 255).astype(np.uint8)
    objects = ["the red mug"] if task in (Task.POSE, Task.GRASP, Task.REARRANGEMENT) else ["the mug", "the box"]
    r = client.ask(VLMRequest(task, img, objects, relation="left of"))
    assert r.answer.task is task
    if not isinstance(r.answer, YesNoAnswer):
        # Where the schema lets each point lie (issue 13, answers.bounds): on the 320x240 image for
        # waypoints, rearrangement points, the grasp centre and finger bases; within half an image
        # outside it for cuboid corners and finger tips (random weights do put them there).
        for i, (x, y) in enumerate(r.answer.points):
            if point_region(task, i) is Region.INSIDE:
                assert 0 <= x <= 319 and 0 <= y <= 239, (i, x, y)
            else:
                assert -160 <= x <= 479 and -120 <= y <= 359, (i, x, y)


def test_image_reaches_the_model(server):
    """Different images change what the (random) model says for the same question."""
    base_url, name = server
    client = OpenAICompatibleClient(base_url=base_url, model=name, convention="pixels", structured="json_schema",
                                    max_tokens=400)
    answers = set()
    for seed in range(4):
        img = (np.random.default_rng(seed).random((240, 320, 3)) * 255).astype(np.uint8)
        answers.add(client.ask(VLMRequest(Task.TRAJECTORY, img, ["the mug", "the box"])).raw_text)
    assert len(answers) > 1


# ----------------------------------------------------------------------------------------------- contract


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny model trained here (a pose and a spatial answer in resized_pixels, text form), exported with
    its contract, and served by vLLM CPU as `bopask serve` would serve it."""
    from _train_helpers import generated_dataset, shared_tiny_model

    from bopask_vlm.train.config import config_from_dict
    from bopask_vlm.train.data import find_shards, read_records, write_records
    from bopask_vlm.train.trainer import train

    base = tmp_path_factory.mktemp("trained")
    data = generated_dataset(base / "data", seed=0)
    # One pose and one spatial record, learned by heart: the tiny model cannot learn to see in a test's
    # minutes, and answers it has not learned are not in the text form (unconstrained, in-process, they
    # would not parse). Memorised, its greedy answer is one fixed text in resized-input pixels for any image,
    # which the contract must map back to each image's own original pixels.
    recs = read_records(find_shards([data]))
    picked = [next(r for r, _ in recs if r.task is t) for t in (Task.POSE, Task.SPATIAL)]
    shard = write_records(picked, data / "memorise" / "two.jsonl")
    cfg = config_from_dict({
        "model": {"path": str(shared_tiny_model()), "dtype": "float32", "coord_convention": "resized_pixels"},
        "data": {"train": [str(shard)], "max_length": 1024},
        "lora": {"enabled": False},
        "optim": {"learning_rate": 3e-3, "per_device_batch_size": 2, "gradient_accumulation_steps": 1,
                  "max_steps": 90, "bf16": False, "gradient_checkpointing": False, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant"},
        "run": {"output_dir": str(base / "run"), "logging_steps": 10, "save_steps": 1000, "eval_steps": None,
                "report_to": [], "progress": False},
    })
    model_dir = train(cfg).model_dir
    # a loaded CI machine: vLLM CPU's start took over 300 s beside other jobs
    with _served(model_dir, base / "server.log", 900) as url:
        yield f"{url}/v1", model_dir, picked


@pytest.mark.timeout(1800)  # trains the checkpoint (90 steps) and starts vLLM: minutes on 2 busy cores
@pytest.mark.xfail(strict=False, reason=(
    "open (issue 22): the memorised tiny checkpoint (train loss 0.025) served by vLLM CPU answered "
    "'[(76, 922), (5, 932), (555, 92223), ...]' under the text grammar, off its learned answer; not yet known "
    "whether vLLM's image preprocessing or the model diverges from the transformers path"))
def test_served_and_local_answers_agree_in_original_pixels(trained):
    """The trained checkpoint served by vLLM (asked through the OpenAI client, its convention, text grammar and
    resize from the contract read off the served model) and run in-process (transformers client) gives the
    same greedy answers, in original-image pixels, on 640x480 and 1920x1080 images."""
    import cv2

    from bopask_vlm.answers import CoordConvention, from_model, parse_answer_text
    from bopask_vlm.clients import make_client
    from bopask_vlm.contract import read_contract

    base_url, model_dir, records = trained
    contract = read_contract(model_dir)
    served = make_client({"type": "openai", "base_url": base_url, "model": model_dir.name, "contract": "served",
                          "timeout_s": 120, "retries": 0, "max_tokens": 200, "jpeg_quality": 100})
    local = make_client({"type": "transformers", "model_dir": str(model_dir), "max_new_tokens": 200})
    assert served.convention is local.convention is CoordConvention.RESIZED_PIXELS
    assert served.structured == "text_grammar" and served.resize == local.resize == contract.resize
    src = cv2.imread(str(next((model_dir.parents[1] / "data").rglob("*.png"))))[:, :, ::-1]
    for w, h in ((640, 480), (1920, 1080)):
        img = np.ascontiguousarray(cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR))
        for rec in records:  # the questions it learned (as bench and the node send them), on a new image
            task = rec.task
            req = VLMRequest(task, img, [o.description for o in rec.objects], question=rec.question)
            a, b = served.ask(req), local.ask(req)
            assert a.raw_text == b.raw_text, (w, h, task, a.raw_text, b.raw_text)
            if isinstance(a.answer, YesNoAnswer):
                assert a.answer.value == b.answer.value
                continue
            np.testing.assert_array_equal(a.answer.points, b.answer.points)
            # in original pixels: the model's resized-input coordinates scaled back by the contract's resize
            raw = parse_answer_text(task, a.raw_text)
            expect = from_model(raw, "resized_pixels", w, h, contract.resize).points
            np.testing.assert_allclose(a.answer.points, expect)
            rw, rh = contract.resize.resized_size(w, h)
            assert (rw, rh) != (w, h)  # the conversion is not the identity at either size
