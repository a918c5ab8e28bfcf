"""One training run's configuration: a YAML file, read into typed dataclasses.

Every field has a default, so a run file names only what differs (see ``train/configs/*.yaml``).
``key.sub=value`` overrides from the command line apply on top (:func:`apply_overrides`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bopask_vlm.answers.types import Task

#: Coordinate conventions a model may answer in (values of ``bopask_vlm.answers.coords.CoordConvention``).
COORD_CONVENTIONS = ("pixels", "resized_pixels", "normalized_1", "normalized_1000")


class TrainConfigError(ValueError):
    """A training configuration is invalid; the message names the field."""


@dataclass
class ModelConfig:
    path: str = "Qwen/Qwen2.5-VL-3B-Instruct"  # HF model directory (or hub id, if the cache holds it)
    coord_convention: str = "resized_pixels"  # the convention answers are trained (and served) in
    answer_form: str = "text"  # text ([(x, y), ...], Yes) or json (the task's schema): recorded in the contract
    min_pixels: int | None = None  # image resize bounds of the processor; None keeps the model's own
    max_pixels: int | None = None
    dtype: str = "bfloat16"  # weights while training: bfloat16 | float32
    attn_implementation: str | None = None  # e.g. "flash_attention_2", "sdpa"
    # full fine-tuning: keep the vision tower (and merger) frozen; unset: frozen unless random_init
    freeze_vision: bool | None = None
    # the checkpoint is randomly initialised (training from scratch): its vision tower trains (train/labelled_loss.py)
    random_init: bool = False


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # dataset roots, shard files or globs (JSONL QARecords)
    eval: list[str] = field(default_factory=list)  # held-out records for eval loss and the benchmark metrics
    task_weights: dict[str, float] = field(default_factory=dict)  # task -> sampling weight; empty: natural mix
    streaming: bool = False  # read shards lazily (large sets); otherwise load all records into memory
    shuffle_buffer: int = 1000  # streaming: records held for shuffling
    max_length: int = 4096  # tokens per sample (longer samples are skipped, with a count in the log)
    eval_samples: int = 64  # records scored by the periodic benchmark evaluation
    eval_max_new_tokens: int = 256  # generation budget per evaluated answer
    num_workers: int = 0


@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # regex over module names: the language model's projections (vision tower untouched)
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class OptimConfig:
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    max_steps: int = 1000
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    bf16: bool = True
    seed: int = 0
    # apply the LM head only where a token is labelled (same loss, far less compute/memory: labelled_loss.py)
    loss_at_labels_only: bool = False


@dataclass
class RunConfig:
    output_dir: str = "runs/bopask-sft"
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = 3
    eval_steps: int | None = 200  # eval loss + benchmark metrics every N steps (None: never)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    deepspeed: str | dict[str, Any] | None = None  # DeepSpeed config: a JSON path or the config inline
    merge_lora: bool = True  # export: merge the adapter into the base weights (else save it beside them)
    progress: bool = True
    loss_plot: bool = True  # draw output_dir/loss.png (+ loss_history.json) while training (train/loss_plot.py)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> TrainConfig:
        if self.model.coord_convention not in COORD_CONVENTIONS:
            raise TrainConfigError(
                f"model.coord_convention: {self.model.coord_convention!r} is not one of {COORD_CONVENTIONS}"
            )
        if self.model.answer_form not in ("text", "json"):
            raise TrainConfigError(f"model.answer_form: {self.model.answer_form!r} is not text or json")
        if self.model.dtype not in ("bfloat16", "float32", "float16"):
            raise TrainConfigError(f"model.dtype: {self.model.dtype!r} is not bfloat16, float16 or float32")
        if not self.data.train:
            raise TrainConfigError("data.train: no training shards given")
        known = {t.value for t in Task}
        for task, w in self.data.task_weights.items():
            if task not in known:
                raise TrainConfigError(f"data.task_weights: unknown task {task!r} (known: {sorted(known)})")
            if not (isinstance(w, (int, float)) and w >= 0):
                raise TrainConfigError(f"data.task_weights.{task}: weight must be a number >= 0, got {w!r}")
        if self.data.task_weights and sum(self.data.task_weights.values()) <= 0:
            raise TrainConfigError("data.task_weights: all weights are zero")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_steps"):
            if getattr(self.optim, name) < 1:
                raise TrainConfigError(f"optim.{name}: must be >= 1")
        if self.lora.enabled and self.lora.r < 1:
            raise TrainConfigError("lora.r: must be >= 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTION_CLASSES = {
    "model": ModelConfig, "data": DataConfig, "lora": LoraConfig, "optim": OptimConfig, "run": RunConfig,
}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Build and validate a config from a nested dict (unknown keys are errors, not silently ignored)."""
    if not isinstance(d, dict):
        raise TrainConfigError(f"a training config must be a mapping, got {type(d).__name__}")
    sections = {}
    for name, value in d.items():
        if name not in _SECTION_CLASSES:
            raise TrainConfigError(f"unknown section {name!r} (known: {sorted(_SECTION_CLASSES)})")
        cls = _SECTION_CLASSES[name]
        value = value or {}
        if not isinstance(value, dict):
            raise TrainConfigError(f"section {name!r} must be a mapping")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - fields
        if unknown:
            raise TrainConfigError(f"{name}: unknown keys {sorted(unknown)} (known: {sorted(fields)})")
        value = dict(value)
        for key in _list_fields(cls) & set(value):  # one plain value is a list of one (never a string's letters)
            v = value[key]
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                value[key] = [v]
            elif v is not None and not isinstance(v, list):
                raise TrainConfigError(f"{name}.{key}: expected a list (or one value), got {type(v).__name__} {v!r}")
        sections[name] = cls(**value)
    return TrainConfig(**sections).validate()


def _list_fields(cls: type) -> set[str]:
    """The fields of a section dataclass that hold lists (``data.train``, ``run.report_to``, ...)."""
    return {f.name for f in dataclasses.fields(cls) if f.default_factory is list  # type: ignore[misc]
            or str(f.type).startswith("list[")}


#: the run files shipped with the package (``bopask train --config tiny_cpu.yaml`` finds them from any folder)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """``path`` if it exists, else the shipped run file of that name (``train/configs/``), else ``path``."""
    p = Path(path)
    if not p.exists() and p.parent == Path(".") and (CONFIGS_DIR / p.name).is_file():
        return CONFIGS_DIR / p.name
    return p


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML run file (a path, or the name of a shipped one), apply ``section.key=value`` overrides,
    validate. Relative paths in the file (data, model, output) are relative to the working directory, as on
    the command line."""
    p = resolve_config_path(path)
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise TrainConfigError(f"cannot read config {p}: {e}") from e
    except yaml.YAMLError as e:
        raise TrainConfigError(f"config {p} is not valid YAML: {e}") from e
    return config_from_dict(apply_overrides(d, overrides or []))


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["optim.max_steps=10", "data.task_weights.grasp=2"]`` -> nested dict updates (values parsed as YAML)."""
    out = copy.deepcopy(d)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise TrainConfigError(f"override {item!r}: expected section.key=value")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {} if nxt is None else None
                if nxt is None:
                    raise TrainConfigError(f"override {item!r}: {part!r} is not a section")
                node[part] = nxt
            node = nxt
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
