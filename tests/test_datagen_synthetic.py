"""Synthetic BOP scenes: layout, determinism, speed, and agreement of the side file with the BOP files."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
import trimesh
from _datagen_helpers import built, world_T

from bopask_vlm.datagen.synthetic import SyntheticSceneError, make_scene


def test_layout_and_world_file_agree_with_bop_poses():
    b = built()
    s = b.scene
    assert (b.root / "models" / "models_info.json").is_file()
    gt = json.loads((s / "scene_gt.json").read_text())
    cams = json.loads((s / "scene_camera.json").read_text())
    world = json.loads((s / "scene_world.json").read_text())
    assert sorted(gt) == sorted(cams) == sorted(world["frames"]) == ["0", "1", "2"]
    for im in gt:
        T_wc = world_T(s, int(im))
        for inst, obj in zip(gt[im], world["objects"]):
            T_co = np.eye(4)
            T_co[:3, :3] = np.reshape(inst["cam_R_m2c"], (3, 3))
            T_co[:3, 3] = np.asarray(inst["cam_t_m2c"]) / 1000.0
            np.testing.assert_allclose(T_wc @ T_co, obj["T_world_obj"], atol=1e-6)
    # objects rest on the table (the lowest mesh point at z = 0) or on the top of another instance (stacked)
    verts = []
    for obj in world["objects"]:
        m = trimesh.load(b.root / "models" / f"obj_{obj['obj_id']:06d}.ply", process=False)
        verts.append(m.vertices / 1000.0 @ np.asarray(obj["T_world_obj"])[:3, :3].T
                     + np.asarray(obj["T_world_obj"])[:3, 3])
    for i, v in enumerate(verts):
        tops = [u[:, 2].max() for j, u in enumerate(verts) if j != i]
        assert abs(v[:, 2].min()) < 1e-4 or min(abs(v[:, 2].min() - t) for t in tops) < 1e-4


def test_masks_depth_and_gt_info_are_consistent():
    s = built().scene
    info = json.loads((s / "scene_gt_info.json").read_text())
    depth = cv2.imread(str(s / "depth" / "000000.png"), cv2.IMREAD_ANYDEPTH)
    assert depth.dtype == np.uint16 and 0.0 < (depth == 0).mean() < 0.5  # RealSense-like holes, mostly valid
    for k, inf in enumerate(info["0"]):
        full = cv2.imread(str(s / "mask" / f"000000_{k:06d}.png"), 0) > 0
        vis = cv2.imread(str(s / "mask_visib" / f"000000_{k:06d}.png"), 0) > 0
        assert not (vis & ~full).any()
        assert inf["px_count_visib"] == vis.sum()
        assert inf["visib_fract"] == pytest.approx(vis.sum() / max(full.sum(), 1))
        ys, xs = np.nonzero(full)
        if xs.size:
            assert inf["bbox_obj"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            # objects are nearer the camera than the table around them
            d_obj = np.median(depth[vis & (depth > 0)]) if (vis & (depth > 0)).any() else None
            if d_obj is not None:
                assert 300 < d_obj < 1500


def test_deterministic_per_seed_and_fast(tmp_path):
    make_scene(tmp_path / "warm", seed=11, num_frames=1, width=160, height=120)  # imports, models
    t0 = time.process_time()  # CPU time of this process (all threads): robust to other jobs on the machine
    a = make_scene(tmp_path / "a", seed=5)
    dt = time.process_time() - t0
    bdir = make_scene(tmp_path / "b", seed=5)
    c = make_scene(tmp_path / "c", seed=6)
    for rel in ("rgb/000002.png", "depth/000001.png", "scene_gt.json", "scene_world.json", "mask_visib/000001_000002.png"):
        assert (a / rel).read_bytes() == (bdir / rel).read_bytes(), rel
    assert (a / "rgb/000000.png").read_bytes() != (c / "rgb/000000.png").read_bytes()
    assert dt < 4.0, f"3 frames at 640x480 took {dt:.2f} s of CPU (target < 2 s wall on an idle machine)"


def test_hd_resolution_and_bad_arguments(tmp_path):
    s = make_scene(tmp_path, seed=1, num_objects=3, num_frames=1, width=1280, height=720, noise=False)
    img = cv2.imread(str(s / "rgb" / "000000.png"))
    assert img.shape == (720, 1280, 3)
    K = np.reshape(json.loads((s / "scene_camera.json").read_text())["0"]["cam_K"], (3, 3))
    assert K[0, 2] == pytest.approx(639.5) and K[1, 2] == pytest.approx(359.5)
    with pytest.raises(SyntheticSceneError):
        make_scene(tmp_path / "x", num_objects=0)
    with pytest.raises(SyntheticSceneError):
        make_scene(tmp_path / "x", num_frames=0)
