"""The per-model caches of dataset generation: model geometry built once and placed by pose gives the same
records as building it per scene; the decimated collision mesh of a large model keeps grasp contacts within
1 mm; shapes placed by pose collide like the transformed mesh; the process pool survives a killed worker."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bopask_vlm.datagen import generate, model_geometry
from bopask_vlm.datagen.collision import CollisionWorld, Shape
from bopask_vlm.datagen.executors import PoolExecutor
from bopask_vlm.datagen.grasps import gripper_mesh, gripper_shape
from bopask_vlm.datagen.model_geometry import DECIMATION_TOLERANCE, build_model_geometry, build_models
from bopask_vlm.datagen.object_names import object_names
from bopask_vlm.datagen.scene_tasks import Options, process_scene
from bopask_vlm.datagen.synthetic import REAL_MESH, make_scene


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache") / "bop"
    for i in range(2):  # seed 101 places the LineMOD watering can (45k faces) when its mesh is present
        make_scene(root, seed=100 + i, num_objects=5, num_frames=2, width=320, height=240, scene_id=i)
    return root


def _lines(res):
    return [r.to_line() for r in res.records]


def test_cached_and_uncached_model_geometry_give_identical_records(scenes, tmp_path):
    opts = Options(dataset="bop", names=object_names(None, None, scenes))
    models, bad = build_models(scenes / "models", seed=7)
    assert not bad and models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for sd in sorted((scenes / "test").iterdir()):
            cached = process_scene(sd, tmp_path, 7, opts, models=models)  # geometry shared by both scenes
            model_geometry.clear_shape_cache()  # nothing left from the cached run: FCL geometry rebuilt too
            uncached = process_scene(sd, tmp_path, 7, opts, models=None)  # built here, for this scene only
            assert cached.errors == uncached.errors == []
            assert len(cached.records) > 10 and _lines(cached) == _lines(uncached)
    # the generator (models built once, shared through a 2-process pool) writes the same records
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = generate(scenes, tmp_path / "pool", seed=7, workers=2, progress=False, dataset="bop")
        s1 = generate(scenes, tmp_path / "inline", seed=7, workers=1, progress=False, dataset="bop")
    assert s["models_built"] == s1["models_built"] > 0
    for sd in sorted((scenes / "test").iterdir()):
        name = f"test-{int(sd.name):06d}.jsonl"
        pool = (tmp_path / "pool" / "shards" / name).read_text().splitlines()
        assert pool == (tmp_path / "inline" / "shards" / name).read_text().splitlines()
        res = process_scene(sd, tmp_path / "pool", 7, opts, models=None)
        assert pool == _lines(res)


def test_model_geometry_is_deterministic_per_seed(scenes):
    p = scenes / "models" / "obj_000002.ply"
    a, b, c = build_model_geometry(p, 2, 1), build_model_geometry(p, 2, 1), build_model_geometry(p, 2, 2)
    assert len(a.grasps) > 0
    np.testing.assert_array_equal(a.grasps.T_mesh_gripper, b.grasps.T_mesh_gripper)
    np.testing.assert_array_equal(a.self_free, b.self_free)
    assert a.key == b.key != c.key
    assert not np.array_equal(a.grasps.contacts, c.grasps.contacts)  # another seed samples other contacts


def test_decimated_collision_mesh_keeps_grasp_contacts_within_1mm():
    if not REAL_MESH.is_file():
        pytest.skip(f"real mesh not present at {REAL_MESH}")
    mg = build_model_geometry(REAL_MESH, 5, 0)
    visual = model_geometry.load_mesh_m(REAL_MESH)
    assert mg.decimated and len(mg.collision_faces) <= mg.n_faces // 5
    coll = trimesh.Trimesh(mg.collision_vertices, mg.collision_faces, process=False)
    # independent of the builder's own check (open3d): trimesh's exact point-to-mesh distance
    contacts = mg.grasps.contacts.reshape(-1, 3)
    assert len(contacts) > 20
    _, d, _ = trimesh.proximity.closest_point(coll, contacts)
    assert d.max() <= DECIMATION_TOLERANCE
    pts, _ = trimesh.sample.sample_surface(visual, 2000, seed=3)
    _, d, _ = trimesh.proximity.closest_point(coll, pts)
    assert d.max() <= DECIMATION_TOLERANCE
    back, _ = trimesh.sample.sample_surface(coll, 2000, seed=4)
    _, d, _ = trimesh.proximity.closest_point(visual, back)
    assert d.max() <= DECIMATION_TOLERANCE
    # the open hand's self-collision verdicts on the decimated mesh match the full mesh's
    full = CollisionWorld(table_top=None)
    full.add("self", Shape.from_mesh(visual))
    hand = gripper_shape()
    verdicts = np.array([not full.colliding(hand, T) for T in mg.grasps.T_mesh_gripper])
    assert (verdicts == mg.self_free).mean() >= 0.95


def test_a_shape_placed_by_pose_collides_like_the_transformed_mesh():
    rng = np.random.default_rng(0)
    obj = trimesh.creation.annulus(r_min=0.02, r_max=0.04, height=0.05)  # not convex: a BVH
    shape = Shape.from_mesh(obj)
    assert not shape.convex
    hand = gripper_mesh()
    agree, hits, table_hits = 0, 0, 0
    for _ in range(60):
        T = trimesh.transformations.random_rotation_matrix(rng.random(3))
        T[:3, 3] = rng.uniform(-0.05, 0.05, 3) + [0, 0, 0.1]
        Th = trimesh.transformations.random_rotation_matrix(rng.random(3))
        Th[:3, 3] = T[:3, 3] + rng.uniform(-0.12, 0.12, 3)
        world = CollisionWorld(table_top=0.0)
        world.add("0", shape, T)
        ref = trimesh.collision.CollisionManager()
        placed = obj.copy()
        placed.apply_transform(T)
        ref.add_object("0", placed)
        expect = ref.in_collision_single(hand, transform=Th)
        got = "0" in world.colliding(gripper_shape(), Th)
        agree += expect == got
        hits += got
        low = (hand.vertices @ Th[:3, :3].T + Th[:3, 3])[:, 2].min() < 0.0
        assert ("table" in world.colliding(gripper_shape(), Th)) == low
        table_hits += low
    assert agree == 60 and hits >= 10 and table_hits >= 5  # both verdicts exercised


def _die_once(marker: str, value: int) -> int:
    """Kills its own worker process the first time it runs (marker file absent), returns ``value`` after."""
    m = Path(marker)
    if not m.exists():
        m.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def test_process_pool_rebuilds_itself_when_a_worker_is_killed(tmp_path):
    ex = PoolExecutor(2, retries=1)
    try:
        for i in range(4):
            ex.submit(i, _die_once, str(tmp_path / "m"), i * 10)
        got = {}
        while ex.pending():
            k, v, err = ex.wait()
            assert err is None
            got[k] = v
        assert got == {0: 0, 1: 10, 2: 20, 3: 30}
    finally:
        ex.close()
    ex = PoolExecutor(2, retries=0)  # out of retries: the tasks come back with the error, none is lost
    try:
        for i in range(3):
            ex.submit(i, _die_once, str(tmp_path / "n"), i)
        out = [ex.wait() for _ in range(3)]
        assert sorted(k for k, _, _ in out) == [0, 1, 2]
        assert any(err is not None for _, _, err in out)
    finally:
        ex.close()
