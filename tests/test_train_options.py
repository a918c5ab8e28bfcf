"""Training options (bopask_vlm.train.labelled_loss): the loss at labelled positions only equals the full-logits
loss on the tiny Qwen2.5-VL (value and gradients), through the model and through the Trainer; a randomly
initialised vision tower trains by default and a frozen one is warned about."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _train_helpers import generated_dataset, shared_tiny_model  # noqa: E402

from bopask_vlm.train.config import config_from_dict  # noqa: E402
from bopask_vlm.train.data import RecordSFTDataset, SampleEncoder, SFTCollator, find_shards, read_records  # noqa: E402
from bopask_vlm.train.labelled_loss import (  # noqa: E402
    FrozenRandomVisionWarning,
    labelled_positions,
    labelled_token_loss,
)
from bopask_vlm.train.processor import load_processor  # noqa: E402
from bopask_vlm.train.trainer import load_model, prepare  # noqa: E402

VISION = ("visual.", "vision_tower.")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generated_dataset(tmp_path_factory.mktemp("opt_ds"), seed=0)


@pytest.fixture(scope="module")
def batch(data):
    proc = load_processor(shared_tiny_model())
    ds = RecordSFTDataset(read_records(find_shards([data]))[:4], SampleEncoder(proc, "resized_pixels"))
    return SFTCollator(proc.tokenizer.pad_token_id)([ds[i] for i in range(4)])


def _cfg(data, out, **model):
    return config_from_dict({
        "model": {"path": str(shared_tiny_model()), "dtype": "float32", **model},
        "data": {"train": [str(data)], "max_length": 512},
        "lora": {"enabled": False},
        "optim": {"per_device_batch_size": 4, "gradient_accumulation_steps": 1, "max_steps": 2, "bf16": False,
                  "gradient_checkpointing": False},
        "run": {"output_dir": str(out), "report_to": [], "progress": False, "eval_steps": None},
    })


def _loss_and_grads(model, batch, keep: bool):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if keep:
        inputs["logits_to_keep"] = labelled_positions(batch["labels"])
    model.zero_grad()
    out = model(**inputs)
    loss = labelled_token_loss(out, batch["labels"])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.shape, loss.detach(), grads


def test_loss_at_labels_only_equals_full_logits_loss(batch):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(shared_tiny_model(), dtype=torch.float32).train()
    n_labelled = int((batch["labels"][:, 1:] != -100).sum())
    full_shape, full, g_full = _loss_and_grads(model, batch, keep=False)
    sel_shape, sel, g_sel = _loss_and_grads(model, batch, keep=True)
    assert full_shape[:2] == batch["input_ids"].shape
    assert tuple(sel_shape) == (n_labelled, full_shape[-1])  # the head ran on the labelled positions only
    assert n_labelled < 0.5 * batch["input_ids"].numel()
    torch.testing.assert_close(sel, full, rtol=1e-5, atol=1e-6)
    assert g_full.keys() == g_sel.keys() and any(n.startswith("model.visual.") for n in g_full)
    for name in g_full:
        torch.testing.assert_close(g_sel[name], g_full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_trainer_compute_loss_same_with_and_without_option(data, batch, tmp_path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(shared_tiny_model(), dtype=torch.float32)
    losses = {}
    for on in (False, True):
        cfg = _cfg(data, tmp_path / str(on))
        cfg.optim.loss_at_labels_only = on
        run = prepare(cfg, model=model)
        assert run.trainer.loss_at_labels_only is on
        with torch.no_grad():
            losses[on] = float(run.trainer.compute_loss(model, dict(batch)))
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_selected_logits_count_must_match_labels(batch):
    logits = torch.zeros(3, 10)
    with pytest.raises(ValueError, match="selected logits"):
        labelled_token_loss({"logits": logits}, batch["labels"])


def _vision_grad(model) -> tuple[int, int]:
    params = [p for n, p in model.named_parameters() if any(v in n for v in VISION)]
    return sum(p.requires_grad for p in params), len(params)


def test_random_vision_tower_trains_and_frozen_one_warns(data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrozenRandomVisionWarning)
        trainable, n = _vision_grad(load_model(_cfg(data, tmp_path, random_init=True)))
        assert n > 0 and trainable == n  # random tower, freeze_vision unset: it trains, no warning
        trainable, n = _vision_grad(load_model(_cfg(data, tmp_path)))
        assert trainable == 0  # a pretrained tower stays frozen by default, as before
    with pytest.warns(FrozenRandomVisionWarning, match="cannot learn to see"):
        model = load_model(_cfg(data, tmp_path, random_init=True, freeze_vision=True))
    assert _vision_grad(model)[0] == 0
    lora = _cfg(data, tmp_path, random_init=True)
    lora.lora.enabled = True
    with pytest.warns(FrozenRandomVisionWarning, match="LoRA"):
        load_model(lora)
