"""Training data: shards, task mixing, chat samples with the loss on the answer tokens only."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("bopask_vlm.prompts", reason="VLM layer (bopask_vlm.prompts) not present")
pytest.importorskip("bopask_vlm.answers.coords", reason="VLM layer (bopask_vlm.answers.coords) not present")

from _train_helpers import generated_dataset, make_records, shared_tiny_model

from bopask_vlm.answers.types import Task
from bopask_vlm.records import QARecord
from bopask_vlm.train.data import (
    IGNORE_INDEX,
    MixedRecords,
    RecordSFTDataset,
    SampleEncoder,
    SFTCollator,
    TrainDataError,
    find_shards,
    model_answer_text,
    read_records,
    write_records,
)
from bopask_vlm.train.processor import load_processor


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    recs = make_records(root, n=12, seed=3)
    write_records(recs[:6], root / "shards" / "train-00000.jsonl")
    write_records(recs[6:], root / "shards" / "train-00001.jsonl")
    return root, recs


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One record per task from a small generated set (the datagen layout: images outside the out dir)."""
    root = generated_dataset(tmp_path_factory.mktemp("gen"), seed=2)
    per_task = {}
    for rec, rt in read_records(find_shards([root])):
        per_task.setdefault(rec.task, (rec, rt))
    return list(per_task.values())


@pytest.fixture(scope="module")
def processor():
    return load_processor(shared_tiny_model())


def test_find_shards_resolves_image_root(dataset):
    root, recs = dataset
    for src in ([root], [str(root / "shards" / "*.jsonl")], [root / "shards" / "train-00001.jsonl"]):
        shards = find_shards(src)
        assert all(s.root == root for s in shards)
    pairs = read_records(find_shards([root]))
    assert [r.id for r, _ in pairs] == [r.id for r in recs]
    with pytest.raises(TrainDataError, match="no shard file"):
        find_shards([root / "missing-*.jsonl"])


def test_bad_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a record"}\n')
    with pytest.raises(TrainDataError, match=r"bad\.jsonl:1"):
        read_records(find_shards([bad]))


@pytest.mark.parametrize("streaming", [False, True])
def test_task_weights_set_the_mix(dataset, streaming):
    root, _ = dataset
    mixed = MixedRecords(find_shards([root]), {"pose": 3, "grasp": 1, "spatial": 0}, streaming=streaming,
                         shuffle_buffer=4, seed=1)
    it = iter(mixed)
    counts = Counter(next(it)[0].task for _ in range(800))
    assert Task.SPATIAL not in counts
    assert abs(counts[Task.POSE] / 800 - 0.75) < 0.06
    # Every pose record is drawn (no record starved by the shuffle buffer).
    it = iter(mixed)
    assert len({next(it)[0].id for _ in range(200)} & {f"synth-3-{i}" for i in range(0, 12, 3)}) == 4


def test_weight_for_absent_task_is_an_error(dataset):
    root, _ = dataset
    with pytest.raises(TrainDataError, match="depth"):
        next(iter(MixedRecords(find_shards([root]), {"depth": 1.0})))


@pytest.mark.parametrize("convention", ["pixels", "resized_pixels", "normalized_1000"])
def test_label_mask_covers_exactly_the_answer(generated, processor, convention):
    enc = SampleEncoder(processor, convention)
    tok = processor.tokenizer
    assert len(generated) >= 4  # pose, grasp, spatial, depth at least
    for rec, root in generated:
        s = enc.encode(rec, root)
        ids, labels = s["input_ids"], s["labels"]
        answer = model_answer_text(rec, enc.convention, enc.resize)
        masked = ids[labels != IGNORE_INDEX]
        # exactly the answer's tokens followed by the end-of-turn token, at the very end of the sequence
        expected = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert masked.tolist() == expected
        assert (labels[: len(ids) - len(expected)] == IGNORE_INDEX).all()
        assert tok.decode(masked) == answer + "<|im_end|>"
        assert (ids == 151655).any() and (labels[ids == 151655] == IGNORE_INDEX).all()
        if convention == "pixels" and rec.task != Task.SPATIAL:
            assert answer == rec.answer_text  # original pixels: the record's own text form


def test_resized_pixels_follow_the_processor_resize(dataset):
    """The answer is scaled to exactly the image the model sees: the processor's own resize bounds."""
    import numpy as np

    from bopask_vlm.answers import answer_from_record, parse_answer_text

    root, recs = dataset
    proc = load_processor(shared_tiny_model(), min_pixels=784, max_pixels=3136)  # 112x84 -> 56x28
    enc = SampleEncoder(proc, "resized_pixels")
    rec = next(r for r in recs if r.task == Task.POSE)
    s = enc.encode(rec, root)
    t, gh, gw = s["image_grid_thw"][0].tolist()
    assert (gw * 14, gh * 14) == enc.resize.resized_size(rec.width, rec.height) == (56, 28)
    text = model_answer_text(rec, enc.convention, enc.resize)
    got = parse_answer_text(rec.task, text).points
    want = answer_from_record(rec).points * [56 / rec.width, 28 / rec.height]
    assert np.abs(got - want).max() <= 0.5  # integers in the model's pixels


def test_collator_pads_right_and_keeps_all_patches(dataset, processor):
    root, recs = dataset
    ds = RecordSFTDataset(read_records(find_shards([root]))[:3], SampleEncoder(processor, "pixels"))
    samples = [ds[i] for i in range(3)]
    batch = SFTCollator(processor.tokenizer.pad_token_id)(samples)
    n = max(s["input_ids"].shape[0] for s in samples)
    assert batch["input_ids"].shape == (3, n)
    for i, s in enumerate(samples):
        k = s["input_ids"].shape[0]
        assert batch["attention_mask"][i, :k].all() and not batch["attention_mask"][i, k:].any()
        assert (batch["labels"][i, k:] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape[0] == sum(s["pixel_values"].shape[0] for s in samples)
    assert batch["image_grid_thw"].shape == (3, 3)


def test_image_size_mismatch_is_reported(dataset, processor):
    root, recs = dataset
    wrong = QARecord.from_json({**recs[0].to_json(), "width": recs[0].width + 1})
    with pytest.raises(TrainDataError, match="record says"):
        SampleEncoder(processor, "pixels").encode(wrong, root)
