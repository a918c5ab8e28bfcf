"""Write an RGB-D scene as a rosbag2 (mcap) the way a RealSense on a robot records it (ROS-free).

Topics (realsense-ros 4.x defaults, ``camera_namespace:=camera camera_name:=camera``):

- ``/camera/camera/color/image_raw``: ``sensor_msgs/Image`` rgb8
- ``/camera/camera/aligned_depth_to_color/image_raw``: ``sensor_msgs/Image`` 16UC1 millimetres
- ``/camera/camera/color/camera_info``: ``sensor_msgs/CameraInfo``
- ``/tf_static`` (``base_link -> camera_color_optical_frame``) when the camera does not move relative
  to the robot base over the scene, else ``/tf`` at every image stamp (a camera carried by the arm).

The robot base stands on the table below the (first) camera, z up along the table normal, x along the
table towards the objects. With our synthetic scenes (``scene_world.json``) this is placed in the exact
world/table frame of the scene (:func:`base_on_table`); for other BOP scenes the table is fitted to the
first frame's depth (:func:`bopask_vlm.geometry.fit_plane_ransac` + :func:`world_from_plane`) and the
camera's motion between frames comes from the (static) objects' poses.

Ground truth travels in a side file next to the mcap: ``bopask_gt.json`` (frame stamps, image ids,
``T_base_cam`` per frame) and ``bopask_records.jsonl`` (the QA records of those images), so replay can
score answers without ROS message definitions. Bag timestamps are nanoseconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm.geometry import (
    CameraModel,
    backproject_depth,
    depth_to_metres,
    fit_plane_ransac,
    invert_transform,
    make_transform,
    quat_from_matrix,
    world_from_plane,
)

__all__ = [
    "BASE_FRAME",
    "CAMERA_FRAME",
    "COLOR_TOPIC",
    "DEPTH_TOPIC",
    "GT_FILE",
    "INFO_TOPIC",
    "RECORDS_FILE",
    "BagWriteError",
    "SceneFrame",
    "bop_scene_to_bag",
    "read_bop_scene_frames",
    "base_on_table",
    "table_base_transform",
    "write_bag",
]

COLOR_TOPIC = "/camera/camera/color/image_raw"
DEPTH_TOPIC = "/camera/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/camera/color/camera_info"
TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
CAMERA_FRAME = "camera_color_optical_frame"
BASE_FRAME = "base_link"
GT_FILE = "bopask_gt.json"
RECORDS_FILE = "bopask_records.jsonl"


class BagWriteError(ValueError):
    """The scene cannot be written as a bag (bad images, sizes, missing files)."""


@dataclass
class SceneFrame:
    """One RGB-D image to record. ``depth_mm``: HxW uint16 millimetres, 0 = no reading."""

    rgb: NDArray[np.uint8]
    depth_mm: NDArray[np.uint16]
    camera: CameraModel
    im_id: int = 0
    T_cam_base: NDArray[np.float64] | None = None  # filled by the writer when not given
    extra: dict[str, Any] = field(default_factory=dict)


def _stamp(ns: int) -> tuple[int, int]:
    return ns // 1_000_000_000, ns % 1_000_000_000


def table_base_transform(depth_m: NDArray[np.float32], camera: CameraModel, stride: int = 4) -> NDArray[np.float64]:
    """``T_cam_base`` of a robot base standing on the table seen in ``depth_m`` (the scene's world frame)."""
    pts = backproject_depth(depth_m, camera, stride=stride)
    plane, _ = fit_plane_ransac(pts, distance_threshold=0.01, iterations=500)
    return world_from_plane(plane)


def read_bop_scene_frames(scene_dir: str | Path, im_ids: Sequence[int] | None = None) -> list[SceneFrame]:
    """Frames of a BOP scene directory (``scene_camera.json``, ``rgb/``, ``depth/``), depth in mm.

    The camera's pose relative to the scene's first frame comes from ``scene_gt.json`` when present
    (objects are static in a BOP scene), stored in ``extra["T_cam_cam0"]``.
    """
    import cv2

    scene = Path(scene_dir)
    cam_file = scene / "scene_camera.json"
    if not cam_file.is_file():
        raise BagWriteError(f"{scene} is not a BOP scene: no scene_camera.json")
    cams = json.loads(cam_file.read_text())
    gts = json.loads((scene / "scene_gt.json").read_text()) if (scene / "scene_gt.json").is_file() else {}
    ids = sorted(int(k) for k in cams) if im_ids is None else [int(i) for i in im_ids]
    frames: list[SceneFrame] = []
    first_poses: dict[tuple[int, int], NDArray[np.float64]] = {}
    for im_id in ids:
        entry = cams.get(str(im_id))
        if entry is None:
            raise BagWriteError(f"image {im_id} is not in {cam_file}")
        rgb_path = next((p for p in (scene / "rgb" / f"{im_id:06d}.png", scene / "rgb" / f"{im_id:06d}.jpg")
                         if p.is_file()), None)
        depth_path = scene / "depth" / f"{im_id:06d}.png"
        if rgb_path is None or not depth_path.is_file():
            raise BagWriteError(f"image {im_id}: missing rgb or depth file in {scene}")
        bgr = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
        depth = cv2.imread(str(depth_path), cv2.IMREAD_ANYDEPTH)
        if bgr is None or depth is None:
            raise BagWriteError(f"image {im_id}: unreadable rgb or depth file")
        scale = float(entry.get("depth_scale", 1.0))
        depth_mm = np.clip(np.rint(depth.astype(np.float64) * scale), 0, 65535).astype(np.uint16)
        cam = CameraModel.from_bop(entry, width=bgr.shape[1], height=bgr.shape[0])
        fr = SceneFrame(rgb=np.ascontiguousarray(bgr[:, :, ::-1]), depth_mm=depth_mm, camera=cam, im_id=im_id)
        # camera motion from static objects: T_cam_cam0 = T_cam_obj @ inv(T_cam0_obj)
        rel = []
        for k, g in enumerate(gts.get(str(im_id), [])):
            T = np.eye(4)
            T[:3, :3] = np.asarray(g["cam_R_m2c"], float).reshape(3, 3)
            T[:3, 3] = np.asarray(g["cam_t_m2c"], float) / 1000.0
            key = (int(g["obj_id"]), k)
            if key not in first_poses:
                first_poses[key] = T
            rel.append(T @ invert_transform(first_poses[key]))
        if rel:
            fr.extra["T_cam_cam0"] = rel[0]
        frames.append(fr)
    world_file = scene / "scene_world.json"
    if world_file.is_file():  # our synthetic scenes: the exact world (table) frame per image
        world = json.loads(world_file.read_text()).get("frames", {})
        T_wc = {int(k): np.asarray(v["T_world_cam"], float) for k, v in world.items() if "T_world_cam" in v}
        if all(fr.im_id in T_wc for fr in frames):
            T_world_base = base_on_table(T_wc[frames[0].im_id])
            for fr in frames:
                fr.T_cam_base = invert_transform(T_wc[fr.im_id]) @ T_world_base
    return frames


def base_on_table(T_world_cam: NDArray[np.float64]) -> NDArray[np.float64]:
    """``T_world_base`` of a robot base standing on the table (world z up, table at z = 0) below the
    camera, its x axis pointing along the table towards the world origin (the objects)."""
    c = np.asarray(T_world_cam, float)[:3, 3]
    origin = np.array([c[0], c[1], 0.0])
    x = -origin.copy()
    if np.linalg.norm(x[:2]) < 1e-6:  # camera straight above the origin: use its viewing direction
        x = np.asarray(T_world_cam, float)[:3, 2].copy()
    x[2] = 0.0
    x /= np.linalg.norm(x)
    z = np.array([0.0, 0.0, 1.0])
    return make_transform(np.stack([x, np.cross(z, x), z], axis=1), origin)


def _image_msg(ts: Any, stamp_ns: int, frame_id: str, img: np.ndarray, encoding: str) -> Any:
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    h, w = img.shape[:2]
    data = np.ascontiguousarray(img).reshape(-1).view(np.uint8)
    step = w * (img.shape[2] if img.ndim == 3 else 1) * img.dtype.itemsize
    return Image(header=Header(stamp=Time(*_stamp(stamp_ns)), frame_id=frame_id), height=h, width=w,
                 encoding=encoding, is_bigendian=0, step=step, data=data)


def _info_msg(ts: Any, stamp_ns: int, frame_id: str, cam: CameraModel) -> Any:
    d = cam.to_camera_info_dict()
    CameraInfo = ts.types["sensor_msgs/msg/CameraInfo"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    RegionOfInterest = ts.types["sensor_msgs/msg/RegionOfInterest"]
    return CameraInfo(header=Header(stamp=Time(*_stamp(stamp_ns)), frame_id=frame_id), height=cam.height,
                      width=cam.width, distortion_model=d["distortion_model"], d=np.asarray(d["d"], np.float64),
                      k=np.asarray(d["k"], np.float64), r=np.asarray(d["r"], np.float64),
                      p=np.asarray(d["p"], np.float64), binning_x=0, binning_y=0,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _tf_msg(ts: Any, stamp_ns: int, T_parent_child: np.ndarray, parent: str, child: str) -> Any:
    g = ts.types
    q = quat_from_matrix(T_parent_child[:3, :3])
    t = T_parent_child[:3, 3]
    tr = g["geometry_msgs/msg/TransformStamped"](
        header=g["std_msgs/msg/Header"](stamp=g["builtin_interfaces/msg/Time"](*_stamp(stamp_ns)), frame_id=parent),
        child_frame_id=child,
        transform=g["geometry_msgs/msg/Transform"](
            translation=g["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
            rotation=g["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))
    return g["tf2_msgs/msg/TFMessage"](transforms=[tr])


def write_bag(out: str | Path, frames: Iterable[SceneFrame], *, records: Iterable[Any] = (),
              start_ns: int = 1_700_000_000_000_000_000, period_ns: int = 200_000_000,
              base_frame: str = BASE_FRAME, camera_frame: str = CAMERA_FRAME,
              static_tolerance_m: float = 1e-4, scene_dir: str | Path | None = None) -> Path:
    """Write ``frames`` as a rosbag2 directory ``out`` (mcap storage) plus the ground-truth side files.

    ``records``: QA records (objects with ``to_line()``) of these images, copied to ``RECORDS_FILE``.
    Each frame's ``T_cam_base`` defaults to the table frame of the first frame's depth carried along
    the camera motion (``extra["T_cam_cam0"]``). Returns ``out``. ``out`` must not exist yet.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    frames = list(frames)
    if not frames:
        raise BagWriteError("no frames to write")
    out = Path(out)
    if out.exists():
        raise BagWriteError(f"{out} exists already (rosbag2 writers refuse to overwrite)")
    for i, fr in enumerate(frames):
        rgb, dep = np.asarray(fr.rgb), np.asarray(fr.depth_mm)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise BagWriteError(f"frame {i}: rgb must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
        if dep.dtype != np.uint16 or dep.shape != rgb.shape[:2]:
            raise BagWriteError(f"frame {i}: depth must be uint16 millimetres of the rgb size, got {dep.dtype} "
                                f"{dep.shape}")
        if (fr.camera.width, fr.camera.height) != (rgb.shape[1], rgb.shape[0]):
            raise BagWriteError(f"frame {i}: camera is {fr.camera.width}x{fr.camera.height}, image "
                                f"{rgb.shape[1]}x{rgb.shape[0]}")
    # the robot base on the table, carried along the camera motion
    T_cam0_base = frames[0].T_cam_base
    if T_cam0_base is None:
        T_cam0_base = table_base_transform(depth_to_metres(frames[0].depth_mm), frames[0].camera)
    for fr in frames:
        if fr.T_cam_base is None:
            fr.T_cam_base = fr.extra.get("T_cam_cam0", np.eye(4)) @ T_cam0_base
    T_base_cams = [invert_transform(fr.T_cam_base) for fr in frames]
    static = all(np.allclose(T, T_base_cams[0], atol=static_tolerance_m) for T in T_base_cams)

    ts = get_typestore(Stores.ROS2_JAZZY)
    stamps = [start_ns + i * period_ns for i in range(len(frames))]
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_color = w.add_connection(COLOR_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        c_depth = w.add_connection(DEPTH_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        c_info = w.add_connection(INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_tf = w.add_connection(TF_STATIC_TOPIC if static else TF_TOPIC, "tf2_msgs/msg/TFMessage", typestore=ts)
        if static:
            msg = _tf_msg(ts, stamps[0], T_base_cams[0], base_frame, camera_frame)
            w.write(c_tf, stamps[0] - 1, ts.serialize_cdr(msg, "tf2_msgs/msg/TFMessage"))
        for fr, st, T_bc in zip(frames, stamps, T_base_cams):
            if not static:
                w.write(c_tf, st, ts.serialize_cdr(_tf_msg(ts, st, T_bc, base_frame, camera_frame),
                                                   "tf2_msgs/msg/TFMessage"))
            w.write(c_info, st, ts.serialize_cdr(_info_msg(ts, st, camera_frame, fr.camera),
                                                 "sensor_msgs/msg/CameraInfo"))
            w.write(c_color, st, ts.serialize_cdr(_image_msg(ts, st, camera_frame, fr.rgb, "rgb8"),
                                                  "sensor_msgs/msg/Image"))
            w.write(c_depth, st, ts.serialize_cdr(_image_msg(ts, st, camera_frame, fr.depth_mm, "16UC1"),
                                                  "sensor_msgs/msg/Image"))
    gt = {
        "version": 1,
        "base_frame": base_frame,
        "camera_frame": camera_frame,
        "static_camera": static,
        "table_height_base": 0.0,  # base_link stands on the table
        "scene_dir": str(Path(scene_dir).resolve()) if scene_dir is not None else None,
        "frames": [{"index": i, "stamp_ns": st, "im_id": fr.im_id, "T_base_cam": T.tolist()}
                   for i, (fr, st, T) in enumerate(zip(frames, stamps, T_base_cams))],
    }
    (out / GT_FILE).write_text(json.dumps(gt, indent=1))
    lines = [r.to_line() for r in records]
    (out / RECORDS_FILE).write_text("".join(line + "\n" for line in lines))
    return out


def bop_scene_to_bag(scene_dir: str | Path, out: str | Path, *, records: Iterable[Any] = (),
                     im_ids: Sequence[int] | None = None, **kwargs: Any) -> Path:
    """Convert a BOP scene (real or synthetic) to a rosbag2 mcap with ground-truth side files."""
    kwargs.setdefault("scene_dir", scene_dir)
    return write_bag(out, read_bop_scene_frames(scene_dir, im_ids), records=records, **kwargs)
