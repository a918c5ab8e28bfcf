"""Training data: generated QA shards -> task-mixed chat samples -> padded batches.

A sample is the chat a served model sees (the record's own question, its format instruction adapted to the model's coordinate
convention, the image) followed by the answer in that convention (``answers.coords.to_model`` then
``answers.answer_to_text``: the same functions the clients invert), tokenised by the model's own processor.
Only the answer tokens and the end-of-turn token that closes them carry a loss; every prompt token
(system, question, image placeholders) is labelled -100.
"""

from __future__ import annotations

import glob
import logging
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bopask_vlm.answers.types import Task
from bopask_vlm.records import QARecord, RecordError

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


class TrainDataError(ValueError):
    """Training data cannot be read or turned into a sample; the message says which file or record."""


# ----------------------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shard:
    """One JSONL shard and the dataset root its image paths are relative to."""

    path: Path
    root: Path


def find_shards(sources: Sequence[str | Path]) -> list[Shard]:
    """Expand dataset roots (every ``*.jsonl`` below), shard files and globs into shards, sorted per source.

    A record's ``image`` path is relative to its dataset root: the directory given, else the nearest ancestor
    of the shard (up to three levels) under which the shard's first record's image exists.
    """
    shards: list[Shard] = []
    for src in sources:
        s = str(src)
        p = Path(s)
        if p.is_dir():
            files = sorted(p.rglob("*.jsonl"))
            if not files:
                raise TrainDataError(f"no *.jsonl shards under {p}")
            shards += [Shard(f, _guess_root(f, prefer=p)) for f in files]
            continue
        files = [Path(f) for f in sorted(glob.glob(s))] if any(c in s for c in "*?[") else [p]
        if not files or not all(f.is_file() for f in files):
            raise TrainDataError(f"no shard file matches {s}")
        shards += [Shard(f, _guess_root(f)) for f in files]
    return shards


def _guess_root(shard: Path, prefer: Path | None = None) -> Path:
    first = None
    with shard.open() as fh:
        for line in fh:
            if line.strip():
                try:
                    first = QARecord.from_line(line)
                except RecordError:
                    pass  # reported with its line number when the shard is read
                break
    candidates = ([prefer] if prefer else []) + [shard.parent, *list(shard.parent.parents)[:3]]
    if first is not None:
        for c in candidates:
            if (c / first.image).exists():
                return c
    return prefer or shard.parent


def iter_shard(shard: Shard) -> Iterator[QARecord]:
    """Records of one shard, lazily; a bad line raises with its file and line number."""
    with shard.path.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield QARecord.from_line(line)
            except RecordError as e:
                raise TrainDataError(f"{shard.path}:{n}: {e}") from e


def read_records(shards: Sequence[Shard]) -> list[tuple[QARecord, Path]]:
    """All records of the shards, each with its dataset root."""
    return [(r, s.root) for s in shards for r in iter_shard(s)]


# ----------------------------------------------------------------------------------------------- mixing


def normalised_weights(weights: dict[str, float], present: Iterable[Task]) -> dict[Task, float]:
    """Task -> probability over the tasks present; no weights given = equal weight per present task is
    NOT assumed: the natural mix is handled by the callers. Tasks weighted but absent raise."""
    present = set(present)
    w = {Task(k): float(v) for k, v in weights.items() if float(v) > 0}
    missing = [t.value for t in w if t not in present]
    if missing:
        raise TrainDataError(f"task_weights name tasks with no records: {missing}")
    total = sum(w.values())
    if total <= 0:
        raise TrainDataError("task_weights: no task has a positive weight")
    return {t: v / total for t, v in w.items()}


class MixedRecords:
    """An endless, seeded, task-weighted stream of ``(record, root)`` pairs.

    In memory (``streaming=False``): every record is loaded; each task's list is reshuffled per pass. Streaming:
    each task reads the shards in a cycle, keeping only its own records, through a shuffle buffer, so memory
    stays at ``shuffle_buffer`` records per task whatever the dataset size. Without weights the natural mix
    of the data is kept (one shuffled stream of all records).
    """

    def __init__(
        self,
        shards: Sequence[Shard],
        task_weights: dict[str, float] | None = None,
        *,
        streaming: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
    ) -> None:
        if not shards:
            raise TrainDataError("no training shards")
        self.shards = list(shards)
        self.task_weights = dict(task_weights or {})
        self.streaming = streaming
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.seed = seed
        self._records: list[tuple[QARecord, Path]] | None = None
        if not streaming:
            self._records = read_records(self.shards)
            if not self._records:
                raise TrainDataError("the training shards hold no records")

    def __iter__(self) -> Iterator[tuple[QARecord, Path]]:
        return self.iterate(self.seed)

    def iterate(self, seed: int) -> Iterator[tuple[QARecord, Path]]:
        rng = random.Random(seed)
        if not self.task_weights:
            yield from self._stream(None, rng)
            return
        if self._records is not None:
            present = {r.task for r, _ in self._records}
        else:
            present = set(Task(k) for k in self.task_weights)  # checked lazily: an empty task stream raises
        probs = normalised_weights(self.task_weights, present)
        tasks = list(probs)
        cum = np.cumsum([probs[t] for t in tasks])
        streams = {t: self._stream(t, random.Random(rng.random())) for t in tasks}
        while True:
            t = tasks[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(tasks) - 1)]
            yield next(streams[t])

    def _stream(self, task: Task | None, rng: random.Random) -> Iterator[tuple[QARecord, Path]]:
        if self._records is not None:
            pool = [x for x in self._records if task is None or x[0].task == task]
            if not pool:
                raise TrainDataError(f"no records of task {task.value if task else '(any)'}")
            while True:
                order = list(range(len(pool)))
                rng.shuffle(order)
                for i in order:
                    yield pool[i]
        buf: list[tuple[QARecord, Path]] = []
        while True:
            seen = 0
            shards = list(self.shards)
            rng.shuffle(shards)
            for shard in shards:
                for rec in iter_shard(shard):
                    if task is not None and rec.task != task:
                        continue
                    seen += 1
                    if len(buf) < self.shuffle_buffer:
                        buf.append((rec, shard.root))
                        continue
                    i = rng.randrange(len(buf))
                    yield buf[i]
                    buf[i] = (rec, shard.root)
            if seen == 0:
                raise TrainDataError(f"the shards hold no records of task {task.value if task else '(any)'}")
            rng.shuffle(buf)
            while len(buf) > self.shuffle_buffer // 2:
                yield buf.pop()


# ----------------------------------------------------------------------------------------------- samples


def _coord_convention(name: Any) -> Any:
    from bopask_vlm.answers.coords import CoordConvention

    try:
        return CoordConvention(str(getattr(name, "value", name)).lower())
    except ValueError as e:
        raise TrainDataError(f"unknown coordinate convention {name!r}") from e


def resize_policy_of(processor: Any) -> Any:
    """The VLM layer's ``ResizePolicy`` for the processor's own image bounds (Qwen-VL ``smart_resize``), so
    ``resized_pixels`` answers are converted with exactly the resize the model's input gets; None when the
    image processor has no pixel bounds (other model families)."""
    from bopask_vlm.answers.coords import ResizePolicy

    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    lo = getattr(size, "shortest_edge", None) if size is not None else None
    hi = getattr(size, "longest_edge", None) if size is not None else None
    if isinstance(size, dict):
        lo, hi = size.get("shortest_edge"), size.get("longest_edge")
    if not (lo and hi and hasattr(ip, "patch_size") and hasattr(ip, "merge_size")):
        return None
    return ResizePolicy(factor=int(ip.patch_size) * int(ip.merge_size), min_pixels=int(lo), max_pixels=int(hi))


def model_question(record: QARecord, convention: Any, rng: random.Random | None = None) -> str:
    """The question as the served model is asked it: the record's own question (a template's, or its
    rephrasing) with its answer-format instruction rewritten for ``convention``
    (:func:`bopask_vlm.prompts.adapt_instruction`), exactly what ``bopask bench``, replay and the node send
    for the record (``VLMRequest(question=record.question).question_text(convention)``). ``rng`` is unused
    (kept for callers of the earlier template-regenerating version).
    """
    from bopask_vlm.prompts import adapt_instruction

    if not record.question.strip():
        raise TrainDataError(f"record {record.id}: empty question")
    return adapt_instruction(record.question, record.task, _coord_convention(convention))


def model_answer_text(record: QARecord, convention: Any, resize: Any = None, form: str = "text") -> str:
    """The record's answer converted to the model's convention (``resize``: the processor's
    :func:`resize_policy_of`) at the convention's precision, in the contract's answer form: BOP-ASK's text
    form, or (``form="json"``) the task's JSON object written compactly, as vLLM's xgrammar writes it
    under the schema with ``disable_any_whitespace``."""
    import json

    from bopask_vlm.answers import answer_from_record, answer_to_json, answer_to_text
    from bopask_vlm.answers.coords import to_model

    conv = _coord_convention(convention)
    answer = to_model(answer_from_record(record), conv, record.width, record.height, resize)
    if form == "json":
        return json.dumps(answer_to_json(answer, decimals=conv.decimals), separators=(",", ":"))
    if form != "text":
        raise TrainDataError(f"unknown answer form {form!r} (text, json)")
    return answer_to_text(answer, decimals=conv.decimals)


def load_image(record: QARecord, root: Path) -> Any:
    from PIL import Image

    path = root / record.image
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except OSError as e:
        raise TrainDataError(f"record {record.id}: cannot read image {path}: {e}") from e
    if img.size != (record.width, record.height):
        raise TrainDataError(
            f"record {record.id}: image {path} is {img.size[0]}x{img.size[1]}, record says {record.width}x{record.height}"
        )
    return img


def chat_messages(question: str, answer: str | None = None) -> list[dict[str, Any]]:
    """The chat in the content-parts layout of HF multimodal chat templates (image first, as served)."""
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


class SampleEncoder:
    """Record -> model inputs with labels on the answer tokens only.

    The assistant turn is rendered by the model's chat template; its text after the generation prompt,
    trailing whitespace stripped (for Qwen: ``<answer><|im_end|>``), is the target.
    """

    def __init__(self, processor: Any, convention: str | Any, *, max_length: int = 4096, seed: int = 0,
                 answer_form: str = "text") -> None:
        self.processor = processor
        self.answer_form = answer_form
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.convention = _coord_convention(convention)
        self.resize = resize_policy_of(processor)
        self.max_length = max_length
        self.seed = seed

    def texts(self, record: QARecord) -> tuple[str, str, str]:
        """(prompt text, target text, plain answer) for a record."""
        rng = random.Random(f"{self.seed}:{record.id}")
        question = model_question(record, self.convention, rng)
        answer = model_answer_text(record, self.convention, self.resize, self.answer_form)
        prompt = self.processor.apply_chat_template(chat_messages(question), add_generation_prompt=True,
                                                    tokenize=False)
        full = self.processor.apply_chat_template(chat_messages(question, answer), tokenize=False)
        if not full.startswith(prompt):
            raise TrainDataError("the chat template's assistant turn does not extend its generation prompt")
        target = full[len(prompt):].rstrip()
        if answer not in target:
            raise TrainDataError(f"record {record.id}: the chat template dropped the answer text")
        return prompt, target, answer

    def encode(self, record: QARecord, root: Path) -> dict[str, Any]:
        """Tensors for one sample (batch dimension 1 removed from the token tensors)."""
        prompt, target, _ = self.texts(record)
        image = load_image(record, root)
        enc = self.processor(text=[prompt + target], images=[image], return_tensors="pt")
        ids = enc["input_ids"][0]
        target_ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
        n = len(target_ids)
        if n == 0 or ids[-n:].tolist() != list(target_ids):
            raise TrainDataError(f"record {record.id}: the answer does not tokenise the same inside the chat")
        if ids.numel() > self.max_length:
            raise SampleTooLong(f"record {record.id}: {ids.numel()} tokens > max_length {self.max_length}")
        labels = ids.clone().fill_(IGNORE_INDEX)
        labels[-n:] = ids[-n:]
        out = {k: (v[0] if k in _SEQ_KEYS else v) for k, v in enc.items()}
        out["labels"] = labels
        return out


class SampleTooLong(TrainDataError):
    """A sample exceeds ``max_length`` (it is skipped; truncation would cut image placeholders)."""


_SEQ_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids")


# ----------------------------------------------------------------------------------------------- datasets


def _torch_datasets() -> tuple[type, type]:
    from torch.utils.data import Dataset, IterableDataset

    return Dataset, IterableDataset


def _dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the data-parallel group: torch.distributed when initialised, else the
    launcher's environment (torchrun / accelerate set RANK and WORLD_SIZE), else (0, 1)."""
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class MixedSFTDataset(_torch_datasets()[1]):  # type: ignore[misc]
    """Endless task-mixed training samples (a torch ``IterableDataset``; use with ``max_steps``).

    Data parallel without waste: every rank and DataLoader worker draws the same seeded record stream and
    cuts it into blocks of ``batch_size`` records; block ``j`` belongs to unit ``j % units`` (a unit is one
    worker of one rank), which alone encodes it. So the ranks' samples are disjoint and, step by step, are
    the samples one process with the global batch would take. accelerate shards an ``IterableDataset`` by
    keeping, from every ``batch_size x world`` elements it reads, the rank's own ``batch_size``
    (``IterableDatasetShard``): this dataset yields its own encoded samples exactly there and ``None``
    placeholders (never encoded, dropped by the shard) elsewhere. A too-long sample is replaced by the
    unit's next record (logged), locally, so ranks never disagree on positions.
    """

    def __init__(self, mixed: MixedRecords, encoder: SampleEncoder, batch_size: int = 1) -> None:
        self.mixed = mixed
        self.encoder = encoder
        self.batch_size = max(1, int(batch_size))
        self.skipped_too_long = 0
        self.encoded_ids: list[str] = []  # record ids this copy encoded (tests, logs)

    def _own_records(self, unit: int, units: int) -> Iterator[tuple[QARecord, Path]]:
        for i, pair in enumerate(self.mixed.iterate(self.mixed.seed)):
            if (i // self.batch_size) % units == unit:
                yield pair

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        rank, world = _dist_rank_world()
        own = self._own_records(rank * workers + worker, world * workers)
        while True:
            samples = [self._next_sample(own) for _ in range(self.batch_size)]
            if world == 1:
                yield from samples
                continue
            # one block of batch_size x world elements as accelerate's shard reads it: ours at our slice
            for r in range(world):
                yield from (samples if r == rank else [None] * self.batch_size)

    def _next_sample(self, own: Iterator[tuple[QARecord, Path]]) -> dict[str, Any]:
        for record, root in own:
            try:
                sample = self.encoder.encode(record, root)
            except SampleTooLong as e:
                self.skipped_too_long += 1
                if self.skipped_too_long in (1, 10) or self.skipped_too_long % 100 == 0:
                    log.warning("%s (skipped; %d so far)", e, self.skipped_too_long)
                continue
            self.encoded_ids.append(record.id)
            return sample
        raise TrainDataError("the record stream ended")


class RecordSFTDataset(_torch_datasets()[0]):  # type: ignore[misc]
    """Fixed samples (a map-style ``Dataset``) for the evaluation loss and for tests.

    ``drop_too_long``: records whose sample exceeds the encoder's ``max_length`` are left out when the
    dataset is built (counted in ``skipped_too_long``, logged), so ``__getitem__`` never raises for length
    in the middle of an evaluation.
    """

    def __init__(self, records: Sequence[tuple[QARecord, Path]], encoder: SampleEncoder, *,
                 drop_too_long: bool = False) -> None:
        self.records = list(records)
        self.encoder = encoder
        self.skipped_too_long = 0
        if drop_too_long:
            kept = []
            for record, root in self.records:
                try:
                    encoder.encode(record, root)
                except SampleTooLong as e:
                    self.skipped_too_long += 1
                    log.warning("evaluation sample left out: %s", e)
                    continue
                kept.append((record, root))
            self.records = kept

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record, root = self.records[i]
        return self.encoder.encode(record, root)


# ----------------------------------------------------------------------------------------------- collator


class SFTCollator:
    """Pads token tensors on the right (ids with the pad id, labels with -100, masks with 0) and
    concatenates the vision tensors along their first dimension (Qwen-VL's flattened patches and grids)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not samples:
            raise TrainDataError("empty batch")
        if any(s is None for s in samples):
            raise TrainDataError("a data-parallel placeholder reached the collator: MixedSFTDataset under "
                                 "several processes must be read through accelerate's IterableDatasetShard "
                                 "(the Trainer's data loader)")
        length = max(s["input_ids"].shape[0] for s in samples)
        batch: dict[str, Any] = {}
        for key in samples[0]:
            values = [s[key] for s in samples]
            if key in _SEQ_KEYS:
                fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}.get(key, 0)
                out = torch.full((len(values), length), fill, dtype=values[0].dtype)
                for i, v in enumerate(values):
                    out[i, : v.shape[0]] = v
                batch[key] = out
            else:
                batch[key] = torch.cat(values, dim=0)
        return batch


def label_fraction(batch: dict[str, Any]) -> float:
    """Share of tokens carrying a loss (a quick sanity figure for logs)."""
    labels = batch["labels"]
    return float((labels != IGNORE_INDEX).sum()) / max(1, math.prod(labels.shape))


def write_records(records: Iterable[QARecord], path: str | Path) -> Path:
    """Write records as one JSONL shard (tests, small hand-made sets)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w") as fh:
        for r in records:
            fh.write(r.to_line() + "\n")
    return p


__all__ = [
    "IGNORE_INDEX", "MixedRecords", "MixedSFTDataset", "RecordSFTDataset", "SFTCollator", "SampleEncoder",
    "SampleTooLong", "Shard", "TrainDataError", "chat_messages", "find_shards", "iter_shard",
    "label_fraction", "load_image", "model_answer_text", "resize_policy_of", "model_question", "read_records", "write_records",
]
