"""Helpers of the evaluation/replay tests: a small analytic RGB-D tabletop frame and BOP scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from bopask_vlm.geometry import CameraModel, invert_transform, make_transform


def table_camera(width: int = 160, height: int = 120) -> CameraModel:
    f = 0.9 * width
    return CameraModel(K=np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]]),
                       width=width, height=height)


def table_frame(width: int = 160, height: int = 120, tilt_deg: float = 130.0, cam_height: float = 0.6,
                box_height: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray, CameraModel, np.ndarray]:
    """(rgb uint8, depth uint16 mm, camera, T_world_cam) of a table (world z up) seen from above at an
    angle, with a flat-topped box region in the middle of the image ``box_height`` above the table."""
    cam = table_camera(width, height)
    T_world_cam = make_transform(Rotation.from_euler("x", -tilt_deg, degrees=True).as_matrix(),
                                 [0.0, -0.5, cam_height])
    T_cam_world = invert_transform(T_world_cam)
    n_c, p0 = T_cam_world[:3, :3] @ np.array([0, 0, 1.0]), T_cam_world[:3, 3]
    v, u = np.mgrid[0:height, 0:width]
    rays = cam.rays(np.stack([u.ravel(), v.ravel()], 1).astype(float))
    heights = np.zeros(u.size)
    inside = (np.abs(u.ravel() - width / 2) < width / 8) & (np.abs(v.ravel() - height / 2) < height / 8)
    heights[inside] = box_height
    s = (n_c @ p0 + heights) / (rays @ n_c)  # ray meets the plane z_world = height
    depth = (rays * s[:, None])[:, 2].reshape(height, width)
    depth_mm = np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return rgb, depth_mm, cam, T_world_cam


def write_bop_scene(scene_dir: Path, frames: list[tuple[np.ndarray, np.ndarray, CameraModel]]) -> Path:
    """A minimal BOP scene directory (rgb, depth, scene_camera.json) of the given frames."""
    import json

    import cv2

    (scene_dir / "rgb").mkdir(parents=True, exist_ok=True)
    (scene_dir / "depth").mkdir(parents=True, exist_ok=True)
    cams = {}
    for i, (rgb, depth_mm, cam) in enumerate(frames):
        cv2.imwrite(str(scene_dir / "rgb" / f"{i:06d}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(scene_dir / "depth" / f"{i:06d}.png"), depth_mm)
        cams[str(i)] = {"cam_K": cam.K.reshape(-1).tolist(), "depth_scale": 1.0}
    (scene_dir / "scene_camera.json").write_text(json.dumps(cams))
    return scene_dir


def inside_image(record) -> bool:
    """Whether every answer point lies inside the image. The VLM clients reject answers with points outside
    (half-pixel tolerance), so a cuboid of an object cut by the image border cannot come back even from
    the oracle; the tests that expect perfect oracle scores leave such records out."""
    from bopask_vlm.answers import answer_from_record

    p = np.asarray(answer_from_record(record).points, dtype=float).reshape(-1, 2)
    return bool(np.all((p >= -0.5) & (p <= [record.width - 0.5, record.height - 0.5])))


def small_dataset(work: Path, seed: int = 0, width: int = 480, height: int = 360, num_frames: int = 3,
                  num_objects: int = 4, max_records: int | None = 60):
    """(scene dir, QA records, bag, the records' dataset root) of a synthetic scene
    (``bopask_ros.replay.demo.make_dataset``)."""
    from bopask_ros.replay.bag_writer import bop_scene_to_bag
    from bopask_ros.replay.demo import make_dataset

    scene_dir, records, root = make_dataset(work / "data", seed, num_objects, num_frames, width, height, max_records)
    records = [r for r in records if inside_image(r)]
    ids = sorted({int(r.im_id) for r in records})
    bag = bop_scene_to_bag(scene_dir, work / "bag", records=records, im_ids=ids)
    return scene_dir, records, bag, root


_CACHE: dict[tuple, tuple] = {}


def cached_dataset(**kwargs):
    """:func:`small_dataset` built once per test process (shared by the pipeline, replay and runner tests)."""
    import tempfile

    key = tuple(sorted(kwargs.items()))
    if key not in _CACHE:
        _CACHE[key] = small_dataset(Path(tempfile.mkdtemp(prefix="bopask_eval_")), **kwargs)
    return _CACHE[key]
