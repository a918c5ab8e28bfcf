"""Corrupt BOP files (truncated, bit flips, wrong types) end in BopFormatError naming the file; in a
datagen run a corrupt frame is reported and the rest of its scene processed, a corrupt scene-level file
reports the scene and the other scenes are processed (issue 13)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from bopask_vlm.datagen.bop_reader import (
    BopFormatError,
)
from bopask_vlm.testing.tiny_bop import read_everything, write_tiny_bop_scene


def _truncate(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _flip_first(b: bytes) -> bytes:  # the magic number / opening brace
    return bytes([b[0] ^ 0x01]) + b[1:]


def _flip_middle(b: bytes) -> bytes:  # inside PNG image data (a CRC mismatch) or the PLY's binary body
    i = len(b) // 2 + 3
    return b[:i] + bytes([b[i] ^ 0x40]) + b[i + 1:]


BYTE_CORRUPTIONS = {"truncated": _truncate, "first byte flipped": _flip_first, "empty": lambda b: b"",
                    "not UTF-8": lambda b: b"\xff\xfe" + b[2:]}


def test_the_valid_scene_reads(tmp_path):
    scene, _ = write_tiny_bop_scene(tmp_path)
    read_everything(scene)


@pytest.mark.parametrize("kind", list(BYTE_CORRUPTIONS))
@pytest.mark.parametrize("name", ["scene_camera", "scene_gt", "scene_gt_info", "models_info", "rgb", "depth",
                                  "mask", "ply"])
def test_corrupt_bytes_are_format_errors(tmp_path, name, kind):
    scene, files = write_tiny_bop_scene(tmp_path)
    f = files[name]
    f.write_bytes(BYTE_CORRUPTIONS[kind](f.read_bytes()))
    with pytest.raises(BopFormatError) as e:
        read_everything(scene)
    assert f.name in str(e.value) or f.parent.name in str(e.value)


@pytest.mark.parametrize("name", ["rgb", "depth", "mask", "ply"])
def test_bit_flip_inside_binary_data_is_a_format_error(tmp_path, name):
    scene, files = write_tiny_bop_scene(tmp_path)
    f = files[name]
    if name == "ply":  # a vertex index far past the 8 vertices: the faces start after the vertices
        data = f.read_bytes()
        i = data.index(b"end_header\n") + len(b"end_header\n") + 8 * 12 + 1
        f.write_bytes(data[:i] + b"\x00\x00\x00\x40" + data[i + 4:])
    else:
        f.write_bytes(_flip_middle(f.read_bytes()))
    with pytest.raises(BopFormatError):
        read_everything(scene)


WRONG_TYPES = {
    "scene_camera": [[], {"0": "cam"}, {"0": {"cam_K": "K"}}, {"0": {"cam_K": [1, 2, 3]}},
                     {"0": {"cam_K": [60.0, 0, 16, 0, 60.0, 12, 0, 0, 1], "depth_scale": "x"}}, {"zero": {}},
                     {"0": {"cam_K": [60.0, 0, 16, 0, 60.0, 12, 0, 0, 1], "depth_scale": None}}],
    "scene_gt": [[], {"0": {"obj_id": 1}}, {"0": [{"cam_R_m2c": "R", "cam_t_m2c": [1, 2, 3], "obj_id": 1}]},
                 {"0": [{"cam_R_m2c": [1] * 9, "cam_t_m2c": [1, 2], "obj_id": 1}]}, {"0": [None]}, {"0": 5}],
    "scene_gt_info": [{"0": [5]}, {"0": [{"visib_fract": "most"}]}, {"0": {"a": 1}}, "info"],
    "models_info": [[], {"1": []}, {"1": {"min_x": "a"}}, {"x": {"min_x": 1, "min_y": 1, "min_z": 1, "size_x": 1,
                                                                  "size_y": 1, "size_z": 1}}, {"1": None}],
}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in WRONG_TYPES.items() for v in vs])
def test_json_of_wrong_types_is_a_format_error(tmp_path, name, value):
    scene, files = write_tiny_bop_scene(tmp_path)
    files[name].write_text(json.dumps(value))
    with pytest.raises(BopFormatError):
        read_everything(scene)


def test_deeply_nested_json_is_a_format_error(tmp_path):
    scene, files = write_tiny_bop_scene(tmp_path)
    files["scene_gt"].write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BopFormatError, match="scene_gt"):
        read_everything(scene)


def test_depth_of_the_wrong_bit_depth_is_a_format_error(tmp_path):
    scene, files = write_tiny_bop_scene(tmp_path)
    cv2.imwrite(str(files["depth"]), np.full((24, 32), 80, np.uint8))
    with pytest.raises(BopFormatError, match="16-bit"):
        read_everything(scene)


# ---- in a datagen run -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory):
    from bopask_vlm.datagen.synthetic import make_scene

    root = tmp_path_factory.mktemp("bop")
    scenes = [make_scene(root, seed=s, num_objects=3, num_frames=3, width=160, height=120) for s in (1, 2)]
    return root, scenes


def _copy(root: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "bop"
    shutil.copytree(root, dst)
    return dst


def _generate(root: Path, out: Path) -> dict:
    from bopask_vlm.datagen import generate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return generate(root, out, seed=0, progress=False, resume=False)


def test_corrupt_frame_is_reported_and_the_scene_goes_on(two_scenes, tmp_path):
    root = _copy(two_scenes[0], tmp_path)
    rgb = root / "test" / "000001" / "rgb" / "000001.png"
    rgb.write_bytes(_truncate(rgb.read_bytes()))
    s = _generate(root, tmp_path / "out")
    frame_errors = [e for e in s["errors"] if e["stage"] == "frame"]
    assert [(Path(e["scene"]).name, e["im_id"]) for e in frame_errors] == [("000001", 1)]
    assert "000001.png" in frame_errors[0]["error"]
    assert s["frames_ok"] == 5  # the other two frames of scene 1 and all three of scene 2
    assert s["records_run"] > 0


def test_corrupt_scene_file_reports_the_scene_and_runs_the_others(two_scenes, tmp_path):
    root = _copy(two_scenes[0], tmp_path)
    (root / "test" / "000001" / "scene_gt.json").write_text('{"0": [')
    s = _generate(root, tmp_path / "out")
    assert [(Path(e["scene"]).name, e["stage"]) for e in s["errors"]] == [("000001", "scene")]
    assert "scene_gt.json" in s["errors"][0]["error"]
    assert s["frames_ok"] == 3 and s["records_run"] > 0


def test_corrupt_model_mesh_reports_the_scenes_and_finishes(two_scenes, tmp_path):
    root = _copy(two_scenes[0], tmp_path)
    gt = json.loads((root / "test" / "000001" / "scene_gt.json").read_text())
    ply = root / "models" / f"obj_{gt['0'][0]['obj_id']:06d}.ply"
    ply.write_bytes(_truncate(ply.read_bytes()))
    s = _generate(root, tmp_path / "out")
    # the model is reported once (its geometry is built once per dataset), and every scene that needs it
    model_errors = [e for e in s["errors"] if e["stage"] == "model"]
    scene_errors = [e for e in s["errors"] if e["stage"] == "scene"]
    assert len(model_errors) == 1 and ply.name in model_errors[0]["model"]
    assert len(model_errors) + len(scene_errors) == len(s["errors"])
    assert scene_errors and all(ply.stem in e["error"] for e in scene_errors)
    assert "000001" in {Path(e["scene"]).name for e in scene_errors}
