"""The CPU quick start from any folder (issue 24, item 2): the shipped tiny_cpu.yaml is found by name, its
relative paths are relative to the working directory, and `--set` of a list field takes a plain value."""

from __future__ import annotations

import pytest
import yaml

from bopask_vlm.train.cli import _missing_data, main
from bopask_vlm.train.config import CONFIGS_DIR, TrainConfigError, apply_overrides, config_from_dict, load_config


def test_set_of_a_list_field_takes_a_plain_value():
    cfg = load_config(CONFIGS_DIR / "tiny_cpu.yaml", ["data.train=my_shards", "run.report_to=tensorboard"])
    assert cfg.data.train == ["my_shards"] and cfg.run.report_to == ["tensorboard"]
    cfg = load_config(CONFIGS_DIR / "tiny_cpu.yaml", ["data.train=[a, b/c.jsonl]", "data.eval=val"])
    assert cfg.data.train == ["a", "b/c.jsonl"] and cfg.data.eval == ["val"]
    with pytest.raises(TrainConfigError, match=r"data.train: expected a list \(or one value\), got dict"):
        load_config(CONFIGS_DIR / "tiny_cpu.yaml", ["data.train={a: 1}"])
    # the same in a run file: `train: DIR` is one directory, not its letters
    d = apply_overrides({"data": {"train": "/data/x"}}, [])
    assert config_from_dict(d).data.train == ["/data/x"]


def test_tiny_cpu_config_is_found_by_name_from_any_folder_with_relative_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "tiny_cpu.yaml", "--print-config"]) == 0
    out, err = capsys.readouterr()
    d = yaml.safe_load(out)
    assert d["data"]["train"] == ["bopask_small"] and d["model"]["path"] == "tiny_qwen"
    assert d["run"]["output_dir"] == "bopask_tiny_run"
    assert str(CONFIGS_DIR / "tiny_cpu.yaml") in err and "shipped" in err
    # nothing generated in this folder yet: refused at once, naming the folder the path is relative to
    assert main(["--config", "tiny_cpu.yaml"]) == 2
    err = capsys.readouterr().err
    assert "no training data at bopask_small" in err and str(tmp_path) in err
    assert main(["--config", "no_such.yaml", "--print-config"]) == 2
    assert "cannot read config no_such.yaml" in capsys.readouterr().err


def test_missing_data_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _missing_data(["bopask_small", "shards/*.jsonl"]) == ["bopask_small", "shards/*.jsonl"]
    (tmp_path / "bopask_small").mkdir()
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.jsonl").write_text("")
    assert _missing_data(["bopask_small", "shards/*.jsonl"]) == []
