"""Coverage-guided fuzzing (atheris / libFuzzer) of the untrusted-input readers: the answer parsers
``parse_answer_text`` and ``parse_answer_json``, and the BOP reader on corrupted JSON / PNG / PLY files.

Not part of ``make test`` or ``make bench`` (its name is not ``bench_*.py``), and atheris is not in
requirements.txt: install the pin of ``requirements-fuzz.txt`` first::

    python -m pip install -r requirements-fuzz.txt
    python benchmarks/fuzz_parsers.py --seconds 300             # every target, 300 s each
    python benchmarks/fuzz_parsers.py --seconds 60 --targets json

Each target runs in its own process (libFuzzer exits the process when its time is up), seeded with
valid answers (or the files of a small valid BOP scene). Any exception other than the reader's own
error (``AnswerParseError``; ``BopFormatError`` for the BOP reader) is a crash: it is counted and its
input saved under ``--crash-dir``, and fuzzing goes on. Prints one line per target and, last, one JSON
object ``{target: {"executions", "crashes", "seconds"}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TARGETS = ("text", "json", "bop")
TASKS = ("pose", "grasp", "trajectory", "rearrangement", "spatial", "depth")
EXTENTS = (None, (640, 480, True), (1.0, 1.0, False), (1000.0, 1000.0, True))


# ---- the harnesses ---------------------------------------------------------------------------------

class _Stats:
    def __init__(self, path: Path, crash_dir: Path) -> None:
        self.path, self.crash_dir = path, crash_dir
        self.executions, self.crashes, self.kinds = 0, 0, {}
        self.t0 = self.last = time.monotonic()

    def crash(self, data: bytes, exc: BaseException) -> None:
        self.crashes += 1
        tb = traceback.extract_tb(exc.__traceback__)[-1]  # one kind per exception type and raising line
        kind = f"{type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}: {str(exc)[:100]}"
        if not any(k.split(": ")[0] == kind.split(": ")[0] for k in self.kinds):
            self.kinds[kind] = traceback.format_exc()[-2000:]
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            (self.crash_dir / f"crash-{len(self.kinds):03d}.bin").write_bytes(data)
        self.flush()

    def tick(self) -> None:
        self.executions += 1
        now = time.monotonic()
        if now - self.last > 1.0:
            self.last = now
            self.flush()

    def flush(self) -> None:
        self.path.write_text(json.dumps({"executions": self.executions, "crashes": self.crashes,
                                         "seconds": round(time.monotonic() - self.t0, 1), "kinds": self.kinds}))


def _answer_seeds() -> list[bytes]:
    import numpy as np

    from bopask_vlm.answers import (
        GraspAnswer,
        PoseAnswer,
        RearrangementAnswer,
        TrajectoryAnswer,
        YesNoAnswer,
        answer_to_json,
        answer_to_text,
    )

    answers = [(0, PoseAnswer(np.arange(16).reshape(8, 2) * 7.0 - 3)), (1, GraspAnswer(np.arange(10).reshape(5, 2) * 9.0)),
               (2, TrajectoryAnswer(np.arange(8).reshape(4, 2) * 11.0)), (3, RearrangementAnswer(np.array([[412, 300], [5, 6]]))),
               (3, RearrangementAnswer(np.zeros((0, 2)))), (4, YesNoAnswer(True)), (5, YesNoAnswer(False, "depth"))]
    seeds = []
    for t, a in answers:
        for e in range(len(EXTENTS)):
            seeds.append(bytes([t, e]) + answer_to_text(a, decimals=3 if e == 2 else 0).encode())
            seeds.append(bytes([t, e]) + json.dumps(answer_to_json(a, decimals=0)).encode())
    return seeds


def _parser_harness(target: str, stats: _Stats):
    from bopask_vlm.answers import AnswerParseError, parse_answer_json, parse_answer_text

    def one(data: bytes) -> None:
        stats.tick()
        if len(data) < 2:
            return
        task = TASKS[data[0] % len(TASKS)]
        extent = EXTENTS[data[1] % len(EXTENTS)]
        w, h, integer = extent if extent else (None, None, False)
        body = data[2:]
        try:
            if target == "text":
                parse_answer_text(task, body.decode("utf-8", "replace"), w, h, integer)
            else:  # bytes straight in (the UTF-8 check is part of the parser), and as decoded text
                parse_answer_json(task, body, w, h, integer)
        except AnswerParseError:
            pass
        except Exception as e:  # any other exception is the bug being hunted
            stats.crash(data, e)

    return one


def _bop_fixture(root: Path) -> tuple[Path, list[Path]]:
    """A one-frame BOP scene (png rgb, depth, mask, all JSON files, a PLY mesh); the files to corrupt."""
    from bopask_vlm.testing.tiny_bop import write_tiny_bop_scene

    scene, files = write_tiny_bop_scene(root, frames=1)
    return scene, list(files.values())


def _bop_harness(stats: _Stats, work: Path):
    from bopask_vlm.datagen.bop_reader import BopFormatError
    from bopask_vlm.testing.tiny_bop import read_everything

    scene, files = _bop_fixture(work / "bop")
    originals = [f.read_bytes() for f in files]
    seeds = [bytes([i]) + b for i, b in enumerate(originals)]

    def one(data: bytes) -> None:
        stats.tick()
        if not data:
            return
        k = data[0] % len(files)
        for f, b in zip(files, originals):
            f.write_bytes(b)
        files[k].write_bytes(data[1:])
        try:
            read_everything(scene)
        except BopFormatError:
            pass
        except Exception as e:
            stats.crash(data, e)

    return one, seeds


def _worker(target: str, seconds: int, stats_path: Path, crash_dir: Path) -> None:
    import atheris
    import numpy  # noqa: F401  (imported before instrumentation: only our code is instrumented)

    with atheris.instrument_imports(include=["bopask_vlm"]):
        import bopask_vlm.answers
        import bopask_vlm.datagen.bop_reader  # noqa: F401
    stats = _Stats(stats_path, crash_dir)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz_{target}_"))
    corpus = work / "corpus"
    corpus.mkdir()
    if target == "bop":
        one, seeds = _bop_harness(stats, work)
    else:
        one, seeds = _parser_harness(target, stats), _answer_seeds()
    for i, s in enumerate(seeds):
        (corpus / f"seed{i:03d}").write_bytes(s)
    stats.flush()
    max_len = 1 << 16 if target == "bop" else 4200
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", f"-max_len={max_len}", "-print_final_stats=1",
                   "-rss_limit_mb=4096", str(corpus)], one)
    atheris.Fuzz()


# ---- the driver --------------------------------------------------------------------------------------

def run_target(target: str, seconds: int, crash_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--worker", target, "--seconds", str(seconds),
                               "--stats", str(stats_path), "--crash-dir", str(crash_dir / target)],
                              capture_output=True, text=True, timeout=seconds + 600)
        wall = time.monotonic() - t0
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    runs = re.findall(r"Done (\d+) runs in (\d+) second", proc.stderr)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", proc.stderr)
    out = {"executions": int(runs[-1][0]) if runs else stats.get("executions", 0), "crashes": stats.get("crashes", -1),
           "seconds": round(wall, 1), "exit_code": proc.returncode,
           "coverage_edges": int(cov[-1][0]) if cov else None, "crash_kinds": list(stats.get("kinds", {}))}
    if proc.returncode != 0 or not stats:
        out["stderr_tail"] = proc.stderr[-1500:]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=300, help="fuzzing time per target (default 300)")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--crash-dir", type=Path, default=Path("fuzz_crashes"), help="where crashing inputs are saved")
    ap.add_argument("--worker", choices=TARGETS, help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.seconds, a.stats, a.crash_dir)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: python -m pip install -r requirements-fuzz.txt", file=sys.stderr)
        return 2
    results = {}
    for t in a.targets.split(","):
        r = run_target(t, a.seconds, a.crash_dir)
        results[t] = r
        print(f"{t:5s} {r['executions']:>10d} executions in {r['seconds']:.0f} s, {r['crashes']} crashes, "
              f"{r['coverage_edges']} edges", flush=True)
        for k in r["crash_kinds"]:
            print(f"      crash: {k}", flush=True)
        if "stderr_tail" in r:
            print(r["stderr_tail"], file=sys.stderr)
    if a.crash_dir.is_dir() and not any(a.crash_dir.rglob("*.bin")):
        shutil.rmtree(a.crash_dir, ignore_errors=True)
    print(json.dumps({t: {k: r[k] for k in ("executions", "crashes", "seconds")} for t, r in results.items()}))
    return 0 if all(r["crashes"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
