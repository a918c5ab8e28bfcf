"""`bopask serve` finds vLLM's Python from the installed project, not the working directory, takes --venv and
says which interpreter it uses (issue 24, item 3). vLLM is not started: --dry-run and the resolution function."""

from __future__ import annotations

import shlex

import pytest

from bopask_vlm.clients import serve


def _venv(d):
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "python").write_text("#!/bin/sh\n")
    return d


def test_vllm_python_order_and_never_the_working_directory(tmp_path, monkeypatch):
    project, cwd = tmp_path / "checkout", tmp_path / "elsewhere"
    _venv(project / ".venv-vllm")
    _venv(cwd / ".venv-vllm")  # a decoy in the working directory: not used
    monkeypatch.chdir(cwd)
    py, src = serve.vllm_python(project=project, env={})
    assert py == str(project / ".venv-vllm" / "bin" / "python") and "project" in src
    other = _venv(tmp_path / "other")
    assert serve.vllm_python(project=project, env={"BOPASK_VLLM_VENV": str(other)})[0] == str(other / "bin/python")
    mine = _venv(tmp_path / "mine")
    assert serve.vllm_python(venv=mine, project=project, env={"BOPASK_VLLM_VENV": str(other)})[0] == \
        str(mine / "bin" / "python")
    assert serve.vllm_python("/opt/py", venv=mine, project=project) == ("/opt/py", "--python")
    with pytest.raises(serve.VLLMNotFound, match="--venv .*nope has no bin/python"):
        serve.vllm_python(venv=tmp_path / "nope", project=project, env={})


def test_no_vllm_anywhere_says_what_was_tried(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("this Python imports vllm: it is the last resort")
    with pytest.raises(serve.VLLMNotFound, match=r"tried .*\.venv-vllm/bin/python \(absent\).*make test-vllm"):
        serve.vllm_python(project=tmp_path, env={})


def test_project_root_is_the_checkout(repo_root):
    assert serve.project_root() == repo_root


def test_serve_dry_run_with_venv_prints_the_interpreter(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    venv = _venv(tmp_path / "vv")
    monkeypatch.chdir(tmp_path)
    assert serve.main([str(model), "--venv", str(venv), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert shlex.split(out.strip())[0] == str(venv / "bin" / "python")
    assert f"vLLM interpreter {venv / 'bin' / 'python'} (from --venv" in err
    assert serve.main([str(model), "--venv", str(tmp_path / "missing")]) == 2
    assert "has no bin/python" in capsys.readouterr().err
