"""Trajectory answers, both ends: the datagen only places A where B's flat top holds it, and the pipeline's
lifting of a path inverts the datagen's convention (A's base point at rest, lifted 2 cm, carried, placed 2 cm
above B's top centre) on synthetic RGB-D frames with exact depth."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from _lifting_helpers import make_camera, render_scene

from bopask_ros.perception.lifting import DepthLifter, LiftRule
from bopask_ros.pipeline import TaskPipeline
from bopask_vlm.datagen import trajectories as tr
from bopask_vlm.datagen.collision import Placed, Shape
from bopask_vlm.geometry import invert_transform, transform_points


# -- the datagen's support check ---------------------------------------------------------------------------
def _on_table(mesh: trimesh.Trimesh, xy: tuple[float, float] = (0.0, 0.0)) -> trimesh.Trimesh:
    m = mesh.copy()
    m.apply_translation([xy[0] - m.bounds.mean(0)[0], xy[1] - m.bounds.mean(0)[1], -m.bounds[0, 2]])
    return m


def _holds(b: trimesh.Trimesh, a: trimesh.Trimesh) -> bool:
    b, a = _on_table(b), _on_table(a, (0.3, 0.0))
    hull = Placed(Shape.from_mesh(a.convex_hull), np.eye(4))
    return tr.can_support(b.vertices, b.faces, a.vertices, a.faces, hull, b.bounds)


BOX = trimesh.creation.box(extents=(0.07, 0.05, 0.04))
CUBE = trimesh.creation.box(extents=(0.05, 0.05, 0.05))
BALL = trimesh.creation.icosphere(subdivisions=3, radius=0.035)
CONE = trimesh.creation.cone(radius=0.032, height=0.10, sections=40)
CAN = trimesh.creation.cylinder(radius=0.034, height=0.12, sections=40)


def test_flat_tops_and_bottoms():
    top = tr.flat_face_points(_on_table(BOX).vertices, BOX.faces, "top")
    assert tr.in_polygon([[0.0, 0.0], [0.034, 0.024]], top).all()  # the whole 7 x 5 cm top
    assert not tr.in_polygon([[0.036, 0.0]], top).any()
    assert not tr.in_polygon([[0.0, 0.0]], tr.flat_face_points(_on_table(CONE).vertices, CONE.faces, "top")).any()
    ball = _on_table(BALL)
    # a faceted ball's top facets are a few millimetres across
    assert not tr.in_polygon([[0.007, 0.0], [0.0, -0.007]], tr.flat_face_points(ball.vertices, ball.faces, "top")).any()
    can = _on_table(CAN)
    bottom = tr.flat_face_points(can.vertices, can.faces, "bottom")
    assert tr.in_polygon([[0.0, 0.0], [0.03, 0.0]], bottom).all() and not tr.in_polygon([[0.04, 0.0]], bottom).any()
    with pytest.raises(ValueError, match="side"):
        tr.flat_face_points(can.vertices, can.faces, "left")


def test_only_a_flat_big_enough_top_holds_a():
    assert _holds(BOX, CUBE) and _holds(CAN, BOX) and _holds(CUBE, CONE)  # a cone stands on its flat base
    assert not _holds(BALL, CUBE)  # no flat top
    assert not _holds(CONE, CUBE)  # the apex
    assert not _holds(BOX, BALL)  # a ball has no flat bottom: it rolls off
    tall = trimesh.creation.box(extents=(0.05, 0.05, 0.20))
    stick = trimesh.creation.box(extents=(0.12, 0.024, 0.012))  # a top 2.4 cm wide
    assert _holds(stick, trimesh.creation.box(extents=(0.03, 0.03, 0.01)))  # a flat tile: centre of mass low
    assert not _holds(stick, tall)  # 10 cm up, tilted 15 degrees its centre of mass leaves the 12 mm half-width
    assert not _holds(trimesh.creation.box(extents=(0.12, 0.016, 0.012)), CUBE)  # narrower than the 1 cm margin
    # a slender A standing (10 cm up, 2.5 cm half-width): tilted 25 degrees its centre of mass leaves its own
    # bottom, so it rocks off when dropped even onto a wide top; the same block lying down is held
    wide = trimesh.creation.box(extents=(0.30, 0.30, 0.02))
    assert not _holds(wide, tall) and _holds(wide, trimesh.creation.box(extents=(0.20, 0.05, 0.05)))
    # a long block over a small cube: its centre of mass is over the top, but most of its bottom is not
    assert not _holds(CUBE, trimesh.creation.box(extents=(0.12, 0.06, 0.045)))


def test_datagen_trajectories_end_on_a_top_that_holds_a():
    """Every trajectory the datagen makes on the synthetic scene ends on a B that holds A (the rule above,
    checked again on the true meshes), and the placement lies over B's flat top: a ray straight down from it
    meets B 2 cm below."""
    import json

    from _datagen_helpers import built, world_T

    from bopask_vlm.answers.types import Task

    b = built()
    w = json.loads((b.scene / "scene_world.json").read_text())
    meshes = []
    for o in w["objects"]:
        m = trimesh.load(b.scene.parent.parent / "models" / f"obj_{o['obj_id']:06d}.ply", process=False)
        m.apply_scale(0.001)
        m.apply_transform(np.asarray(o["T_world_obj"]))
        meshes.append(m)
    recs = [r for r in b.records if r.task is Task.TRAJECTORY]
    assert recs
    for r in recs:
        a, bi = meshes[r.gt["a_gt_index"]], meshes[r.gt["b_gt_index"]]
        hull = Placed(Shape.from_mesh(a.convex_hull), np.eye(4))
        assert tr.can_support(bi.vertices, bi.faces, a.vertices, a.faces, hull, bi.bounds)
        place = transform_points(world_T(b.scene, r.im_id), np.asarray(r.gt["placement_cam"])[None])[0]
        hit, _, _ = bi.ray.intersects_location([place], [[0.0, 0.0, -1.0]])
        assert len(hit) and hit[:, 2].max() == pytest.approx(place[2] - tr.LIFT, abs=4e-3)


# -- the pipeline's lifting of a path ------------------------------------------------------------------------
SMALL_B = {"kind": "box", "centre": (0.12, -0.10), "size": (0.05, 0.05, 0.04), "yaw": 0.2}
A = {"kind": "cylinder", "centre": (-0.10, 0.12), "radius": 0.03, "height": 0.09}
WALL = {"kind": "box", "centre": (0.02, 0.0), "size": (0.06, 0.08, 0.10), "yaw": 0.0}


@pytest.fixture(scope="module")
def scene():
    return render_scene(make_camera(640, 480), eye=(-0.55, 0.0, 0.55), target=(0.0, 0.0, 0.0),
                        objects=[A, SMALL_B, WALL])


def _datagen_path() -> np.ndarray:
    """A path as the datagen writes it (world): A's base at rest, 2 cm up, two free-space points over the
    wall, the placement 2 cm above the top centre of the small box B."""
    rest = np.array([A["centre"][0], A["centre"][1], 0.0])
    place = np.array([SMALL_B["centre"][0], SMALL_B["centre"][1], SMALL_B["size"][2] + tr.LIFT])
    return np.array([rest, rest + [0, 0, tr.LIFT], [-0.02, 0.07, 0.15], [0.08, -0.06, 0.13], place])


def _lift(scene, uv, **kw):
    pipe = TaskPipeline(None, None, **kw)
    return pipe, pipe._lift_path(DepthLifter(scene.camera, scene.depth_m, plane=scene.plane_cam), uv)


def test_path_lifting_inverts_the_datagen_convention(scene):
    P_w = _datagen_path()
    P_c = transform_points(scene.T_cam_world, P_w)
    uv = scene.camera.project(P_c)
    pipe, lp = _lift(scene, uv)
    assert lp.all_valid
    got = transform_points(invert_transform(scene.T_cam_world), lp.points)
    # the placement: 2 cm above B's top, over its centre (the old lifting put it on the table behind B)
    assert np.linalg.norm(got[-1] - P_w[-1]) < 3e-3 and lp.rules[-1] == LiftRule.DEPTH
    # the start: straight above A's base point at rest, start_height up
    np.testing.assert_allclose(got[0], P_w[0] + [0, 0, pipe.start_height], atol=1e-6)
    # the lift-off: straight above the start, 2 cm up
    assert np.linalg.norm(got[1] - P_w[1]) < 1e-3
    # every point after the start lies on its own ray (the 2D answer is kept); the free-space points are
    # carried no lower than waypoint_height
    np.testing.assert_allclose(scene.camera.project(lp.points[1:]), uv[1:], atol=1e-6)
    assert np.all(got[2:-1, 2] >= pipe.waypoint_height - 1e-9)
    # with a lower carrying floor the heights run from the lift-off to the placement along the 2D path
    _, low = _lift(scene, uv, waypoint_height=0.0)
    h = transform_points(invert_transform(scene.T_cam_world), low.points)[:, 2]
    assert tr.LIFT - 1e-3 < h[2] < h[3] < h[4] + 1e-9


def test_placement_on_b_survives_pixel_noise_and_a_miss_lands_on_the_table(scene):
    P_c = transform_points(scene.T_cam_world, _datagen_path())
    uv = scene.camera.project(P_c)
    rng = np.random.default_rng(3)
    top = SMALL_B["size"][2] + tr.LIFT
    for _ in range(10):
        noisy = uv + rng.normal(0.0, 2.0, uv.shape)
        _, lp = _lift(scene, noisy)
        end_w = transform_points(invert_transform(scene.T_cam_world), lp.points[-1:])[0]
        assert end_w[2] == pytest.approx(top, abs=4e-3)  # still on B's top, not on the table behind it
        assert np.linalg.norm(end_w[:2] - _datagen_path()[-1, :2]) < 0.025  # over B's 5 cm top
    # a placement over bare table is 2 cm above the table, where its ray says
    lifter = DepthLifter(scene.camera, scene.depth_m, plane=scene.plane_cam)
    p = transform_points(scene.T_cam_world, np.array([[0.25, 0.2, tr.LIFT]]))
    out = lifter.lift_onto_surface(scene.camera.project(p), tr.LIFT)
    assert out.valid[0] and np.linalg.norm(out.points[0] - p[0]) < 2e-3


def test_a_placement_seen_over_a_wall_lands_behind_it_and_no_depth_is_a_reason(scene):
    """The walk passes over the 10 cm wall (its foot stays above the wall's top) and lands on the table behind;
    a placement over the wall itself lands on the wall's top."""
    lifter = DepthLifter(scene.camera, scene.depth_m, plane=scene.plane_cam)
    to_w = invert_transform(scene.T_cam_world)
    behind = np.array([[0.25, 0.0, tr.LIFT], [0.02, 0.0, WALL["size"][2] + tr.LIFT]])
    uv = scene.camera.project(transform_points(scene.T_cam_world, behind))
    out = lifter.lift_onto_surface(uv, tr.LIFT)
    assert out.valid.all()
    np.testing.assert_allclose(transform_points(to_w, out.points), behind, atol=3e-3)
    holes = np.full_like(scene.depth_m, np.nan)
    none = DepthLifter(scene.camera, holes, plane=scene.plane_cam).lift_onto_surface(uv[:1], tr.LIFT)
    assert not none.valid[0] and none.rules[0] == LiftRule.NONE and "depth" in none.reasons[0]
