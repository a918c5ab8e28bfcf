"""Fine-tuning a tiny randomly initialised Qwen2.5-VL on a small QA set (CPU): the loss falls, checkpoints
save, resume and export to a model directory that loads back with the same outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
# the samples are built with the VLM layer's prompt and answer functions (agreed API 1)
pytest.importorskip("bopask_vlm.prompts", reason="VLM layer (bopask_vlm.prompts) not present")
pytest.importorskip("bopask_vlm.answers.coords", reason="VLM layer (bopask_vlm.answers.coords) not present")

from _train_helpers import generated_dataset, shared_tiny_model  # noqa: E402

import bopask_vlm.train as train_pkg  # noqa: E402
from bopask_vlm.train.config import TrainConfigError, config_from_dict, load_config  # noqa: E402
from bopask_vlm.train.data import RecordSFTDataset, SampleEncoder, SFTCollator, find_shards, read_records  # noqa: E402
from bopask_vlm.train.export import read_model_info  # noqa: E402
from bopask_vlm.train.processor import load_processor  # noqa: E402
from bopask_vlm.train.trainer import TrainError, latest_checkpoint, train  # noqa: E402


def _cfg_dict(model, root, eval_shard, out, **optim):
    return {
        "model": {"path": str(model), "dtype": "float32", "coord_convention": "resized_pixels"},
        "data": {"train": [str(root)], "eval": [str(eval_shard)], "eval_samples": 6,
                 "eval_max_new_tokens": 12, "max_length": 512},
        "lora": {"enabled": False},
        "optim": {"learning_rate": 1e-2, "per_device_batch_size": 4, "gradient_accumulation_steps": 1,
                  "max_steps": 12, "bf16": False, "gradient_checkpointing": False, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", **optim},
        "run": {"output_dir": str(out), "logging_steps": 1, "save_steps": 6, "eval_steps": 6,
                "report_to": ["tensorboard"], "progress": False},
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small generated set (one synthetic scene, all tasks) and a held-out one from another scene."""
    root = generated_dataset(tmp_path_factory.mktemp("train_ds"), seed=0)
    eval_root = generated_dataset(tmp_path_factory.mktemp("eval_ds"), seed=1, num_frames=1)
    return root, sorted((eval_root / "shards").glob("*.jsonl"))[0]


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """Full fine-tuning, 12 steps, checkpoints at 6 and 12, benchmark evaluation at 6 and 12."""
    root, eval_shard = data
    out = tmp_path_factory.mktemp("full_run")
    cfg = config_from_dict(_cfg_dict(shared_tiny_model(), root, eval_shard, out))
    return cfg, train(cfg)


@pytest.fixture(scope="module")
def fixed_batch(data):
    root, _ = data
    proc = load_processor(shared_tiny_model())
    ds = RecordSFTDataset(read_records(find_shards([root]))[:4], SampleEncoder(proc, "resized_pixels"))
    return SFTCollator(proc.tokenizer.pad_token_id)([ds[i] for i in range(4)])


def _load(path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()


def _out(model, batch):
    with torch.no_grad():
        return model(**batch)


def test_loss_on_fixed_batch_falls_below_half(full_run, fixed_batch):
    _, result = full_run
    before = float(_out(_load(shared_tiny_model()), fixed_batch).loss)
    after = float(_out(_load(result.model_dir), fixed_batch).loss)
    assert result.global_step == 12
    print(f"fixed-batch loss {before:.3f} -> {after:.3f}")
    assert after < 0.5 * before, (before, after)


def test_save_and_reload_give_same_outputs(full_run, fixed_batch):
    cfg, result = full_run
    exported = _out(_load(result.model_dir), fixed_batch).logits
    ckpt = _out(_load(latest_checkpoint(cfg.run.output_dir)), fixed_batch).logits
    assert torch.allclose(exported, ckpt, atol=1e-5)
    assert read_model_info(result.model_dir)["coord_convention"] == "resized_pixels"
    proc = load_processor(result.model_dir)  # the processor files travel with the model
    assert proc.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655


def test_periodic_benchmark_eval_and_tensorboard_logs(full_run):
    cfg, _ = full_run
    eval_tasks = {r.task.value for r, _ in read_records(find_shards(cfg.data.eval))[: cfg.data.eval_samples]}
    state = json.loads((latest_checkpoint(cfg.run.output_dir) / "trainer_state.json").read_text())
    bench_steps = [e["step"] for e in state["log_history"] if "bench/parse_rate" in e]
    eval_steps = [e["step"] for e in state["log_history"] if "eval_loss" in e]
    assert bench_steps == [6, 12] and eval_steps == [6, 12]
    bench = [e for e in state["log_history"] if "bench/parse_rate" in e]
    assert all(0.0 <= e["bench/parse_rate"] <= 1.0 for e in bench)
    # the benchmark's per-task metrics of the held-out records
    assert all(0.0 <= e[f"bench/{t}/valid"] <= 1.0 for e in bench for t in eval_tasks)
    assert list((Path(cfg.run.output_dir) / "runs").rglob("events.out.tfevents.*"))


def test_resume_continues_from_saved_step(full_run, tmp_path):
    cfg, _ = full_run
    out = tmp_path / "resumed"
    shutil.copytree(Path(cfg.run.output_dir) / "checkpoint-6", out / "checkpoint-6")
    d = cfg.to_dict()
    d["run"].update(output_dir=str(out), save_steps=3, eval_steps=None, report_to=[])
    d["optim"]["max_steps"] = 8
    result = train(config_from_dict(d), resume=True, export=False)
    assert result.resumed_from == out / "checkpoint-6" and result.global_step == 8
    history = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    steps = [e["step"] for e in history if "loss" in e]
    # the checkpoint's history, then steps 7 and 8 only: nothing redone, nothing restarted from step 1
    assert len(steps) == len(set(steps)) and [s for s in steps if s > 6] == [7, 8] and 1 in steps
    loss = {e["step"]: e["loss"] for e in history if "loss" in e}
    assert loss[7] < 0.7 * loss[1]  # step 7 starts from the trained weights, not from the base model
    with pytest.raises(TrainError, match="no checkpoint"):
        train(config_from_dict({**d, "run": {**d["run"], "output_dir": str(tmp_path / "empty")}}), resume=True)


def test_lora_cli_run_exports_merged_and_adapter(data, tmp_path, fixed_batch, capsys):
    from bopask_vlm.cli import main as bopask

    root, eval_shard = data
    d = _cfg_dict(shared_tiny_model(), root, eval_shard, tmp_path / "lora_run", max_steps=3,
                  gradient_checkpointing=True)
    d["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
    d["run"].update(save_steps=3, eval_steps=None, report_to=[])
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    assert bopask(["train", "--config", str(cfg_path)]) == 0
    run_dir = tmp_path / "lora_run"
    merged, adapter = run_dir / "model", run_dir / "adapter"
    assert read_model_info(merged)["merged"] is True and not (merged / "adapter_config.json").exists()
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    info = read_model_info(adapter)
    assert info["lora_adapter"] is True and info["coord_convention"] == "resized_pixels"
    # export a checkpoint later (merged): same weights as the end of the run (checkpoint-3 is the last step)
    again = tmp_path / "from_ckpt"
    assert bopask(["train", "--config", str(cfg_path), "--export-checkpoint", str(run_dir / "checkpoint-3"),
                   "--out", str(again)]) == 0
    base = _out(_load(shared_tiny_model()), fixed_batch).logits
    m = _out(_load(merged), fixed_batch).logits
    a = _out(_load(adapter), fixed_batch).logits  # transformers loads the adapter over its base (peft)
    c = _out(_load(again), fixed_batch).logits
    assert torch.allclose(m, a, atol=1e-4) and torch.allclose(m, c, atol=1e-4)
    assert not torch.allclose(m, base, atol=1e-4)  # the adapter changed the model


def test_cli_help_and_config_errors(tmp_path, capsys):
    from bopask_vlm.train.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--resume" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {max_stepz: 3}\ndata: {train: [x]}\n")
    assert main(["--config", str(bad)]) == 2
    assert "max_stepz" in capsys.readouterr().err
    with pytest.raises(TrainConfigError, match="coord_convention"):
        config_from_dict({"model": {"coord_convention": "inches"}, "data": {"train": ["x"]}})
    good = tmp_path / "good.yaml"
    good.write_text("data: {train: [x], task_weights: {grasp: 2}}\n")
    cfg = load_config(good, ["optim.max_steps=7", "data.task_weights.pose=0.5"])
    assert cfg.optim.max_steps == 7 and cfg.data.task_weights == {"grasp": 2, "pose": 0.5}
    examples = sorted((Path(train_pkg.__file__).parent / "configs").glob("*.yaml"))
    assert len(examples) >= 3
    for path in examples:  # every shipped example parses and validates
        assert load_config(path).data.train


@pytest.fixture(scope="module")
def yes_no_model(data, tmp_path_factory):
    """16 steps on the yes/no questions only: enough for the tiny model to answer Yes/No and stop."""
    root, eval_shard = data
    d = _cfg_dict(shared_tiny_model(), root, eval_shard, tmp_path_factory.mktemp("yes_no_run"), max_steps=16)
    d["data"].update(task_weights={"spatial": 1.0, "depth": 1.0}, eval=[])
    d["run"].update(save_steps=100, eval_steps=None, report_to=[])
    return train(config_from_dict(d)).model_dir


def test_trained_model_answers_through_the_parser(yes_no_model, data):
    from bopask_vlm.answers.types import YesNoAnswer
    from bopask_vlm.train.trainer import evaluate_generation

    root, _ = data
    proc = load_processor(yes_no_model)
    spatial = [(r, rt) for r, rt in read_records(find_shards([root])) if r.task.value == "spatial"]
    seen = []
    res = evaluate_generation(_load(yes_no_model), proc, SampleEncoder(proc, read_model_info(yes_no_model)[
        "coord_convention"]), spatial, max_new_tokens=8, metrics_fn=lambda items: seen.extend(items) or {})
    assert res.n == len(spatial) >= 4 and res.parsed == res.n and res.metrics["parse_rate"] == 1.0
    assert all(isinstance(pred, YesNoAnswer) for _, _, pred in seen)


def test_exported_model_serves_through_the_transformers_client(yes_no_model, data):
    """The VLM layer's TransformersClient loads the exported directory (convention from bopask_model.json)
    and its answer goes through the text parser to a typed answer."""
    import numpy as np

    from bopask_vlm.answers import CoordConvention
    from bopask_vlm.answers.types import YesNoAnswer
    from bopask_vlm.clients import TransformersClient, VLMRequest
    from bopask_vlm.train.data import load_image

    root, _ = data
    client = TransformersClient(yes_no_model, max_new_tokens=8)
    assert client.convention is CoordConvention.RESIZED_PIXELS
    rec, rt = next((r, rt) for r, rt in read_records(find_shards([root])) if r.task.value == "spatial")
    resp = client.ask(VLMRequest(task=rec.task, image=np.asarray(load_image(rec, rt)),
                                 objects=[o.description for o in rec.objects], relation=rec.gt["relation"]))
    assert isinstance(resp.answer, YesNoAnswer)
    assert resp.raw_text in ("Yes", "No") and resp.answer.value == (resp.raw_text == "Yes")
