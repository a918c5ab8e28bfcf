"""The ``mixed`` scene family: pybullet_data meshes (mug, bunny, teddy, the generated objects) beside the
primitives, graspable sizes and masses from volume, clutter with small gaps and touching objects, the oblique
viewpoint, D435 depth on what the pipeline sees, determinism per seed, and the BOP export + datagen on them.
The ``primitives`` family (the original scenes) stays the default of :class:`SimWorld`."""

from __future__ import annotations

import json

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim import objects as O
from bopask_sim.placement import TOUCH_GAP, Clutter, PlacementError, footprint, place
from bopask_sim.world import SceneError, SimWorld

SEED = 3  # a mixed scene with the teddy, the bunny, the mug, a generated object and two touching pairs


def test_meshes_load_graspable_sized_with_masses_in_range():
    base, named, n_random = O.mixed_catalogue()
    assert n_random == 1000 and {o.name for o in named} == {"white mug", "grey bunny", "brown teddy bear"}
    sample = [*named, *(O.random_object(i) for i in range(0, n_random, 41) if O.random_usable(i))]
    assert len(sample) > 20
    for o in sample:
        m = O.object_mesh(o)
        e = m.extents
        assert min(e[0], e[1]) <= O.MAX_GRASP_EXTENT + 1e-9 < 0.08, (o.name, e)  # fits the open hand one way
        assert 0.005 < e.min() and e.max() <= 0.125, (o.name, e)
        np.testing.assert_allclose(m.bounds.mean(axis=0), 0.0, atol=1e-9)  # model frame: bounding box centred
        assert O.MASS_RANGE[0] <= o.mass <= O.MASS_RANGE[1]
    for o in base:  # today's objects, masses from their volume now
        assert O.MASS_RANGE[0] <= o.mass <= O.MASS_RANGE[1]
    assert len({o.mass for o in base}) > 4  # not one constant
    with pytest.raises(ValueError, match="random_urdfs"):
        O.random_object(1000)
    with pytest.raises(ValueError, match="empty or too thin"):
        O.random_object(168)  # the set's one empty file


def test_placement_keeps_min_gap_except_touching_pairs():
    objs = O.pick_mixed(6, np.random.default_rng(0))
    meshes = {o.obj_id: O.object_mesh(o) for o in objs}
    n_touch, gaps = 0, []
    for s in range(6):
        poses, touching = place(objs, meshes, np.random.default_rng(s), 0.34, Clutter(min_gap=0.005))
        fps = [footprint(meshes[o.obj_id], T) for o, T in zip(objs, poses)]
        for a in range(len(objs)):
            for b in range(a + 1, len(objs)):
                d = fps[a].distance(fps[b])
                if (a, b) in touching:
                    assert d < 2 * TOUCH_GAP
                else:
                    assert d >= 0.005 - 1e-9, (s, a, b, d)
                    gaps.append(d)
        n_touch += len(touching)
        for T in poses:  # resting on the table, inside the area
            assert abs(T[2, 3]) < 0.2
    assert n_touch >= 2 and min(gaps) < 0.012  # clutter happens: touching pairs and gaps near the minimum
    poses, touching = place(objs, meshes, np.random.default_rng(0), 0.34, Clutter(min_gap=0.03, near_gap=0.04, p_touch=0, p_near=0))
    fps = [footprint(meshes[o.obj_id], T) for o, T in zip(objs, poses)]
    assert not touching and min(fps[a].distance(fps[b]) for a in range(6) for b in range(a + 1, 6)) >= 0.03
    with pytest.raises(PlacementError):
        place(objs, meshes, np.random.default_rng(0), 0.15, Clutter(min_gap=0.05, near_gap=0.05), tries=50)
    with pytest.raises(PlacementError):
        Clutter(min_gap=0.02, near_gap=0.01)


def test_cylinders_also_lie():
    can = next(o for o in O.catalogue() if o.name == "blue can")
    from bopask_sim.placement import resting_rotation

    axes_z = [abs(resting_rotation(can, np.random.default_rng(s), 0.4)[2, 2]) for s in range(40)]
    assert 5 < sum(a < 1e-9 for a in axes_z) < 35 and all(a < 1e-9 or a > 1 - 1e-9 for a in axes_z)


@pytest.fixture(scope="module")
def mixed():
    with SimWorld(SEED, 5, scene_family="mixed") as w:
        yield w, w.capture()


def test_mixed_scene_holds_meshes_and_is_deterministic(mixed):
    w, f = mixed
    sources = {i.obj.source for i in w.instances}
    assert sources & {"pybullet_mesh", "random_urdf"}
    assert w.touching  # this seed places a touching pair
    with SimWorld(SEED, 5, scene_family="mixed") as again:
        assert [i.name for i in again.instances] == [i.name for i in w.instances]
        np.testing.assert_allclose([again.object_pose(i) for i in again.instances],
                                   [w.object_pose(i) for i in w.instances], atol=1e-9)
        g = again.capture()
        np.testing.assert_array_equal(g.rgb, f.rgb)
        np.testing.assert_array_equal(np.isnan(g.depth_m), np.isnan(f.depth_m))
    with SimWorld(SEED, 5) as old:  # the default family is still the original one
        assert old.scene_family == "primitives" and old.depth_model is None
        assert {i.obj.source for i in old.instances} <= {"primitive", "real_mesh", "pybullet_data"}
    for inst in w.instances:  # settled on the table
        T = w.object_pose(inst)
        assert abs((inst.mesh.vertices @ T[:3, :3].T + T[:3, 3])[:, 2].min()) < 4e-3, inst.name


def test_mixed_depth_is_d435_and_ground_truth_stays_clean(mixed):
    w, f = mixed
    assert w.depth_model == "d435"
    seen = f.depth_ideal_m > 0
    holes = seen & np.isnan(f.depth_m)
    assert np.all(np.isfinite(f.depth_ideal_m))
    # holes gather at the objects' depth edges (shadows, dropout), not on the open table
    obj = np.isin(f.seg, [i.body for i in w.instances])
    import cv2

    near_obj = cv2.dilate(obj.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    assert holes[near_obj].mean() > 5 * holes[seen & ~near_obj].mean()
    err = (f.depth_m - f.depth_ideal_m)[seen & ~np.isnan(f.depth_m) & ~near_obj]
    assert 0.0005 < np.median(np.abs(err)) < 0.01
    # the datagen's world frame (its table plane fit of the exported depth) is the same from the noisy depth
    from bopask_vlm.datagen.world_frame import fit_world_frame

    _, noisy = fit_world_frame(np.nan_to_num(f.depth_m), w.camera, seed=0)
    _, ideal = fit_world_frame(f.depth_ideal_m, w.camera, seed=0)
    assert np.degrees(np.arccos(min(1.0, abs(float(np.dot(noisy.normal, ideal.normal)))))) < 0.05
    assert abs(abs(noisy.offset) - abs(ideal.offset)) < 5e-4


def test_primitives_family_keeps_the_original_scenes():
    """'Old conditions' stay measurable: the primitives family builds the very scenes it built before the mixed
    family existed (seed 5 as built at commit 1838d96: names and resting positions to 1 mm). Anything that changes
    what the shared placement draws from the scene's generator breaks this."""
    before = [("blue can", 0.1001, -0.046), ("white cone", -0.0769, -0.0117), ("cyan mug", 0.0533, -0.1614),
              ("yellow duck", -0.0636, 0.1244), ("wooden jenga block", 0.0992, 0.1267)]
    with SimWorld(5, 5) as w:
        assert [i.name for i in w.instances] == [b[0] for b in before]
        np.testing.assert_allclose([w.object_pose(i)[:2, 3] for i in w.instances], [b[1:] for b in before], atol=1e-3)


def test_oblique_viewpoint_sees_the_objects(mixed):
    w, _ = mixed
    with SimWorld(SEED, 5, scene_family="mixed", viewpoint="oblique") as o:
        assert o.viewpoint == "oblique" and w.viewpoint == "front"
        f = o.capture()
        assert o.T_world_camera[2, 3] <= 0.5 * w.T_world_camera[2, 3] + 1e-9  # half as high
        look = o.T_world_camera[:3, 2]
        assert 0.2 < -look[2] < 0.5 and abs(look[1]) > 0.5  # shallow, from the side
        for inst in o.instances:
            assert (f.seg == inst.body).sum() > 150, inst.name
            # the calibration the pipeline reads is the one the image was rendered with
            c = o.object_pose(inst)[:3, 3] + [0, 0, 0.01]
            Tcw = np.linalg.inv(o.T_world_camera)
            u, v = o.camera.project((Tcw[:3, :3] @ c + Tcw[:3, 3])[None])[0]
            assert 0 <= u < 640 and 0 <= v < 480
    with pytest.raises(SceneError, match="not both"):
        SimWorld(0, 1, viewpoint="oblique", calibration={"translation": [1, 0, 1], "rotation": [0, 0, 0, 1]})
    with pytest.raises(ValueError, match="unknown viewpoint"):
        SimWorld(0, 1, viewpoint="top")
    with pytest.raises(SceneError, match="scene_family"):
        SimWorld(0, 1, scene_family="ycb")
    from bopask_sim import world as world_mod

    with pytest.MonkeyPatch.context() as mp, pytest.raises(SceneError, match="could not place"):
        mp.setattr(world_mod, "OBJECT_AREA", 0.08)  # the primitives family: no room for 5 objects 2 cm apart
        SimWorld(0, 5)
    with pytest.raises(SceneError, match="could not place"):
        SimWorld(0, 8, scene_family="mixed", clutter=Clutter(min_gap=0.2, near_gap=0.2))


def test_bop_export_and_datagen_make_records_for_the_new_meshes(mixed, tmp_path):
    from bopask_sim.bop_export import write_bop_scene
    from bopask_vlm.datagen import generate
    from bopask_vlm.datagen.bop_reader import BopScene
    from bopask_vlm.eval.runner import load_records
    from bopask_vlm.gripper import GRASP_DEPTH

    w, f = mixed
    root = tmp_path / "bop"
    with SimWorld(3, 3) as other:  # a primitives scene first: the shared models/ keeps its models too
        write_bop_scene(other, other.capture(), root)
        other_ids = {i.obj.obj_id for i in other.instances}
    sdir = write_bop_scene(w, f, root)
    info = json.loads((root / "models" / "models_info.json").read_text())
    assert other_ids | {i.obj.obj_id for i in w.instances} <= {int(k) for k in info}
    models = BopScene(sdir).models
    for inst in w.instances:
        np.testing.assert_allclose(models[inst.obj.obj_id].size, inst.mesh.extents, atol=1e-4)
    generate(root, tmp_path / "qa", 0, tasks=["grasp", "pose"], progress=False)
    recs = [r for r in load_records([tmp_path / "qa" / "shards"]) if r.scene_id == SEED]
    new = {j for j, i in enumerate(w.instances) if i.obj.source in ("pybullet_mesh", "random_urdf")}
    grasps = [r for r in recs if r.task.value == "grasp"]
    poses = [r for r in recs if r.task.value == "pose"]
    assert {int(r.objects[0].gt_index) for r in poses} >= new  # a cuboid for every new mesh
    assert {int(r.objects[0].gt_index) for r in grasps} & new  # and grasps on them
    for r in grasps:
        T_w = w.T_world_camera @ np.asarray(r.gt["T_cam_gripper"], float)
        gp = T_w[:3, :3] @ [0, 0, GRASP_DEPTH] + T_w[:3, 3]
        inst = w.instances[int(r.objects[0].gt_index)]
        T_wo = w.object_pose(inst)
        local = (gp - T_wo[:3, 3]) @ T_wo[:3, :3]
        assert np.all(np.abs(local) <= inst.mesh.extents / 2 + 0.005), (inst.name, local)
