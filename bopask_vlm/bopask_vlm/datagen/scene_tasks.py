"""Per-scene work of dataset generation: the viewpoint-independent part once per scene (world frame,
meshes, grasps and collisions, trajectories, blockers), then projection, visibility, relations and
questions per frame."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm import gripper as G
from bopask_vlm.answers.types import GraspAnswer, PoseAnswer, RearrangementAnswer, Task, TrajectoryAnswer, YesNoAnswer
from bopask_vlm.datagen import cuboids, grasps, relations, trajectories
from bopask_vlm.datagen.bop_reader import BopFormatError, BopScene, check_image, load_model_mesh, read_depth_m
from bopask_vlm.datagen.object_names import name_of
from bopask_vlm.datagen.qa import QuestionMaker, describe_instances
from bopask_vlm.datagen.world_frame import SceneWorld, fit_world_frame
from bopask_vlm.geometry import CameraModel, GeometryError, transform_points
from bopask_vlm.records import ObjectRef, QARecord


@dataclass
class Options:
    min_visib: float = 0.3
    max_pairs: int = 4  # trajectory pairs planned per scene
    spatial_per_frame: int = 4
    depth_per_frame: int = 2
    tasks: tuple[str, ...] = tuple(t.value for t in Task)
    dataset: str = ""
    names: dict[int, str] = field(default_factory=dict)


@dataclass
class SceneOutput:
    records: list[QARecord]
    errors: list[dict[str, Any]]
    frames_ok: int


@lru_cache(maxsize=64)
def _model_mesh(path: str) -> Any:
    m = load_model_mesh(path)  # a corrupt PLY is a BopFormatError: the scene is reported, not the run lost
    m.apply_scale(0.001)
    return m


@dataclass
class SceneGeometry:
    world: SceneWorld
    meshes: list[Any]
    corners_w: list[NDArray[np.float64]]
    grasps: list[grasps.GraspResult]
    trajs: list[trajectories.Trajectory]


def scene_geometry(sc: BopScene, im_ids: list[int], rng: np.random.Generator, opts: Options,
                   errors: list[dict[str, Any]]) -> tuple[SceneGeometry, int]:
    """World frame from the first frame whose depth holds a plane; everything viewpoint-independent."""
    ref, T_cw, plane = None, None, None
    for im in im_ids:
        try:
            dp = sc.depth_path(im)
            if dp is None:
                raise BopFormatError(f"no depth image for im_id {im}")
            d = read_depth_m(dp, float(sc.scene_camera[str(im)].get("depth_scale", 1.0)))
            cam = CameraModel.from_bop(sc.scene_camera[str(im)], d.shape[1], d.shape[0])
            T_cw, plane = fit_world_frame(d, cam, seed=0)
            ref = im
            break
        except (BopFormatError, GeometryError) as e:
            errors.append({"scene": str(sc.dir), "im_id": im, "stage": "world_frame", "error": f"{type(e).__name__}: {e}"})
    if ref is None:
        raise GeometryError(f"{sc.dir}: no frame gives a support plane")
    objs = {im: sc.objects(im) for im in im_ids}
    obj_ids = [o.obj_id for o in objs[ref]]
    world = SceneWorld.from_frames({im: [o.T_cam_obj for o in os_] for im, os_ in objs.items()}, obj_ids, ref,
                                   T_cw, plane)
    models = sc.models
    meshes, corners = [], []
    for oid, T in zip(obj_ids, world.T_world_obj):
        mi = models[oid]
        if mi.path is None:
            raise BopFormatError(f"model mesh obj_{oid:06d}.ply missing in {sc.models_dir}")
        m = _model_mesh(str(mi.path)).copy()
        m.apply_transform(T)
        meshes.append(m)
        corners.append(cuboids.cuboid_world(mi.min_xyz, mi.size, T))
    # the fitted plane is noisy: put the table top just under the lowest object bottom near z = 0
    table_top = min(0.0, min(float(m.bounds[0, 2]) for m in meshes) - 0.002)
    tasks = set(opts.tasks)
    gr = grasps.compute_grasps(meshes, rng, table_top=table_top) if tasks & {"grasp", "rearrangement"} else []
    trajs: list[trajectories.Trajectory] = []
    if "trajectory" in tasks and len(meshes) > 1:
        cm = grasps.collision_world([m.convex_hull for m in meshes], table_top)
        pairs = [(a, b) for a in range(len(meshes)) for b in range(len(meshes)) if a != b]
        order = rng.permutation(len(pairs))
        for k in order[: opts.max_pairs]:
            t = trajectories.plan_move(*pairs[k], meshes, cm, rng)
            if t is not None:
                trajs.append(t)
    return SceneGeometry(world, meshes, corners, gr, trajs), ref


def _rel_image(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def _visible_point(mask_path: Path | None, fallback: NDArray[np.float64]) -> NDArray[np.float64]:
    """A pixel on the visible mask nearest to its centroid (the fallback point when there is no mask)."""
    import cv2

    if mask_path is None:
        return fallback
    m = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    if m is None or not m.any():
        return fallback
    ys, xs = np.nonzero(m)
    c = np.array([xs.mean(), ys.mean()])
    i = int(np.argmin((xs - c[0]) ** 2 + (ys - c[1]) ** 2))
    return np.array([float(xs[i]), float(ys[i])])


def frame_records(sc: BopScene, im: int, geo: SceneGeometry, out_dir: Path, opts: Options,
                  qm: QuestionMaker, rng: random.Random) -> list[QARecord]:
    """Every question of one frame. Raises BopFormatError for a missing/corrupt image."""
    rgb_path = sc.image_path(im)
    w, h = check_image(rgb_path)  # a corrupt image is caught here (PNG CRCs checked, pixels not decoded)
    entry = sc.scene_camera[str(im)]
    cam = CameraModel.from_bop(entry, w, h)
    T_wc = geo.world.T_world_cam[im]
    T_cw = np.linalg.inv(T_wc)
    objs = sc.objects(im)
    if [o.obj_id for o in objs] != geo.world.obj_ids:
        raise BopFormatError(f"image {im}: instances differ from the scene's reference frame")
    n = len(objs)
    names = [name_of(opts.names, o.obj_id) for o in objs]
    ctr_cam = np.array([transform_points(T_cw, c.mean(0)[None])[0] for c in geo.corners_w])
    ctr_uv = cam.project(ctr_cam)
    desc = describe_instances(names, list(ctr_uv[:, 0]))
    vis = []
    for k, o in enumerate(objs):
        vf = o.visib_fract
        ok = (vf if vf is not None else 1.0) >= opts.min_visib and ctr_cam[k, 2] > 0 and bool(cam.in_image(ctr_uv[k:k + 1])[0])
        vis.append(ok)
    depth_rel = _rel_image(sc.depth_path(im), out_dir) if sc.depth_path(im) else None
    base = dict(image=_rel_image(rgb_path, out_dir), width=w, height=h, camera_K=cam.K.reshape(-1).tolist(),
                depth=depth_rel, depth_scale=float(entry.get("depth_scale", 1.0)), dataset=opts.dataset,
                scene_id=sc.scene_id, im_id=im)
    recs: list[QARecord] = []
    tasks = set(opts.tasks)

    def ref(k: int) -> ObjectRef:
        return ObjectRef(obj_id=objs[k].obj_id, gt_index=k, name=names[k], description=desc[k])

    def add(task: Task, ks: list[int], answer: Any, gt: dict[str, Any], relation: str | None = None) -> None:
        q, text, js = qm(task, [desc[k] for k in ks], answer, relation)
        rid = f"{opts.dataset or 'bop'}/{sc.dir.parent.name}/{sc.scene_id:06d}/{im:06d}/{task.value}/{len(recs):03d}"
        recs.append(QARecord(id=rid, task=task, question=q, answer=js, answer_text=text,
                             objects=[ref(k) for k in ks], gt={**gt, "T_world_cam": T_wc.tolist()}, **base))

    for k in range(n):
        if not vis[k]:
            continue
        T_co = objs[k].T_cam_obj
        mi = sc.models[objs[k].obj_id]
        if "pose" in tasks:
            c_cam = transform_points(T_cw, geo.corners_w[k])
            uv = cam.project(c_cam) if np.all(c_cam[:, 2] > 0.01) else None
            # a cuboid cut by the image border has no answer a model can give (answers stay in the image)
            if uv is not None and cam.in_image(uv).all():
                add(Task.POSE, [k], PoseAnswer(uv),
                    {"T_cam_obj": T_co.tolist(), "size": mi.size.tolist(), "box_min": mi.min_xyz.tolist(),
                     "corners_3d_cam": c_cam.tolist()})
        if "grasp" in tasks and geo.grasps and geo.grasps[k].kept:
            Ts = [T_cw @ g.T_world_gripper for g in geo.grasps[k].kept]
            try:
                kps = [G.keypoints_2d(T, cam) for T in Ts]
            except GeometryError:
                kps = []
            if kps and all(cam.in_image(kp).all() for kp in kps[:1]):
                Tbest = G.canonical_for_view(Ts[0], cam)
                add(Task.GRASP, [k], GraspAnswer(kps[0]),
                    {"T_cam_gripper": Tbest.tolist(), "width": geo.grasps[k].kept[0].width,
                     "grasps_T_cam_gripper": [G.canonical_for_view(T, cam).tolist() for T in Ts],
                     "scores": [g.score for g in geo.grasps[k].kept]})
        if "rearrangement" in tasks and geo.grasps and geo.grasps[k].n_candidates > 0:
            blk = geo.grasps[k].blockers if geo.grasps[k].blocked else []
            # blocked by the table or its own shape alone (no neighbour to move): no question
            if (not geo.grasps[k].blocked or blk) and all(vis[b] for b in blk):
                pts = np.array([_visible_point(objs[b].mask_visib_path, ctr_uv[b]) for b in blk]).reshape(-1, 2)
                add(Task.REARRANGEMENT, [k], RearrangementAnswer(pts),
                    {"blocking_gt_indices": blk, "blocked": geo.grasps[k].blocked,
                     "mask_paths": [_rel_image(objs[b].mask_visib_path, out_dir) if objs[b].mask_visib_path else None
                                    for b in blk]})
    if "trajectory" in tasks:
        for t in geo.trajs:
            if not (vis[t.a] and vis[t.b]):
                continue
            P = transform_points(T_cw, t.path_world)
            if np.any(P[:, 2] <= 0.01):
                continue
            uv = cam.project(P)
            add(Task.TRAJECTORY, [t.a, t.b], TrajectoryAnswer(uv),
                {"path_cam": P.tolist(), "a_gt_index": t.a, "b_gt_index": t.b,
                 "placement_cam": transform_points(T_cw, t.placement_world[None])[0].tolist()})
    visible = [k for k in range(n) if vis[k]]
    pairs = [(a, b) for a in visible for b in visible if a != b]
    geoms = [relations.geom_from_corners(c) for c in geo.corners_w]
    if "spatial" in tasks and pairs:
        want_yes = True
        for _ in range(opts.spatial_per_frame * 4):
            if sum(r.task is Task.SPATIAL for r in recs) >= opts.spatial_per_frame:
                break
            a, b = pairs[rng.randrange(len(pairs))]
            rel = relations.RELATIONS[rng.randrange(4)] if rng.random() < 0.9 else relations.RELATIONS[4 + rng.randrange(2)]
            v = relations.relation_holds(rel, geoms[a], geoms[b], T_wc)
            if v is None or v != want_yes:
                continue
            want_yes = not want_yes
            add(Task.SPATIAL, [a, b], YesNoAnswer(bool(v), Task.SPATIAL), {"relation": rel, "value": bool(v)}, rel)
    if "depth" in tasks and pairs:
        for _ in range(opts.depth_per_frame * 4):
            if sum(r.task is Task.DEPTH for r in recs) >= opts.depth_per_frame:
                break
            a, b = pairs[rng.randrange(len(pairs))]
            v = relations.closer(geoms[a], geoms[b], T_wc)
            if v is None:
                continue
            add(Task.DEPTH, [a, b], YesNoAnswer(bool(v), Task.DEPTH),
                {"relation": "closer", "value": bool(v),
                 "distance_a": float(np.linalg.norm(geoms[a].center - T_wc[:3, 3])),
                 "distance_b": float(np.linalg.norm(geoms[b].center - T_wc[:3, 3]))})
    return recs


def process_scene(scene_dir: str | Path, out_dir: str | Path, seed: int, opts: Options,
                  rephrase: Any = None) -> SceneOutput:
    """All records of one scene; corrupt frames are skipped and reported in ``errors``."""
    import zlib

    sc = BopScene(scene_dir)
    key = zlib.crc32(f"{sc.dir.parent.name}/{sc.dir.name}".encode())
    rng = np.random.default_rng([int(seed), key])
    errors: list[dict[str, Any]] = []
    im_ids = sc.im_ids
    # frames whose instance list differs from the first one are treated as their own scenes
    groups: dict[tuple[int, ...], list[int]] = {}
    for im in im_ids:
        groups.setdefault(tuple(o.obj_id for o in sc.objects(im)), []).append(im)
    records: list[QARecord] = []
    ok = 0
    for ims in groups.values():
        try:
            geo, _ = scene_geometry(sc, ims, rng, opts, errors)
        except (BopFormatError, GeometryError) as e:
            errors.append({"scene": str(sc.dir), "im_id": None, "stage": "scene", "error": f"{type(e).__name__}: {e}"})
            continue
        for im in ims:
            qm = QuestionMaker(random.Random(f"{seed}/{key}/{im}"), rephrase)
            try:
                records += frame_records(sc, im, geo, Path(out_dir), opts, qm, qm.rng)
                ok += 1
            except (BopFormatError, GeometryError, KeyError, ValueError) as e:
                errors.append({"scene": str(sc.dir), "im_id": im, "stage": "frame", "error": f"{type(e).__name__}: {e}"})
    return SceneOutput(records, errors, ok)
