"""Replay evaluation of a bag without ROS: the oracle scores perfect 2D metrics, 3D reflects lifting only."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _eval_helpers import cached_dataset

from bopask_ros.replay.bag_reader import read_bag
from bopask_ros.replay.bag_replay import latency_stats, replay_bag


def _oracle():
    from bopask_vlm.clients import OracleClient

    return OracleClient()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    _, records, bag, _ = cached_dataset()
    out = tmp_path_factory.mktemp("replay_out")
    return replay_bag(bag, _oracle(), out_dir=out), records, out


def test_oracle_scores_perfect_2d(replayed):
    """Perfect up to the answer format's integer pixels (the oracle goes through the text format)."""
    rep, records, _ = replayed
    assert rep.complete and rep.frames_read >= 1
    assert len(rep.samples) == len(records)
    tasks = rep.summary["tasks"]
    assert rep.summary["invalid"] == 0
    if "pose" in tasks:
        assert tasks["pose"]["metrics"]["iou2d"] > 0.97
    if "grasp" in tasks:
        assert tasks["grasp"]["metrics"]["nce"] < 0.1 and tasks["grasp"]["metrics"]["success"] == 1.0
    if "trajectory" in tasks:
        m = tasks["trajectory"]["metrics"]
        assert m["success"] == 1.0 and m["dist_px"] <= np.sqrt(0.5) + 1e-9
    if "rearrangement" in tasks:
        assert tasks["rearrangement"]["metrics"]["recall"] == 1.0
    for t in ("spatial", "depth"):
        if t in tasks:
            assert tasks[t]["metrics"]["correct"] == 1.0
    assert {"pose", "trajectory", "spatial"} <= set(tasks)


def test_3d_metrics_reflect_only_lifting(replayed):
    rep, _, _ = replayed
    tasks = rep.summary["tasks"]
    pose = tasks["pose"]["metrics"]
    # exact 2D corners: PnP with the known size recovers the true box; lifting (table geometry on a
    # noisy depth's plane fit) recovers it up to the lifting error
    assert pose["iou3d"] > 0.8
    assert 0.5 < pose["iou3d_lifted"] <= 1.0
    g = tasks.get("grasp", {}).get("metrics", {})
    if "trans_err_m" in g:
        assert g["trans_err_m"] < 0.03 and g["rot_err_deg"] < 20.0
    tr = tasks["trajectory"]["metrics"]
    if "dist_m" in tr:
        assert tr["dist_m"] < 0.1  # the carrying height between the ends is not observable: a lifting error
    if "recall3d" in tasks.get("rearrangement", {}).get("metrics", {}):
        assert tasks["rearrangement"]["metrics"]["recall3d"] > 0.5


def test_latency_and_report_files(replayed):
    rep, _, out = replayed
    for stage in ("query", "lift", "transform", "total"):
        assert rep.latency[stage]["p95_ms"] >= rep.latency[stage]["p50_ms"] > 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["headline"]["traj SR %"] == pytest.approx(100.0)
    md = (out / "report.md").read_text()
    assert "| stage | p50 ms | p95 ms |" in md and "traj SR %" in md
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(rep.samples)
    assert (out / "metrics.png").stat().st_size > 1000
    assert any((out / "overlays").glob("*.png"))


def test_latency_stats_percentiles():
    st = latency_stats([{"a": t / 1000} for t in range(1, 101)])
    assert st["a"]["p50_ms"] == pytest.approx(50.5) and st["a"]["p95_ms"] == pytest.approx(95.05)
    assert st["a"]["n"] == 100


def test_truncated_bag_replays_what_was_read(tmp_path):
    _, records, bag, _ = cached_dataset()
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    mcap = next(cut.glob("*.mcap"))
    raw = mcap.read_bytes()
    mcap.write_bytes(raw[: int(len(raw) * 0.75)])
    data = read_bag(cut)
    full = read_bag(bag)
    assert not data.complete and len(data.frames) < len(full.frames)
    rep = replay_bag(data, _oracle())
    assert not rep.summary["bag_complete"] and rep.summary["bag_errors"]
    kept = {bf.im_id for bf in data.frames}
    assert len(rep.samples) == sum(int(r.im_id) in kept for r in records)
    if len(rep.samples) < len(records):
        assert any("not in the bag" in e for e in rep.errors)
    assert np.all([s["status"] != "vlm_error" for s in rep.samples])
