"""bopask_ros/urdf/tabletop.urdf.xacro: expands with PyPI xacro, loads with yourdfpy and pinocchio, camera frames
named as realsense-ros 4.x names them, camera pose from the xacro args, optical z along the viewing direction."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

xacro = pytest.importorskip("xacro")
yourdfpy = pytest.importorskip("yourdfpy")

URDF_DIR = Path(__file__).resolve().parents[1] / "bopask_ros" / "urdf"
SCENE = URDF_DIR / "tabletop.urdf.xacro"
CAMERA_FRAMES = ("camera_link", "camera_color_frame", "camera_color_optical_frame", "camera_depth_frame",
                 "camera_depth_optical_frame")
SCENE_FRAMES = ("world", "table", "robot_base")
# defaults of the xacro args (keep in sync with tabletop.urdf.xacro)
DEFAULT_CAMERA = {"xyz": (0.75, 0.0, 1.35), "rpy": (0.0, 0.75, np.pi), "color_y": 0.015}
R_BODY_OPTICAL = Rotation.from_euler("xyz", [-np.pi / 2, 0.0, -np.pi / 2]).as_matrix()  # URDF rpy = fixed-axis xyz


def expand(**args: str | float) -> str:
    doc = xacro.process_file(str(SCENE), mappings={k: str(v) for k, v in args.items()})
    return doc.toprettyxml(indent="  ")


def load(xml: str) -> yourdfpy.URDF:
    return yourdfpy.URDF.load(io.BytesIO(xml.encode()), load_meshes=False, build_collision_scene_graph=False)


def pose(xyz, rpy) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()
    T[:3, 3] = xyz
    return T


def expected_world_optical(xyz, rpy, color_y) -> np.ndarray:
    T_color = np.eye(4)
    T_color[1, 3] = color_y
    T_opt = np.eye(4)
    T_opt[:3, :3] = R_BODY_OPTICAL
    return pose(xyz, rpy) @ T_color @ T_opt


@pytest.fixture(scope="module")
def default_urdf() -> yourdfpy.URDF:
    return load(expand())


def test_default_scene_frames_and_tree(default_urdf):
    links = set(default_urdf.link_map)
    assert set(SCENE_FRAMES + CAMERA_FRAMES) <= links
    assert default_urdf.base_link == "world"
    assert all(j.type == "fixed" for j in default_urdf.robot.joints)
    assert default_urdf.joint_map["camera_color_optical_joint"].parent == "camera_color_frame"
    assert default_urdf.joint_map["camera_depth_optical_joint"].parent == "camera_depth_frame"
    table = default_urdf.link_map["table"]
    assert table.visuals and table.collisions and table.collisions[0].geometry.box is not None


def test_default_camera_pose_and_viewing_direction(default_urdf):
    T = default_urdf.get_transform("camera_color_optical_frame", "world")
    np.testing.assert_allclose(T, expected_world_optical(**DEFAULT_CAMERA), atol=1e-9)
    # the default camera looks at the table top: its optical axis (z) hits the table plane inside the table
    T_wt = default_urdf.get_transform("table", "world")
    origin, z = T[:3, 3], T[:3, 2]
    assert z[2] < 0
    s = (T_wt[2, 3] - origin[2]) / z[2]
    hit = origin + s * z
    assert abs(hit[0] - T_wt[0, 3]) < 0.6 and abs(hit[1] - T_wt[1, 3]) < 0.4
    # the robot base sits on the table top
    T_wb = default_urdf.get_transform("robot_base", "world")
    np.testing.assert_allclose(T_wb[:3, 3], (-0.45, 0.0, 0.75), atol=1e-9)


@pytest.mark.parametrize("args", [
    {"camera_x": 0.3, "camera_y": -0.2, "camera_z": 1.1, "camera_roll": 0.1, "camera_pitch": 1.2, "camera_yaw": 2.5,
     "camera_color_y": 0.0},
    {"camera_x": -0.1, "camera_y": 0.4, "camera_z": 0.9, "camera_roll": -0.3, "camera_pitch": 0.4, "camera_yaw": -1.0,
     "camera_color_y": 0.02, "camera_parent": "table", "robot_x": 0.1, "robot_y": 0.2, "robot_yaw": 0.5},
])
def test_camera_pose_from_args(args):
    urdf = load(expand(**args))
    xyz = (args["camera_x"], args["camera_y"], args["camera_z"])
    rpy = (args["camera_roll"], args["camera_pitch"], args["camera_yaw"])
    parent = args.get("camera_parent", "world")
    T = urdf.get_transform("camera_color_optical_frame", parent)
    np.testing.assert_allclose(T, expected_world_optical(xyz, rpy, args["camera_color_y"]), atol=1e-9)
    # optical z = the body x axis (viewing direction), optical x = -body y (right), optical y = -body z (down)
    R_body = Rotation.from_euler("xyz", rpy).as_matrix()
    np.testing.assert_allclose(T[:3, 2], R_body[:, 0], atol=1e-9)
    np.testing.assert_allclose(T[:3, 0], -R_body[:, 1], atol=1e-9)
    np.testing.assert_allclose(T[:3, 1], -R_body[:, 2], atol=1e-9)
    # depth optical frame: same orientation, at camera_link's origin
    Td = urdf.get_transform("camera_depth_optical_frame", parent)
    np.testing.assert_allclose(Td[:3, :3], T[:3, :3], atol=1e-9)
    np.testing.assert_allclose(Td[:3, 3], xyz, atol=1e-9)
    if "robot_x" in args:
        Tb = urdf.get_transform("robot_base", "table")
        np.testing.assert_allclose(Tb, pose((args["robot_x"], args["robot_y"], 0.0), (0, 0, args["robot_yaw"])),
                                   atol=1e-9)


def test_args_do_not_leak_between_expansions():
    assert load(expand(camera_x=9.0)).get_transform("camera_link", "world")[0, 3] == pytest.approx(9.0)
    assert load(expand()).get_transform("camera_link", "world")[0, 3] == pytest.approx(DEFAULT_CAMERA["xyz"][0])


def test_nominal_calibration_matches_default_scene(default_urdf):
    """config/camera_calibration.yaml (robot base -> camera_link) is the scene's default camera placement."""
    import yaml

    cal = yaml.safe_load((URDF_DIR.parent / "config" / "camera_calibration.yaml").read_text())
    assert cal["child_frame"] == "camera_link"
    T_cal = np.eye(4)
    T_cal[:3, :3] = Rotation.from_quat(cal["rotation"]).as_matrix()
    T_cal[:3, 3] = cal["translation"]
    np.testing.assert_allclose(default_urdf.get_transform("camera_link", "robot_base"), T_cal, atol=1e-6)


def test_pinocchio_agrees():
    pin = pytest.importorskip("pinocchio")
    args = {"camera_x": 0.5, "camera_y": 0.1, "camera_z": 1.2, "camera_roll": 0.2, "camera_pitch": 0.9,
            "camera_yaw": 3.0}
    xml = expand(**args)
    model = pin.buildModelFromXML(xml)
    data = model.createData()
    pin.forwardKinematics(model, data, pin.neutral(model))
    pin.updateFramePlacements(model, data)
    for name in CAMERA_FRAMES + SCENE_FRAMES:
        assert model.existFrame(name), name
    M = data.oMf[model.getFrameId("camera_color_optical_frame")]
    expected = load(xml).get_transform("camera_color_optical_frame", "world")
    np.testing.assert_allclose(M.homogeneous, expected, atol=1e-9)


def test_without_camera_and_with_robot(tmp_path):
    robot = tmp_path / "robot.urdf"
    robot.write_text(
        '<?xml version="1.0"?><robot name="toy"><link name="toy_link0"/>'
        '<joint name="toy_joint1" type="revolute"><parent link="toy_link0"/><child link="toy_link1"/>'
        '<origin xyz="0 0 0.3"/><axis xyz="0 0 1"/><limit lower="-2" upper="2" effort="10" velocity="1"/></joint>'
        '<link name="toy_link1"/></robot>')
    urdf = load(expand(with_camera="false", with_robot="true", robot_urdf=robot, robot_base_link="toy_link0"))
    assert not set(CAMERA_FRAMES) & set(urdf.link_map)
    assert urdf.joint_map["robot_mount_joint"].parent == "robot_base"
    assert urdf.actuated_joint_names == ["toy_joint1"]
    np.testing.assert_allclose(urdf.get_transform("toy_link1", "world")[:3, 3], (-0.45, 0.0, 1.05), atol=1e-9)
    # with_robot without robot_urdf: the robot comes from the launch file, robot_base stays a leaf
    urdf = load(expand(with_robot="true"))
    assert "robot_mount_joint" not in urdf.joint_map and "robot_base" in urdf.link_map


def test_xacro_cli(tmp_path):
    exe = Path(sys.executable).with_name("xacro")
    if not exe.exists():
        pytest.skip("xacro CLI not in the venv")
    out = tmp_path / "scene.urdf"
    subprocess.run([str(exe), str(SCENE), "-o", str(out), "camera_z:=1.5", "camera_name:=camera"], check=True,
                   timeout=30)
    urdf = yourdfpy.URDF.load(str(out), load_meshes=False)
    assert urdf.get_transform("camera_link", "world")[2, 3] == pytest.approx(1.5)
