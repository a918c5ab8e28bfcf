"""sim-eval's report in answer quality (issue 18, sec. 2; issue 24 item 6): conditions per answer-error level,
success binned by the metric each episode's answer scored, only the tasks run in the table, a readable noise
axis with one level, the seeds named; and the command line's options."""

from __future__ import annotations

import argparse

import pytest

from bopask_sim import cli
from bopask_sim.evaluate import (
    EVAL_FIRST_SEED,
    TUNING_SEEDS,
    Episode,
    condition_label,
    noise_axis_limits,
    plot_success,
    plot_success_by_metric,
    seeds_line,
    summarize,
    table_markdown,
)


def _ep(task: str, ok: bool, level: str = "oracle", **metric: float) -> Episode:
    return Episode(task, 1000, f"r{len(metric)}", 0.0, "pipeline", ok, "ok" if ok else "slipped", level=level,
                   answer_metric=dict(metric))


def test_success_is_binned_by_the_answers_metric_per_level():
    eps = [_ep("grasp", True, nce=0.02), _ep("grasp", True, nce=0.05), _ep("grasp", False, nce=0.07),
           _ep("grasp", False, "nvila15b-sft", nce=1.3), _ep("grasp", True, "nvila15b-sft", nce=0.3),
           _ep("grasp", False, "nvila15b-sft", nce=6.7),
           _ep("trajectory", True, end_px=3.0, end_m=0.004), _ep("trajectory", False, end_px=50.0, end_m=0.08)]
    labels = [condition_label(lev, 0.0, 2, 1) for lev in ("oracle", "nvila15b-sft")]
    assert labels == ["oracle", "nvila15b-sft"]
    s = summarize(eps, labels)
    g = s["by_task"]["grasp"]
    assert g["oracle"]["n"] == 3 and g["oracle"]["success"] == pytest.approx(2 / 3)
    assert g["oracle"]["nce_mean"] == pytest.approx(0.14 / 3) and g["nvila15b-sft"]["nce_mean"] == pytest.approx(2.766667)
    bins = {(b["lo"], b["hi"]): b for b in s["by_metric"]["grasp"]["bins"]["nvila15b-sft"]}
    assert bins[(1.0, 1.5)]["n"] == 1 and bins[(1.0, 1.5)]["success"] == 0.0
    assert bins[(0.25, 0.5)]["success"] == 1.0 and bins[(0.0, 0.1)]["n"] == 0
    assert bins[(2.5, float("inf"))]["n"] == 1  # beyond the plot's 2.5, up to the cap: still counted
    t = s["by_task"]["trajectory"]["oracle"]
    assert t["end_px_median"] == pytest.approx(26.5) and t["end_m_median"] == pytest.approx(0.042)
    table = table_markdown(s, labels)
    assert "| grasp | 67 % (3) | 33 % (3) |" in table and "grasp NCE" in table and "end-point error (px)" in table


def test_a_grasp_only_run_has_no_trajectory_row(tmp_path):
    s = summarize([_ep("grasp", True, nce=0.0)], ["0"], ["grasp"])
    assert list(s["by_task"]) == ["grasp"]
    table = table_markdown(s, ["0"])
    assert "trajectory" not in table and "| grasp | 100 % (1) |" in table
    assert plot_success_by_metric(s, "trajectory", tmp_path / "t.png") is None


def test_one_noise_level_still_gets_a_readable_axis(tmp_path):
    lo, hi = noise_axis_limits([0.0])
    assert lo < 0.0 and hi >= 1.0  # matplotlib alone: -0.04 to 0.04 px
    lo, hi = noise_axis_limits([0.0, 2.0, 8.0])
    assert lo < 0.0 < 8.0 < hi
    s = summarize([_ep("grasp", True, nce=0.0)], ["0"], ["grasp"])
    path, xlim = plot_success(s, [0.0], tmp_path / "p.png")
    assert path.stat().st_size > 1000 and xlim[1] - xlim[0] >= 1.0
    assert plot_success_by_metric(s, "grasp", tmp_path / "n.png").stat().st_size > 1000


def test_the_report_names_its_seeds_and_the_tuning_seeds():
    assert EVAL_FIRST_SEED not in TUNING_SEEDS
    m = {"scenes": [1000, 1001, 1002], "tuning_seeds": [0, 99], "seeds_overlap_tuning": [],
         "calib_error": {"m": 0.003, "deg": 0.3}}
    line = seeds_line(m)
    assert "1000-1002" in line and "0-99" in line and "disjoint" in line and "3 mm / 0.3 deg" in line
    m.update(scenes=[5, 1000], seeds_overlap_tuning=[5])
    assert "OVERLAPPING on [5]" in seeds_line(m)


def test_the_command_line_takes_levels_calibration_and_executors():
    a = cli.parser().parse_args(["--out", "x", "--answer-error", "oracle", "--calib-error", "0,0",
                                 "--executor", "process", "--workers", "3"])
    assert a.answer_error == ["oracle"] and a.calib_error == (0.0, 0.0) and a.executor == "process"
    d = cli.parser().parse_args(["--out", "x"])
    assert d.seed == EVAL_FIRST_SEED and d.calib_error == pytest.approx((0.003, 0.3)) and d.executor == "inline"
    for bad in (["--calib-error", "3"], ["--calib-error", "-1,0"], ["--answer-error", ","]):
        with pytest.raises(SystemExit):
            cli.parser().parse_args(["--out", "x", *bad])
    with pytest.raises(argparse.ArgumentTypeError):
        cli._calib("a,b")
    assert cli._levels("oracle,nvila15b-sft,grasp_nce=1.4") == ["oracle", "nvila15b-sft", "grasp_nce=1.4"]
    with pytest.raises(argparse.ArgumentTypeError, match="no-such-model"):
        cli._levels("oracle,no-such-model")
    assert cli.main(["--out", "x", "--tasks", ""]) == 2
