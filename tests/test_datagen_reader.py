"""BOP reader: a hand-written real-layout fixture round-trips in metres; name tables; description files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bopask_vlm.datagen.bop_reader import BopFormatError, BopScene, list_scenes, read_frame, read_single_frame
from bopask_vlm.datagen.object_names import TABLES, ObjectNamesError, load_description_file, object_names


def _fixture(root: Path) -> Path:
    """A BOP-layout scene like the real datasets: gray jpg images, depth_scale 0.1, two instances."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "models_info.json").write_text(json.dumps({
        "2": {"diameter": 150.0, "min_x": -40.0, "min_y": -30.0, "min_z": -50.0, "size_x": 80.0, "size_y": 60.0,
              "size_z": 100.0}}))
    s = root / "test" / "000048"
    for d in ("gray", "depth", "mask_visib"):
        (s / d).mkdir(parents=True)
    K = [600.0, 0, 320.0, 0, 601.0, 240.0, 0, 0, 1]
    (s / "scene_camera.json").write_text(json.dumps({"7": {"cam_K": K, "depth_scale": 0.1}}))
    R = np.eye(3).reshape(-1).tolist()
    (s / "scene_gt.json").write_text(json.dumps({"7": [
        {"cam_R_m2c": R, "cam_t_m2c": [10.0, -20.0, 800.0], "obj_id": 2},
        {"cam_R_m2c": R, "cam_t_m2c": [-100.0, 0.0, 900.0], "obj_id": 2}]}))
    (s / "scene_gt_info.json").write_text(json.dumps({"7": [
        {"bbox_obj": [1, 2, 3, 4], "bbox_visib": [1, 2, 3, 3], "visib_fract": 0.9},
        {"bbox_obj": [5, 6, 7, 8], "bbox_visib": [5, 6, 7, 8], "visib_fract": 1.0}]}))
    gray = (np.arange(640 * 480) % 251).astype(np.uint8).reshape(480, 640)
    cv2.imwrite(str(s / "gray" / "000007.jpg"), gray)
    depth = np.full((480, 640), 8000, np.uint16)  # 8000 * 0.1 mm = 0.8 m
    depth[:10, :10] = 0
    cv2.imwrite(str(s / "depth" / "000007.png"), depth)
    m = np.zeros((480, 640), np.uint8)
    m[100:120, 200:230] = 255
    cv2.imwrite(str(s / "mask_visib" / "000007_000000.png"), m)
    return s


def test_real_layout_round_trips_in_metres(tmp_path):
    s = _fixture(tmp_path)
    assert list_scenes(tmp_path) == [s]
    sc = BopScene(s)
    assert sc.scene_id == 48 and sc.im_ids == [7]
    f = read_frame(sc, 7)
    assert f.rgb.shape == (480, 640, 3) and f.camera.fx == 600.0 and f.camera.fy == 601.0
    assert np.nanmax(f.depth_m) == pytest.approx(0.8) and np.isnan(f.depth_m[0, 0])
    assert len(f.objects) == 2
    np.testing.assert_allclose(f.objects[0].T_cam_obj[:3, 3], [0.01, -0.02, 0.8])
    assert f.objects[0].bbox_visib == [1, 2, 3, 3] and f.objects[1].visib_fract == 1.0
    mv = f.objects[0].mask_visib()
    assert mv is not None and mv.sum() == 600 and f.objects[1].mask_visib() is None
    mi = sc.models[2]
    np.testing.assert_allclose(mi.size, [0.08, 0.06, 0.1])
    np.testing.assert_allclose(mi.min_xyz, [-0.04, -0.03, -0.05])
    assert mi.diameter == pytest.approx(0.15)


def test_missing_and_corrupt_files_raise_typed_errors(tmp_path):
    s = _fixture(tmp_path)
    with pytest.raises(BopFormatError, match="no camera"):
        read_frame(s, 8)
    (s / "gray" / "000007.jpg").write_bytes(b"not an image")
    with pytest.raises(BopFormatError, match="unreadable image"):
        read_frame(s, 7)
    (s / "scene_gt.json").write_text("{broken")
    with pytest.raises(BopFormatError, match="unreadable BOP file"):
        BopScene(s).objects(7)
    with pytest.raises(BopFormatError):
        BopScene(tmp_path / "nowhere")


def test_reads_the_real_frame(real_frame_dir):
    d = Path(real_frame_dir)
    if not (d / "camera.json").is_file():
        pytest.skip("real frame not present")
    rgb, depth, cam = read_single_frame(d)
    assert rgb.shape[:2] == depth.shape == (cam.height, cam.width)
    assert cam.fx == pytest.approx(572.4114)
    valid = depth[np.isfinite(depth)]
    assert 0.2 < np.median(valid) < 3.0  # metres, not millimetres
    assert np.isnan(depth).any()  # real sensor holes survive as NaN


def test_name_tables_and_description_file(tmp_path):
    assert len(TABLES["ycbv"]) == 21 and TABLES["ycbv"][5] == "mustard bottle"
    assert len(TABLES["lm"]) == 15 and TABLES["lm"][5] == "watering can"
    assert len(TABLES["hope"]) == 28 and len(TABLES["handal"]) == 40
    assert len(set(TABLES["handal"].values())) == 17
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"5": {"name": "can", "description": "green watering can"}, "99": "toy"}))
    names = object_names("lm", f)
    assert names[5] == "green watering can" and names[99] == "toy" and names[1] == "ape"
    y = tmp_path / "d.yaml"
    y.write_text("3: red bowl\n")
    assert load_description_file(y) == {3: "red bowl"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": "y"}))
    with pytest.raises(ObjectNamesError):
        load_description_file(bad)
