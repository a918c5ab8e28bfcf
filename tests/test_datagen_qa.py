"""Generation end to end: records, instance descriptions, resumable/deterministic shards, corrupt frames, CLI."""

from __future__ import annotations

import json
import warnings

import pytest
from _datagen_helpers import built

from bopask_vlm.answers.types import Task
from bopask_vlm.datagen import generate
from bopask_vlm.datagen.cli import main as datagen_main
from bopask_vlm.datagen.qa import describe_instances
from bopask_vlm.datagen.runner import DatagenError
from bopask_vlm.datagen.synthetic import make_scene
from bopask_vlm.datagen.synthetic_cli import main as synth_main
from bopask_vlm.records import QARecord


def test_every_task_is_generated_with_consistent_records():
    b = built()
    tasks = {r.task for r in b.records}
    assert {Task.POSE, Task.GRASP, Task.TRAJECTORY, Task.SPATIAL, Task.DEPTH, Task.REARRANGEMENT} <= tasks
    ids = [r.id for r in b.records]
    assert len(ids) == len(set(ids))
    for r in b.records:
        assert (b.out / r.image).is_file() and (b.out / r.depth).is_file()
        line = json.loads(r.to_line())
        assert line["messages"][1]["content"] == r.answer_text and line["images"] == [r.image]
        assert all(o.description in r.question for o in r.objects), (r.question, r.objects)
        # the stored JSON and text forms both read back (VLM layer's parsers) to the same answer
        from bopask_vlm.answers import answer_from_record, parse_answer_text

        a, t = answer_from_record(r), parse_answer_text(r.task, r.answer_text)
        if r.task.is_yes_no:
            assert a.value == t.value == r.gt["value"]
        else:
            assert a.points.shape == t.points.shape and abs(a.points - t.points).max(initial=0) <= 0.51  # text: whole pixels
        if r.task is Task.REARRANGEMENT:
            assert len(r.answer_text) > 0 and r.gt["blocked"] == bool(r.gt["blocking_gt_indices"])
    card = (b.out / "README.md").read_text()
    assert "| pose |" in card and "messages" in card


def test_repeated_objects_are_told_apart_by_position():
    d = describe_instances(["can", "box", "can", "can"], [300.0, 10.0, 100.0, 500.0])
    assert d == ["the second from the left can", "the box", "the leftmost can", "the rightmost can"]


def test_resume_and_determinism_and_corrupt_frame(tmp_path):
    root = tmp_path / "bop"
    make_scene(root, seed=21, num_objects=3, num_frames=2, width=320, height=240, scene_id=0)
    make_scene(root, seed=22, num_objects=3, num_frames=2, width=320, height=240, scene_id=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s1 = generate(root, tmp_path / "a", seed=4, progress=False, tasks=["pose", "spatial", "depth", "grasp"])
        first = {p.name: p.read_bytes() for p in (tmp_path / "a" / "shards").glob("*.jsonl")}
        assert s1["scenes_run"] == 2 and len(first) == 2 and s1["errors"] == []
        # a killed run: one shard missing; the rerun only does that scene and reproduces it byte for byte
        (tmp_path / "a" / "shards" / "test-000001.jsonl").unlink()
        s2 = generate(root, tmp_path / "a", seed=4, progress=False, tasks=["pose", "spatial", "depth", "grasp"])
        assert s2["scenes_run"] == 1
        assert {p.name: p.read_bytes() for p in (tmp_path / "a" / "shards").glob("*.jsonl")} == first
        # a corrupt image is skipped and reported, the other frames still produce records
        (root / "test" / "000000" / "rgb" / "000001.png").write_bytes(b"\x89PNG broken")
        s3 = generate(root, tmp_path / "b", seed=4, progress=False, tasks=["pose"])
    assert len(s3["errors"]) == 1 and s3["errors"][0]["im_id"] == 1 and s3["frames_ok"] == 3
    recs = [QARecord.from_line(x) for x in (tmp_path / "b" / "shards" / "test-000000.jsonl").read_text().splitlines()]
    assert recs and {r.im_id for r in recs} == {0}
    with pytest.raises(DatagenError):
        generate(tmp_path / "empty", tmp_path / "c", progress=False)
    with pytest.raises(DatagenError):
        generate(root, tmp_path / "c", tasks=["dance"], progress=False)


def test_clis(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        datagen_main(["--help"])
    assert e.value.code == 0 and "dataset_root" in capsys.readouterr().out
    assert synth_main([str(tmp_path / "s"), "--scenes", "1", "--frames", "1", "--width", "160", "--height", "120",
                       "--objects", "2"]) == 0
    assert (tmp_path / "s" / "test" / "000000" / "scene_world.json").is_file()
    assert datagen_main([str(tmp_path / "s"), str(tmp_path / "o"), "--quiet", "--tasks", "pose,depth",
                         "--overlays", "1"]) == 0
    assert (tmp_path / "o" / "overlays" / "pose_01.png").is_file()
    assert datagen_main([str(tmp_path / "nothing"), str(tmp_path / "o2"), "--quiet"]) == 2


def test_llm_rephrasing_keeps_the_format_instruction():
    """A stand-in OpenAI-compatible server on 127.0.0.1 (no LLM can run here) answers the rephrasing call."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body["messages"][-1]["content"])
            out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                              "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                  "role": "assistant", "content": "Could you tell me where the red box is?"}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out.encode())

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        import random

        import numpy as np

        from bopask_vlm.answers.types import PoseAnswer, Task
        from bopask_vlm.datagen.qa import QuestionMaker, openai_rephraser
        from bopask_vlm.prompts import format_instruction, make_question

        r = openai_rephraser(f"http://127.0.0.1:{srv.server_port}/v1", "m")
        template = make_question(Task.POSE, ["the red box"], rng=random.Random(5))
        maker = QuestionMaker(random.Random(5), rephrase=r)
        q, _, _ = maker(Task.POSE, ["the red box"], PoseAnswer(np.zeros((8, 2))))
        # the rephrasing model sees the question proper only, and the record keeps the instruction verbatim
        assert seen == [template[: -len(format_instruction(Task.POSE))].rstrip()]
        assert q == "Could you tell me where the red box is? " + format_instruction(Task.POSE)
    finally:
        srv.shutdown()
