"""Training that holds at GPU scale, checked on the CPU: two processes (torchrun, gloo) train exactly like
one with the same global batch on disjoint samples; every shipped GPU config starts training on a dataset
`bopask datagen` wrote; full fine-tuning keeps fp32 master weights; a too-long evaluation sample is left
out instead of raising in the middle of an evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _train_helpers import generated_dataset, shared_tiny_model  # noqa: E402

import bopask_vlm.train as train_pkg  # noqa: E402
from bopask_vlm.train.config import config_from_dict, load_config  # noqa: E402
from bopask_vlm.train.data import RecordSFTDataset, SampleEncoder, find_shards, read_records  # noqa: E402
from bopask_vlm.train.processor import load_processor  # noqa: E402
from bopask_vlm.train.trainer import master_dtype, prepare  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIGS = sorted((Path(train_pkg.__file__).parent / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def datagen_sets(tmp_path_factory):
    """Two `bopask datagen` outputs (train and val) from different synthetic scenes."""
    train = generated_dataset(tmp_path_factory.mktemp("scale_train"), seed=0)
    val = generated_dataset(tmp_path_factory.mktemp("scale_val"), seed=1, num_frames=1)
    return train, val


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_script(args: list[str], out: Path, nproc: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get(
        "PYTHONPATH", "")])}
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port())]  # (port 0 is not passed on to the workers: they would wait forever)
    proc = subprocess.run([*launcher, str(HERE / "_ddp_train_script.py"), *args], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(nproc)]


def test_two_processes_train_like_one_with_the_same_global_batch(datagen_sets, tmp_path):
    train, _ = datagen_sets
    model = str(shared_tiny_model())
    ranks = _run_script([model, str(train), str(tmp_path / "two"), "2"], tmp_path / "two", 2)
    (one,) = _run_script([model, str(train), str(tmp_path / "one"), "4"], tmp_path / "one", 1)
    assert all(r["world"] == 2 and r["steps"] == 2 for r in ranks) and one["world"] == 1
    # the ranks' samples are disjoint, and together exactly the single process's, in the same order per step
    a, b = ranks[0]["encoded"], ranks[1]["encoded"]
    assert not set(a) & set(b)
    assert [x for i in range(0, len(a), 2) for x in a[i:i + 2] + b[i:i + 2]] == one["encoded"][:len(a) + len(b)]
    # the same losses step by step (answer tokens weighed alike over ranks), and the same benchmark figures
    # (every rank generated its share; nobody waited alone at a collective)
    for step, loss in one["losses"].items():
        for r in ranks:
            assert r["losses"][step] == pytest.approx(loss, rel=1e-4), (step, r["losses"], one["losses"])
    assert one["bench"] and ranks[0]["bench"] == pytest.approx(one["bench"], rel=1e-6, abs=1e-6)


def _on_datagen(path: str, train: Path, val: Path) -> str:
    """A shipped config's data path, moved onto the test's datagen outputs (same layout below the root)."""
    for prefix, root in (("/data/bopask/train", train), ("/data/bopask/val", val), ("/tmp/bopask_small", train),
                         ("bopask_small", train), ("scratch_data", train)):  # tiny_cpu/scratch_cpu.yaml: relative to the cwd
        if path.startswith(prefix):
            return str(root) + path[len(prefix):]
    raise AssertionError(f"unexpected data path {path} in a shipped config")


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_starts_training_on_a_datagen_dataset(config, datagen_sets, tmp_path):
    """The config as shipped (its data paths moved onto datagen outputs), with the tiny weights and no
    DeepSpeed (not installed on CPUs), trains to its first step; its eval paths are found in what datagen
    writes, and the evaluation at that step runs."""
    train, val = datagen_sets
    d = load_config(config).to_dict()
    d["data"]["train"] = [_on_datagen(p, train, val) for p in d["data"]["train"]]
    d["data"]["eval"] = [_on_datagen(p, train, val) for p in d["data"]["eval"]]
    d["model"].update(path=str(shared_tiny_model()), attn_implementation=None, min_pixels=None, max_pixels=None)
    d["data"].update(num_workers=0, eval_samples=2, eval_max_new_tokens=4, max_length=1024)
    d["optim"].update(max_steps=1, per_device_batch_size=1, gradient_accumulation_steps=1)
    d["run"].update(output_dir=str(tmp_path / "run"), deepspeed=None, report_to=[], progress=False,
                    eval_steps=1 if d["data"]["eval"] else None, save_steps=100)
    cfg = config_from_dict(d)
    run = prepare(cfg)
    if not cfg.lora.enabled and cfg.model.dtype == "bfloat16":  # full fine-tuning in bf16 without DeepSpeed
        assert master_dtype(cfg) == "float32"
        assert {p.dtype for p in run.trainer.model.parameters() if p.requires_grad} == {torch.float32}
    result = run.trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
    history = run.trainer.state.log_history
    if cfg.data.eval:
        assert any("eval_loss" in e for e in history) and any("bench/parse_rate" in e for e in history)


def test_too_long_eval_sample_is_left_out(datagen_sets):
    train, _ = datagen_sets
    recs = read_records(find_shards([train]))
    enc = SampleEncoder(load_processor(shared_tiny_model()), "resized_pixels")
    lengths = sorted(int(enc.encode(r, root)["input_ids"].numel()) for r, root in recs)
    enc.max_length = lengths[len(lengths) // 2]  # half the records are too long
    ds = RecordSFTDataset(recs, enc, drop_too_long=True)
    assert 0 < len(ds) < len(recs) and ds.skipped_too_long == len(recs) - len(ds)
    assert all(ds[i]["input_ids"].numel() <= enc.max_length for i in range(len(ds)))
