"""A model server that cannot be reached fails the run loudly: `bopask bench`, the demo's `--endpoint` path and
`bopask replay` count server errors apart from invalid answers, print them, and exit 1 (issue 24, item 1).

Every test talks to a real OpenAI-compatible client pointed at a closed 127.0.0.1 port (nothing listens on 9)."""

from __future__ import annotations

import json

import pytest
from _eval_helpers import cached_dataset

from bopask_vlm.eval.cli import server_error_exit
from bopask_vlm.eval.report import aggregate, to_markdown

UNREACHABLE = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def dataset():
    _, _, bag, root = cached_dataset()
    return root, root / "shards", bag


def test_bench_against_an_unreachable_server_exits_1_and_says_so(dataset, tmp_path, capsys):
    from bopask_vlm.cli import main

    root, shards, _ = dataset
    cfg = tmp_path / "client.json"
    cfg.write_text(json.dumps({"type": "openai", "base_url": UNREACHABLE, "model": "m", "retries": 0}))
    rc = main(["bench", "--data", str(shards), "--root", str(root), "--limit", "4", "--config", str(cfg),
               "--out", str(tmp_path / "b"), "--no-progress"])
    out, err = capsys.readouterr()
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert rc == 1
    assert m["server_errors"] == m["n"] == m["invalid"] > 0
    assert f"server errors: {m['n']} of {m['n']} requests did not reach the model" in out
    assert "cannot reach" in out and "every request failed to reach the model server" in err


def test_server_error_threshold_and_invalid_answers_apart():
    samples = [{"task": "spatial", "metrics": {"valid": 0, "correct": 0.0}, "server_error": True,
                "error": "VLMServerError: refused"},
               {"task": "spatial", "metrics": {"valid": 0, "correct": 0.0}, "server_error": False,
                "error": "VLMAnswerError: not JSON"},
               {"task": "spatial", "metrics": {"valid": 1, "correct": 1.0}},
               {"task": "spatial", "metrics": {"valid": 1, "correct": 0.0}}]
    s = aggregate(samples)
    assert s["invalid"] == 2 and s["server_errors"] == 1 and s["first_server_error"] == "VLMServerError: refused"
    assert "server errors: 1 of 4 requests" in to_markdown({**s, "model": "m"})
    assert server_error_exit(s, None, "t") == 0  # some answers came back: only a threshold fails the run
    assert server_error_exit(s, 0.25, "t") == 0  # 1/4 is not more than 0.25
    assert server_error_exit(s, 0.2, "t") == 1
    ok = aggregate(samples[1:])
    assert ok["server_errors"] == 0 and "server errors" not in to_markdown({**ok, "model": "m"})
    assert server_error_exit(ok, 0.0, "t") == 0


def test_zero_percentages_print_as_0():
    s = aggregate([{"task": "spatial", "metrics": {"valid": 1, "correct": 0.0}}])
    assert "| m | - | - | - | - | 0 | - | - |" in to_markdown({**s, "model": "m"})


def test_replay_command_against_an_unreachable_server_exits_1(dataset, tmp_path, capsys):
    from bopask_vlm.cli import main

    _, _, bag = dataset
    cfg = tmp_path / "client.json"
    cfg.write_text(json.dumps({"type": "openai", "base_url": UNREACHABLE, "model": "m", "retries": 0}))
    rc = main(["replay", str(bag), "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--overlays", "0"])
    out, err = capsys.readouterr()
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert rc == 1 and m["server_errors"] == m["n"] > 0 and set(m["statuses"]) == {"vlm_error"}
    assert "requests did not reach the model" in out and "failed to reach the model server" in err


@pytest.mark.slow
def test_demo_endpoint_unreachable_exits_1(tmp_path, capsys):
    from bopask_ros.replay.demo import main

    rc = main(["--out", str(tmp_path / "d"), "--width", "320", "--height", "240", "--frames", "1", "--objects", "3",
               "--max-records", "3", "--endpoint", UNREACHABLE, "--model", "m", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "requests did not reach the model" in out and "failed to reach the model server" in err
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["server_errors"] == m["n"] > 0
