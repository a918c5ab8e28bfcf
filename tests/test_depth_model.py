"""The D435 depth model (``synthetic.DepthModel``, preset ``d435``) on depth images built here: noise whose spread
grows with the square of the distance, stereo shadows left of foreground edges as wide as the baseline says,
holes and flying pixels at depth edges, thin parts without depth, deterministic per generator seed."""

from __future__ import annotations

import numpy as np
import pytest

from bopask_vlm.datagen.synthetic import DEPTH_MODELS, DepthModel, SyntheticSceneError, add_depth_noise

FX = 615.4  # the simulated D435 colour camera at 640x480


def _box_scene() -> np.ndarray:
    d = np.full((240, 320), 0.9, np.float32)  # a wall 0.9 m away
    d[60:180, 100:220] = 0.6  # a box face 0.6 m away
    d[20:220, 270:272] = 0.5  # a rod 2 pixels wide
    return d


def test_noise_spread_grows_with_the_square_of_the_distance():
    m = DEPTH_MODELS["d435"]
    stds = []
    zs = (0.4, 0.8, 1.6)
    for z in zs:
        plane = np.full((200, 200), z, np.float32)
        out = add_depth_noise(plane, np.random.default_rng(3), "d435")
        ok = out > 0
        assert ok.mean() > 0.95  # a flat plane has few holes
        stds.append(float((out[ok] - z).std()))
        assert stds[-1] == pytest.approx(m.sigma(z), rel=0.05)
    # the stereo term dominates: doubling z roughly quadruples the spread
    assert 3.0 < stds[2] / stds[1] < 4.1 and 2.5 < stds[1] / stds[0] < 4.1
    assert m.sigma(1.0) == pytest.approx(0.0005 + 0.08 / (430.0 * 0.05))


def test_holes_at_depth_edges_shadows_and_thin_parts():
    d = _box_scene()
    out = add_depth_noise(d, np.random.default_rng(0), "d435", fx=FX)
    hole = out == 0
    # stereo shadow: the wall just left of the box is unseen by the second imager over f*B*(1/0.6 - 1/0.9) px
    band = FX * 0.05 * (1 / 0.6 - 1 / 0.9)
    assert hole[70:170, 100 - int(band) + 1:100].mean() > 0.97
    assert hole[70:170, 100 - int(band) - 6:100 - int(band) - 1].mean() < 0.1  # and not beyond
    assert hole[70:170, 221:230].mean() < 0.1  # no shadow right of the box
    # the box face and the wall away from edges keep their depth (rare random blobs aside)
    assert hole[70:170, 110:210].mean() < 0.05 and hole[0:50, 0:80].mean() < 0.05
    # the 2-pixel rod gives no depth at all; a plain depth edge (box top) loses some pixels
    assert hole[30:210, 270:272].mean() > 0.95
    top_edge = hole[59:61, 110:210]
    assert 0.05 < top_edge.mean() < 0.9


def test_flying_pixels_lie_between_the_two_sides_of_an_edge():
    d = _box_scene()
    out = add_depth_noise(d, np.random.default_rng(1), DepthModel(shadow=False, edge_dropout=0.0, flying=1.0))
    edge = out[58:62, 110:210]  # rows across the box's top edge
    mid = (edge > 0.62) & (edge < 0.88)  # neither side within many sigmas
    assert mid.mean() > 0.2
    assert ((out[90:150, 130:190] > 0.62) & (out[90:150, 130:190] < 0.88)).mean() == 0.0  # none on flat faces


def test_deterministic_per_generator_seed_and_clear_errors():
    d = _box_scene()
    a = add_depth_noise(d, np.random.default_rng(5), "d435", fx=FX)
    b = add_depth_noise(d, np.random.default_rng(5), "d435", fx=FX)
    c = add_depth_noise(d, np.random.default_rng(6), "d435", fx=FX)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(d, _box_scene())  # the input (ground truth) untouched
    with pytest.raises(SyntheticSceneError, match="unknown depth model"):
        add_depth_noise(d, np.random.default_rng(0), "kinect")
