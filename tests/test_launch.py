"""Launch files and their config, checked without ROS 2: static checks with ``ast`` (compiles, defines
generate_launch_description, declares the arguments, references only files that exist), the config YAMLs, the
setup.py data_files globs, and a dry run of each launch file against recording stand-ins for launch / launch_ros /
ament_index_python / moveit_configs_utils (the actions and parameters it would start)."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import math
import py_compile
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "bopask_ros"
LAUNCH = {"tabletop": PKG / "launch" / "tabletop.launch.py", "replay": PKG / "launch" / "replay.launch.py"}
REQUIRED_ARGS = {
    "tabletop": {"use_camera", "align_depth", "start_vllm", "model_path", "vlm_endpoint", "vlm_model", "robot",
                 "use_fake_hardware", "rviz", "calibration", "params_file", "allow_execution"},
    "replay": {"bag", "rate", "loop", "params_file", "vlm_endpoint", "vlm_model", "start_vllm", "model_path", "robot"},
}
MY_FILES = ["launch/tabletop.launch.py", "launch/replay.launch.py", "config/moveit_py.yaml",
            "config/camera_calibration.yaml", "config/bopask.rviz", "config/panda_moveit_controllers.yaml",
            "config/panda_ros2_controllers.yaml", "urdf/tabletop.urdf.xacro",
            "urdf/realsense_frames.xacro"]


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and call_name(n) == name]


def const_str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def declared_args(tree: ast.AST) -> set[str]:
    names = set()
    for c in calls(tree, "DeclareLaunchArgument"):
        first = c.args[0] if c.args else next((k.value for k in c.keywords if k.arg == "name"), None)
        assert const_str(first) is not None, f"line {c.lineno}: DeclareLaunchArgument name is not a literal"
        names.add(const_str(first))
    return names


# --- static checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_compiles_and_defines_generate_launch_description(name, tmp_path):
    path = LAUNCH[name]
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    tree = parse(path)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    assert not funcs["generate_launch_description"].args.args


@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_declares_arguments(name):
    declared = declared_args(parse(LAUNCH[name]))
    assert REQUIRED_ARGS[name] <= declared, REQUIRED_ARGS[name] - declared


@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_referenced_package_files_exist(name):
    tree = parse(LAUNCH[name])
    referenced = set()
    for c in calls(tree, "share_file"):  # share_file("config", "x.yaml") -> share/bopask_ros/config/x.yaml
        parts = [const_str(a) for a in c.args]
        assert all(parts), f"line {c.lineno}: share_file with a non-literal argument"
        referenced.add("/".join(parts))
    for node in ast.walk(tree):  # any bare file name of ours (paths with '/' belong to other packages)
        s = const_str(node)
        if s and re.fullmatch(r"\w[\w.-]*\.(yaml|rviz|xacro)", s):
            assert any((PKG / d / s).is_file() for d in ("config", "urdf")), s
    for rel in sorted(referenced):
        assert (PKG / rel).is_file(), rel
        assert rel.split("/")[0] in ("config", "urdf", "launch")
    if name == "tabletop":
        assert {"config/moveit_py.yaml", "config/camera_calibration.yaml", "config/bopask_node.yaml",
                "urdf/tabletop.urdf.xacro"} <= referenced
    else:
        assert "config/bopask_node.yaml" in referenced
        assert any(const_str(n) == "tabletop.launch.py" for n in ast.walk(tree))


def test_moveit_py_yaml():
    cfg = yaml.safe_load((PKG / "config" / "moveit_py.yaml").read_text())
    psm = cfg["planning_scene_monitor_options"]
    for key in ("robot_description", "joint_state_topic", "attached_collision_object_topic",
                "publish_planning_scene_topic", "monitored_planning_scene_topic", "wait_for_initial_state_timeout"):
        assert key in psm, key
    assert psm["robot_description"] == "robot_description"
    # MoveItCpp throws when no joint state arrives within this timeout; 0 skips that wait, and the adapter asks
    # for the current state (and says when there is none) at each goal instead
    assert psm["wait_for_initial_state_timeout"] == 0.0
    assert cfg["planning_pipelines"]["pipeline_names"] == ["ompl", "pilz_industrial_motion_planner"]
    rrtc = cfg["ompl_rrtc"]["plan_request_params"]
    assert rrtc["planning_pipeline"] == "ompl" and rrtc["planner_id"] == "RRTConnectkConfigDefault"
    lin = cfg["pilz_lin"]["plan_request_params"]
    assert lin["planning_pipeline"] == "pilz_industrial_motion_planner" and lin["planner_id"] == "LIN"
    for p in (cfg["plan_request_params"], rrtc, lin):
        assert p["planning_pipeline"] in cfg["planning_pipelines"]["pipeline_names"]
        for k in ("max_velocity_scaling_factor", "max_acceleration_scaling_factor"):
            assert 0.0 < p[k] <= 1.0
    node = yaml.safe_load((PKG / "config" / "bopask_node.yaml").read_text())["bopask_node"]["ros__parameters"]
    for k in ("planning_pipeline", "cartesian_pipeline"):  # the node's pipeline names are defined here
        if k in node:
            assert node[k] in cfg, node[k]


def test_camera_calibration_yaml():
    cal = yaml.safe_load((PKG / "config" / "camera_calibration.yaml").read_text())
    assert isinstance(cal["parent_frame"], str) and cal["parent_frame"]
    assert cal["child_frame"] in ("camera_link", "camera_color_optical_frame")
    t, q = np.asarray(cal["translation"], float), np.asarray(cal["rotation"], float)
    assert t.shape == (3,) and np.isfinite(t).all() and np.linalg.norm(t) < 5.0
    assert q.shape == (4,) and abs(np.linalg.norm(q) - 1.0) < 1e-6


def test_setup_py_installs_my_files():
    tree = parse(PKG / "setup.py")
    patterns = [const_str(c.args[0]) for c in calls(tree, "glob") if c.args and const_str(c.args[0])]
    for rel in MY_FILES:
        assert (PKG / rel).is_file(), rel
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), (rel, patterns)


# --- dry run against recording stand-ins ----------------------------------------------------------------

class Rec:
    """Records its constructor arguments (stands in for every launch / launch_ros class)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.args}, {self.kwargs})"


class LaunchConfiguration(Rec):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class MoveItConfigsBuilder:
    """moveit_configs_utils stand-in: records the builder calls, loads the moveit_cpp YAML it is given."""

    instances: list = []

    def __init__(self, robot_name, robot_description="robot_description", package_name=None):
        self.robot_name, self.package_name, self.calls = robot_name, package_name, []
        MoveItConfigsBuilder.instances.append(self)

    def __getattr__(self, method):
        def record(**kwargs):
            self.calls.append((method, kwargs))
            return self
        return record

    # moveit_resources_panda_moveit_config's pipeline files as the builder loads them (pilz: request adapters only)
    PIPELINE_FILES = {
        "ompl": {"planning_plugins": ["ompl_interface/OMPLPlanner"],
                 "response_adapters": ["default_planning_response_adapters/AddTimeOptimalParameterization",
                                       "default_planning_response_adapters/ValidateSolution",
                                       "default_planning_response_adapters/DisplayMotionPath"]},
        "pilz_industrial_motion_planner": {
            "planning_plugins": ["pilz_industrial_motion_planner/CommandPlanner"],
            "request_adapters": ["default_planning_request_adapters/ValidateWorkspaceBounds",
                                 "default_planning_request_adapters/CheckStartStateBounds",
                                 "default_planning_request_adapters/CheckStartStateCollision"],
            "default_planner_config": "PTP"},
    }

    def to_moveit_configs(self):
        import copy

        called = dict(self.calls)
        pipelines = {"planning_pipelines": called["planning_pipelines"]["pipelines"]}
        pipelines.update({k: copy.deepcopy(self.PIPELINE_FILES[k]) for k in pipelines["planning_pipelines"]})
        cfg = types.SimpleNamespace(robot_description={"robot_description": "<robot/>"},
                                    robot_description_semantic={"robot_description_semantic": "<robot/>"},
                                    robot_description_kinematics={"robot_description_kinematics": {}},
                                    planning_pipelines=pipelines,
                                    trajectory_execution=yaml.safe_load(
                                        Path(called["trajectory_execution"]["file_path"]).read_text()))
        cpp = called["moveit_cpp"]["file_path"]
        # MoveItConfigs.to_dict: the moveit_cpp file last (its planning_pipelines entry wins, as in the real one)
        cfg.to_dict = lambda: {**cfg.robot_description, **cfg.robot_description_semantic, **cfg.planning_pipelines,
                               **cfg.trajectory_execution, **yaml.safe_load(Path(cpp).read_text())}
        return cfg


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    recs = {n: type(n, (Rec,), {}) for n in (
        "LaunchContext", "LaunchDescription", "DeclareLaunchArgument", "ExecuteProcess", "IncludeLaunchDescription",
        "LogInfo", "OpaqueFunction", "PythonLaunchDescriptionSource", "Command", "FindExecutable", "Node",
        "ParameterValue")}
    module("launch", LaunchContext=recs["LaunchContext"], LaunchDescription=recs["LaunchDescription"])
    module("launch.actions", **{k: recs[k] for k in ("DeclareLaunchArgument", "ExecuteProcess",
                                                      "IncludeLaunchDescription", "LogInfo", "OpaqueFunction")})
    module("launch.launch_description_sources", PythonLaunchDescriptionSource=recs["PythonLaunchDescriptionSource"])
    module("launch.substitutions", Command=recs["Command"], FindExecutable=recs["FindExecutable"],
           LaunchConfiguration=LaunchConfiguration)
    module("launch_ros")
    module("launch_ros.actions", Node=recs["Node"])
    module("launch_ros.parameter_descriptions", ParameterValue=recs["ParameterValue"])
    shares = {"bopask_ros": PKG}
    module("ament_index_python")
    module("ament_index_python.packages",
           get_package_share_directory=lambda pkg: str(shares.get(pkg, tmp_path / "share" / pkg)))
    MoveItConfigsBuilder.instances = []
    module("moveit_configs_utils", MoveItConfigsBuilder=MoveItConfigsBuilder)
    return recs


def dry_run(name: str, **overrides: str) -> tuple[list, list]:
    spec = importlib.util.spec_from_file_location(f"bopask_{name}_launch_under_test", LAUNCH[name])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    entities = ld.args[0]
    decls = [e for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    values = {d.args[0]: d.kwargs.get("default_value") for d in decls}
    for k in overrides:
        assert k in values, f"{k} is not declared"
    values.update(overrides)
    missing = [k for k, v in values.items() if v is None]
    assert not missing, f"required arguments not given: {missing}"
    context = types.SimpleNamespace(launch_configurations=values)
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](context), decls


def nodes(actions, executable=None):
    return [a for a in actions if type(a).__name__ == "Node"
            and (executable is None or a.kwargs["executable"] == executable)]


def static_tf_args(node) -> dict:
    a = node.kwargs["arguments"]
    assert len(a) % 2 == 0 and all(k.startswith("--") for k in a[::2])
    return dict(zip(a[::2], a[1::2]))


def test_dry_run_tabletop_defaults(stubs):
    actions, _ = dry_run("tabletop")
    cal = yaml.safe_load((PKG / "config" / "camera_calibration.yaml").read_text())
    # camera extrinsic with the new-style static_transform_publisher arguments
    tfs = {static_tf_args(n)["--child-frame-id"]: static_tf_args(n) for n in nodes(actions, "static_transform_publisher")}
    ext = tfs[cal["child_frame"]]
    assert ext["--frame-id"] == cal["parent_frame"]
    np.testing.assert_allclose([float(ext[k]) for k in ("--x", "--y", "--z")], cal["translation"])
    np.testing.assert_allclose([float(ext[k]) for k in ("--qx", "--qy", "--qz", "--qw")], cal["rotation"], atol=1e-6)
    assert tfs["panda_link0"]["--frame-id"] == "robot_base"
    # realsense 4.x rs_launch.py with aligned depth
    (rs,) = [a for a in actions if type(a).__name__ == "IncludeLaunchDescription"]
    assert rs.args[0].args[0].endswith("realsense2_camera/launch/rs_launch.py")
    rs_args = dict(rs.kwargs["launch_arguments"])
    assert rs_args["align_depth.enable"] == "true" and rs_args["publish_tf"] == "true"
    # scene: xacro-expanded tabletop, camera left to the extrinsic, robot to its own description
    scene = [n for n in nodes(actions, "robot_state_publisher") if n.kwargs.get("namespace") == "scene"]
    (cmd,) = [p["robot_description"].args[0] for p in scene[0].kwargs["parameters"]]
    text = "".join(x if isinstance(x, str) else "" for x in cmd.args[0])
    assert type(cmd.args[0][0]).__name__ == "FindExecutable" and "tabletop.urdf.xacro" in text
    assert "with_camera:=false" in text and "with_robot:=false" in text
    # MoveIt config as in the moveit_py tutorial, ros2_control mock hardware + spawners
    (builder,) = MoveItConfigsBuilder.instances
    assert (builder.robot_name, builder.package_name) == ("panda", "moveit_resources_panda_moveit_config")
    called = dict(builder.calls)
    assert called["moveit_cpp"]["file_path"] == str(PKG / "config" / "moveit_py.yaml")
    assert called["planning_pipelines"]["pipelines"] == ["ompl", "pilz_industrial_motion_planner"]
    assert len(nodes(actions, "ros2_control_node")) == 1
    spawned = {n.kwargs["arguments"][0] for n in nodes(actions, "spawner")}
    assert {"joint_state_broadcaster", "panda_arm_controller"} <= spawned
    # the bopask node: [moveit config, params_file, overrides]
    (node,) = nodes(actions, "bopask_node")
    assert node.kwargs["package"] == "bopask_ros" and node.kwargs["name"] == "bopask_node"
    moveit_params, params_file, over = node.kwargs["parameters"]
    assert "robot_description_semantic" in moveit_params and "ompl_rrtc" in moveit_params
    assert params_file == str(PKG / "config" / "bopask_node.yaml")
    assert over["allow_execution"] is False and over["use_sim_time"] is False
    assert over["vlm_endpoint"] == "http://127.0.0.1:8000/v1"
    assert not [a for a in actions if type(a).__name__ == "ExecuteProcess"]  # no vLLM by default
    assert not nodes(actions, "rviz2")


def test_dry_run_tabletop_options(stubs, tmp_path):
    cal = tmp_path / "cal.yaml"
    q = np.array([0.1, -0.2, 0.3, 0.9])
    cal.write_text(yaml.safe_dump({"parent_frame": "panda_hand", "child_frame": "camera_color_optical_frame",
                                   "translation": [0.05, 0.0, 0.04], "rotation": q.tolist()}))
    actions, _ = dry_run("tabletop", robot="panda", use_camera="true", align_depth="false", calibration=str(cal),
                         start_vllm="true", model_path="/models/m", vlm_endpoint="http://0.0.0.0:8123/v1",
                         vlm_model="qwen", rviz="true", allow_execution="true", use_fake_hardware="false",
                         params_file="/tmp/p.yaml")
    ext = [static_tf_args(n) for n in nodes(actions, "static_transform_publisher")
           if static_tf_args(n)["--frame-id"] == "panda_hand"][0]
    np.testing.assert_allclose([float(ext[k]) for k in ("--qx", "--qy", "--qz", "--qw")], q / np.linalg.norm(q))
    (rs,) = [a for a in actions if type(a).__name__ == "IncludeLaunchDescription"]
    rs_args = dict(rs.kwargs["launch_arguments"])
    assert rs_args["align_depth.enable"] == "false" and rs_args["publish_tf"] == "false"
    (vllm,) = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
    cmd = vllm.kwargs["cmd"]
    assert cmd[:3] == ["bopask", "serve", "/models/m"]
    assert cmd[cmd.index("--port") + 1] == "8123" and cmd[cmd.index("--served-name") + 1] == "qwen"
    (builder,) = MoveItConfigsBuilder.instances
    assert builder.package_name == "moveit_resources_panda_moveit_config"
    assert not nodes(actions, "ros2_control_node")  # real hardware: the robot's driver runs the controllers
    assert not nodes(actions, "spawner")
    (node,) = nodes(actions, "bopask_node")
    _, params_file, over = node.kwargs["parameters"]
    assert params_file == "/tmp/p.yaml" and over["allow_execution"] is True
    assert over["vlm_model"] == "qwen" and "planning_frame" not in over  # bopask_node.yaml is the panda's
    assert len(nodes(actions, "rviz2")) == 1


def test_fr3_is_refused_not_shipped_broken(stubs):
    # franka_ros2's own FR3 set-up could not be reproduced and checked here: the launch files refuse it
    for name in ("tabletop", "replay"):
        (robot_arg,) = [c for c in calls(parse(LAUNCH[name]), "DeclareLaunchArgument") if const_str(c.args[0]) == "robot"]
        choices = next(k.value for k in robot_arg.keywords if k.arg == "choices")
        assert "fr3" not in [const_str(e) for e in choices.elts]
    spec = importlib.util.spec_from_file_location("bopask_tabletop_launch_robots", LAUNCH["tabletop"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert set(mod.ROBOTS) == {"panda"}
    with pytest.raises(ValueError, match="FR3 is not supported"):
        dry_run("tabletop", robot="fr3")
    with pytest.raises(ValueError, match="FR3 is not supported"):
        dry_run("replay", bag="/data/run1", robot="fr3")


def test_dry_run_tabletop_without_camera_or_robot(stubs):
    actions, _ = dry_run("tabletop", use_camera="false", robot="none")
    assert not [a for a in actions if type(a).__name__ == "IncludeLaunchDescription"]
    assert not MoveItConfigsBuilder.instances and not nodes(actions, "ros2_control_node")
    (node,) = nodes(actions, "bopask_node")
    assert node.kwargs["parameters"][0] == {}
    assert node.kwargs["parameters"][-1]["motion_backend"] == "none"  # no MoveIt config: plan nothing
    with pytest.raises(ValueError, match="needs a robot"):
        dry_run("tabletop", use_camera="false", robot="none", allow_execution="true")


def test_dry_run_replay(stubs):
    with pytest.raises(AssertionError, match="required arguments"):
        dry_run("replay")
    actions, _ = dry_run("replay", bag="/data/run1", rate="0.5", loop="true")
    (play,) = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
    cmd = play.kwargs["cmd"]
    assert cmd[:4] == ["ros2", "bag", "play", "/data/run1"]
    assert cmd[cmd.index("--rate") + 1] == "0.5" and "--clock" in cmd and "--loop" in cmd
    qos = yaml.safe_load(Path(cmd[cmd.index("--qos-profile-overrides-path") + 1]).read_text())
    assert qos["/tf_static"]["durability"] == "transient_local"
    assert not MoveItConfigsBuilder.instances and not nodes(actions, "robot_state_publisher")
    (node,) = nodes(actions, "bopask_node")
    moveit_params, params_file, over = node.kwargs["parameters"]
    assert moveit_params == {} and params_file == str(PKG / "config" / "bopask_node.yaml")
    assert over["use_sim_time"] is True and over["planning_frame"] == "base_link"
    assert over["motion_backend"] == "none"
    # with a robot: MoveIt config, mock hardware on sim time, bag base frame linked to the robot base
    actions, _ = dry_run("replay", bag="/data/run1", robot="panda")
    assert len(MoveItConfigsBuilder.instances) == 1
    (mount,) = [static_tf_args(n) for n in nodes(actions, "static_transform_publisher")]
    assert (mount["--frame-id"], mount["--child-frame-id"]) == ("base_link", "panda_link0")
    assert all(p.get("use_sim_time") is True for n in nodes(actions) if n.kwargs["executable"] != "spawner"
               for p in n.kwargs["parameters"] if isinstance(p, dict) and "use_sim_time" in p)
    (node,) = nodes(actions, "bopask_node")
    assert node.kwargs["parameters"][2]["planning_frame"] == "panda_link0"
    assert math.isclose(float(mount["--qw"]), 1.0)


def test_pilz_paths_are_validated_against_the_planning_scene(stubs):
    """Defect 4 (issue 20): Pilz checks only self-collision; its pipeline gets ValidateSolution, once."""
    actions, _ = dry_run("tabletop")
    (node,) = nodes(actions, "bopask_node")
    moveit_params = node.kwargs["parameters"][0]
    pilz = moveit_params["pilz_industrial_motion_planner"]
    assert pilz["response_adapters"] == ["default_planning_response_adapters/ValidateSolution"]
    assert pilz["request_adapters"][-1] == "default_planning_request_adapters/CheckStartStateCollision"
    assert moveit_params["ompl"]["response_adapters"].count("default_planning_response_adapters/ValidateSolution") == 1
    # the pipelines named in moveit_py.yaml are the ones the node's plan_request_params entries use
    assert moveit_params["planning_pipelines"]["pipeline_names"] == ["ompl", "pilz_industrial_motion_planner"]


def test_gripper_may_stall_on_the_object(stubs):
    """Defect 2 (issue 20): the launch ships controller configs in which a close stopped by the object is no
    failure: GripperActionController allow_stalling (ros2_controllers jazzy, default false) and MoveIt's
    GripperCommand handle allow_failure (default false)."""
    actions, _ = dry_run("tabletop")
    (builder,) = MoveItConfigsBuilder.instances
    moveit_ctl = yaml.safe_load(Path(dict(builder.calls)["trajectory_execution"]["file_path"]).read_text())
    hand = moveit_ctl["moveit_simple_controller_manager"]["panda_hand_controller"]
    assert hand["type"] == "GripperCommand" and hand["allow_failure"] is True
    (ros2_control,) = nodes(actions, "ros2_control_node")
    ctl_file = ros2_control.kwargs["parameters"][0]
    assert Path(ctl_file).parent == PKG / "config"
    ctl = yaml.safe_load(Path(ctl_file).read_text())
    assert ctl["controller_manager"]["ros__parameters"]["panda_hand_controller"]["type"] == \
        "position_controllers/GripperActionController"
    assert ctl["panda_hand_controller"]["ros__parameters"]["allow_stalling"] is True
    # the controllers MoveIt drives are the ones ros2_control runs and the launch spawns
    spawned = {n.kwargs["arguments"][0] for n in nodes(actions, "spawner")}
    assert set(moveit_ctl["moveit_simple_controller_manager"]["controller_names"]) <= spawned
    assert set(moveit_ctl["moveit_simple_controller_manager"]["controller_names"]) <= \
        set(ctl["controller_manager"]["ros__parameters"])


def test_rosdep_keys_of_what_runs_are_declared():
    """Defect 13 (issue 20): rosdistro's rosdep/python.yaml has python3-httpx and python3-rosbags-pip (checked at
    ros/rosdistro 8468e88ccd); the packages that import httpx / rosbags declare them."""
    import xml.etree.ElementTree as ET

    def deps(pkg):
        return {e.text for e in ET.parse(REPO / pkg / "package.xml").getroot() if e.tag.endswith("depend")}

    def imports(pkg, module):
        pat = re.compile(rf"^\s*(import|from)\s+{module}\b", re.M)
        return any(pat.search(p.read_text()) for p in (REPO / pkg / pkg).rglob("*.py"))

    assert imports("bopask_vlm", "httpx") and "python3-httpx" in deps("bopask_vlm")
    assert imports("bopask_ros", "rosbags") and "python3-rosbags-pip" in deps("bopask_ros")
