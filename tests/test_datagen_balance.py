"""Synthetic scenes give both answers: objects stacked on others (so "above"/"below" can be Yes), and the
dataset card prints each discrete task's answer balance and warns where one answer is over 90 %."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from _train_helpers import generated_dataset

from bopask_vlm.datagen.relations import geom_from_corners, relation_holds
from bopask_vlm.datagen.shards import answer_balance, balance_warnings
from bopask_vlm.datagen.synthetic import catalog, place_objects, write_models


@pytest.fixture(scope="module")
def scene_objects(tmp_path_factory):
    objs = catalog(use_real_mesh=False)
    meshes = write_models(tmp_path_factory.mktemp("models"), objs)
    return objs, meshes


def _world_vertices(meshes, obj, T):
    return meshes[obj.obj_id].vertices @ T[:3, :3].T + T[:3, 3]


def test_stacked_objects_rest_on_a_flat_top_and_are_above_it(scene_objects):
    objs, meshes = scene_objects
    picks = [objs[2], objs[5], objs[3], objs[0]]  # green block, purple cube, yellow ball, red box
    found = 0
    for seed in range(6):
        poses = place_objects(picks, meshes, np.random.default_rng(seed), stack=1.0)
        verts = [_world_vertices(meshes, o, T) for o, T in zip(picks, poses)]
        for i, v in enumerate(verts):
            if v[:, 2].min() < 1e-6:
                continue  # on the table
            base = [j for j, u in enumerate(verts) if j != i and abs(u[:, 2].max() - v[:, 2].min()) < 1e-6]
            assert base, f"object {i} floats at z={v[:, 2].min():.3f}"
            j = base[0]
            top, bottom = geom_from_corners(v), geom_from_corners(verts[j])  # (extents of the vertices)
            T_cam = np.eye(4)
            assert relation_holds("above", top, bottom, T_cam) is True
            assert relation_holds("below", bottom, top, T_cam) is True
            found += 1
    assert found >= 3
    # the simulator's placement (stack 0, the default) keeps every object on the table
    poses = place_objects(picks, meshes, np.random.default_rng(0))
    assert all(abs(_world_vertices(meshes, o, T)[:, 2].min()) < 1e-9 for o, T in zip(picks, poses))


def test_dataset_card_prints_answer_balance_and_warns_over_90_percent(tmp_path):
    out = generated_dataset(tmp_path, seed=3)
    card = (out / "README.md").read_text()
    balance = answer_balance(out)
    assert "Answer balance" in card and balance
    for key, counts in balance.items():
        assert f"| {key} | " in card
        assert sum(counts.values()) > 0
    warnings = balance_warnings(balance)
    assert ("Warning: unbalanced answers" in card) == bool(warnings)
    assert all(w in card for w in warnings)
    assert balance_warnings({"depth": Counter(yes=91, no=9)}) == ["depth: 91 of 100 answers (91 %) are 'yes'"]
    assert balance_warnings({"depth": Counter(yes=90, no=10), "spatial/above": Counter(no=5, yes=5)}) == []
