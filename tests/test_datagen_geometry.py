"""Per-scene geometry on a synthetic scene: world frame, cuboids vs masks, grasps, trajectories, relations."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import trimesh
from _datagen_helpers import built, world_T

from bopask_vlm import gripper as G
from bopask_vlm.answers.types import Task
from bopask_vlm.datagen import cuboids, relations
from bopask_vlm.datagen.bop_reader import BopScene, read_frame
from bopask_vlm.datagen.trajectories import rdp
from bopask_vlm.datagen.world_frame import PlaneFitError, fit_world_frame
from bopask_vlm.geometry import CameraModel, invert_transform, transform_points


def _world_meshes(scene):
    w = json.loads((scene / "scene_world.json").read_text())
    out = []
    for o in w["objects"]:
        m = trimesh.load(scene.parent.parent / "models" / f"obj_{o['obj_id']:06d}.ply", process=False)
        m.apply_scale(0.001)
        m.apply_transform(np.asarray(o["T_world_obj"]))
        out.append(m)
    return out


def _by_task(task):
    return [r for r in built().records if r.task is task]


def test_world_frame_from_noisy_depth_matches_the_table():
    s = built().scene
    f = read_frame(BopScene(s), 1)
    T_cw, plane = fit_world_frame(f.depth_m, f.camera)
    T_wc_true = world_T(s, 1)
    z_true_cam = invert_transform(T_wc_true)[:3, :3] @ [0, 0, 1]
    assert np.degrees(np.arccos(np.clip(T_cw[:3, 2] @ z_true_cam, -1, 1))) < 1.5
    # the camera height above the fitted plane is the true one within a centimetre
    assert plane.signed_distance([0, 0, 0])[0] == pytest.approx(T_wc_true[2, 3], abs=0.01)


def test_no_plane_is_a_clear_failure():
    cam = CameraModel(K=np.array([[300.0, 0, 80], [0, 300, 60], [0, 0, 1]]), width=160, height=120)
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 3.0, (120, 160)).astype(np.float32)  # random scatter, no dominant surface
    with pytest.raises(PlaneFitError):
        fit_world_frame(depth, cam)
    with pytest.raises(PlaneFitError):
        fit_world_frame(np.full((120, 160), np.nan, np.float32), cam)


def test_projected_cuboid_matches_mask_extent_and_corner_order():
    b = built()
    recs = _by_task(Task.POSE)
    assert len(recs) >= 5
    info = json.loads((b.scene / "scene_gt_info.json").read_text())
    for r in recs:
        k = r.objects[0].gt_index
        c3 = np.asarray(r.gt["corners_3d_cam"])
        T_wc = np.asarray(r.gt["T_world_cam"])
        cw = transform_points(T_wc, c3)
        assert np.all(cw[4:, 2] > cw[:4, 2] + 1e-3)  # top above bottom
        np.testing.assert_allclose(cw[4:, :2], cw[:4, :2], atol=3e-3)  # top i above bottom i (fitted world)
        ctr = cw[:4].mean(0)
        ang = np.unwrap(np.arctan2(cw[:4, 1] - ctr[1], cw[:4, 0] - ctr[0]))
        assert np.all(np.diff(ang) > 0)  # counter-clockwise seen from above
        from bopask_vlm.answers import answer_from_record  # the VLM layer reads the record's JSON form

        uv = answer_from_record(r).points
        x, y, w, h = info[str(r.im_id)][k]["bbox_obj"]
        mask = cv2.imread(str(b.scene / "mask" / f"{r.im_id:06d}_{k:06d}.png"), 0) > 0
        ys, xs = np.nonzero(mask)
        # every mask pixel lies inside the projected box outline ...
        hull = cv2.convexHull(uv.astype(np.float32))
        inside = np.array([cv2.pointPolygonTest(hull, (float(u), float(v)), True) for u, v in zip(xs[::7], ys[::7])])
        assert inside.min() > -2.0
        # ... and the box extent is close to the mask extent (boxes exactly; round objects a bit larger)
        assert uv[:, 0].min() <= x + 1.5 and uv[:, 0].max() >= x + w - 2.5
        assert uv[:, 1].min() <= y + 1.5 and uv[:, 1].max() >= y + h - 2.5
        if r.objects[0].name.split()[-1] in ("box", "block", "cube"):  # a box fills its cuboid: tight extent
            assert abs((uv[:, 0].max() - uv[:, 0].min()) - w) < 3 and abs((uv[:, 1].max() - uv[:, 1].min()) - h) < 3


def test_cuboid_bottom_is_the_face_nearest_the_table():
    # a box lying on its side: model z is horizontal, model y points down
    T = np.eye(4)
    T[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    T[:3, 3] = [0.1, 0.2, 0.03]
    c = cuboids.cuboid_world(np.array([-0.05, -0.03, -0.02]), np.array([0.1, 0.06, 0.04]), T)
    np.testing.assert_allclose(c[:4, 2], 0.0, atol=1e-12)
    np.testing.assert_allclose(c[4:, 2], 0.06, atol=1e-12)


def test_kept_grasps_are_collision_free_and_keypoints_consistent():
    b = built()
    meshes = _world_meshes(b.scene)
    cm = trimesh.collision.CollisionManager()
    for i, m in enumerate(meshes):
        cm.add_object(str(i), m)
    table = trimesh.creation.box(extents=(3, 3, 0.1))
    table.apply_translation((0, 0, -0.0505))
    cm.add_object("table", table)
    fingers = trimesh.util.concatenate([  # the open fingers alone, independent of the generator's model
        trimesh.creation.box(extents=(0.016, 0.02, 0.045), transform=trimesh.transformations.translation_matrix(
            (s * (G.MAX_OPENING / 2 + 0.009), 0, G.FINGER_TIP_Z - 0.0225))) for s in (-1, 1)])
    recs = _by_task(Task.GRASP)
    assert recs
    for r in recs:
        T_wc = world_T(b.scene, r.im_id)  # the true world of the meshes (the record's own is fitted from depth)
        cam = CameraModel(K=np.reshape(r.camera_K, (3, 3)), width=r.width, height=r.height)
        from bopask_vlm.answers import answer_from_record

        # the answer is the best grasp's 5 keypoints as seen in this view
        np.testing.assert_allclose(answer_from_record(r).points, G.keypoints_2d(np.asarray(r.gt["T_cam_gripper"]), cam),
                                   atol=1e-6)
        for T_cg in r.gt["grasps_T_cam_gripper"]:
            T_wg = T_wc @ np.asarray(T_cg)
            assert not cm.in_collision_single(fingers, transform=T_wg)
            kp = G.keypoints_2d(np.asarray(T_cg), cam)
            k3 = G.keypoints_3d(np.asarray(T_cg))
            np.testing.assert_allclose(k3[0], (k3[1] + k3[2]) / 2, atol=1e-9)  # center = midpoint of bases
            # projective midpoint: the 2D center lies on the segment between the projected bases
            e, f = kp[2] - kp[1], kp[0] - kp[1]
            d = (e[0] * f[1] - e[1] * f[0]) / np.linalg.norm(e)
            assert abs(d) < 0.5
            assert kp[1, 0] <= kp[2, 0] + 1e-9  # left finger appears left
        # the best grasp is approached from above
        assert (T_wc @ np.asarray(r.gt["T_cam_gripper"]))[2, 2] < 0


def test_trajectories_are_collision_free_and_go_from_a_to_b():
    b = built()
    meshes = _world_meshes(b.scene)
    recs = _by_task(Task.TRAJECTORY)
    assert recs
    for r in recs:
        T_wc = world_T(b.scene, r.im_id)
        P = transform_points(T_wc, np.asarray(r.gt["path_cam"]))
        a, bi = r.gt["a_gt_index"], r.gt["b_gt_index"]
        ma, mb = meshes[a], meshes[bi]
        lo, hi = ma.bounds
        # (the generator's world is fitted from noisy depth: its boxes differ from the true ones by mm)
        np.testing.assert_allclose(P[0], [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], atol=4e-3)
        place = transform_points(T_wc, np.asarray(r.gt["placement_cam"])[None])[0]
        np.testing.assert_allclose(P[-1], place, atol=1e-9)
        assert np.all(np.abs(place[:2] - mb.bounds.mean(0)[:2]) < 4e-3) and place[2] > mb.bounds[1, 2]
        cm = trimesh.collision.CollisionManager()
        for i, m in enumerate(meshes):
            if i != a:
                cm.add_object(str(i), m)
        hull = ma.convex_hull
        for p, q in zip(P[1:-1], P[2:]):  # after the lift off the table
            for s in np.linspace(0, 1, 25):
                T = np.eye(4)
                T[:3, 3] = p + s * (q - p) - P[0]
                assert not cm.in_collision_single(hull, transform=T)
                assert (hull.vertices + T[:3, 3])[:, 2].min() > 0.0
        from bopask_vlm.answers import answer_from_record

        uv = answer_from_record(r).points
        cam = CameraModel(K=np.reshape(r.camera_K, (3, 3)), width=r.width, height=r.height)
        np.testing.assert_allclose(uv, cam.project(np.asarray(r.gt["path_cam"])), atol=0.06)


def test_relations_agree_with_world_geometry():
    b = built()
    w = json.loads((b.scene / "scene_world.json").read_text())
    recs = _by_task(Task.SPATIAL) + _by_task(Task.DEPTH)
    assert recs
    assert {True, False} <= {r.gt["value"] for r in _by_task(Task.SPATIAL)}  # balanced yes/no
    for r in recs:
        T_wc = world_T(b.scene, r.im_id)
        pa, pb = (np.asarray(w["objects"][o.gt_index]["T_world_obj"])[:3, 3] for o in r.objects)
        fwd = T_wc[:3, 2].copy()
        fwd[2] = 0
        fwd /= np.linalg.norm(fwd)
        left = np.cross([0, 0, 1.0], fwd)
        rel = r.gt["relation"]
        if rel == "left of":
            assert ((pa - pb) @ left > 0) == r.gt["value"]
        elif rel == "right of":
            assert ((pa - pb) @ left < 0) == r.gt["value"]
        elif rel == "in front of":
            assert ((pa - pb) @ fwd < 0) == r.gt["value"]
        elif rel == "behind":
            assert ((pa - pb) @ fwd > 0) == r.gt["value"]
        elif rel == "closer":
            eye = T_wc[:3, 3]
            assert (np.linalg.norm(pa - eye) < np.linalg.norm(pb - eye)) == r.gt["value"]
        elif rel in ("above", "below"):
            assert r.gt["value"] is False  # nothing is stacked in these scenes


def test_relation_rules_and_rdp():
    T_wc = np.eye(4)
    T_wc[:3, :3] = np.array([[0, 0, 1.0], [-1.0, 0, 0], [0, -1.0, 0]])  # camera looks along world +x, level
    a = relations.geom_from_corners(np.array([[0.5, 0.2, 0], [0.6, 0.3, 0.1]]))
    c = relations.geom_from_corners(np.array([[0.5, -0.2, 0], [0.6, -0.1, 0.1]]))
    assert relations.relation_holds("left of", a, c, T_wc) is True
    assert relations.relation_holds("right of", a, c, T_wc) is False
    assert relations.relation_holds("in front of", a, c, T_wc) is None  # same distance: ambiguous
    with pytest.raises(ValueError):
        relations.relation_holds("near", a, c, T_wc)
    line = np.array([[0, 0, 0], [1, 0.001, 0], [2, 0, 0], [2, 1, 0.5]])
    np.testing.assert_allclose(rdp(line, 0.01), line[[0, 2, 3]])


def test_boxed_in_object_is_blocked_by_its_neighbours():
    from bopask_vlm.datagen.grasps import collision_world, compute_grasps

    def box(ext, xy):
        m = trimesh.creation.box(extents=ext)
        m.apply_translation((xy[0], xy[1], ext[2] / 2))
        return m

    target = box((0.05, 0.05, 0.06), (0, 0))
    walls = [box((0.03, 0.2, 0.2), (s * 0.05, 0)) for s in (-1, 1)] + \
            [box((0.07, 0.03, 0.2), (0, s * 0.05)) for s in (-1, 1)]
    meshes = [target, *walls]
    res = compute_grasps(meshes, np.random.default_rng(0))
    assert res[0].n_candidates > 0 and res[0].blocked and res[0].kept == []
    assert res[0].blockers and set(res[0].blockers) <= {1, 2, 3, 4}
    # moving the named blockers frees at least one grasp of the target
    rest = [m for i, m in enumerate(meshes) if i == 0 or i not in res[0].blockers]
    freed = compute_grasps(rest, np.random.default_rng(0), cm=collision_world(rest))
    assert freed[0].n_free > 0 and freed[0].kept
