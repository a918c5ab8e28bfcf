"""A carried object's path raised over what the depth image shows (issue 19), on a synthetic RGB-D scene."""

from __future__ import annotations

import numpy as np
import pytest
from _lifting_helpers import make_camera, render_scene

from bopask_ros.motion.path_repair import repair_path

TALL = {"kind": "cylinder", "centre": (0.05, 0.0), "radius": 0.03, "height": 0.20}
TARGET = {"kind": "box", "centre": (0.05, 0.2), "size": (0.08, 0.08, 0.04), "yaw": 0.0}


@pytest.fixture(scope="module")
def scene():
    return render_scene(make_camera(640, 480), eye=(-0.55, 0.0, 0.55), target=(0.05, 0.0, 0.05),
                        objects=[TALL, TARGET])


def _path(scene, heights, ys):
    """A path in the world (x = 0.05, y along ys, z = heights) carried into the camera frame."""
    W = np.stack([np.full(len(ys), 0.05), ys, heights], axis=1)
    return W @ scene.T_cam_world[:3, :3].T + scene.T_cam_world[:3, 3]


def _world(scene, P):
    T = np.linalg.inv(scene.T_cam_world)
    return P @ T[:3, :3].T + T[:3, 3]


def test_a_path_through_a_tall_object_is_raised_over_it(scene):
    ys = np.array([-0.2, -0.2, -0.1, 0.0, 0.1, 0.2])
    P = _path(scene, np.array([0.0, 0.08, 0.1, 0.1, 0.1, 0.06]), ys)
    rep = repair_path(P, scene.depth_m, scene.camera, scene.plane_cam)
    assert rep.collisions_before > 0 and "raised" in rep.reason
    W = _world(scene, rep.points)
    assert W[3, 2] > 0.20 + 0.015  # the waypoint over the cylinder clears its top
    assert 0.1 <= rep.moved_m <= 0.15 + 1e-9
    np.testing.assert_allclose(rep.points[[0, -1]], P[[0, -1]])  # the object rests at the ends
    again = repair_path(rep.points, scene.depth_m, scene.camera, scene.plane_cam)
    assert again.moved_m < 0.02  # (the column's ends still pass the cylinder's rim a little lower)


def test_a_clear_path_is_left_as_it_is(scene):
    ys = np.array([-0.2, -0.2, -0.1, 0.0, 0.1, 0.2])
    P = _path(scene, np.array([0.0, 0.25, 0.27, 0.27, 0.27, 0.06]), ys)
    rep = repair_path(P, scene.depth_m, scene.camera, scene.plane_cam)
    assert rep.moved_m == 0.0 and rep.reason == "" and rep.collisions_before == 0
    np.testing.assert_array_equal(rep.points, P)


def test_the_target_under_the_end_is_not_an_obstacle(scene):
    """Carried high over the cylinder, then straight down onto the 4 cm box: the box under the end is where the
    object goes, not something it hits."""
    P = _path(scene, np.array([0.0, 0.3, 0.3, 0.06]), np.array([-0.3, -0.3, 0.2, 0.2]))
    rep = repair_path(P, scene.depth_m, scene.camera, scene.plane_cam)
    assert rep.moved_m == 0.0 and rep.collisions_before == 0, rep.reason
