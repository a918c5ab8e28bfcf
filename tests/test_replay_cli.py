"""`bopask replay BAG`: the demo's bag replayed without ROS gives the demo's replay outputs (issue 24, item 4)."""

from __future__ import annotations

import json
import subprocess
import sys

from _eval_helpers import cached_dataset


def test_replay_command_on_the_demos_bag(tmp_path, capsys):
    from bopask_vlm.cli import main

    _, records, bag, _ = cached_dataset()
    out = tmp_path / "r"
    rc = main(["replay", str(bag), "--client", "oracle", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == len(records) and m["invalid"] == 0 and m["server_errors"] == 0 and m["bag_complete"]
    assert "lift" in m["latency"] and m["tasks"]["pose"]["metrics"]["iou2d"] > 0.95
    for name in ("report.md", "metrics.png", "samples.jsonl"):
        assert (out / name).stat().st_size > 0
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(records)
    assert any((out / "overlays").glob("pose_*.png"))
    assert f"report: {out.resolve() / 'report.md'}" in printed and "server errors" not in printed


def test_replay_command_refuses_what_is_not_a_bag(tmp_path, capsys):
    from bopask_vlm.cli import main

    assert main(["replay", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such bag" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["replay", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "bopask replay:" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_python_m_bopask_ros_replay_runs_the_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bopask_ros.replay", str(tmp_path / "missing")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "bopask replay: no such bag" in r.stderr
