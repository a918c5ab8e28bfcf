"""Write a simulated scene in the BOP layout, so that the datagen pipeline computes its ground-truth answers
(grasps, trajectories, ...) from the same world the simulator then executes: one description of the world.

Layout (as :mod:`bopask_vlm.datagen.synthetic`)::

    <root>/models/models_info.json, object_names.json, obj_%06d.ply (mm)
    <root>/<split>/<scene_id:06d>/scene_camera.json, scene_gt.json, scene_gt_info.json, scene_world.json,
                                  rgb/, depth/ (uint16 mm), mask/, mask_visib/

``scene_world.json`` (not BOP) holds ``T_world_cam`` (world: the simulator's, z up, origin on the table top), the
robot base pose and the calibration, so that results can be carried back into the simulator.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bopask_sim.world import SimFrame, SimWorld
from bopask_vlm.geometry import CameraModel, invert_transform

SPLIT = "test"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def write_models(models_dir: Path, world: SimWorld) -> None:
    """The scene's object models: the synthetic catalogue's through its own writer, the meshes from
    ``pybullet_data`` added to the same ``models_info.json`` / ``object_names.json``, which keep the models other
    scenes wrote into the same directory (scenes of one root share ``models/``)."""
    from bopask_vlm.datagen import synthetic

    models_dir.mkdir(parents=True, exist_ok=True)
    info_p, names_p = models_dir / "models_info.json", models_dir / "object_names.json"
    old_info = json.loads(info_p.read_text()) if info_p.is_file() else {}
    old_names = json.loads(names_p.read_text()) if names_p.is_file() else {}
    objs = {i.obj.obj_id: i for i in world.instances}
    synthetic.write_models(models_dir, [i.obj.entry for i in objs.values() if i.obj.source in ("primitive", "real_mesh")])
    info = {**old_info, **json.loads(info_p.read_text())}
    names = {**old_names, **json.loads(names_p.read_text())}
    for oid, inst in objs.items():
        if inst.obj.source in ("primitive", "real_mesh"):
            continue
        m = inst.mesh.copy()
        m.apply_scale(1000.0)
        lo, hi = m.bounds
        size = hi - lo
        hv = m.convex_hull.vertices  # the diameter is the hull's
        info[str(oid)] = {"diameter": float(np.max(np.linalg.norm(hv[:, None] - hv[None], axis=2))),
                          "min_x": float(lo[0]), "min_y": float(lo[1]), "min_z": float(lo[2]),
                          "size_x": float(size[0]), "size_y": float(size[1]), "size_z": float(size[2])}
        names[str(oid)] = inst.name
        m.export(models_dir / f"obj_{oid:06d}.ply")
    _write_json(models_dir / "models_info.json", info)
    _write_json(models_dir / "object_names.json", names)


def silhouette(mesh: Any, T_cam_obj: NDArray[np.float64], camera: CameraModel) -> NDArray[np.bool_]:
    """Full (unoccluded) mask of a mesh: its triangles projected and filled."""
    v = mesh.vertices @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
    out = np.zeros((camera.height, camera.width), np.uint8)
    if np.any(v[:, 2] <= 1e-3):
        return out.astype(bool)
    uv = camera.project(v)
    tris = np.rint(uv[np.asarray(mesh.faces)] * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    for t in tris:  # one call per triangle: fillPoly with many contours leaves their overlaps empty (even-odd)
        cv2.fillConvexPoly(out, t, 1, lineType=cv2.LINE_8, shift=2)
    return out.astype(bool)


def _bbox(mask: NDArray[np.bool_]) -> list[int]:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [-1, -1, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def write_bop_scene(world: SimWorld, frame: SimFrame, root: str | Path, scene_id: int | None = None,
                    split: str = SPLIT) -> Path:
    """Write the scene (one camera frame) under ``root``; returns the scene directory."""
    root = Path(root)
    write_models(root / "models", world)
    sid = world.seed if scene_id is None else int(scene_id)
    sdir = root / split / f"{sid:06d}"
    for sub in ("rgb", "depth", "mask", "mask_visib"):
        (sdir / sub).mkdir(parents=True, exist_ok=True)
    cam, im = frame.camera, 0
    T_wc = frame.T_world_camera
    T_cw = invert_transform(T_wc)
    depth_mm = np.where(np.isfinite(frame.depth_m), np.rint(frame.depth_m * 1000.0), 0).clip(0, 65535)
    depth_mm = depth_mm.astype(np.uint16)
    cv2.imwrite(str(sdir / "rgb" / f"{im:06d}.png"), frame.rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    cv2.imwrite(str(sdir / "depth" / f"{im:06d}.png"), depth_mm, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    gts, infos = [], []
    for j, inst in enumerate(world.instances):
        T_co = T_cw @ world.object_pose(inst)
        gts.append({"cam_R_m2c": T_co[:3, :3].reshape(-1).tolist(), "cam_t_m2c": (T_co[:3, 3] * 1000.0).tolist(),
                    "obj_id": inst.obj.obj_id})
        full = silhouette(inst.mesh, T_co, cam)
        vis = frame.seg == inst.body
        cv2.imwrite(str(sdir / "mask" / f"{im:06d}_{j:06d}.png"), full.astype(np.uint8) * 255)
        cv2.imwrite(str(sdir / "mask_visib" / f"{im:06d}_{j:06d}.png"), vis.astype(np.uint8) * 255)
        n_full = int(max(full.sum(), vis.sum()))
        infos.append({"bbox_obj": _bbox(full), "bbox_visib": _bbox(vis), "px_count_all": n_full,
                      "px_count_valid": int((vis & (depth_mm > 0)).sum()), "px_count_visib": int(vis.sum()),
                      "visib_fract": float(vis.sum() / n_full) if n_full else 0.0})
    _write_json(sdir / "scene_camera.json", {str(im): {
        "cam_K": cam.K.reshape(-1).tolist(), "depth_scale": 1.0, "cam_R_w2c": T_cw[:3, :3].reshape(-1).tolist(),
        "cam_t_w2c": (T_cw[:3, 3] * 1000.0).tolist()}})
    _write_json(sdir / "scene_gt.json", {str(im): gts})
    _write_json(sdir / "scene_gt_info.json", {str(im): infos})
    n_c = T_cw[:3, :3] @ np.array([0.0, 0.0, 1.0])
    _write_json(sdir / "scene_world.json", {
        "units": "metres", "world": "the simulator's: z up, origin on the table top",
        "table_plane_world": [0.0, 0.0, 1.0, 0.0],
        "frames": {str(im): {"T_world_cam": T_wc.tolist(), "table_plane_cam": [*n_c.tolist(), float(-n_c @ T_cw[:3, 3])]}},
        "objects": [{"obj_id": i.obj.obj_id, "name": i.name, "T_world_obj": world.object_pose(i).tolist()}
                    for i in world.instances],
        "seed": world.seed, "width": cam.width, "height": cam.height, "simulator": "pybullet",
        "T_world_base": world.T_world_base.tolist(), "calibration": world.calibration})
    return sdir
