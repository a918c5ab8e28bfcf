"""A tiny BOP-format scene for corrupt-file tests and the BOP reader fuzz target: one box model (binary
PLY, millimetres), ``frames`` 32x24 frames with png rgb / depth / visible mask and the four JSON files.
What :func:`read_everything` reads of it is what datagen reads through the BOP reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_tiny_bop_scene(root: Path, frames: int = 2) -> tuple[Path, dict[str, Path]]:
    """Write the scene under ``root`` (``models/``, ``test/000001/``); returns the scene directory and the
    files worth corrupting by name (scene_camera, scene_gt, scene_gt_info, models_info, and frame 0's rgb,
    depth, mask, and the ply)."""
    import cv2
    import trimesh

    models = root / "models"
    models.mkdir(parents=True)
    (models / "models_info.json").write_text(json.dumps({"1": {
        "diameter": 150.0, "min_x": -40.0, "min_y": -30.0, "min_z": -50.0, "size_x": 80.0, "size_y": 60.0,
        "size_z": 100.0}}))
    trimesh.creation.box((80, 60, 100)).export(models / "obj_000001.ply")
    s = root / "test" / "000001"
    for d in ("rgb", "depth", "mask_visib"):
        (s / d).mkdir(parents=True)
    cam = {"cam_K": [60.0, 0, 16, 0, 60.0, 12, 0, 0, 1], "depth_scale": 0.1}
    gt = {"cam_R_m2c": np.eye(3).ravel().tolist(), "cam_t_m2c": [1.0, -2.0, 800.0], "obj_id": 1}
    info = {"bbox_obj": [1, 2, 3, 4], "bbox_visib": [1, 2, 3, 3], "visib_fract": 0.9}
    ids = [str(i) for i in range(frames)]
    (s / "scene_camera.json").write_text(json.dumps({i: cam for i in ids}))
    (s / "scene_gt.json").write_text(json.dumps({i: [gt] for i in ids}))
    (s / "scene_gt_info.json").write_text(json.dumps({i: [info] for i in ids}))
    for im in range(frames):
        cv2.imwrite(str(s / "rgb" / f"{im:06d}.png"),
                    (np.arange(32 * 24 * 3) % 251).astype(np.uint8).reshape(24, 32, 3))
        cv2.imwrite(str(s / "depth" / f"{im:06d}.png"), np.full((24, 32), 8000, np.uint16))
        m = np.zeros((24, 32), np.uint8)
        m[5:9, 6:12] = 255
        cv2.imwrite(str(s / "mask_visib" / f"{im:06d}_000000.png"), m)
    files = {"scene_camera": s / "scene_camera.json", "scene_gt": s / "scene_gt.json",
             "scene_gt_info": s / "scene_gt_info.json", "models_info": models / "models_info.json",
             "rgb": s / "rgb" / "000000.png", "depth": s / "depth" / "000000.png",
             "mask": s / "mask_visib" / "000000_000000.png", "ply": models / "obj_000001.ply"}
    return s, files


def read_everything(scene_dir: Path) -> int:
    """What datagen reads of a scene through the BOP reader (scene files, every frame and its masks, the
    model meshes); the number of frames read. Raises the reader's ``BopFormatError`` for a corrupt file."""
    from bopask_vlm.datagen.bop_reader import BopScene, check_image, load_model_mesh, read_frame

    sc = BopScene(scene_dir)
    n = 0
    for im in sc.im_ids:
        fr = read_frame(sc, im)
        check_image(fr.rgb_path)
        for o in fr.objects:
            o.mask_visib()
        n += 1
    for mi in sc.models.values():
        if mi.path is not None:
            load_model_mesh(mi.path)
    return n
