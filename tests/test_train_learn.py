"""SLOW (bounded: about 2-3 minutes on 2 idle cores; marked ``slow``, part of ``make test``): the
``scratch_cpu.yaml`` recipe, shortened, trains the randomly initialised tiny Qwen2.5-VL on datagen records of
synthetic scenes (relative depth and spatial questions) and the answer-token loss falls; (the baselines
and the held-out scoring are in benchmarks/bench_learn_cpu.py and tests/test_eval_baselines.py).

What this run does not show (issue 23): that the easiest task beats its baseline on held-out scenes, nor
that 30 steps already give parseable answers (a check of that failed in one run of the suite). A
reduced recipe run of 250-900 steps on the loaded machine answered the majority answer (docs/training.md, "From
scratch on the CPU"), so no such assertion is made here until a run that learns fits the time bound."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

STEPS = 30


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    from bopask_vlm.datagen import generate
    from bopask_vlm.datagen.synthetic import make_scene
    from bopask_vlm.testing.tiny_qwen import build_tiny_qwen25_vl
    from bopask_vlm.train.config import load_config
    from bopask_vlm.train.trainer import train

    root = tmp_path_factory.mktemp("learn")
    for name, seeds in (("train", range(3)), ("heldout", range(100000, 100001))):
        for s in seeds:
            make_scene(root / f"bop_{name}", seed=s, num_objects=4, num_frames=1, width=224, height=168,
                       use_real_mesh=False)
        summary = generate(root / f"bop_{name}", root / f"data_{name}", tasks=["depth", "spatial"],
                           progress=False)
        assert not summary.get("errors")
    model = build_tiny_qwen25_vl(root / "model", seed=0)
    cfg = load_config("scratch_cpu.yaml", [
        f"model.path={model}", f"data.train={root / 'data_train'}", f"run.output_dir={root / 'run'}",
        "data.task_weights={depth: 1.0, spatial: 1.0}", f"optim.max_steps={STEPS}", "optim.learning_rate=4.0e-3",
        "optim.lr_scheduler=constant", "optim.warmup_ratio=0.0", "optim.per_device_batch_size=4",
        "run.logging_steps=2", "run.progress=false"])
    return root, cfg, train(cfg)


def test_scratch_recipe_trains_vision_and_loss_falls(learned):
    root, cfg, result = learned
    assert cfg.model.random_init and cfg.optim.loss_at_labels_only and result.global_step == STEPS
    hist = json.loads((root / "run" / "loss_history.json").read_text())
    first = sum(h["loss"] for h in hist[:3]) / 3
    last = sum(h["loss"] for h in hist[-3:]) / 3
    print(f"answer-token loss {first:.2f} -> {last:.2f} over {STEPS} steps")
    assert last < 0.5 * first  # from the vocabulary's ~11.9 towards a yes/no answer
    assert (root / "run" / "loss.png").stat().st_size > 5000
