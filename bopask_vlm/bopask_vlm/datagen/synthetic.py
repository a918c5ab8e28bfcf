"""Synthetic tabletop scenes written in the BOP layout, rendered on the CPU.

Objects (coloured primitives, plus the real LineMOD watering can from ``/work/shared/data`` when present)
rest in stable poses on a textured table; a camera looks down at an angle and moves between frames while
the objects stay put. Depth and per-object masks come from open3d's ``RaycastingScene``; RGB is shaded
here (per-object colour, Lambert + ambient light, a checker/wood table texture). Optional RealSense-like
depth noise: z-dependent Gaussian noise, dropout at depth edges and random holes. Deterministic per seed.

Layout written under ``out_dir`` (BOP: ``<dataset>/models``, ``<dataset>/<split>/<scene>``)::

    models/models_info.json, models/obj_%06d.ply (mm)
    test/%06d/scene_camera.json, scene_gt.json, scene_gt_info.json, scene_world.json,
              rgb/%06d.png, depth/%06d.png (uint16 mm), mask/ and mask_visib/%06d_%06d.png

``scene_world.json`` (not BOP): per frame ``T_world_cam`` (metres; world z up, origin on the table top)
and the table plane ``[a, b, c, d]`` in world and camera coordinates.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bopask_vlm.geometry import invert_transform, make_transform

REAL_MESH = Path(os.environ.get("BOPASK_SHARED_DATA", "/work/shared/data")) / "lm_real_frame" / "obj_000005.ply"
SPLIT = "test"
TABLE_SIZE = (1.6, 1.6)  # metres, x by y, centred on the world origin


#: ``bopask synth``'s chance that an object rests on another (:func:`place_objects`): without stacking,
#: every "above"/"below" answer is No and nothing ever has to be moved first (4,210 of 4,210 rearrangement
#: answers were [] before).
STACK_PROBABILITY = 0.35


class SyntheticSceneError(ValueError):
    """Invalid arguments for a synthetic scene."""


@dataclass(frozen=True)
class CatalogObject:
    obj_id: int
    name: str
    shape: str  # box | cylinder | sphere | cone | mesh
    dims: tuple[float, ...]  # metres: box (x, y, z); cylinder/cone (radius, height); sphere (radius,)
    color: tuple[int, int, int]  # RGB


#: The synthetic object set (BOP object ids). Object 5 is the real watering can when its mesh exists.
CATALOG: tuple[CatalogObject, ...] = (
    CatalogObject(1, "red box", "box", (0.07, 0.05, 0.11), (200, 40, 35)),
    CatalogObject(2, "blue can", "cylinder", (0.034, 0.12), (40, 70, 200)),
    CatalogObject(3, "green block", "box", (0.12, 0.06, 0.045), (50, 170, 60)),
    CatalogObject(4, "yellow ball", "sphere", (0.035,), (235, 205, 40)),
    CatalogObject(5, "orange bottle", "cylinder", (0.028, 0.17), (240, 130, 30)),
    CatalogObject(6, "purple cube", "box", (0.055, 0.055, 0.055), (130, 60, 170)),
    CatalogObject(7, "white cone", "cone", (0.032, 0.1), (225, 225, 220)),
    CatalogObject(8, "cyan mug", "cylinder", (0.036, 0.09), (40, 190, 200)),
)
WATERING_CAN = CatalogObject(5, "watering can", "mesh", (), (150, 150, 155))


def catalog(use_real_mesh: bool = True) -> list[CatalogObject]:
    """The object set; the real mesh replaces object 5 when available and wanted."""
    out = list(CATALOG)
    if use_real_mesh and REAL_MESH.is_file():
        out[4] = WATERING_CAN
    return out


def object_mesh(obj: CatalogObject) -> Any:
    """Trimesh of an object in its model frame (metres, centred on its bounding box)."""
    import trimesh

    if obj.shape == "box":
        m = trimesh.creation.box(extents=obj.dims)
    elif obj.shape == "cylinder":
        m = trimesh.creation.cylinder(radius=obj.dims[0], height=obj.dims[1], sections=40)
    elif obj.shape == "sphere":
        m = trimesh.creation.icosphere(subdivisions=3, radius=obj.dims[0])
    elif obj.shape == "cone":
        m = trimesh.creation.cone(radius=obj.dims[0], height=obj.dims[1], sections=40)
        m.apply_translation([0, 0, -obj.dims[1] / 2])
    elif obj.shape == "mesh":
        m = trimesh.load(REAL_MESH, process=False, force="mesh")
        m.apply_scale(0.001)
        m.apply_translation(-m.bounds.mean(axis=0))
    else:  # pragma: no cover - catalogue is static
        raise SyntheticSceneError(f"unknown shape {obj.shape}")
    return m


def write_models(models_dir: Path, objects: list[CatalogObject]) -> dict[int, Any]:
    """Write ``obj_%06d.ply`` (mm) and ``models_info.json``; returns the metre meshes by id."""
    models_dir.mkdir(parents=True, exist_ok=True)
    meshes, info = {}, {}
    for obj in objects:
        m = object_mesh(obj)
        meshes[obj.obj_id] = m
        lo, hi = m.bounds * 1000.0
        size = hi - lo
        info[str(obj.obj_id)] = {
            "diameter": float(np.linalg.norm(size)) if obj.shape != "mesh" else float(
                np.max(np.linalg.norm(m.vertices[:, None] - m.vertices[None, ::max(1, len(m.vertices) // 300)],
                                      axis=2)) * 1000.0),
            "min_x": float(lo[0]), "min_y": float(lo[1]), "min_z": float(lo[2]),
            "size_x": float(size[0]), "size_y": float(size[1]), "size_z": float(size[2]),
        }
        ply = models_dir / f"obj_{obj.obj_id:06d}.ply"
        if not ply.is_file() or ply.stat().st_mtime < Path(__file__).stat().st_mtime:
            mm = m.copy()
            mm.apply_scale(1000.0)
            mm.export(ply)
    names = {str(o.obj_id): o.name for o in objects}
    _write_json(models_dir / "models_info.json", info)
    _write_json(models_dir / "object_names.json", names)
    return meshes


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _rot_z(a: float) -> NDArray[np.float64]:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _stable_rotation(obj: CatalogObject, rng: np.random.Generator) -> NDArray[np.float64]:
    """A stable resting orientation: boxes on any face, round objects upright, then a random yaw."""
    R = np.eye(3)
    if obj.shape == "box" and rng.random() < 0.35:  # lay the box on a side face
        R = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]) if rng.random() < 0.5 else \
            np.array([[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]])
    return _rot_z(float(rng.uniform(-np.pi, np.pi))) @ R


#: Shapes with a flat top another object can rest on (boxes on any face, upright cylinders).
FLAT_TOPS = ("box", "cylinder")


def _stack_on(obj: CatalogObject, v_rot: NDArray[np.float64], bases: list[tuple[int, NDArray[np.float64]]],
              objs: list[CatalogObject]) -> NDArray[np.float64] | None:
    """A translation putting ``obj`` (vertices ``v_rot`` already rotated) on the flat top of the lowest placed
    base (index, world vertices) whose top is wider than half of ``obj``'s footprint; None if none is. The
    lowest: a low base cannot be grasped from the side (the fingers would reach the table), so the object on
    it must be moved first (a rearrangement answer that is not empty)."""
    half = (v_rot[:, :2].max(0) - v_rot[:, :2].min(0)) / 2
    order = sorted(bases, key=lambda b: float(b[1][:, 2].max()))
    for i, vb in order:
        if objs[i].shape not in FLAT_TOPS:
            continue
        top = vb[vb[:, 2] >= vb[:, 2].max() - 1e-4]  # the base's top face
        lo, hi = top[:, :2].min(0), top[:, :2].max(0)
        if np.any(hi - lo < half):  # the top face must carry at least half of obj's footprint
            continue
        centre_b = (lo + hi) / 2
        centre_o = (v_rot[:, :2].max(0) + v_rot[:, :2].min(0)) / 2
        return np.array([centre_b[0] - centre_o[0], centre_b[1] - centre_o[1], vb[:, 2].max() - v_rot[:, 2].min()])
    return None


def place_objects(objs: list[CatalogObject], meshes: dict[int, Any], rng: np.random.Generator,
                  area: float = 0.42, gap: float = 0.015, stack: float = 0.0) -> list[NDArray[np.float64]]:
    """World poses of the objects: resting on z = 0, footprints (circles) not overlapping; with probability
    ``stack`` an object (not the first) rests on the flat top of one placed before it instead, centred on it
    (datagen's synthetic scenes: "above"/"below" answered Yes and objects that must be moved first to grasp
    the one below; the simulator places with 0)."""
    poses: list[NDArray[np.float64]] = []
    placed: list[tuple[float, float, float]] = []
    bases: list[tuple[int, NDArray[np.float64]]] = []  # (index, world vertices) of objects on the table
    for k, obj in enumerate(objs):
        if stack > 0 and bases and rng.random() < stack:
            R = _stable_rotation(obj, rng)
            v = meshes[obj.obj_id].vertices @ R.T
            t = _stack_on(obj, v, bases, objs)
            if t is not None:
                poses.append(make_transform(R, t))
                continue
        for _ in range(500):
            R = _stable_rotation(obj, rng)
            v = meshes[obj.obj_id].vertices @ R.T
            r = float(np.max(np.linalg.norm(v[:, :2] - (v[:, :2].max(0) + v[:, :2].min(0)) / 2, axis=1)))
            xy = rng.uniform(-area / 2, area / 2, size=2)
            if all(np.hypot(xy[0] - px, xy[1] - py) > r + pr + gap for px, py, pr in placed):
                break
        else:
            raise SyntheticSceneError("could not place the objects without overlap; use fewer objects")
        centre_xy = (v[:, :2].max(0) + v[:, :2].min(0)) / 2
        t = np.array([xy[0] - centre_xy[0], xy[1] - centre_xy[1], -v[:, 2].min()])
        placed.append((float(xy[0]), float(xy[1]), r))
        poses.append(make_transform(R, t))
        bases.append((k, v + t))
    return poses


def look_at(eye: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    """``T_world_cam`` of an OpenCV camera (z forward, y down) at ``eye`` looking at ``target``, world z up."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.array([0.0, 0.0, 1.0]))
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye)


def _camera_poses(n: int, rng: np.random.Generator) -> list[NDArray[np.float64]]:
    az0 = float(rng.uniform(-np.pi, np.pi))
    poses = []
    for k in range(n):
        az = az0 + k * float(rng.uniform(0.25, 0.6))
        el = float(rng.uniform(np.radians(40), np.radians(62)))
        dist = float(rng.uniform(0.65, 0.85))
        eye = np.array([dist * math.cos(el) * math.cos(az), dist * math.cos(el) * math.sin(az), dist * math.sin(el)])
        target = np.array([*rng.uniform(-0.04, 0.04, size=2), 0.0])
        poses.append(look_at(eye, target))
    return poses


def intrinsics(width: int, height: int) -> NDArray[np.float64]:
    """A RealSense-D435-like pinhole: ~69 degrees horizontal field of view at any resolution."""
    f = width / (2.0 * math.tan(math.radians(69.0) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _bbox(mask: NDArray[np.bool_]) -> list[int]:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [-1, -1, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _table_texture(pw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Light wood-like stripes with a faint checker, from world xy of table hits (0-1 RGB)."""
    x, y = pw[:, 0], pw[:, 1]
    grain = 0.5 + 0.5 * np.sin(60.0 * y + 4.0 * np.sin(7.0 * x))
    checker = ((np.floor(x / 0.1) + np.floor(y / 0.1)) % 2) * 0.06
    base = np.array([0.62, 0.48, 0.33])
    return np.clip(base[None] * (0.85 + 0.2 * grain[:, None]) + checker[:, None], 0, 1)


@dataclass(frozen=True)
class DepthModel:
    """An active-stereo depth camera's errors (defaults: Intel RealSense D435, depth imager 848x480, the
    realsense-ros driver's depth aligned to the colour image). Applied by :func:`add_depth_noise` with ``model``.

    - ``sigma0_m`` + ``subpixel`` x z^2 / (``focal_px`` x ``baseline_m``): the noise's standard deviation at depth
      z (m); the second term is the stereo RMS error (Intel's "depth RMS error" formula; subpixel 0.08 px, 50 mm
      baseline, 430 px focal length: 3.7 mm at 1 m).
    - ``shadow``: the stereo occlusion band left of every foreground edge (background the second imager cannot
      see), ``baseline_m`` x fx x (1/z_near - 1/z_far) pixels wide in the output image (fx its focal length).
    - ``edge_jump_m``: a depth jump larger than this (not a slope: the Laplacian of inverse depth, which is zero
      on planes) is a depth edge; there a pixel is a hole with probability ``edge_dropout``, else a flying pixel
      (depth anywhere between the edge's near and far side) with probability ``flying``.
    - ``thin_px``: surfaces narrower than this in the image (a rod, a handle, a rim seen edge-on) in front of
      something ``edge_jump_m`` farther give no depth.
    - ``hole_blobs``: the range of elliptic holes per image (specular or texture-less spots).
    - ``min_range_m`` / ``max_range_m``: nothing nearer / farther.
    """

    sigma0_m: float = 0.0005
    subpixel: float = 0.08
    baseline_m: float = 0.050
    focal_px: float = 430.0
    shadow: bool = True
    edge_jump_m: float = 0.01
    edge_dropout: float = 0.35
    flying: float = 0.4
    thin_px: int = 4
    hole_blobs: tuple[int, int] = (1, 5)
    min_range_m: float = 0.2
    max_range_m: float = 6.0

    def sigma(self, z: NDArray[np.floating] | float) -> NDArray[np.floating] | float:
        """Noise standard deviation (m) at depth ``z`` (m)."""
        return self.sigma0_m + self.subpixel * np.square(z) / (self.focal_px * self.baseline_m)


#: named depth models: ``d435`` the RealSense D435 (see :class:`DepthModel`)
DEPTH_MODELS: dict[str, DepthModel] = {"d435": DepthModel()}


def _stereo_shadow(d: NDArray[np.float32], valid: NDArray[np.bool_], band_px_m: float) -> NDArray[np.bool_]:
    """Pixels hidden from the second imager: some pixel s columns to the right is nearer by at least s pixels of
    disparity, ``band_px_m`` x (1/z_near - 1/z) >= s (``band_px_m`` = baseline x focal length). One pass from the
    right keeps ``reach(c) = max over s >= 1 of disparity(c + s) - s`` (reach(c) = max(disparity(c + 1),
    reach(c + 1)) - 1), a row-vectorised recurrence instead of one full-image shift per disparity step."""
    disp = np.where(valid, band_px_m / np.where(valid, d, 1.0), -np.inf).astype(np.float32)
    reach = np.full(d.shape, -np.inf, np.float32)
    run = np.full(d.shape[0], -np.inf, np.float32)
    for c in range(d.shape[1] - 2, -1, -1):
        run = np.maximum(run, disp[:, c + 1]) - 1.0
        reach[:, c] = run
    return valid & (reach >= disp)


def _model_depth_noise(depth: NDArray[np.float32], rng: np.random.Generator, m: DepthModel,
                       fx: float) -> NDArray[np.float32]:
    ideal = np.asarray(depth, np.float32)
    valid = np.isfinite(ideal) & (ideal > m.min_range_m) & (ideal < m.max_range_m)
    dv = np.where(valid, ideal, 0).astype(np.float32)
    k3 = np.ones((3, 3), np.uint8)
    far = np.where(valid, ideal, m.max_range_m).astype(np.float32)  # no reading counts as far behind
    lo, hi = cv2.erode(far, k3), cv2.dilate(far, k3)
    # a depth edge is a jump, not a slope: inverse depth is affine in the pixel coordinates on any plane, so its
    # Laplacian (times z^2: back to metres) is zero on a table seen at a grazing angle and large across a jump
    lap = cv2.Laplacian((1.0 / far).astype(np.float32), cv2.CV_32F, ksize=1)
    edge = valid & (np.abs(lap) * np.square(far) > m.edge_jump_m) & (hi - lo > m.edge_jump_m)
    d = dv + rng.standard_normal(dv.shape).astype(np.float32) * np.asarray(m.sigma(dv), np.float32)
    fly = edge & (rng.random(d.shape) < m.flying)
    d[fly] = (lo + rng.random(d.shape).astype(np.float32) * (hi - lo))[fly]
    holes = edge & ~fly & (rng.random(d.shape) < m.edge_dropout / max(1e-9, 1.0 - m.flying))
    if m.thin_px > 1:
        kt = np.ones((m.thin_px, m.thin_px), np.uint8)
        holes |= valid & (cv2.erode(cv2.dilate(far, kt), kt) - far > m.edge_jump_m)  # closing: thin near parts
    if m.shadow:
        holes |= _stereo_shadow(dv, valid, m.baseline_m * fx)
    h, w = d.shape
    blobs = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(m.hole_blobs[0], m.hole_blobs[1] + 1))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(2, max(3, w // 60))), int(rng.integers(2, max(3, h // 60))))
        cv2.ellipse(blobs, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    d[holes | (blobs > 0) | ~valid] = 0
    return d


def add_depth_noise(depth: NDArray[np.float32], rng: np.random.Generator, model: DepthModel | str | None = None,
                    fx: float | None = None) -> NDArray[np.float32]:
    """RealSense-like noise on an ideal depth image (metres, 0 or NaN = none); 0 where no reading.

    ``model`` None: the synthetic scenes' model (sigma ~ 1 mm + 2.5 mm * z^2, dropout along depth edges, random
    hole blobs). A :class:`DepthModel` or a name of :data:`DEPTH_MODELS` (``d435``): that camera's noise, stereo
    shadows, edge holes, flying pixels and thin-part holes; ``fx``: the image's focal length (pixels), for the
    width of the shadows (default the model's ``focal_px``).
    """
    if model is not None:
        if isinstance(model, str):
            if model not in DEPTH_MODELS:
                raise SyntheticSceneError(f"unknown depth model {model!r}; known: {sorted(DEPTH_MODELS)}")
            model = DEPTH_MODELS[model]
        return _model_depth_noise(depth, rng, model, float(fx if fx is not None else model.focal_px))
    d = depth.copy()
    valid = np.isfinite(d) & (d > 0)
    sigma = 0.001 + 0.0025 * np.where(valid, d, 0) ** 2
    d = d + (rng.standard_normal(d.shape).astype(np.float32) * sigma.astype(np.float32))
    # edges: large depth jumps in a 3x3 neighbourhood
    dd = np.where(valid, depth, 0).astype(np.float32)
    jump = cv2.dilate(dd, np.ones((3, 3), np.uint8)) - cv2.erode(dd, np.ones((3, 3), np.uint8))
    edge = jump > 0.02
    d[edge & (rng.random(d.shape) < 0.6)] = 0
    h, w = d.shape
    holes = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(2, max(3, w // 60))), int(rng.integers(2, max(3, h // 60))))
        cv2.ellipse(holes, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    d[holes > 0] = 0
    d[~valid] = 0
    return d


def make_scene(out_dir: str | Path, seed: int = 0, num_objects: int = 5, num_frames: int = 3, width: int = 640,
               height: int = 480, noise: bool = True, *, scene_id: int | None = None, duplicates: bool = True,
               use_real_mesh: bool = True, split: str = SPLIT, stack: float = 0.0) -> Path:
    """Write one synthetic BOP scene under ``out_dir`` and return its directory
    (``out_dir/<split>/<scene_id:06d>``; models in ``out_dir/models``).

    ``scene_id`` defaults to ``seed``. With ``duplicates`` a scene may hold two instances of one object.
    ``stack``: the chance that an object rests on another (:func:`place_objects`; ``bopask synth`` uses
    :data:`STACK_PROBABILITY`).
    """
    import open3d as o3d

    if not (1 <= num_objects <= 12):
        raise SyntheticSceneError(f"num_objects must be 1..12, got {num_objects}")
    if num_frames < 1:
        raise SyntheticSceneError(f"num_frames must be >= 1, got {num_frames}")
    if width < 32 or height < 32:
        raise SyntheticSceneError(f"image too small: {width}x{height}")
    out = Path(out_dir)
    sid = int(seed if scene_id is None else scene_id)
    rng = np.random.default_rng([int(seed), 7919])
    objs_all = catalog(use_real_mesh)
    meshes = write_models(out / "models", objs_all)
    by_id = {o.obj_id: o for o in objs_all}
    k = min(num_objects, len(objs_all))
    ids = [int(i) for i in rng.choice([o.obj_id for o in objs_all], size=k, replace=False)]
    if duplicates and num_objects >= 3 and rng.random() < 0.5:
        ids[-1] = ids[0]
    while len(ids) < num_objects:
        ids.append(ids[len(ids) % k])
    objs = [by_id[i] for i in ids]
    poses_w = place_objects(objs, meshes, rng, stack=stack)
    cams_w = _camera_poses(num_frames, rng)
    K = intrinsics(width, height)

    # one raycasting scene holding the table (id 0) and every instance (ids 1..n), in world coordinates
    scene = o3d.t.geometry.RaycastingScene()
    tw, th = TABLE_SIZE
    table_v = np.array([[-tw / 2, -th / 2, 0], [tw / 2, -th / 2, 0], [tw / 2, th / 2, 0], [-tw / 2, th / 2, 0]],
                       np.float32)
    scene.add_triangles(table_v, np.array([[0, 1, 2], [0, 2, 3]], np.uint32))
    solo: list[Any] = []
    for obj, T in zip(objs, poses_w):
        m = meshes[obj.obj_id]
        v = (m.vertices @ T[:3, :3].T + T[:3, 3]).astype(np.float32)
        f = np.asarray(m.faces, np.uint32)
        scene.add_triangles(v, f)
        s = o3d.t.geometry.RaycastingScene()
        s.add_triangles(v, f)
        solo.append((s, v))

    sdir = out / split / f"{sid:06d}"
    for sub in ("rgb", "depth", "mask", "mask_visib"):
        (sdir / sub).mkdir(parents=True, exist_ok=True)
    uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix_dirs = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], axis=-1)
    colors = np.array([[0.0, 0.0, 0.0]] + [np.array(o.color) / 255.0 for o in objs])
    light = np.array([0.3, -0.4, 0.87])
    light /= np.linalg.norm(light)
    scene_camera, scene_gt, scene_info, world_frames = {}, {}, {}, {}
    for im_id, T_wc in enumerate(cams_w):
        R, t = T_wc[:3, :3], T_wc[:3, 3]
        d_w = pix_dirs.reshape(-1, 3) @ R.T
        rays = np.concatenate([np.broadcast_to(t, d_w.shape), d_w], axis=1).astype(np.float32)
        ans = scene.cast_rays(o3d.core.Tensor(rays))
        t_hit = ans["t_hit"].numpy()  # along unnormalised dirs with z_cam = 1: t is the depth itself
        gid = ans["geometry_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t_hit)
        gid[~hit] = -1
        normals = ans["primitive_normals"].numpy()
        # shading
        lam = np.abs(normals @ light)
        view_facing = np.abs(np.sum(normals * (d_w / np.linalg.norm(d_w, axis=1, keepdims=True)), axis=1))
        shade = 0.35 + 0.5 * lam + 0.15 * view_facing
        col = np.zeros((d_w.shape[0], 3))
        obj_px = gid >= 1
        col[obj_px] = colors[gid[obj_px]]
        tab = gid == 0
        p_w = t + d_w[tab] * t_hit[tab, None]
        col[tab] = _table_texture(p_w)
        col *= shade[:, None]
        col[~hit] = np.array([0.18, 0.2, 0.24])  # floor / background far away
        rgb = np.clip(col * 255.0 + rng.normal(0, 2.0, col.shape), 0, 255).astype(np.uint8).reshape(height, width, 3)
        depth = np.where(hit, t_hit, 0).astype(np.float32).reshape(height, width)
        depth[~hit.reshape(height, width)] = 0
        if noise:
            depth = add_depth_noise(depth, rng)
        depth_mm = np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16)
        cv2.imwrite(str(sdir / "rgb" / f"{im_id:06d}.png"), rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        cv2.imwrite(str(sdir / "depth" / f"{im_id:06d}.png"), depth_mm, [cv2.IMWRITE_PNG_COMPRESSION, 1])

        T_cw = invert_transform(T_wc)
        gid_img = gid.reshape(height, width)
        gts, infos = [], []
        for j, (obj, T_wo) in enumerate(zip(objs, poses_w)):
            T_co = T_cw @ T_wo
            gts.append({"cam_R_m2c": T_co[:3, :3].reshape(-1).tolist(),
                        "cam_t_m2c": (T_co[:3, 3] * 1000.0).tolist(), "obj_id": obj.obj_id})
            # full silhouette: rays of the object's projected bounding box against the object alone
            s, v = solo[j]
            pc = v @ T_cw[:3, :3].T + T_cw[:3, 3]
            full = np.zeros((height, width), bool)
            if np.all(pc[:, 2] > 1e-3):
                uv = pc[:, :2] / pc[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
                u0, v0 = np.maximum(np.floor(uv.min(0)).astype(int) - 1, 0)
                u1, v1 = np.minimum(np.ceil(uv.max(0)).astype(int) + 2, [width, height])
                if u1 > u0 and v1 > v0:
                    sub = rays.reshape(height, width, 6)[v0:v1, u0:u1].reshape(-1, 6)
                    th_ = s.cast_rays(o3d.core.Tensor(np.ascontiguousarray(sub)))["t_hit"].numpy()
                    full[v0:v1, u0:u1] = np.isfinite(th_).reshape(v1 - v0, u1 - u0)
            vis = gid_img == (j + 1)
            n_full = int(full.sum())
            cv2.imwrite(str(sdir / "mask" / f"{im_id:06d}_{j:06d}.png"), full.astype(np.uint8) * 255)
            cv2.imwrite(str(sdir / "mask_visib" / f"{im_id:06d}_{j:06d}.png"), vis.astype(np.uint8) * 255)
            infos.append({"bbox_obj": _bbox(full), "bbox_visib": _bbox(vis), "px_count_all": n_full,
                          "px_count_valid": int((vis & (depth_mm > 0)).sum()), "px_count_visib": int(vis.sum()),
                          "visib_fract": float(vis.sum() / n_full) if n_full else 0.0})
        scene_gt[str(im_id)] = gts
        scene_info[str(im_id)] = infos
        T_wc_mm = T_wc.copy()
        T_wc_mm[:3, 3] *= 1000.0
        scene_camera[str(im_id)] = {"cam_K": K.reshape(-1).tolist(), "depth_scale": 1.0,
                                    "cam_R_w2c": T_cw[:3, :3].reshape(-1).tolist(),
                                    "cam_t_w2c": (T_cw[:3, 3] * 1000.0).tolist()}
        n_c = T_cw[:3, :3] @ np.array([0.0, 0.0, 1.0])
        world_frames[str(im_id)] = {"T_world_cam": T_wc.tolist(),
                                    "table_plane_cam": [*n_c.tolist(), float(-n_c @ T_cw[:3, 3])]}
    _write_json(sdir / "scene_camera.json", scene_camera)
    _write_json(sdir / "scene_gt.json", scene_gt)
    _write_json(sdir / "scene_gt_info.json", scene_info)
    _write_json(sdir / "scene_world.json", {
        "units": "metres", "world": "z up along the table normal, origin on the table top",
        "table_plane_world": [0.0, 0.0, 1.0, 0.0], "table_size": list(TABLE_SIZE), "frames": world_frames,
        "objects": [{"obj_id": o.obj_id, "name": o.name, "T_world_obj": T.tolist()} for o, T in zip(objs, poses_w)],
        "seed": int(seed), "width": width, "height": height})
    return sdir
