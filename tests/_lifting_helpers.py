"""Small synthetic RGB-D scenes for the lifting tests: a table plane plus boxes and cylinders, rendered
to an exact depth image with open3d's RaycastingScene (CPU), with holes punched in on request."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from bopask_vlm.geometry import CameraModel, Plane, invert_transform, make_transform, transform_points


@dataclass
class SynthScene:
    camera: CameraModel
    T_cam_world: np.ndarray  # world: z up, origin on the table
    depth_m: np.ndarray  # float32 metres, NaN = missing
    object_ids: np.ndarray  # (H, W) int: -1 miss, 0 table, 1.. objects
    plane_cam: Plane  # the table top in the camera frame
    objects: list[dict] = field(default_factory=list)  # kind, centre (world), size
    raycaster: o3d.t.geometry.RaycastingScene | None = None


def look_at(eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """T_world_cam of an optical camera (z forward, y down) at ``eye`` looking at ``target``."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye)


def make_camera(width: int = 320, height: int = 240, f: float | None = None) -> CameraModel:
    f = f if f is not None else 0.9 * width
    K = np.array([[f, 0.0, (width - 1) / 2.0 + 1.3], [0.0, f * 1.01, (height - 1) / 2.0 - 0.7], [0, 0, 1]])
    return CameraModel(K=K, width=width, height=height)


def render_scene(camera: CameraModel | None = None, eye: tuple[float, float, float] = (-0.45, 0.05, 0.45),
                 target: tuple[float, float, float] = (0.0, 0.0, 0.03), objects: list[dict] | None = None,
                 table_size: float = 3.0) -> SynthScene:
    """Render a table (plane z=0 in the world) with boxes/cylinders standing on it."""
    camera = camera or make_camera()
    if objects is None:
        objects = [
            {"kind": "box", "centre": (0.0, 0.0), "size": (0.10, 0.14, 0.12), "yaw": 0.3},
            {"kind": "cylinder", "centre": (0.05, 0.20), "radius": 0.04, "height": 0.15},
            {"kind": "box", "centre": (0.12, -0.16), "size": (0.06, 0.06, 0.05), "yaw": -0.5},
        ]
    scene = o3d.t.geometry.RaycastingScene()
    ids = [scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(m)) for m in _meshes(objects, table_size)]
    T_world_cam = look_at(np.asarray(eye, float), np.asarray(target, float))
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    rays_cam = camera.rays(np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64))  # z = 1
    dirs = rays_cam @ T_world_cam[:3, :3].T
    origin = np.broadcast_to(T_world_cam[:3, 3], dirs.shape)
    r = o3d.core.Tensor(np.concatenate([origin, dirs], axis=1).astype(np.float32))
    ans = scene.cast_rays(r)
    t = ans["t_hit"].numpy().reshape(camera.height, camera.width)  # in units of the z = 1 ray: depth z
    geom = ans["geometry_ids"].numpy().reshape(camera.height, camera.width).astype(np.int64)
    depth = np.where(np.isfinite(t), t, np.nan).astype(np.float32)
    invalid = o3d.t.geometry.RaycastingScene.INVALID_ID
    obj_ids = np.full(geom.shape, -1, dtype=np.int64)
    for k, gid in enumerate(ids):
        obj_ids[geom == gid] = k
    obj_ids[geom == invalid] = -1
    T_cam_world = invert_transform(T_world_cam)
    plane = Plane(np.array([0.0, 0.0, 1.0]), 0.0).transformed(T_cam_world).facing()
    return SynthScene(camera, T_cam_world, depth, obj_ids, plane, objects, scene)


def _meshes(objects: list[dict], table_size: float) -> list[o3d.geometry.TriangleMesh]:
    table = o3d.geometry.TriangleMesh.create_box(table_size, table_size, 0.01)
    table.translate((-table_size / 2, -table_size / 2, -0.01))
    out = [table]
    for ob in objects:
        if ob["kind"] == "box":
            sx, sy, sz = ob["size"]
            m = o3d.geometry.TriangleMesh.create_box(sx, sy, sz)
            m.translate((-sx / 2, -sy / 2, 0.0))
            m.rotate(_rotz(ob.get("yaw", 0.0)), center=(0, 0, 0))
        else:
            m = o3d.geometry.TriangleMesh.create_cylinder(ob["radius"], ob["height"], resolution=64)
            m.translate((0.0, 0.0, ob["height"] / 2))
        m.translate((ob["centre"][0], ob["centre"][1], 0.0))
        out.append(m)
    return out


def _rotz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def punch_holes(depth: np.ndarray, centres: np.ndarray, radius: int, rng: np.random.Generator | None = None,
                n_random: int = 0) -> np.ndarray:
    """Copy of ``depth`` with square holes (NaN) of half-size ``radius`` at pixel ``centres`` and at
    ``n_random`` random places."""
    d = depth.copy()
    h, w = d.shape
    pts = [tuple(np.rint(c).astype(int)) for c in np.atleast_2d(centres)] if len(centres) else []
    if rng is not None:
        pts += [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(n_random)]
    for u, v in pts:
        d[max(0, v - radius):v + radius + 1, max(0, u - radius):u + radius + 1] = np.nan
    return d


def surface_points(scene: SynthScene, object_id: int, n: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random sub-pixel positions on ``object_id`` whose whole (2*margin+1)^2 neighbourhood is that
    object and lies on one planar or smooth face (no crease: depth second differences small)."""
    ids = scene.object_ids
    h, w = ids.shape
    ok = ids == object_id
    for dv in range(-margin, margin + 1):
        for du in range(-margin, margin + 1):
            ok &= np.roll(np.roll(ids, dv, axis=0), du, axis=1) == object_id
    ok[:margin + 1] = ok[-margin - 1:] = False
    ok[:, :margin + 1] = ok[:, -margin - 1:] = False
    inv = 1.0 / scene.depth_m.astype(np.float64)
    lap_u = np.abs(np.roll(inv, 1, 1) + np.roll(inv, -1, 1) - 2 * inv)
    lap_v = np.abs(np.roll(inv, 1, 0) + np.roll(inv, -1, 0) - 2 * inv)
    crease = (lap_u > 1e-3) | (lap_v > 1e-3)
    near_crease = crease.copy()
    for dv in range(-margin - 1, margin + 2):
        for du in range(-margin - 1, margin + 2):
            near_crease |= np.roll(np.roll(crease, dv, axis=0), du, axis=1)
    ok &= ~near_crease
    vv, uu = np.nonzero(ok)
    if vv.size < n:
        raise RuntimeError(f"only {vv.size} clean pixels on object {object_id}")
    k = rng.choice(vv.size, size=n, replace=False)
    return np.stack([uu[k], vv[k]], axis=1) + rng.uniform(-0.45, 0.45, size=(n, 2))


def true_points(scene: SynthScene, pixels: np.ndarray) -> np.ndarray:
    """Exact camera-frame 3D points where the (sub-pixel) pixel rays hit the scene."""
    T_world_cam = invert_transform(scene.T_cam_world)
    rays = scene.camera.rays(np.asarray(pixels, float)) @ T_world_cam[:3, :3].T
    origin = np.broadcast_to(T_world_cam[:3, 3], rays.shape)
    r = o3d.core.Tensor(np.concatenate([origin, rays], axis=1).astype(np.float32))
    t = scene.raycaster.cast_rays(r)["t_hit"].numpy().astype(np.float64)
    return transform_points(scene.T_cam_world, origin + rays * t[:, None])
