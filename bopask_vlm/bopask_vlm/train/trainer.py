"""Supervised fine-tuning with transformers' ``Trainer`` (+ peft LoRA), configured by a :class:`TrainConfig`.

Multi-GPU / multi-node comes from the launcher: ``accelerate launch`` or ``torchrun`` start one process per
GPU and the Trainer runs data parallel (DeepSpeed ZeRO with ``run.deepspeed: ds.json``). Checkpoints every
``run.save_steps`` under ``run.output_dir/checkpoint-N``; ``resume`` continues from the latest (or a given)
one; loss, learning rate and the periodic evaluation go to TensorBoard under ``run.output_dir/runs``.
The final model is exported to ``run.output_dir/model`` (:mod:`bopask_vlm.train.export`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bopask_vlm.train.config import TrainConfig, save_config
from bopask_vlm.train.data import (
    MixedRecords,
    MixedSFTDataset,
    RecordSFTDataset,
    SampleEncoder,
    SFTCollator,
    TrainDataError,
    find_shards,
    load_image,
    read_records,
)
from bopask_vlm.train.export import export_model, finalize_model_dir
from bopask_vlm.train.labelled_loss import (
    labelled_token_loss,
    trainer_class,
    vision_frozen,
    warn_if_random_vision_frozen,
)
from bopask_vlm.train.loss_plot import loss_plot_callback
from bopask_vlm.train.processor import load_processor

log = logging.getLogger(__name__)


class TrainError(RuntimeError):
    """A training run cannot start or continue; the message says why."""


# ----------------------------------------------------------------------------------------------- model


def _dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_processor_for(cfg: TrainConfig) -> Any:
    kwargs = {k: v for k, v in (("min_pixels", cfg.model.min_pixels), ("max_pixels", cfg.model.max_pixels))
              if v is not None}
    return load_processor(cfg.model.path, **kwargs)


def load_model(cfg: TrainConfig, checkpoint: str | Path | None = None) -> Any:
    """The base model, wrapped with a LoRA adapter (``lora.enabled``) or prepared for full fine-tuning.

    With ``checkpoint``, the weights (or adapter) come from that Trainer checkpoint. The Trainer's own resume
    reloads the raw state dict without transformers 5's checkpoint key mapping ("visual.*" on disk,
    "model.visual.*" in memory), which leaves full fine-tuning weights unrestored; loading through
    ``from_pretrained`` here applies the mapping.
    """
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": _dtype(master_dtype(cfg))}
    if master_dtype(cfg) != cfg.model.dtype:
        log.info("full fine-tuning without DeepSpeed: weights kept in float32 (the optimizer's master copy); "
                 "compute runs in %s autocast where optim.bf16 and the device allow", cfg.model.dtype)
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    ckpt = Path(checkpoint) if checkpoint is not None else None
    full_ckpt = ckpt is not None and not cfg.lora.enabled
    src = ckpt if full_ckpt else cfg.model.path
    try:
        model = AutoModelForImageTextToText.from_pretrained(src, **kwargs)
    except OSError as e:
        raise TrainError(f"cannot load model {src}: {e}") from e
    model.config.use_cache = False
    warn_if_random_vision_frozen(cfg)
    if cfg.lora.enabled:
        from peft import LoraConfig, PeftModel, get_peft_model

        names = [n for n, _ in model.named_modules() if re.fullmatch(cfg.lora.target_modules, n)]
        if not names:
            raise TrainError(f"lora.target_modules {cfg.lora.target_modules!r} matches no module of the model")
        if ckpt is not None:
            if not (ckpt / "adapter_config.json").is_file():
                raise TrainError(f"{ckpt} holds no LoRA adapter but lora.enabled is true")
            model = PeftModel.from_pretrained(model, ckpt, is_trainable=True)
        else:
            lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
            model = get_peft_model(model, lcfg)
        if cfg.optim.gradient_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    elif vision_frozen(cfg):
        frozen = 0
        for name, p in model.named_parameters():
            if re.search(r"(^|\.)(visual|vision_tower|vision_model)\.", name):
                p.requires_grad_(False)
                frozen += p.numel()
        log.info("froze %d vision parameters", frozen)
    return model


def master_dtype(cfg: TrainConfig) -> str:
    """The dtype the trained weights are held in. Full fine-tuning without DeepSpeed would otherwise run
    AdamW directly on bf16/fp16 weights (no fp32 master: updates of lr x grad ~1e-5 relative are below
    bf16's 2^-8 resolution and mostly lost), so its weights stay float32 and the Trainer's mixed precision
    (``optim.bf16``) computes in bf16. DeepSpeed keeps its own fp32 masters; LoRA trains float32 adapters
    (peft) over frozen low-precision base weights."""
    if not cfg.lora.enabled and not cfg.run.deepspeed and cfg.model.dtype in ("bfloat16", "float16"):
        return "float32"
    return cfg.model.dtype


def answer_token_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy summed over the labelled (answer) tokens and divided by the number of labelled
    tokens of the whole global batch (``num_items_in_batch``: the Trainer counts them over the gradient
    accumulation steps and, with ``average_tokens_across_devices``, over the ranks). So every answer token
    weighs the same whatever rank or micro-batch it lands in, and N processes train exactly like one with the
    same global batch. Qwen2.5-VL's own loss is a per-micro-batch mean (``accepts_loss_kwargs`` is False),
    which weighs a short answer in a batch of short answers more than the same answer beside long ones."""
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    shift_logits = logits[..., :-1, :].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[..., 1:].reshape(-1).to(shift_logits.device)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = (shift_labels != -100).sum()
    return total / num_items_in_batch


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


# ----------------------------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    """Scores of generated answers on held-out records (benchmark-style)."""

    n: int
    parsed: int
    metrics: dict[str, float] = field(default_factory=dict)


def default_metrics(items: Sequence[tuple[Any, Path, Any]]) -> dict[str, float]:
    """Fallback scores when the benchmark's scorer is absent: yes/no accuracy and mean point error (pixels)
    of answers with the right number of points. ``items`` holds (record, dataset root, answer | None)."""
    import numpy as np

    from bopask_vlm.answers import answer_from_record

    out: dict[str, float] = {}
    by_task: dict[str, list[tuple[Any, Any]]] = {}
    for rec, _, pred in items:
        by_task.setdefault(rec.task.value, []).append((pred, answer_from_record(rec)))
    for task, pairs in by_task.items():
        if task in ("spatial", "depth"):
            out[f"{task}/correct"] = float(np.mean([p is not None and p.value == t.value for p, t in pairs]))
        else:
            errs = [float(np.linalg.norm(p.points - t.points, axis=1).mean()) for p, t in pairs
                    if p is not None and p.points.shape == t.points.shape and len(t.points)]
            if errs:
                out[f"{task}/mean_point_error_px"] = float(np.mean(errs))
    return out


def benchmark_metrics(items: Sequence[tuple[Any, Path, Any]]) -> dict[str, float]:
    """The benchmark runner's per-sample metrics (``eval.scoring.score_answer``) aggregated like its report
    (``eval.report.aggregate``): ``headline/<column>`` and ``<task>/<metric>`` means; the fallback
    :func:`default_metrics` where the evaluation module is absent."""
    try:
        from bopask_vlm.eval.report import aggregate
        from bopask_vlm.eval.scoring import scene_for_record, score_answer
    except ImportError:
        return default_metrics(items)
    samples = [{"task": r.task.value, "metrics": score_answer(r, pred, scene_for_record(r, root))}
               for r, root, pred in items]
    summary = aggregate(samples)
    out = {f"headline/{k}": float(v) for k, v in summary["headline"].items() if v is not None}
    for task, d in summary["tasks"].items():
        out.update({f"{task}/{k}": float(v) for k, v in d["metrics"].items()})
    return out


def evaluate_generation(model: Any, processor: Any, encoder: SampleEncoder,
                        records: Sequence[tuple[Any, Path]], *, max_new_tokens: int = 256,
                        metrics_fn: Callable[..., dict[str, float]] | None = None) -> EvalResult:
    """Greedy answers for ``records`` parsed like a served answer (text -> typed answer -> original pixels),
    then scored by ``metrics_fn`` (default :func:`benchmark_metrics`)."""
    import torch

    from bopask_vlm.answers import AnswerParseError, parse_answer_json, parse_answer_text
    from bopask_vlm.answers.coords import from_model

    parse = parse_answer_json if getattr(encoder, "answer_form", "text") == "json" else parse_answer_text
    items = []
    parsed = 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for record, root in records:
            prompt, _, _ = encoder.texts(record)
            inputs = processor(text=[prompt], images=[load_image(record, root)], return_tensors="pt").to(device)
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            text = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
            try:
                pred = from_model(parse(record.task, text), encoder.convention, record.width,
                                  record.height, encoder.resize)
                parsed += 1
            except (AnswerParseError, ValueError):
                pred = None
            items.append((record, root, pred))
    finally:
        model.train(was_training)
    metrics = {"parse_rate": parsed / max(1, len(records))}
    metrics.update((metrics_fn or benchmark_metrics)(items))
    return EvalResult(n=len(records), parsed=parsed, metrics=metrics)


def make_benchmark_callback(processor: Any, encoder: SampleEncoder, records: Sequence[tuple[Any, Path]],
                            every: int, max_new_tokens: int = 256) -> Any:
    """A ``TrainerCallback`` that scores generated answers every ``every`` steps and logs ``bench/*``.

    Data parallel, every rank generates for its own share of the records (``records[rank::world]``) and the
    answers are gathered (``all_gather_object``) before scoring, so no rank idles at a collective while
    another generates (NCCL's watchdog would time it out on a long evaluation)."""
    from transformers import TrainerCallback

    class BenchmarkCallback(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[tuple[int, dict[str, float]]] = []
            self.trainer: Any = None

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if not records or every <= 0 or state.global_step % every or model is None:
                return control
            if _zero3(args):
                # generation on one rank would wait forever for the other ranks' parameter shards
                if state.is_world_process_zero:
                    log.warning("benchmark evaluation skipped under DeepSpeed ZeRO-3 (eval loss still runs)")
                return control
            rank, world = _rank_world()
            mine = list(records)[rank::world]
            items: list[tuple[int, Any]] = []
            evaluate_generation(model, processor, encoder, mine, max_new_tokens=max_new_tokens,
                                      metrics_fn=lambda its: items.extend(enumerate(its)) or {})
            own = [(rank + world * i, pred) for i, (_, _, pred) in items]
            gathered = _all_gather(own, world)
            preds = dict(gathered)
            everything = [(rec, root, preds.get(i)) for i, (rec, root) in enumerate(records)]
            parsed = sum(p is not None for _, _, p in everything)
            metrics = {"parse_rate": parsed / max(1, len(everything))}
            metrics.update(benchmark_metrics(everything))
            self.history.append((state.global_step, metrics))
            if self.trainer is not None:
                self.trainer.log({f"bench/{k}": v for k, v in metrics.items()})
            return control

    return BenchmarkCallback()


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: list[Any], world: int) -> list[Any]:
    """Concatenate every rank's list (one process: the list itself)."""
    if world == 1:
        return list(obj)
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return [x for part in out for x in part]


def _zero3(args: Any) -> bool:
    ds = getattr(args, "deepspeed", None)
    if not ds:
        return False
    if isinstance(ds, (str, Path)):
        try:
            ds = json.loads(Path(ds).read_text())
        except (OSError, ValueError):
            return False
    return int((ds.get("zero_optimization") or {}).get("stage", 0)) == 3


# ----------------------------------------------------------------------------------------------- run


@dataclass
class TrainRun:
    """A prepared run: the Trainer and what built it (for tests and the CLI)."""

    config: TrainConfig
    trainer: Any
    processor: Any
    encoder: SampleEncoder
    train_dataset: Any
    eval_records: list[tuple[Any, Path]]
    benchmark: Any = None


def training_arguments(cfg: TrainConfig, *, has_eval: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    use_bf16 = cfg.optim.bf16 and (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if cfg.optim.bf16 and not use_bf16:
        log.warning("optim.bf16 requested but no bf16-capable GPU: training in the weights' dtype")
    # Several processes without a GPU (torchrun on CPUs): accelerate sets up data parallelism over gloo only
    # when told the run is on the CPU; otherwise each process would train alone on the whole batch.
    cpu_ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    extra: dict[str, Any] = {"use_cpu": True, "ddp_backend": "gloo"} if cpu_ddp else {}
    return TrainingArguments(
        **extra,
        output_dir=cfg.run.output_dir,
        per_device_train_batch_size=cfg.optim.per_device_batch_size,
        per_device_eval_batch_size=cfg.optim.per_device_batch_size,
        gradient_accumulation_steps=cfg.optim.gradient_accumulation_steps,
        max_steps=cfg.optim.max_steps,
        learning_rate=cfg.optim.learning_rate,
        weight_decay=cfg.optim.weight_decay,
        warmup_steps=cfg.optim.warmup_ratio,  # < 1: a ratio of max_steps (transformers 5)
        lr_scheduler_type=cfg.optim.lr_scheduler,
        max_grad_norm=cfg.optim.max_grad_norm,
        bf16=use_bf16,
        activation_checkpointing=cfg.optim.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.optim.gradient_checkpointing else None,
        logging_steps=cfg.run.logging_steps,
        save_strategy="steps",
        save_steps=cfg.run.save_steps,
        save_total_limit=cfg.run.save_total_limit,
        eval_strategy="steps" if (has_eval and cfg.run.eval_steps) else "no",
        eval_steps=cfg.run.eval_steps,
        report_to=list(cfg.run.report_to) or "none",
        deepspeed=cfg.run.deepspeed,
        seed=cfg.optim.seed,
        remove_unused_columns=False,  # the collator's vision tensors are not in forward()'s named signature
        label_names=["labels"],
        dataloader_num_workers=cfg.data.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),  # only copies to a GPU gain (torch warns on CPUs)
        ignore_data_skip=True,  # the endless mixed stream is reseeded at resume instead of replayed
        disable_tqdm=not cfg.run.progress,
        # Each process reads its own seeded stream. Dispatching batches from rank 0 would slice every tensor
        # to the batch size, cutting Qwen-VL's flattened (patches, dim) pixel_values.
        accelerator_config={"dispatch_batches": False},
    )


def prepare(cfg: TrainConfig, *, resume_step: int = 0, model: Any = None,
            checkpoint: str | Path | None = None) -> TrainRun:
    """Build processor, model, datasets, collator and the Trainer for ``cfg`` (nothing runs yet)."""
    from transformers import Trainer

    processor = load_processor_for(cfg)
    encoder = SampleEncoder(processor, cfg.model.coord_convention, max_length=cfg.data.max_length,
                            seed=cfg.optim.seed, answer_form=cfg.model.answer_form)
    mixed = MixedRecords(find_shards(cfg.data.train), cfg.data.task_weights, streaming=cfg.data.streaming,
                         shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.optim.seed + 7919 * resume_step)
    train_ds = MixedSFTDataset(mixed, encoder, batch_size=cfg.optim.per_device_batch_size)
    eval_records = read_records(find_shards(cfg.data.eval)) if cfg.data.eval else []
    eval_ds = (RecordSFTDataset(eval_records[: cfg.data.eval_samples], encoder, drop_too_long=True)
               if eval_records else None)
    if eval_ds is not None and len(eval_ds) == 0:
        raise TrainError(f"every evaluation sample is longer than data.max_length {cfg.data.max_length}")
    # The arguments exist before the model: with DeepSpeed ZeRO-3 their HfTrainerDeepSpeedConfig (kept alive
    # by `args`) makes from_pretrained load under deepspeed.zero.Init, partitioned over the ranks, instead
    # of every rank materialising the whole model.
    args = training_arguments(cfg, has_eval=eval_ds is not None)
    if model is None:
        model = load_model(cfg, checkpoint)
    tok = getattr(processor, "tokenizer", processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad_id is None:
        raise TrainError("the tokenizer has neither a pad nor an eos token")
    callbacks = [loss_plot_callback(cfg.run.output_dir)] if cfg.run.loss_plot else []
    bench = None
    if eval_records and cfg.run.eval_steps:
        bench = make_benchmark_callback(processor, encoder, eval_records[: cfg.data.eval_samples],
                                        cfg.run.eval_steps, cfg.data.eval_max_new_tokens)
        callbacks.append(bench)
    trainer = trainer_class(Trainer)(
        model=model, args=args, train_dataset=train_ds,
        eval_dataset=eval_ds, data_collator=SFTCollator(pad_id), callbacks=callbacks,
        compute_loss_func=labelled_token_loss if cfg.optim.loss_at_labels_only else answer_token_loss,
    )
    trainer.loss_at_labels_only = cfg.optim.loss_at_labels_only
    if bench is not None:
        bench.trainer = trainer
    return TrainRun(cfg, trainer, processor, encoder, train_ds, eval_records, bench)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-N`` directory with the largest N, or None."""
    best: tuple[int, Path] | None = None
    for d in Path(output_dir).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), d)
    return best[1] if best else None


def checkpoint_step(checkpoint: str | Path) -> int:
    state = Path(checkpoint) / "trainer_state.json"
    if not state.is_file():
        raise TrainError(f"{checkpoint} is not a Trainer checkpoint (no trainer_state.json)")
    return int(json.loads(state.read_text())["global_step"])


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path | None
    global_step: int
    train_loss: float
    resumed_from: Path | None


def train(cfg: TrainConfig, *, resume: bool | str | Path = False, export: bool = True) -> TrainResult:
    """Run (or continue) the training described by ``cfg`` and export the final model."""
    out = Path(cfg.run.output_dir)
    ckpt: Path | None = None
    if resume:
        ckpt = latest_checkpoint(out) if resume is True or resume == "latest" else Path(resume)
        if ckpt is None:
            raise TrainError(f"resume requested but {out} has no checkpoint-N directory")
        if not ckpt.is_dir():
            raise TrainError(f"checkpoint {ckpt} does not exist")
    step0 = checkpoint_step(ckpt) if ckpt else 0
    if step0 >= cfg.optim.max_steps:
        raise TrainError(f"checkpoint {ckpt} is at step {step0} >= optim.max_steps {cfg.optim.max_steps}")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "train_config.yaml")
    try:
        run = prepare(cfg, resume_step=step0, checkpoint=ckpt)
    except TrainDataError as e:
        raise TrainError(str(e)) from e
    trainable, total = trainable_parameters(run.trainer.model)
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(1, total))
    result = run.trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    model_dir = _export_after_training(cfg, run.trainer, out) if export else None
    loss = float(result.training_loss) if result.training_loss is not None else math.nan
    return TrainResult(out, model_dir, run.trainer.state.global_step, loss, ckpt)


def _export_after_training(cfg: TrainConfig, trainer: Any, out: Path) -> Path | None:
    """Save through ``Trainer.save_model`` (all ranks: it gathers ZeRO-3 / FSDP shards), then complete the
    directory on the main process. LoRA: the adapter goes to ``out/adapter``, merged weights to ``out/model``
    (``run.merge_lora``); full fine-tuning: weights to ``out/model``."""
    info = {"train_steps": trainer.state.global_step, "task_weights": cfg.data.task_weights}
    bounds = {"min_pixels": cfg.model.min_pixels, "max_pixels": cfg.model.max_pixels}
    model_dir = out / "model"
    if cfg.lora.enabled:
        adapter_dir = out / "adapter"
        trainer.save_model(str(adapter_dir))
        if not trainer.is_world_process_zero():
            return None
        finalize_model_dir(adapter_dir, cfg.model.path, coord_convention=cfg.model.coord_convention,
                           answer_form=cfg.model.answer_form, lora_adapter=True, merged=False, info=info, **bounds)
        if not cfg.run.merge_lora:
            return adapter_dir
        return export_checkpoint(cfg, adapter_dir, model_dir, info=info)
    trainer.save_model(str(model_dir))
    if not trainer.is_world_process_zero():
        return None
    return finalize_model_dir(model_dir, cfg.model.path, coord_convention=cfg.model.coord_convention,
                              answer_form=cfg.model.answer_form, lora_adapter=False, merged=False, info=info, **bounds)


def export_checkpoint(cfg: TrainConfig, checkpoint: str | Path, out_dir: str | Path,
                      info: dict[str, Any] | None = None) -> Path:
    """Export a Trainer checkpoint (a LoRA adapter over ``cfg.model.path``, or full weights) as a model dir."""
    from transformers import AutoModelForImageTextToText

    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise TrainError(f"checkpoint {ckpt} does not exist")
    dtype = _dtype(cfg.model.dtype)
    if (ckpt / "adapter_config.json").is_file():
        from peft import PeftModel

        base = AutoModelForImageTextToText.from_pretrained(cfg.model.path, dtype=dtype)
        model = PeftModel.from_pretrained(base, ckpt)
    else:
        model = AutoModelForImageTextToText.from_pretrained(ckpt, dtype=dtype)
    step = checkpoint_step(ckpt) if (ckpt / "trainer_state.json").is_file() else None
    return export_model(
        model, cfg.model.path, out_dir, coord_convention=cfg.model.coord_convention,
        answer_form=cfg.model.answer_form, merge_lora=cfg.run.merge_lora,
        min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
        info=info or {"train_steps": step, "task_weights": cfg.data.task_weights, "checkpoint": str(ckpt)},
    )
