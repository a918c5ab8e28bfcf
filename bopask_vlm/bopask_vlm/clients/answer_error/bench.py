"""``bopask bench --answer-error LEVEL``: the chosen client wrapped in :class:`~.client.AnswerErrorClient`,
calibrated on the benchmark's own records, and the achieved metrics beside the requested ones."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bopask_vlm.clients.answer_error.calibrate import CalibrationReport, resolve_level_report
from bopask_vlm.clients.answer_error.client import AnswerErrorClient
from bopask_vlm.clients.answer_error.levels import METRICS, parse_level

__all__ = ["add_to_metrics_json", "comparison", "comparison_table", "plot_comparison", "wrap_client"]


def wrap_client(inner: Any, level_text: str, records: Sequence[Any], seed: int = 0, *,
                dataset_root: str | Path | None = None, tol: float = 0.05, cache_dir: str | Path | None = None
                ) -> tuple[AnswerErrorClient, CalibrationReport | None]:
    """``inner`` wrapped at ``level_text`` calibrated on ``records`` (None report: nothing to calibrate)."""
    report = resolve_level_report(level_text, records, seed, dataset_root=dataset_root, tol=tol,
                                  cache_dir=cache_dir)
    level = parse_level(level_text) if report is None else report.level
    return AnswerErrorClient(inner, level, seed, records=records), report


def comparison(summary: dict[str, Any], client: AnswerErrorClient, report: CalibrationReport | None,
               tol: float = 0.05) -> dict[str, Any]:
    """Per metric of the level: requested, achieved at calibration, achieved by the bench run, and
    whether the bench's value is within ``tol`` (relative) of the request."""
    rows = {}
    for name, target in client.level.targets.items():
        spec = METRICS[name]
        bench = summary.get("tasks", {}).get(spec.task.value, {}).get("metrics", {}).get(spec.key)
        cal = report.tasks.get(name) if report is not None else None
        rows[name] = {"requested": target, "calibrated": None if cal is None else cal.achieved,
                      "multiplier": None if cal is None else cal.multiplier, "achieved": bench,
                      "within_tol": bench is not None and abs(bench - target) <= tol * abs(target) + 1e-12,
                      "note": "" if cal is None else cal.note}
    return {"level": client.level.name, "seed": client.seed, "calibrated": client.level.calibrated, "tol": tol,
            "metrics": rows, "components": client.level.to_json()}


def _f(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def comparison_table(comp: dict[str, Any]) -> str:
    """Markdown: the level's metrics, requested vs achieved (fractions; NCE as is)."""
    lines = [f"### answer-error level `{comp['level']}` (seed {comp['seed']}, "
             f"{'calibrated on these records' if comp['calibrated'] else 'uncalibrated mix'})", "",
             "| metric | requested | calibrated | achieved | multiplier | within 5 % |", "|---|---|---|---|---|---|"]
    for name, r in comp["metrics"].items():
        lines.append(f"| {name} | {_f(r['requested'])} | {_f(r['calibrated'])} | {_f(r['achieved'])} | "
                     f"{_f(r['multiplier'])} | {'yes' if r['within_tol'] else 'NO'}"
                     f"{' (' + r['note'] + ')' if r['note'] else ''} |")
    return "\n".join(lines) + "\n"


def add_to_metrics_json(path: str | Path, comp: dict[str, Any]) -> None:
    """``comp`` under ``answer_error`` in the bench's metrics JSON."""
    p = Path(path)
    d = json.loads(p.read_text())
    d["answer_error"] = comp
    p.write_text(json.dumps(d, indent=1, default=str))


def plot_comparison(comp: dict[str, Any], path: str | Path) -> Path:
    """Bars of requested vs achieved per metric (fractions in %, NCE on its own axis), the 5 % band drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comp["metrics"]
    pct = [n for n in rows if METRICS[n].fraction]
    other = [n for n in rows if not METRICS[n].fraction]
    panels = [(names, scale) for names, scale in ((pct, 100.0), (other, 1.0)) if names]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3 + 2.2 * len(rows), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": [len(n) for n, _ in panels] or [1]})
    for ax, (names, scale) in zip(axes[0], panels):
        x = range(len(names))
        req = [rows[n]["requested"] * scale for n in names]
        got = [(rows[n]["achieved"] if rows[n]["achieved"] is not None else float("nan")) * scale for n in names]
        ax.bar([i - 0.2 for i in x], req, 0.4, label="requested", color="tab:gray")
        ax.errorbar([i - 0.2 for i in x], req, yerr=[0.05 * r for r in req], fmt="none", ecolor="k", capsize=4)
        bars = ax.bar([i + 0.2 for i in x], got, 0.4, label="achieved", color="tab:blue")
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(list(x), names, rotation=20)
        ax.set_ylabel("%" if scale == 100.0 else "NCE")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"answer-error level {comp['level']} (seed {comp['seed']}; bars: 5 % tolerance)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
