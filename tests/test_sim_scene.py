"""Simulated scenes: deterministic per seed, objects resting, the real mesh optional, the robot where the
calibration says the camera looks."""

from __future__ import annotations

import numpy as np
import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim import objects as sim_objects
from bopask_sim.world import SceneError, SimWorld


def _state(w: SimWorld) -> tuple[list[str], np.ndarray]:
    return [i.name for i in w.instances], np.stack([w.object_pose(i) for i in w.instances])


def test_same_seed_same_scene_other_seed_other_scene():
    with SimWorld(3, 4) as a, SimWorld(3, 4) as b, SimWorld(4, 4) as c:
        na, pa = _state(a)
        nb, pb = _state(b)
        nc, pc = _state(c)
        assert na == nb
        np.testing.assert_allclose(pa, pb, atol=1e-9)
        assert na != nc or not np.allclose(pa, pc, atol=1e-3)
        # the captured frames are the same images too (noise seeded by the scene)
        fa, fb = a.capture(), b.capture()
        np.testing.assert_array_equal(fa.rgb, fb.rgb)
        np.testing.assert_array_equal(np.isnan(fa.depth_m), np.isnan(fb.depth_m))


def test_objects_rest_stably_on_the_table_within_reach():
    with SimWorld(1, 6) as w:
        before = _state(w)[1]
        w.settle(1.0)
        after = _state(w)[1]
        # settled: another second of physics moves nothing by more than a millimetre
        assert np.max(np.abs(after[:, :3, 3] - before[:, :3, 3])) < 1e-3
        for i, inst in enumerate(w.instances):
            lo = (inst.mesh.vertices @ after[i, :3, :3].T + after[i, :3, 3]).min(axis=0)
            assert abs(lo[2]) < 4e-3, (inst.name, lo[2])  # bottom on the table top (z = 0)
            reach = np.linalg.norm(w.world_to_base(after[i, :3, 3][None])[0])
            assert 0.25 < reach < 0.8, (inst.name, reach)
        # footprints apart: no two objects touch
        import pybullet as p

        for i, a in enumerate(w.instances):
            for b in w.instances[i + 1:]:
                assert not p.getContactPoints(a.body, b.body, physicsClientId=w.client)


def test_real_mesh_is_optional(monkeypatch, tmp_path):
    from bopask_vlm.datagen import synthetic

    monkeypatch.setattr(synthetic, "REAL_MESH", tmp_path / "absent.ply")
    names = [o.name for o in sim_objects.catalogue(use_real_mesh=True)]
    assert "watering can" not in names and "orange bottle" in names
    assert {"yellow duck", "wooden jenga block"} <= set(names)  # the pybullet_data models
    with SimWorld(0, 8, use_real_mesh=True) as w:
        assert all(i.name != "watering can" for i in w.instances)


def test_bad_arguments():
    with pytest.raises(SceneError, match="num_objects"):
        SimWorld(0, 0)
    with pytest.raises(ValueError, match="D435 intrinsics"):
        SimWorld(0, 2, width=800, height=600)
