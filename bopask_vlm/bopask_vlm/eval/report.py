"""Aggregate per-sample metrics into the paper's table (JSON, markdown) and a metrics plot.

Per task: ``n``, ``invalid`` (answers that failed to parse or validate, counted as failures), and the
means of the sample metrics. Overall, ``server_errors``: samples whose request never reached a model
(``server_error`` true: refused, timed out, HTTP 5xx); they are invalid too, but say the server, not
the model, failed. The headline columns follow BOP-Ask-core: pose 3D IoU (%), trajectory
success (%) and distance (px, mean over valid answers), grasp NCE (mean, an invalid answer counts as
the cap 10), spatial and depth accuracy (%), rearrangement recall (%).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bopask_vlm.answers.types import Task

__all__ = ["HEADLINE", "aggregate", "plot_metrics", "server_error_line", "to_markdown", "write_report"]

#: column name -> (task, metric key, scale)
HEADLINE: dict[str, tuple[Task, str, float]] = {
    "pose IoU3D %": (Task.POSE, "iou3d", 100.0),
    "traj SR %": (Task.TRAJECTORY, "success", 100.0),
    "traj dist px": (Task.TRAJECTORY, "dist_px", 1.0),
    "grasp NCE": (Task.GRASP, "nce", 1.0),
    "spatial %": (Task.SPATIAL, "correct", 100.0),
    "depth %": (Task.DEPTH, "correct", 100.0),
    "rearr recall %": (Task.REARRANGEMENT, "recall", 100.0),
}


def aggregate(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``samples``: dicts with ``task`` and ``metrics`` (name -> number). Returns per-task means."""
    per: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, dict[str, int]] = {}
    server_errors, first_server_error = 0, None
    for s in samples:
        if s.get("server_error"):
            server_errors += 1
            first_server_error = first_server_error or str(s.get("error") or s.get("reason") or "")
        t = Task(s["task"]).value
        c = counts.setdefault(t, {"n": 0, "invalid": 0})
        c["n"] += 1
        m = s.get("metrics", {})
        if not m.get("valid", 0):
            c["invalid"] += 1
        for k, v in m.items():
            if v is not None and isinstance(v, (int, float)) and math.isfinite(float(v)):
                per.setdefault(t, {}).setdefault(k, []).append(float(v))
    tasks: dict[str, Any] = {}
    for t, c in counts.items():
        means = {k: float(np.mean(v)) for k, v in per.get(t, {}).items() if v}
        tasks[t] = {**c, "metrics": means}
    headline = {}
    for col, (task, key, scale) in HEADLINE.items():
        v = tasks.get(task.value, {}).get("metrics", {}).get(key)
        headline[col] = None if v is None else round(v * scale, 3)
    out = {"tasks": tasks, "headline": headline,
           "n": sum(c["n"] for c in counts.values()), "invalid": sum(c["invalid"] for c in counts.values()),
           "server_errors": server_errors}
    if first_server_error:
        out["first_server_error"] = first_server_error
    return out


def server_error_line(summary: Mapping[str, Any]) -> str:
    """One line saying how many requests never reached the model (empty when none failed so)."""
    k, n = int(summary.get("server_errors", 0)), int(summary.get("n", 0))
    if not k:
        return ""
    return (f"server errors: {k} of {n} requests did not reach the model (counted invalid); first: "
            f"{summary.get('first_server_error', '?')}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def to_markdown(summary: Mapping[str, Any], title: str = "BOP-ASK benchmark") -> str:
    """The headline table plus one row per task with every mean metric and the invalid count."""
    cols = list(HEADLINE)
    lines = [f"## {title}", "", "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|",
             f"| {summary.get('model', '?')} | " + " | ".join(_fmt(summary["headline"].get(c)) for c in cols) + " |",
             "", "| task | n | invalid | metrics |", "|---|---|---|---|"]
    for t, d in summary["tasks"].items():
        ms = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(d["metrics"].items()))
        lines.append(f"| {t} | {d['n']} | {d['invalid']} | {ms} |")
    if summary.get("server_errors"):
        lines += ["", f"**{server_error_line(summary)}**"]
    lat = summary.get("latency")
    if lat:
        lines += ["", "| stage | p50 ms | p95 ms | n |", "|---|---|---|---|"]
        for k, v in lat.items():
            lines.append(f"| {k} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['n']} |")
    return "\n".join(lines) + "\n"


#: 3D (robot base frame) metrics shown in the plot's third panel: label -> (task, key, scale)
THREE_D: dict[str, tuple[Task, str, float]] = {
    "pose IoU3D lifted %": (Task.POSE, "iou3d_lifted", 100.0),
    "grasp trans err cm": (Task.GRASP, "trans_err_m", 100.0),
    "grasp rot err deg": (Task.GRASP, "rot_err_deg", 1.0),
    "traj dist cm": (Task.TRAJECTORY, "dist_m", 100.0),
}


def plot_metrics(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Bar charts: headline percentages, headline errors (NCE, px), and 3D base-frame metrics when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = summary["headline"]
    pct = [(c, head[c]) for c in HEADLINE if c.endswith("%") and head.get(c) is not None]
    other = [(c, head[c]) for c in HEADLINE if not c.endswith("%") and head.get(c) is not None]
    three = []
    for label, (task, key, scale) in THREE_D.items():
        v = summary["tasks"].get(task.value, {}).get("metrics", {}).get(key)
        if v is not None:
            three.append((label, v * scale))
    panels = [(pct, "higher is better", "tab:green"), (other, "lower is better", "tab:red")]
    if three:
        panels.append((three, "3D, robot base frame", "tab:blue"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 + 3.2 * len(panels), 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": [max(len(p[0]), 1) for p in panels]})
    for ax, (items, title, color) in zip(axes[0], panels):
        vals = [v for _, v in items]
        bars = ax.bar([c for c, _ in items], vals, color=color)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 110 if items is pct else max([1.0, *vals]) * 1.2)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{summary.get('model', '')}  (n={summary.get('n', 0)}, invalid={summary.get('invalid', 0)})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(summary: Mapping[str, Any], samples: Iterable[Mapping[str, Any]], out_dir: str | Path,
                 title: str = "BOP-ASK benchmark") -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md``, ``samples.jsonl`` and ``metrics.png`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "markdown": out / "report.md", "samples": out / "samples.jsonl",
             "plot": out / "metrics.png"}
    paths["json"].write_text(json.dumps(summary, indent=1, default=_json_default))
    paths["markdown"].write_text(to_markdown(summary, title))
    with paths["samples"].open("w") as f:
        for s in samples:
            f.write(json.dumps(s, default=_json_default) + "\n")
    plot_metrics(summary, paths["plot"])
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)
