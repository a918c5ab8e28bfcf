"""``bopask synth``: write synthetic BOP-format tabletop scenes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="bopask synth", description="Write synthetic BOP-format tabletop scenes "
                                "(models/, test/<scene>/ with rgb, depth, masks, scene_*.json, scene_world.json).",
                                formatter_class=DefaultsFormatter)
    p.add_argument("out_dir", help="dataset root to write")
    p.add_argument("--scenes", type=int, default=1, help="number of scenes (scene i uses seed + i)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first scene")
    p.add_argument("--objects", type=int, default=5, help="objects per scene")
    p.add_argument("--frames", type=int, default=3, help="camera views per scene")
    p.add_argument("--width", type=int, default=640, help="image width (px)")
    p.add_argument("--height", type=int, default=480, help="image height (px)")
    p.add_argument("--no-noise", action="store_true", help="perfect depth (no RealSense-like noise/holes)")
    p.add_argument("--no-real-mesh", action="store_true", help="primitives only (skip the LineMOD mesh)")
    from bopask_vlm.datagen.synthetic import STACK_PROBABILITY

    p.add_argument("--stack", type=float, default=STACK_PROBABILITY,
                   help="chance that an object rests on another one (so 'above'/'below' are sometimes Yes); 0: all "
                        "on the table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from tqdm import tqdm

    from bopask_vlm.datagen.synthetic import SyntheticSceneError, make_scene

    try:
        for i in tqdm(range(a.scenes), desc="synth scenes", unit="scene"):
            d = make_scene(a.out_dir, seed=a.seed + i, num_objects=a.objects, num_frames=a.frames, width=a.width,
                           height=a.height, noise=not a.no_noise, scene_id=i, use_real_mesh=not a.no_real_mesh,
                           stack=a.stack)
    except SyntheticSceneError as e:
        print(f"bopask synth: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.scenes} scene(s), last: {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
