"""A short training run for tests/test_train_scale.py, launched as one process or under torchrun.

    python _ddp_train_script.py MODEL DATA OUT BATCH            # one process, per-device batch BATCH
    torchrun --nproc_per_node 2 _ddp_train_script.py MODEL DATA OUT BATCH

Writes OUT/rank-<r>.json: the logged losses per step, the benchmark metrics of the evaluation at step 2
(every rank generates for its share) and the record ids this rank encoded.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    model, data, out, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    from bopask_vlm.train.config import config_from_dict
    from bopask_vlm.train.trainer import prepare

    cfg = config_from_dict({
        "model": {"path": model, "dtype": "float32", "coord_convention": "resized_pixels"},
        "data": {"train": [data], "eval": [data], "eval_samples": 4, "eval_max_new_tokens": 4, "max_length": 512},
        "lora": {"enabled": False},
        "optim": {"learning_rate": 1e-2, "per_device_batch_size": batch, "gradient_accumulation_steps": 1,
                  "max_steps": 2, "bf16": False, "gradient_checkpointing": False, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "seed": 3},
        "run": {"output_dir": str(out / "run"), "logging_steps": 1, "save_steps": 1000, "eval_steps": 2,
                "report_to": [], "progress": False},
    })
    run = prepare(cfg)
    run.trainer.train()
    rank = int(os.environ.get("RANK", 0))
    history = run.trainer.state.log_history
    losses = {e["step"]: e["loss"] for e in history if "loss" in e}
    bench = {k: v for e in history for k, v in e.items() if k.startswith("bench/")}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank-{rank}.json").write_text(json.dumps({
        "losses": losses, "bench": bench, "encoded": run.train_dataset.encoded_ids,
        "world": int(os.environ.get("WORLD_SIZE", 1)), "steps": run.trainer.state.global_step}))


if __name__ == "__main__":
    main()
