"""A simulated scene written in the BOP layout reads back through bop_reader (metres, same poses, masks,
depth) and feeds the datagen, whose answers the simulator then executes: one description of the world."""

from __future__ import annotations

import json

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim.bop_export import write_bop_scene
from bopask_sim.world import SimWorld
from bopask_vlm.datagen.bop_reader import BopScene, read_frame
from bopask_vlm.geometry import invert_transform


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("simbop")
    w = SimWorld(5, 5)
    f = w.capture()
    sdir = write_bop_scene(w, f, root)
    yield w, f, root, sdir
    w.close()


def test_round_trip_through_bop_reader(exported):
    w, f, root, sdir = exported
    fr = read_frame(BopScene(sdir), 0)
    assert fr.rgb.shape == (480, 640, 3) and np.array_equal(fr.rgb, f.rgb)
    np.testing.assert_allclose(fr.camera.K, w.camera.K)
    # depth: millimetres written, metres read, holes as NaN in both
    np.testing.assert_array_equal(np.isnan(fr.depth_m), np.isnan(f.depth_m))
    ok = np.isfinite(f.depth_m)
    np.testing.assert_allclose(fr.depth_m[ok], f.depth_m[ok], atol=6e-4)
    T_cw = invert_transform(w.T_world_camera)
    assert [o.obj_id for o in fr.objects] == [i.obj.obj_id for i in w.instances]
    for o, inst in zip(fr.objects, w.instances):
        np.testing.assert_allclose(o.T_cam_obj, T_cw @ w.object_pose(inst), atol=1e-6)
        vis, full = o.mask_visib(), o.mask()
        assert vis is not None and full is not None
        assert vis.sum() > 30 and (vis & ~full).sum() <= 0.05 * vis.sum()  # visible part inside the silhouette
    models = BopScene(sdir).models
    for inst in w.instances:
        mi = models[inst.obj.obj_id]
        np.testing.assert_allclose(mi.size, inst.mesh.extents, atol=1e-4)
        assert mi.path is not None and mi.path.is_file()
    names = json.loads((root / "models" / "object_names.json").read_text())
    assert {names[str(i.obj.obj_id)] for i in w.instances} == {i.name for i in w.instances}


def test_datagen_answers_from_the_simulated_scene(exported, tmp_path):
    """The datagen runs on the exported scene; its grasps are in the camera frame of the simulator's camera,
    on the objects the simulator holds."""
    from bopask_vlm.datagen import generate
    from bopask_vlm.eval.runner import load_records
    from bopask_vlm.gripper import GRASP_DEPTH

    w, f, root, _ = exported
    generate(root, tmp_path / "qa", 0, tasks=["grasp", "trajectory"], progress=False)
    recs = load_records([tmp_path / "qa" / "shards"])
    grasps = [r for r in recs if r.task.value == "grasp"]
    assert len(grasps) >= 3 and any(r.task.value == "trajectory" for r in recs)
    for r in grasps:
        T_w = w.T_world_camera @ np.asarray(r.gt["T_cam_gripper"], float)
        gp = T_w[:3, :3] @ [0, 0, GRASP_DEPTH] + T_w[:3, 3]
        inst = w.instances[int(r.objects[0].gt_index)]
        T_wo = w.object_pose(inst)
        local = (gp - T_wo[:3, 3]) @ T_wo[:3, :3]
        assert np.all(np.abs(local) <= inst.mesh.extents / 2 + 0.005), (inst.name, local)  # inside its object
