"""The embedded demo end to end (small images): files, metrics, printed locations."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    from bopask_ros.replay.demo import main

    out = tmp_path / "demo_out"
    rc = main(["--out", str(out), "--width", "320", "--height", "240", "--frames", "2", "--objects", "3",
               "--max-records", "30", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out.resolve() / "report.md") in printed and "metrics.json" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] > 0 and m["invalid"] == 0 and m["bag_complete"]
    assert m["headline"]["spatial %"] in (None, 100.0)
    assert m["tasks"]["pose"]["metrics"]["iou2d"] > 0.95
    assert "latency" in m and "lift" in m["latency"]
    assert (out / "metrics.png").stat().st_size > 1000
    assert any((out / "overlays").glob("pose_*.png"))
    assert any((out / "bag").glob("*.mcap"))
    assert m["demo_timing_s"]["total"] < 120


def test_demo_with_an_unreachable_endpoint_reports_every_answer_invalid(tmp_path):
    from bopask_ros.replay.demo import run_demo

    # the endpoint path with a real OpenAI-compatible client; nothing listens on the port
    s = run_demo(tmp_path / "d", width=320, height=240, num_frames=1, num_objects=3, max_records=8,
                 endpoint="http://127.0.0.1:9/v1", model="tiny", progress=False, client_options={"retries": 0})
    assert s["n"] > 0 and s["invalid"] == s["n"]
    assert set(s["statuses"]) == {"vlm_error"}
    assert (tmp_path / "d" / "metrics.json").is_file()
