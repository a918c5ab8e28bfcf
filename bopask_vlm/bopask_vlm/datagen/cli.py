"""``bopask datagen``: BOP scenes to sharded BOP-ASK question/answer JSONL (+ overlays with ``--overlays N``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="bopask datagen", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("dataset_root", help="BOP dataset root (models/ and <split>/<scene>/)")
    p.add_argument("out_dir", help="output directory (shards/, manifest.json, README.md, errors.jsonl)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (same seed, same bytes)")
    p.add_argument("--split", default=None, help="only this split (e.g. test, train_pbr)")
    p.add_argument("--dataset", default=None, help="name table to use: ycbv, lm, lmo, hope, handal")
    p.add_argument("--descriptions", default=None, help="JSON/YAML file obj_id -> name/description")
    p.add_argument("--workers", type=int, default=1, help="parallel scene workers (processes)")
    p.add_argument("--backend", choices=("process", "ray"), default="process", help="ray: run on a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster address (HOST:PORT of the head; default: a local one)")
    p.add_argument("--retries", type=int, default=2, help="resubmissions of a task whose worker died")
    p.add_argument("--tasks", default=None, help="comma-separated subset of pose,grasp,trajectory,"
                                                 "rearrangement,spatial,depth")
    p.add_argument("--max-scenes", type=int, default=None, help="at most this many scenes (default: all)")
    p.add_argument("--no-resume", action="store_true", help="redo scenes whose shard exists")
    p.add_argument("--rephrase-url", default=None, help="OpenAI-compatible base URL to rephrase questions")
    p.add_argument("--rephrase-model", default="default", help="model name at --rephrase-url")
    p.add_argument("--overlays", type=int, default=0,
                   help="draw this many sample answers per task into OUT/overlays (0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary (failures still on stderr)")
    return p


def write_overlays(out_dir: Path, per_task: int) -> int:
    """Draw ``per_task`` sample records of each task into ``out_dir/overlays``."""
    import cv2

    from bopask_vlm.answers import answer_from_record
    from bopask_vlm.datagen.bop_reader import read_rgb
    from bopask_vlm.records import QARecord
    from bopask_vlm.viz import draw_answer

    seen: dict[str, int] = {}
    (out_dir / "overlays").mkdir(exist_ok=True)
    n = 0
    for shard in sorted((out_dir / "shards").glob("*.jsonl")):
        for line in shard.read_text().splitlines():
            r = QARecord.from_line(line)
            if seen.get(r.task.value, 0) >= per_task:
                continue
            seen[r.task.value] = seen.get(r.task.value, 0) + 1
            ans = answer_from_record(r)
            img = draw_answer(read_rgb(out_dir / r.image), ans, label=" / ".join(o.description for o in r.objects))
            cv2.imwrite(str(out_dir / "overlays" / f"{r.task.value}_{seen[r.task.value]:02d}.png"), img[:, :, ::-1])
            n += 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from bopask_vlm.datagen.bop_reader import BopFormatError
    from bopask_vlm.datagen.runner import DatagenError, generate

    rephrase = {"base_url": a.rephrase_url, "model": a.rephrase_model} if a.rephrase_url else None
    try:
        s = generate(a.dataset_root, a.out_dir, a.seed, split=a.split, dataset=a.dataset,
                     description_file=a.descriptions, workers=a.workers, backend=a.backend, address=a.address,
                     retries=a.retries,
                     tasks=a.tasks.split(",") if a.tasks else None, max_scenes=a.max_scenes,
                     rephrase=rephrase, progress=not a.quiet, resume=not a.no_resume)
    except (DatagenError, BopFormatError) as e:
        print(f"bopask datagen: {e}", file=sys.stderr)
        return 2
    if a.overlays:
        write_overlays(Path(a.out_dir), a.overlays)
    if not a.quiet:
        print(json.dumps({k: v for k, v in s.items() if k != "errors"} | {"errors": len(s["errors"])}))
        out = Path(a.out_dir).resolve()
        print(f"shards: {out / 'shards'}\nmanifest: {out / 'manifest.json'}"
              + (f"\noverlays: {out / 'overlays'}" if a.overlays else ""))
    if s["scenes_failed"]:
        print(f"bopask datagen: {len(s['scenes_failed'])} scene(s) failed (listed in "
              f"{Path(a.out_dir) / 'manifest.json'}; the same command again does only what is missing)",
              file=sys.stderr)
    return 1 if s["scenes_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
