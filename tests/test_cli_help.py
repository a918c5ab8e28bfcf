"""Every command's and benchmark's --help exits 0 and shows the defaults (issue 24, item 5); what datagen prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: (how to call it, substrings its help must show): the defaults a user asked about, each next to its option
COMMANDS = [
    (["bopask", "synth"], ["--scenes SCENES", "(default: 1)", "(default: 5)", "(default: 640)", "(default: 480)"]),
    (["bopask", "datagen"], ["--workers WORKERS", "(default: 1)", "OUT/overlays (0: none) (default: 0)"]),
    (["bopask", "bench"], ["(default: bench_out)", "(default: oracle)", "(default: 4)", "--max-server-errors"]),
    (["bopask", "serve"], ["(default: 8000)", "(default: 127.0.0.1)", "(default: 4096)", "--venv"]),
    (["bopask", "ask"], ["--endpoint", "what to ask"]),
    (["bopask", "train"], ["--set SECTION.KEY=VALUE", "tiny_cpu.yaml", "--set data.train=DIR"]),
    (["bopask", "sim-eval"], ["(default: 10)", "(default: grasp,trajectory)", "(default: inline)"]),
    (["bopask", "replay"], ["(default: replay_out)", "(default: oracle)", "(default: 12)"]),
    (["bopask", "goal"], ["(default: /bopask_node)", "(default: 60.0)", "--execute"]),
    (["module", "bopask_ros.replay.demo"], ["(default: demo_out)", "(default: 120)", "(default: 640)"]),
    (["module", "bopask_sim.demo"], ["(default: demo_out)", "(default: 4)", "(default: 2)"]),
]
BENCHMARKS = sorted(REPO.glob("benchmarks/*.py"))


def _help_in_process(call: list[str], capsys) -> str:
    import importlib

    if call[0] == "bopask":
        from bopask_vlm.cli import main

        argv = [*call[1:], "--help"]
    else:
        main = importlib.import_module(call[1]).main
        argv = ["--help"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("call,shows", COMMANDS, ids=[" ".join(c) for c, _ in COMMANDS])
def test_command_help_exits_0_and_shows_defaults(call, shows, capsys):
    text = _help_in_process(call, capsys)
    assert text.startswith("usage:")
    flat = re.sub(r"\s+", " ", text)
    for s in shows:
        assert s in flat, (s, text)


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_help_exits_0_without_running_it(path):
    r = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage:") and "{" not in r.stdout.splitlines()[-1][:1]  # help, not the JSON line


def test_bopask_help_gives_plugins_a_line(capsys):
    from bopask_vlm.cli import main

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ")}
    for name in ("sim-eval", "replay", "goal"):
        assert name in lines and "(plugin:" not in lines[name] and len(lines[name].split()) >= 4, lines.get(name)


def test_datagen_summary_only_without_quiet(tmp_path, capsys):
    """Item 8: --quiet prints nothing on stdout; without it, the JSON summary and where the shards are."""
    import json

    from bopask_vlm.cli import main

    assert main(["synth", str(tmp_path / "s"), "--frames", "1", "--width", "160", "--height", "120",
                 "--objects", "2", "--no-real-mesh"]) == 0
    capsys.readouterr()
    assert main(["datagen", str(tmp_path / "s"), str(tmp_path / "q"), "--quiet", "--tasks", "pose,depth"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["datagen", str(tmp_path / "s"), str(tmp_path / "v"), "--tasks", "pose,depth"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["records_run"] > 0
    assert lines[1] == f"shards: {(tmp_path / 'v').resolve() / 'shards'}"
