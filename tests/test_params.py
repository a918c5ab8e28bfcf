"""Node parameters: one typed definition, the YAML sets exactly those, the node declares exactly those."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from bopask_ros.node_support.params import PARAMS, SPECS, NodeParams, ParamError, flatten

CONFIG = Path(__file__).resolve().parents[1] / "bopask_ros" / "config"
NODE = Path(__file__).resolve().parents[1] / "bopask_ros" / "bopask_ros" / "ros" / "node.py"


def _node_yaml_params() -> dict:
    doc = yaml.safe_load((CONFIG / "bopask_node.yaml").read_text())
    return flatten(doc["bopask_node"]["ros__parameters"])


def test_yaml_sets_exactly_the_declared_parameters():
    assert set(_node_yaml_params()) == set(SPECS)


def test_yaml_values_are_valid_and_defaults_match():
    p = NodeParams.from_mapping(_node_yaml_params())
    for spec in PARAMS:
        assert p[spec.name] == spec.default, f"{spec.name}: yaml and default differ"
    env = p.safety()
    assert env.velocity_scaling == 0.1 and env.workspace_max == (0.9, 0.7, 0.9)
    assert p.client_config()["base_url"] == "http://127.0.0.1:8000/v1"


def test_node_declares_every_parameter_from_the_definition():
    """node.py declares parameters only in a loop over PARAMS (and nowhere by a literal name)."""
    tree = ast.parse(NODE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "declare_parameter"]
    assert len(calls) == 1
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For) and isinstance(n.iter, ast.Name) and n.iter.id == "PARAMS"]
    assert any(calls[0] in list(ast.walk(loop)) for loop in loops)


@pytest.mark.parametrize("overrides,msg", [
    ({"vlm_timeout_s": "slow"}, "not a float"),
    ({"busy_policy": "drop"}, "not one of"),
    ({"safety": {"workspace_min": [0, 0]}}, "not a list of 3"),
    ({"allow_execution": 1}, "not a bool"),
    ({"vlm_endpont": "x"}, "unknown parameters"),
])
def test_bad_values(overrides, msg):
    with pytest.raises(ParamError, match=msg):
        NodeParams.from_mapping(overrides)


# -- the fixed camera calibration (tf_source: calibration) ----------------------------------------------
def test_shipped_calibration_file_loads_and_reaches_the_optical_frame():
    import numpy as np

    from bopask_ros.node_support.params import CameraCalibration

    cal = CameraCalibration.from_file(str(CONFIG / "camera_calibration.yaml"))
    assert (cal.parent_frame, cal.child_frame) == ("panda_link0", "camera_link")
    buf = cal.transform_buffer("camera_color_optical_frame")
    T_link_opt = buf.lookup_transform("camera_link", "camera_color_optical_frame")
    # REP-103: the optical z (forward) is camera_link's x, optical x (right) is -y, optical y (down) is -z
    np.testing.assert_allclose(T_link_opt[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    T = buf.lookup_transform("panda_link0", "camera_color_optical_frame")
    np.testing.assert_allclose(T[:3, 3], [1.20, 0.0, 0.60])
    # the camera looks back at the robot (-x) and down (-z)
    assert T[0, 2] < -0.5 and T[2, 2] < -0.5


def test_calibration_from_parameters_and_errors(tmp_path):
    from bopask_ros.node_support.params import CameraCalibration, calibration_of

    assert calibration_of(NodeParams.from_mapping({})) is None  # nothing given
    p = NodeParams.from_mapping({"calibration": {"parent_frame": "base", "translation": [0.1, 0.2, 0.3]}})
    cal = calibration_of(p)
    assert cal == CameraCalibration("base", "camera_color_optical_frame", (0.1, 0.2, 0.3), (0.0, 0.0, 0.0, 1.0))
    with pytest.raises(ParamError, match="cannot be read"):
        calibration_of(NodeParams.from_mapping({"calibration_file": str(tmp_path / "missing.yaml")}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("parent_frame: base\ntranslation: [0, 0]\nrotation: [0, 0, 0, 1]\n")
    with pytest.raises(ParamError, match="translation needs 3"):
        CameraCalibration.from_file(str(bad))
    bad.write_text("parent_frame: base\ntranslation: [0, 0, 0]\nrotation: [0, 0, 0, 2]\n")
    with pytest.raises(ParamError, match="unit quaternion"):
        CameraCalibration.from_file(str(bad))
