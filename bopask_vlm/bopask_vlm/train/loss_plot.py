"""The training loss drawn as it runs: ``run.output_dir/loss.png`` and ``loss_history.json`` (step, loss,
learning rate), rewritten at most every ``every_s`` seconds and at the end of training (main process only)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def plot_loss(history: list[dict[str, float]], path: str | Path, title: str = "training loss") -> Path:
    """Draw the logged loss (and a trailing mean over 10 logs) against the step, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.array([h["step"] for h in history], float)
    loss = np.array([h["loss"] for h in history], float)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss (per log)")
    if len(loss) >= 10:
        k = np.ones(10) / 10
        ax.plot(steps[9:], np.convolve(loss, k, mode="valid"), lw=2, label="mean of 10 logs")
    ax.set_xlabel("step")
    ax.set_ylabel("answer-token cross-entropy")
    if loss.size and loss.min() > 0:
        ax.set_yscale("log")  # the plateau after the first fall stays readable
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def loss_plot_callback(output_dir: str | Path, every_s: float = 60.0) -> Any:
    """A ``TrainerCallback`` collecting the logged training loss and drawing it (see the module doc)."""
    from transformers import TrainerCallback

    out = Path(output_dir)

    class LossPlotCallback(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []
            self._last = time.monotonic()

        def _write(self) -> None:
            if not self.history:
                return
            out.mkdir(parents=True, exist_ok=True)
            (out / "loss_history.json").write_text(json.dumps(self.history))
            plot_loss(self.history, out / "loss.png")
            self._last = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "loss" in logs:
                self.history.append({"step": int(state.global_step), "loss": float(logs["loss"]),
                                     "learning_rate": float(logs.get("learning_rate", float("nan")))})
                if time.monotonic() - self._last > every_s:
                    self._write()
            return control

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self._write()
            return control

    return LossPlotCallback()
