"""The answer contract: written at export beside the weights, read by every client; the text grammar a
text-trained model is constrained to; a contradicting explicit setting refused; the question trained on is
the question evaluated."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from _train_helpers import generated_dataset, shared_tiny_model

from bopask_vlm.answers import CoordConvention, ResizePolicy, Task, answer_from_record, answer_to_text, to_model
from bopask_vlm.clients import VLMRequest, make_client
from bopask_vlm.contract import AnswerContract, ContractError, read_contract, text_regex
from bopask_vlm.train.data import SampleEncoder, find_shards, read_records, resize_policy_of
from bopask_vlm.train.export import copy_processor_files, write_model_info
from bopask_vlm.train.processor import load_processor

IMG = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = generated_dataset(tmp_path_factory.mktemp("contract_ds"), seed=4)
    return read_records(find_shards([root]))


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory):
    """A trained model's card as export writes it (resized_pixels, text), beside the tiny model's processor."""
    d = tmp_path_factory.mktemp("card")
    copy_processor_files(shared_tiny_model(), d)
    write_model_info(d, "resized_pixels", base_model="tiny")
    return d


@pytest.mark.parametrize("convention", list(CoordConvention))
def test_text_regex_matches_every_trained_answer(records, convention):
    """Every answer training writes (each task, the convention's precision) is in the grammar vLLM is given."""
    resize = ResizePolicy(min_pixels=3136, max_pixels=200704)
    tasks = set()
    for rec, _ in records:
        model = to_model(answer_from_record(rec), convention, rec.width, rec.height, resize)
        text = answer_to_text(model, decimals=convention.decimals)
        assert re.fullmatch(text_regex(rec.task, convention), text), (rec.task, text)
        tasks.add(rec.task)
    assert len(tasks) >= 5
    from bopask_vlm.answers import TrajectoryAnswer

    path = to_model(TrajectoryAnswer(np.array([[10.4, 20.0], [600.2, 400.7], [320.0, 5.5]])), convention, 640,
                    480, resize)
    assert re.fullmatch(text_regex(Task.TRAJECTORY, convention), answer_to_text(path, convention.decimals))


def test_text_regex_refuses_other_forms():
    pose = text_regex(Task.POSE, "pixels")
    eight = ", ".join(["(1, 2)"] * 8)
    assert re.fullmatch(pose, f"[{eight}]")
    for bad in (f"[{eight}, (3, 4)]", f"[{eight}].", '{"corners": [[1, 2]]}', f"[{eight}] ", "[(1.5, 2)]"):
        assert not re.fullmatch(pose, bad), bad
    assert re.fullmatch(text_regex(Task.SPATIAL, "pixels"), "Yes")
    assert not re.fullmatch(text_regex(Task.DEPTH, "pixels"), '{"answer": "yes"}')
    assert re.fullmatch(text_regex(Task.REARRANGEMENT, "pixels"), "[]")
    assert not re.fullmatch(text_regex(Task.TRAJECTORY, "pixels"), "[(1, 2)]")  # a path has two points at least
    assert re.fullmatch(text_regex(Task.POSE, "normalized_1"), "[" + ", ".join(["(0.125, -0.5)"] * 8) + "]")


def test_export_writes_the_contract_with_the_processor_resize(card_dir):
    card = json.loads((card_dir / "bopask_model.json").read_text())
    assert card["answer_form"] == "text" and card["coord_convention"] == "resized_pixels"
    assert card["prompt_version"] >= 1 and card["base_model"] == "tiny"
    contract = read_contract(card_dir)
    assert contract.resize == resize_policy_of(load_processor(shared_tiny_model()))
    assert read_contract(card_dir / "bopask_model.json") == contract
    # a card written before the contract (convention only) reads as a text-trained model
    old = card_dir.parent / "old_card.json"
    old.write_text(json.dumps({"coord_convention": "normalized_1000"}))
    assert read_contract(old).answer_form == "text"
    with pytest.raises(ContractError, match="no model card"):
        read_contract(card_dir / "missing")


def test_openai_client_takes_convention_form_and_resize_from_the_contract(card_dir):
    client = make_client({"type": "openai", "base_url": "http://127.0.0.1:9/v1", "contract": str(card_dir)})
    contract = read_contract(card_dir)
    assert client.convention is CoordConvention.RESIZED_PIXELS and client.structured == "text_grammar"
    assert client.resize == contract.resize
    body = client.request_body(VLMRequest(Task.POSE, IMG, ["the mug"]), "q")
    assert body["structured_outputs"] == {"regex": text_regex(Task.POSE, "resized_pixels")}
    assert "response_format" not in body  # no JSON schema forced on a text-trained model
    # the same explicit values are fine; contradicting ones refuse to build the client
    make_client({"type": "openai", "convention": "resized_pixels", "structured": "text_grammar",
                 "contract": str(card_dir)})
    with pytest.raises(ContractError, match="'pixels' contradicts"):
        make_client({"type": "openai", "convention": "pixels", "contract": str(card_dir)})
    with pytest.raises(ContractError, match="json_schema"):
        make_client({"type": "openai", "structured": "json_schema", "contract": str(card_dir)})
    with pytest.raises(ContractError, match="answer form"):
        make_client({"type": "oracle", "json_mode": True, "contract": str(card_dir)})
    # without a contract: today's explicit parameters (a base model)
    base = make_client({"type": "openai", "convention": "", "base_url": "http://127.0.0.1:9/v1"})
    assert base.convention is CoordConvention.PIXELS and base.structured == "json_schema"


def test_json_contract_asks_for_the_schema(tmp_path):
    (tmp_path / "bopask_model.json").write_text(json.dumps(
        AnswerContract(answer_form="json", coord_convention="normalized_1000").to_card()))
    client = make_client({"type": "openai", "contract": str(tmp_path)})
    assert client.structured == "json_schema" and client.convention is CoordConvention.NORMALIZED_1000
    with pytest.raises(ContractError):
        make_client({"type": "openai", "structured": "text_grammar", "contract": str(tmp_path)})


def test_contract_read_from_the_served_model(card_dir):
    """``contract: served``: the card in the directory /v1/models reports as the model's root (a stand-in
    for vLLM's model list, which carries the served directory as ``root``)."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            out = json.dumps({"object": "list", "data": [
                {"id": "tiny", "object": "model", "root": str(card_dir)},
                {"id": "base", "object": "model", "root": "/nonexistent/base"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    try:
        client = make_client({"type": "openai", "base_url": url, "model": "tiny", "contract": "served"})
        assert client.convention is CoordConvention.RESIZED_PIXELS and client.structured == "text_grammar"
        with pytest.raises(ContractError, match="not readable here"):
            make_client({"type": "openai", "base_url": url, "model": "base", "contract": "served"})
        with pytest.raises(ContractError, match="serves no model"):
            make_client({"type": "openai", "base_url": url, "model": "other", "contract": "served"})
    finally:
        srv.shutdown()


def test_transformers_client_refuses_a_contradicting_convention(tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(shared_tiny_model(), model)
    write_model_info(model, "normalized_1000")
    with pytest.raises(ContractError, match="contradicts"):
        make_client({"type": "transformers", "model_dir": str(model), "convention": "pixels"})
    client = make_client({"type": "transformers", "model_dir": str(model)})
    assert client.convention is CoordConvention.NORMALIZED_1000 and client.answer_form == "text"


def test_ask_cli_refuses_a_contradiction(card_dir, tmp_path, capsys):
    import cv2

    from bopask_vlm.clients.ask import main

    img = tmp_path / "img.png"
    cv2.imwrite(str(img), IMG)
    rc = main([str(img), "pose", "the mug", "--endpoint", "http://127.0.0.1:9/v1", "--contract", str(card_dir),
               "--convention", "pixels"])
    assert rc == 1 and "contradicts" in capsys.readouterr().err


def test_the_question_trained_on_is_the_question_evaluated(records):
    """Training asks each record's own question (rephrased or not), its instruction in the model's
    convention: exactly what bench / replay / the node send for that record."""
    proc = load_processor(shared_tiny_model())
    for conv in ("resized_pixels", "normalized_1"):
        enc = SampleEncoder(proc, conv)
        for rec, _ in records:
            sent = VLMRequest(rec.task, IMG, [o.description for o in rec.objects], question=rec.question,
                              record=rec).question_text(conv)
            prompt, _, _ = enc.texts(rec)
            assert prompt.count(sent) == 1, (rec.id, sent)
    # a rephrased record: its rephrasing is what is trained on, with the convention's instruction
    from bopask_vlm.prompts import format_instruction, split_instruction

    rec, _ = next((r, rt) for r, rt in records if r.task is Task.POSE)
    head, tail = split_instruction(rec.question, rec.task)
    assert tail == format_instruction(Task.POSE) and head
    rephrased = rec.__class__.from_json({**rec.to_json(), "question": "Outline the box of it, please. " + tail})
    prompt, _, _ = SampleEncoder(proc, "normalized_1000").texts(rephrased)
    assert "Outline the box of it, please. " + format_instruction(Task.POSE, "normalized_1000") in prompt


def test_node_parameters_take_the_contract_and_refuse_a_contradiction(card_dir):
    """The node builds its client from its parameters (``make_client(params.client_config())`` at start):
    ``vlm_contract`` alone gives the contract's convention and grammar; an explicit ``vlm_convention`` that
    disagrees stops the node before it serves a goal; no contract keeps the explicit parameters."""
    from bopask_ros.node_support.params import NodeParams

    client = make_client(NodeParams.from_mapping({"vlm_contract": str(card_dir)}).client_config())
    assert client.convention is CoordConvention.RESIZED_PIXELS and client.structured == "text_grammar"
    with pytest.raises(ContractError, match="contradicts"):
        make_client(NodeParams.from_mapping({"vlm_contract": str(card_dir), "vlm_convention": "pixels"}).client_config())
    base = make_client(NodeParams.from_mapping({"vlm_convention": "normalized_1000"}).client_config())
    assert base.convention is CoordConvention.NORMALIZED_1000 and base.structured == "json_schema"
    assert make_client(NodeParams.from_mapping({}).client_config()).convention is CoordConvention.PIXELS
