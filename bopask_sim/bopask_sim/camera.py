"""A RealSense-D435-like colour camera in pybullet: intrinsics, placement from the robot's calibration file, and
rendering to what the realsense-ros driver publishes (RGB, aligned depth in metres, with the synthetic scenes'
depth noise and holes model from :mod:`bopask_vlm.datagen.synthetic`).

pybullet pitfalls handled here (``../shared/ENVIRONMENT.md``): view and projection matrices are column-major
(flattened with ``order="F"``); the OpenGL camera looks along -z with y up, so the optical frame (z forward,
y down) is flipped in y and z; the depth buffer is non-linear, ``z = far*near / (far - (far-near)*d)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from bopask_vlm.geometry import CameraModel, invert_transform, make_transform

CAMERA_FRAME = "camera_color_optical_frame"
#: D435 colour stream intrinsics (fx, fy, cx, cy) at the two resolutions the driver is usually run at
D435_INTRINSICS: dict[tuple[int, int], tuple[float, float, float, float]] = {
    (640, 480): (615.4, 615.7, 322.3, 238.6),
    (1280, 720): (923.1, 923.5, 643.4, 357.9),
}
#: camera_link (x forward, y left, z up) -> camera_color_optical_frame (z forward, x right, y down)
T_LINK_OPTICAL = make_transform(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.zeros(3))
#: the repository's nominal calibration (bopask_ros/config/camera_calibration.yaml), used when the file is absent
DEFAULT_CALIBRATION: dict[str, Any] = {"parent_frame": "panda_link0", "child_frame": "camera_link",
                                       "translation": [1.20, 0.0, 0.60],
                                       "rotation": [-0.3662725, 0.0, 0.9305076, 0.0]}


def look_at_calibration(eye_base: tuple[float, float, float], target_base: tuple[float, float, float],
                        parent_frame: str = "panda_link0") -> dict[str, Any]:
    """A calibration mapping (as the calibration file: ``camera_link`` in the robot base frame) of a camera at
    ``eye_base`` looking at ``target_base`` (base frame, metres), its image upright (camera_link z towards up)."""
    eye, target = np.asarray(eye_base, float), np.asarray(target_base, float)
    x = (target - eye) / np.linalg.norm(target - eye)  # camera_link: x forward, y left, z up
    y = np.cross([0.0, 0.0, 1.0], x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    q = Rotation.from_matrix(np.stack([x, y, z], axis=1)).as_quat()
    return {"parent_frame": parent_frame, "child_frame": "camera_link", "translation": eye.round(6).tolist(),
            "rotation": q.round(8).tolist()}


#: named camera placements: ``front`` the repository's calibration (high, 1.2 m in front of the robot, looking
#: back and down at the table); ``oblique`` lower and from the side (0.30 m above the table, 0.62 m to the robot's
#: right, 0.70 m from the objects, about 20 degrees above the table): objects hide each other more and the table
#: is seen at a grazing angle
VIEWPOINTS: dict[str, dict[str, Any] | None] = {
    "front": None,
    "oblique": look_at_calibration((0.78, -0.62, 0.30), (0.5, 0.0, 0.03)),
}


def viewpoint_calibration(name: str) -> dict[str, Any]:
    """The calibration mapping of a named viewpoint (:data:`VIEWPOINTS`)."""
    if name not in VIEWPOINTS:
        raise CalibrationError(f"unknown viewpoint {name!r}; known: {sorted(VIEWPOINTS)}")
    return read_calibration(VIEWPOINTS[name])


class CalibrationError(ValueError):
    """A calibration file or mapping that does not describe a rigid camera placement."""


def d435_camera(width: int = 640, height: int = 480) -> CameraModel:
    """The D435 colour camera model at 640x480 or 1280x720."""
    try:
        fx, fy, cx, cy = D435_INTRINSICS[(int(width), int(height))]
    except KeyError as e:
        raise ValueError(f"D435 intrinsics known for {sorted(D435_INTRINSICS)}, not {width}x{height}") from e
    return CameraModel(K=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), width=int(width),
                       height=int(height))


def default_calibration_path() -> Path | None:
    """``bopask_ros/config/camera_calibration.yaml`` of this workspace (source tree or installed share)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "bopask_ros" / "config" / "camera_calibration.yaml",):
        if cand.is_file():
            return cand
    try:
        import bopask_ros

        p = Path(bopask_ros.__file__).resolve().parents[1] / "config" / "camera_calibration.yaml"
        return p if p.is_file() else None
    except ImportError:  # pragma: no cover - bopask_ros is a dependency
        return None


def read_calibration(source: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """The calibration mapping (keys and meaning as ``bopask_ros/config/camera_calibration.yaml`` and the
    launch file's reader: ``parent_frame``, ``child_frame``, ``translation`` [x y z], ``rotation``
    [qx qy qz qw]); ``None``: the repository's file, else its nominal values."""
    import yaml

    if source is None:
        p = default_calibration_path()
        source = p if p is not None else dict(DEFAULT_CALIBRATION)
    if isinstance(source, (str, Path)):
        try:
            cal = yaml.safe_load(Path(source).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise CalibrationError(f"cannot read calibration {source}: {e}") from e
    else:
        cal = dict(source)
    try:
        t = [float(v) for v in cal["translation"]]
        q = [float(v) for v in cal["rotation"]]
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"calibration needs translation [x y z] and rotation [qx qy qz qw]: {e}") from e
    if len(t) != 3 or len(q) != 4:
        raise CalibrationError("calibration translation needs 3 values, rotation 4 (qx qy qz qw)")
    n = math.sqrt(sum(v * v for v in q))
    if not 0.9 < n < 1.1:
        raise CalibrationError(f"calibration rotation is not a unit quaternion (norm {n:.3f})")
    return {"parent_frame": str(cal.get("parent_frame", "panda_link0")),
            "child_frame": str(cal.get("child_frame", "camera_link")), "translation": t,
            "rotation": [v / n for v in q]}


def T_parent_optical(cal: dict[str, Any]) -> NDArray[np.float64]:
    """Pose of ``camera_color_optical_frame`` in the calibration's parent frame (camera_link composed with the
    link -> optical rotation unless the calibration names the optical frame itself)."""
    T = make_transform(Rotation.from_quat(cal["rotation"]).as_matrix(), np.asarray(cal["translation"], float))
    return T if "optical" in cal["child_frame"] else T @ T_LINK_OPTICAL


def projection_matrix(camera: CameraModel, near: float, far: float) -> NDArray[np.float64]:
    """OpenGL projection (row-major 4x4) reproducing the pinhole ``camera`` exactly (principal point off centre
    included; OpenCV pixel centres at integer coordinates, image row 0 at the top)."""
    K, W, H = camera.K, camera.width, camera.height
    return np.array([
        [2 * K[0, 0] / W, 0.0, 1.0 - 2 * (K[0, 2] + 0.5) / W, 0.0],
        [0.0, 2 * K[1, 1] / H, 2 * (K[1, 2] + 0.5) / H - 1.0, 0.0],
        [0.0, 0.0, -(far + near) / (far - near), -2.0 * far * near / (far - near)],
        [0.0, 0.0, -1.0, 0.0]])


#: optical frame (z forward, y down) -> OpenGL camera frame (looks along -z, y up)
_OPTICAL_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def view_matrix(T_world_optical: NDArray[np.float64]) -> NDArray[np.float64]:
    """OpenGL view matrix (row-major 4x4, world -> GL camera) of an optical-frame camera pose."""
    return invert_transform(np.asarray(T_world_optical, float) @ _OPTICAL_TO_GL)


def linear_depth(buffer: NDArray[np.floating], near: float, far: float) -> NDArray[np.float32]:
    """Metric depth (z along the optical axis) from pybullet's non-linear depth buffer in [0, 1]."""
    d = np.asarray(buffer, dtype=np.float64)
    return (far * near / (far - (far - near) * d)).astype(np.float32)


@dataclass
class RenderedFrame:
    rgb: NDArray[np.uint8]
    depth_m: NDArray[np.float32]  # ideal depth (no noise), metres, 0 where nothing within ``far``
    seg: NDArray[np.int32]  # pybullet body unique id per pixel, -1 background


def render(client: int, camera: CameraModel, T_world_optical: NDArray[np.float64], near: float = 0.05,
           far: float = 4.0) -> RenderedFrame:
    """Render RGB, ideal depth and body segmentation with TinyRenderer (CPU, headless)."""
    import pybullet as p

    W, H = camera.width, camera.height
    view = view_matrix(T_world_optical).flatten(order="F").tolist()
    proj = projection_matrix(camera, near, far).flatten(order="F").tolist()
    _, _, rgba, dbuf, seg = p.getCameraImage(W, H, viewMatrix=view, projectionMatrix=proj,
                                             renderer=p.ER_TINY_RENDERER, lightDirection=[0.4, -0.3, 1.0],
                                             shadow=1, physicsClientId=client)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(H, W, 4)[:, :, :3].copy()
    d = linear_depth(np.asarray(dbuf, dtype=np.float32).reshape(H, W), near, far)
    d[d >= far * 0.999] = 0.0
    return RenderedFrame(rgb, d, np.asarray(seg, dtype=np.int32).reshape(H, W))


def realsense_depth(ideal_m: NDArray[np.float32], rng: np.random.Generator, model: Any = None,
                    fx: float | None = None) -> NDArray[np.float32]:
    """Depth as the driver publishes it, metres with NaN for no reading. ``model`` None: the synthetic scenes'
    RealSense-like noise, edge dropout and holes; a :class:`bopask_vlm.datagen.synthetic.DepthModel` or its name
    (``d435``): that camera's noise, stereo shadows, edge holes, flying pixels and thin-part holes (``fx``: the
    image's focal length in pixels)."""
    from bopask_vlm.datagen.synthetic import add_depth_noise  # one noise model for the data and the simulator

    d = add_depth_noise(np.asarray(ideal_m, np.float32), rng, model, fx)
    # the driver publishes 16UC1 millimetres: quantise like it does
    d = np.rint(d * 1000.0) / 1000.0
    out = d.astype(np.float32)
    out[~(out > 0)] = np.nan
    return out
