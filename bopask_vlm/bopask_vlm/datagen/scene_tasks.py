"""Per-scene work of dataset generation: the viewpoint-independent part once per scene (world frame; the
models' collision shapes and grasp candidates, built once per model, placed by pose and checked against the
table and the other objects; trajectories; blockers), then projection, visibility, relations and questions
per frame, vectorised across the frame's objects and grasps."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_vlm import gripper as G
from bopask_vlm.answers.types import GraspAnswer, PoseAnswer, RearrangementAnswer, Task, TrajectoryAnswer, YesNoAnswer
from bopask_vlm.datagen import cuboids, grasps, relations, trajectories
from bopask_vlm.datagen.bop_reader import BopFormatError, BopObject, BopScene, check_image, read_depth_m
from bopask_vlm.datagen.collision import CollisionWorld, Placed
from bopask_vlm.datagen.model_geometry import ModelGeometry, ModelGeometryError, build_model_geometry, model_shapes
from bopask_vlm.datagen.object_names import name_of
from bopask_vlm.datagen.qa import QuestionMaker, describe_instances
from bopask_vlm.datagen.world_frame import SceneWorld, fit_world_frame
from bopask_vlm.geometry import CameraModel, GeometryError
from bopask_vlm.records import ObjectRef, QARecord


@dataclass
class Options:
    min_visib: float = 0.3
    max_pairs: int = 4  # trajectory pairs planned per scene (among those whose B can hold A)
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


@dataclass
class SceneGeometry:
    """The viewpoint-independent part of a scene, world frame."""

    world: SceneWorld
    corners_w: NDArray[np.float64]  # (n, 8, 3) cuboid corners, BOP-ASK order
    geoms: list[relations.ObjectGeom]
    grasps: list[grasps.GraspResult]
    trajs: list[trajectories.Trajectory]
    # every kept grasp of every instance stacked, for per-frame work in one pass
    grasp_T: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4, 4)))  # (M, 4, 4) world
    grasp_owner: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # (M,) instance


def scene_models(sc: BopScene, obj_ids: list[int], seed: int,
                 models: dict[int, ModelGeometry] | None) -> dict[int, ModelGeometry]:
    """The scene's models: from ``models`` (built once per dataset by the runner) or, when None, built
    here (the uncached path; same result, per scene)."""
    out = {}
    for oid in dict.fromkeys(obj_ids):
        mg = models.get(oid) if models is not None else None
        if mg is None:
            mi = sc.models.get(oid)
            if mi is None or mi.path is None:
                raise BopFormatError(f"model mesh obj_{oid:06d}.ply missing in {sc.models_dir}")
            if models is not None:
                raise BopFormatError(f"model obj_{oid:06d} has no geometry (its mesh failed to load)")
            try:
                mg = build_model_geometry(mi.path, oid, seed)
            except ModelGeometryError as e:
                raise BopFormatError(str(e)) from e
        out[oid] = mg
    return out


def scene_geometry(sc: BopScene, im_ids: list[int], rng: np.random.Generator, opts: Options,
                   errors: list[dict[str, Any]], models: dict[int, ModelGeometry],
                   objects: dict[int, list[BopObject]] | None = None) -> tuple[SceneGeometry, int]:
    """World frame from the first frame whose depth holds a plane; everything viewpoint-independent.
    Model geometry (collision shapes, hulls, grasp candidates) comes from ``models`` placed by pose."""
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
    objs = {im: objects[im] if objects is not None else sc.objects(im) for im in im_ids}
    obj_ids = [o.obj_id for o in objs[ref]]
    world = SceneWorld.from_frames({im: [o.T_cam_obj for o in os_] for im, os_ in objs.items()}, obj_ids, ref,
                                   T_cw, plane)
    infos = sc.models
    mgs = [models[oid] for oid in obj_ids]
    shapes = [model_shapes(mg) for mg in mgs]
    Ts = world.T_world_obj
    corners = np.array([cuboids.cuboid_world(infos[oid].min_xyz, infos[oid].size, T) for oid, T in zip(obj_ids, Ts)])
    hulls = [Placed(hull, T) for (_, hull), T in zip(shapes, Ts)]
    # the fitted plane is noisy: put the table top just under the lowest object bottom near z = 0
    table_top = min(0.0, min(float(h.bounds[0, 2]) for h in hulls) - 0.002)
    tasks = set(opts.tasks)
    gr: list[grasps.GraspResult] = []
    if tasks & {"grasp", "rearrangement"}:
        cw = CollisionWorld(table_top)
        for i, ((coll, _), T) in enumerate(zip(shapes, Ts)):
            cw.add(str(i), coll, T)
        for i, (mg, T) in enumerate(zip(mgs, Ts)):
            Tw = mg.grasps.placed(T)
            gr.append(grasps.select_grasps(Tw, mg.grasps.width, mg.grasps.scores(Tw), i, cw, self_free=mg.self_free))
    trajs: list[trajectories.Trajectory] = []
    if "trajectory" in tasks and len(mgs) > 1:
        cm = CollisionWorld(table_top)
        for i, h in enumerate(hulls):
            cm.add(str(i), h.shape, h.T)
        # only onto a B whose flat top holds A (A released on a ball, a cone or a handle falls off)
        verts = [mg.collision_vertices @ T[:3, :3].T + T[:3, 3] for mg, T in zip(mgs, Ts)]
        pairs = [(a, b) for a in range(len(mgs)) for b in range(len(mgs))
                 if a != b and trajectories.can_support(verts[b], mgs[b].collision_faces, verts[a], mgs[a].collision_faces,
                                                        hulls[a], hulls[b].bounds)]
        order = rng.permutation(len(pairs))
        for k in order[: opts.max_pairs]:
            t = trajectories.plan_move(*pairs[k], hulls, cm, rng)
            if t is not None:
                trajs.append(t)
    kept = [(i, g.T_world_gripper) for i, r in enumerate(gr) for g in r.kept]
    geo = SceneGeometry(world, corners, [relations.geom_from_corners(c) for c in corners], gr, trajs)
    if kept:
        geo.grasp_T = np.array([T for _, T in kept])
        geo.grasp_owner = np.array([i for i, _ in kept], np.int64)
    return geo, ref


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


def _frame_grasps(geo: SceneGeometry, T_cw: NDArray[np.float64], cam: CameraModel
                  ) -> dict[int, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Per instance with kept grasps: the camera-frame grasps turned so the left finger appears left
    (:func:`bopask_vlm.gripper.canonical_for_view`) and their 2D keypoints, all grasps in one pass.
    An instance any of whose grasps has a finger base behind the camera gets none."""
    if not len(geo.grasp_T):
        return {}
    Tc = np.einsum("ij,mjk->mik", T_cw, geo.grasp_T)
    sk = G.skeleton_points()
    P = np.einsum("mij,vj->mvi", Tc[:, :3, :3], sk) + Tc[:, None, :3, 3]  # (M, 5, 3)
    uv = cam.project(P.reshape(-1, 3)).reshape(-1, 5, 2)
    bad = ~np.isfinite(uv[:, 1:3]).all(axis=(1, 2))
    flip = uv[:, 1, 0] > uv[:, 2, 0]
    Tc[flip] = Tc[flip] @ G.FLIP_Z
    uv[flip] = uv[flip][:, [0, 2, 1, 4, 3]]  # the flipped hand's bases and tips swap sides
    out = {}
    for k in np.unique(geo.grasp_owner):
        sel = geo.grasp_owner == k
        if not bad[sel].any():
            out[int(k)] = (Tc[sel], uv[sel])
    return out


def frame_records(sc: BopScene, im: int, geo: SceneGeometry, out_dir: Path, opts: Options,
                  qm: QuestionMaker, rng: random.Random, objects: list[BopObject] | None = None) -> list[QARecord]:
    """Every question of one frame (``objects``: its annotated instances, when already read). Raises
    BopFormatError for a missing/corrupt image."""
    rgb_path = sc.image_path(im)
    w, h = check_image(rgb_path)  # a corrupt image is caught here (PNG CRCs checked, pixels not decoded)
    entry = sc.scene_camera[str(im)]
    cam = CameraModel.from_bop(entry, w, h)
    T_wc = geo.world.T_world_cam[im]
    T_cw = np.linalg.inv(T_wc)
    objs = sc.objects(im) if objects is None else objects
    if [o.obj_id for o in objs] != geo.world.obj_ids:
        raise BopFormatError(f"image {im}: instances differ from the scene's reference frame")
    n = len(objs)
    names = [name_of(opts.names, o.obj_id) for o in objs]
    R, t = T_cw[:3, :3], T_cw[:3, 3]
    corners_cam = geo.corners_w @ R.T + t  # (n, 8, 3)
    corners_uv = cam.project(corners_cam.reshape(-1, 3)).reshape(n, 8, 2)
    ctr_cam = geo.corners_w.mean(axis=1) @ R.T + t
    ctr_uv = cam.project(ctr_cam)
    desc = describe_instances(names, list(ctr_uv[:, 0]))
    visib = np.array([o.visib_fract if o.visib_fract is not None else 1.0 for o in objs], float)
    vis = list((visib >= opts.min_visib) & (ctr_cam[:, 2] > 0) & cam.in_image(ctr_uv))
    dpath = sc.depth_path(im)
    base = dict(image=_rel_image(rgb_path, out_dir), width=w, height=h, camera_K=cam.K.reshape(-1).tolist(),
                depth=_rel_image(dpath, out_dir) if dpath else None, depth_scale=float(entry.get("depth_scale", 1.0)),
                dataset=opts.dataset, scene_id=sc.scene_id, im_id=im)
    T_wc_list = T_wc.tolist()
    recs: list[QARecord] = []
    tasks = set(opts.tasks)
    prefix = f"{opts.dataset or 'bop'}/{sc.dir.parent.name}/{sc.scene_id:06d}/{im:06d}"

    def ref(k: int) -> ObjectRef:
        return ObjectRef(obj_id=objs[k].obj_id, gt_index=k, name=names[k], description=desc[k])

    def add(task: Task, ks: list[int], answer: Any, gt: dict[str, Any], relation: str | None = None) -> None:
        q, text, js = qm(task, [desc[k] for k in ks], answer, relation)
        rid = f"{prefix}/{task.value}/{len(recs):03d}"
        gt["T_world_cam"] = T_wc_list
        recs.append(QARecord(id=rid, task=task, question=q, answer=js, answer_text=text,
                             objects=[ref(k) for k in ks], gt=gt, **base))

    fg = _frame_grasps(geo, T_cw, cam) if "grasp" in tasks else {}
    for k in range(n):
        if not vis[k]:
            continue
        if "pose" in tasks:
            c_cam, uv = corners_cam[k], corners_uv[k]
            # a cuboid cut by the image border has no answer a model can give (answers stay in the image)
            if np.all(c_cam[:, 2] > 0.01) and cam.in_image(uv).all():
                mi = sc.models[objs[k].obj_id]
                add(Task.POSE, [k], PoseAnswer(uv),
                    {"T_cam_obj": objs[k].T_cam_obj.tolist(), "size": mi.size.tolist(), "box_min": mi.min_xyz.tolist(),
                     "corners_3d_cam": c_cam.tolist()})
        if k in fg and cam.in_image(fg[k][1][0]).all():
            Tg, kps = fg[k]
            g = geo.grasps[k]
            add(Task.GRASP, [k], GraspAnswer(kps[0]),
                {"T_cam_gripper": Tg[0].tolist(), "width": g.kept[0].width, "grasps_T_cam_gripper": Tg.tolist(),
                 "scores": [x.score for x in g.kept]})
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
        for tr in geo.trajs:
            if not (vis[tr.a] and vis[tr.b]):
                continue
            P = tr.path_world @ R.T + t
            if np.any(P[:, 2] <= 0.01):
                continue
            uv = cam.project(P)
            add(Task.TRAJECTORY, [tr.a, tr.b], TrajectoryAnswer(uv),
                {"path_cam": P.tolist(), "a_gt_index": tr.a, "b_gt_index": tr.b,
                 "placement_cam": (R @ tr.placement_world + t).tolist()})
    visible = [k for k in range(n) if vis[k]]
    pairs = [(a, b) for a in visible for b in visible if a != b]
    geoms = geo.geoms
    if "spatial" in tasks and pairs:
        want_yes = True
        n_spatial = 0
        for _ in range(opts.spatial_per_frame * 4):
            if n_spatial >= opts.spatial_per_frame:
                break
            a, b = pairs[rng.randrange(len(pairs))]
            rel = relations.RELATIONS[rng.randrange(4)] if rng.random() < 0.9 else relations.RELATIONS[4 + rng.randrange(2)]
            v = relations.relation_holds(rel, geoms[a], geoms[b], T_wc)
            if v is None or v != want_yes:
                continue
            want_yes = not want_yes
            n_spatial += 1
            add(Task.SPATIAL, [a, b], YesNoAnswer(bool(v), Task.SPATIAL), {"relation": rel, "value": bool(v)}, rel)
    if "depth" in tasks and pairs:
        n_depth = 0
        eye = T_wc[:3, 3]
        for _ in range(opts.depth_per_frame * 4):
            if n_depth >= opts.depth_per_frame:
                break
            a, b = pairs[rng.randrange(len(pairs))]
            v = relations.closer(geoms[a], geoms[b], T_wc)
            if v is None:
                continue
            n_depth += 1
            add(Task.DEPTH, [a, b], YesNoAnswer(bool(v), Task.DEPTH),
                {"relation": "closer", "value": bool(v),
                 "distance_a": float(np.linalg.norm(geoms[a].center - eye)),
                 "distance_b": float(np.linalg.norm(geoms[b].center - eye))})
    return recs


def process_scene(scene_dir: str | Path, out_dir: str | Path, seed: int, opts: Options,
                  rephrase: Any = None, models: dict[int, ModelGeometry] | None = None) -> SceneOutput:
    """All records of one scene; corrupt frames are skipped and reported in ``errors``.

    ``models``: the dataset's model geometry by obj_id, built once (:func:`build_models`) and shared by
    every scene; None builds the scene's models here (same records, slower)."""
    import zlib

    sc = BopScene(scene_dir)
    key = zlib.crc32(f"{sc.dir.parent.name}/{sc.dir.name}".encode())
    rng = np.random.default_rng([int(seed), key])
    errors: list[dict[str, Any]] = []
    im_ids = sc.im_ids
    # frames whose instance list differs from the first one are treated as their own scenes
    groups: dict[tuple[int, ...], list[int]] = {}
    objects = {im: sc.objects(im) for im in im_ids}
    for im in im_ids:
        groups.setdefault(tuple(o.obj_id for o in objects[im]), []).append(im)
    records: list[QARecord] = []
    ok = 0
    for ids, ims in groups.items():
        try:
            geo, _ = scene_geometry(sc, ims, rng, opts, errors, scene_models(sc, list(ids), seed, models), objects)
        except (BopFormatError, GeometryError) as e:
            errors.append({"scene": str(sc.dir), "im_id": None, "stage": "scene", "error": f"{type(e).__name__}: {e}"})
            continue
        for im in ims:
            qm = QuestionMaker(random.Random(f"{seed}/{key}/{im}"), rephrase)
            try:
                records += frame_records(sc, im, geo, Path(out_dir), opts, qm, qm.rng, objects[im])
                ok += 1
            except (BopFormatError, GeometryError, KeyError, ValueError) as e:
                errors.append({"scene": str(sc.dir), "im_id": im, "stage": "frame", "error": f"{type(e).__name__}: {e}"})
    return SceneOutput(records, errors, ok)
