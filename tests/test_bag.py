"""Rosbag2 (mcap) writing and reading: topics, round trip, TF, truncated and corrupt bags."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _eval_helpers import table_frame, write_bop_scene

from bopask_ros.replay.bag_reader import BagReadError, read_bag
from bopask_ros.replay.bag_writer import (
    COLOR_TOPIC,
    DEPTH_TOPIC,
    GT_FILE,
    INFO_TOPIC,
    BagWriteError,
    SceneFrame,
    bop_scene_to_bag,
    write_bag,
)
from bopask_vlm.geometry import invert_transform, transform_points

N_FRAMES = 6


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    # 320x240: the 6 frames span several 1 MiB mcap chunks, so a cut file still holds whole chunks
    frames = [table_frame(320, 240, seed=i)[:3] for i in range(N_FRAMES)]
    T_world_cam = table_frame(320, 240)[3]
    d = tmp_path_factory.mktemp("bagscene")
    write_bop_scene(d / "scene", frames)
    bag = bop_scene_to_bag(d / "scene", d / "bag")
    return frames, T_world_cam, bag


def test_topics_types_and_encodings(scene):
    from rosbags.rosbag2 import Reader

    _, _, bag = scene
    assert any(p.suffix == ".mcap" for p in bag.iterdir())
    with Reader(bag) as r:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in r.connections}
    assert topics[COLOR_TOPIC] == ("sensor_msgs/msg/Image", N_FRAMES)
    assert topics[DEPTH_TOPIC] == ("sensor_msgs/msg/Image", N_FRAMES)
    assert topics[INFO_TOPIC] == ("sensor_msgs/msg/CameraInfo", N_FRAMES)
    assert topics["/tf_static"] == ("tf2_msgs/msg/TFMessage", 1)  # the camera does not move: static extrinsic


def test_round_trip_images_depth_camera(scene):
    frames, _, bag = scene
    data = read_bag(bag)
    assert data.complete and not data.errors
    assert [bf.im_id for bf in data.frames] == list(range(N_FRAMES))
    for (rgb, depth_mm, cam), bf in zip(frames, data.frames):
        assert np.array_equal(bf.frame.rgb, rgb)
        want = depth_mm.astype(np.float32) / 1000.0
        assert np.allclose(bf.frame.depth_m, want, atol=1e-6, equal_nan=True)
        assert np.allclose(bf.frame.camera.K, cam.K)
        assert bf.frame.frame_id == "camera_color_optical_frame"
    stamps = [bf.frame.stamp for bf in data.frames]
    assert np.all(np.diff(stamps) > 0)


def test_base_frame_is_on_the_table(scene):
    """The recorded extrinsic puts base_link on the table: z up, the table at z = 0."""
    frames, T_world_cam, bag = scene
    data = read_bag(bag)
    T_base_cam = data.tf.lookup_transform("base_link", "camera_color_optical_frame", data.frames[0].frame.stamp)
    gt = json.loads((bag / GT_FILE).read_text())
    assert np.allclose(gt["frames"][0]["T_base_cam"], T_base_cam, atol=1e-6)
    # table points (away from the raised box) land at base z = 0; the box top at 5 cm
    cam = frames[0][2]
    depth = data.frames[0].frame.depth_m
    uv = np.array([[20.0, 200.0], [300.0, 20.0], [160.0, 120.0]])
    z = depth[uv[:, 1].astype(int), uv[:, 0].astype(int)]
    p_base = transform_points(T_base_cam, cam.deproject(uv, z))
    assert p_base[:2, 2] == pytest.approx([0.0, 0.0], abs=0.004)
    assert p_base[2, 2] == pytest.approx(0.05, abs=0.004)
    # the camera is 0.6 m above the table, as built
    assert invert_transform(T_base_cam)[2, 3] == pytest.approx(-0.6, abs=0.01) or T_base_cam[2, 3] == pytest.approx(
        0.6, abs=0.01)


def test_moving_camera_writes_tf_per_frame(tmp_path):
    rgb, dmm, cam, _ = table_frame()
    T0 = np.eye(4)
    T1 = np.eye(4)
    T1[0, 3] = 0.05  # the camera moved 5 cm
    frs = [SceneFrame(rgb, dmm, cam, im_id=0, extra={"T_cam_cam0": T0}),
           SceneFrame(rgb, dmm, cam, im_id=1, extra={"T_cam_cam0": T1})]
    bag = write_bag(tmp_path / "bag", frs)
    data = read_bag(bag)
    assert not json.loads((bag / GT_FILE).read_text())["static_camera"]
    Ta = data.tf.lookup_transform("base_link", "camera_color_optical_frame", data.frames[0].frame.stamp)
    Tb = data.tf.lookup_transform("base_link", "camera_color_optical_frame", data.frames[1].frame.stamp)
    assert np.linalg.norm(Ta[:3, 3] - Tb[:3, 3]) == pytest.approx(0.05, abs=1e-6)


def test_truncated_bag_keeps_frames_read_so_far(scene, tmp_path):
    _, _, bag = scene
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    mcap = next(cut.glob("*.mcap"))
    raw = mcap.read_bytes()
    mcap.write_bytes(raw[: int(len(raw) * 0.6)])
    data = read_bag(cut)
    assert not data.complete
    assert 1 <= len(data.frames) < N_FRAMES
    assert any("recovered by scanning" in e for e in data.errors)
    assert any("damaged after" in e or "lack colour" in e for e in data.errors)
    full = read_bag(bag)
    for a, b in zip(data.frames, full.frames):
        assert np.array_equal(a.frame.rgb, b.frame.rgb)


def test_corrupt_bag_reported_clearly(scene, tmp_path):
    from rosbags.rosbag2.storage_mcap import McapReader

    _, _, bag = scene
    bad = tmp_path / "bad"
    shutil.copytree(bag, bad)
    mcap = next(bad.glob("*.mcap"))
    r = McapReader(mcap)
    r.open()
    second = r.chunks[1].chunk_start_offset
    r.close()
    raw = bytearray(mcap.read_bytes())
    raw[second + 9: second + 9 + 48] = b"\xff" * 48  # the second chunk's header fields: garbage
    mcap.write_bytes(bytes(raw))
    data = read_bag(bad)
    assert not data.complete
    assert any("damaged after" in e for e in data.errors), data.errors
    assert 1 <= len(data.frames) < N_FRAMES
    # garbage at the end (footer/summary): every frame is recovered by scanning, still reported
    end = tmp_path / "end"
    shutil.copytree(bag, end)
    mcap = next(end.glob("*.mcap"))
    raw = bytearray(mcap.read_bytes())
    raw[-30:] = b"\x00" * 30
    mcap.write_bytes(bytes(raw))
    data = read_bag(end)
    assert not data.complete and any("recovered by scanning" in e for e in data.errors)
    assert len(data.frames) == N_FRAMES
    with pytest.raises(BagReadError, match="no bag"):
        read_bag(tmp_path / "does_not_exist")


def test_bad_input_to_writer(tmp_path):
    rgb, dmm, cam, _ = table_frame()
    with pytest.raises(BagWriteError, match="uint16"):
        write_bag(tmp_path / "a", [SceneFrame(rgb, dmm.astype(np.float32), cam)])
    with pytest.raises(BagWriteError, match="no frames"):
        write_bag(tmp_path / "b", [])
    (tmp_path / "c").mkdir()
    with pytest.raises(BagWriteError, match="exists"):
        write_bag(tmp_path / "c", [SceneFrame(rgb, dmm, cam)])
    with pytest.raises(BagWriteError, match="not a BOP scene"):
        bop_scene_to_bag(tmp_path, tmp_path / "d")


def test_real_frame_bag_base_on_the_fitted_table(real_frame_dir, tmp_path):
    """A real LineMOD frame (not from our generator): the base frame comes from a RANSAC table fit."""
    import cv2

    from bopask_vlm.geometry import backproject_depth

    scene = tmp_path / "real"
    (scene / "rgb").mkdir(parents=True)
    (scene / "depth").mkdir()
    shutil.copy(real_frame_dir / "rgb.png", scene / "rgb" / "000000.png")
    shutil.copy(real_frame_dir / "depth.png", scene / "depth" / "000000.png")
    (scene / "scene_camera.json").write_text(json.dumps({"0": json.loads((real_frame_dir / "camera.json").read_text())}))
    data = read_bag(bop_scene_to_bag(scene, tmp_path / "bag"))
    assert data.complete and len(data.frames) == 1
    f = data.frames[0].frame
    raw = cv2.imread(str(real_frame_dir / "depth.png"), cv2.IMREAD_ANYDEPTH)
    assert np.array_equal(np.isnan(f.depth_m), raw == 0)  # holes stay holes
    T = data.tf.lookup_transform("base_link", f.frame_id, f.stamp)
    z = transform_points(T, backproject_depth(f.depth_m, f.camera, stride=4))[:, 2]
    assert np.mean(np.abs(z) < 0.01) > 0.3  # a large share of the view is the table, at base z = 0
    assert T[2, 3] > 0.2  # the camera looks down from above the table
