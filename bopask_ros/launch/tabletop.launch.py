"""bopask on a tabletop: RealSense camera, calibrated extrinsic, tabletop scene, MoveIt (moveit_py), the VLM and
bopask_node.

    ros2 launch bopask_ros tabletop.launch.py                       # panda, mock hardware, camera, plan only
    ros2 launch bopask_ros tabletop.launch.py use_camera:=false rviz:=true
    ros2 launch bopask_ros tabletop.launch.py start_vllm:=true model_path:=/models/bopask-qwen vlm_model:=bopask
    ros2 launch bopask_ros tabletop.launch.py use_fake_hardware:=false allow_execution:=true \
        calibration:=/path/camera_calibration.yaml        # a Panda whose driver runs separately

What starts:
- realsense2_camera rs_launch.py (use_camera; align_depth.enable, topics /camera/camera/...);
- static_transform_publisher <parent_frame> -> <child_frame> from the calibration YAML (new-style arguments);
- robot_state_publisher (namespace ``scene``) with the xacro-expanded tabletop scene (world, table, robot_base);
  the camera is not in that URDF here: its extrinsic comes from the calibration, its internal frames from the
  camera driver; robot_base -> <robot base link> is a static transform;
- the robot (robot:=panda, none for no robot): robot_state_publisher with the MoveIt config's
  robot_description; with use_fake_hardware:=true ros2_control_node (mock components) and the controller
  spawners.  With real hardware the robot's driver must provide /joint_states and the controllers named in the
  MoveIt config (panda_arm_controller, panda_hand_controller);
- FR3 is not supported: franka_ros2's own fr3 set-up (franka_fr3_moveit_config launch/moveit.launch.py) builds
  its robot_description from franka_bringup's franka_arm.urdf.xacro rooted at ``base``, merges
  franka/joint_states and franka_gripper/joint_states with joint_state_publisher, starts franka_gripper, and
  wraps the flat config/fr3_controllers.yaml under moveit_simple_controller_manager; none of that could be run
  and checked here, so robot:=fr3 is refused rather than shipped broken (README, robot set-up);
- ``bopask serve MODEL --port PORT --served-name VLM_MODEL`` (start_vllm:=true), the port taken from vlm_endpoint;
- bopask_node with [MoveIt config (moveit_py, config/moveit_py.yaml), params_file, overrides];
- rviz2 (rviz:=true).
"""

from __future__ import annotations

import math
import os
from urllib.parse import urlparse

import yaml
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import Command, FindExecutable, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "bopask_ros"

# Robots: MoveIt config package and the files in it (relative to that package unless absolute), ros2_control
# controllers for mock hardware, and the bopask_node parameters that depend on the robot.
ROBOTS = {
    "panda": {
        "moveit_package": "moveit_resources_panda_moveit_config",
        "robot_description": ("moveit_resources_panda_moveit_config", "config/panda.urdf.xacro"),
        "robot_description_semantic": None,  # config/panda.srdf of the package
        "joint_limits": None,  # config/joint_limits.yaml of the package
        # bopask's copies of the package's gripper_moveit_controllers.yaml / ros2_controllers.yaml with the gripper
        # allowed to stall on the object (allow_failure / allow_stalling; see the files)
        "trajectory_execution": (PACKAGE, "config/panda_moveit_controllers.yaml"),
        "ros2_controllers": (PACKAGE, "config/panda_ros2_controllers.yaml"),
        "controllers": ["joint_state_broadcaster", "panda_arm_controller", "panda_hand_controller"],
        "base_link": "panda_link0",
        "node": {"planning_frame": "panda_link0", "planning_group": "panda_arm", "gripper_group": "hand",
                 "end_effector_link": "panda_hand"},
    },
}
PIPELINES = ["ompl", "pilz_industrial_motion_planner"]
# Pilz checks its LIN/PTP paths only for self-collision; without a response adapter a straight line may cross the
# table or an object box. OMPL's pipeline (moveit_resources) already has it.
VALIDATE_SOLUTION = "default_planning_response_adapters/ValidateSolution"


def share_file(*parts: str) -> str:
    """A file installed under share/bopask_ros."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def package_file(package: str, relative: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(package), relative)


def robot_file(robot: str, key: str) -> str:
    """A file of ``ROBOTS[robot][key]``: (package, relative path), or a path relative to the MoveIt package."""
    spec = ROBOTS[robot]
    entry = spec[key]
    return package_file(*entry) if isinstance(entry, tuple) else package_file(spec["moveit_package"], entry)


def validate_pilz_solutions(planning_pipelines: dict) -> dict:
    """Add ValidateSolution to the Pilz pipeline's response adapters (kept once, after any it has)."""
    pilz = planning_pipelines.get("pilz_industrial_motion_planner")
    if pilz is not None:
        adapters = list(pilz.get("response_adapters") or [])
        if VALIDATE_SOLUTION not in adapters:
            adapters.append(VALIDATE_SOLUTION)
        pilz["response_adapters"] = adapters
    return planning_pipelines


def arg(context: LaunchContext, name: str) -> str:
    return LaunchConfiguration(name).perform(context)


def as_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


# --- camera extrinsic ---------------------------------------------------------------------------------------

def read_calibration(path: str) -> dict:
    """parent_frame, child_frame, translation [x y z], rotation [qx qy qz qw] (normalised)."""
    with open(path) as f:
        cal = yaml.safe_load(f)
    t = [float(v) for v in cal["translation"]]
    q = [float(v) for v in cal["rotation"]]
    if len(t) != 3 or len(q) != 4:
        raise ValueError(f"{path}: translation needs 3 values, rotation 4 (qx qy qz qw)")
    n = math.sqrt(sum(v * v for v in q))
    if not 0.9 < n < 1.1:
        raise ValueError(f"{path}: rotation is not a unit quaternion (norm {n:.3f})")
    return {"parent_frame": str(cal["parent_frame"]), "child_frame": str(cal.get("child_frame", "camera_link")),
            "translation": t, "rotation": [v / n for v in q]}


def static_tf(parent: str, child: str, xyz=(0.0, 0.0, 0.0), quat=(0.0, 0.0, 0.0, 1.0), name: str | None = None,
              use_sim_time: bool = False) -> Node:
    """tf2_ros static_transform_publisher with the new-style arguments."""
    args = []
    for key, value in zip(("--x", "--y", "--z"), xyz):
        args += [key, repr(float(value))]
    for key, value in zip(("--qx", "--qy", "--qz", "--qw"), quat):
        args += [key, repr(float(value))]
    args += ["--frame-id", parent, "--child-frame-id", child]
    return Node(package="tf2_ros", executable="static_transform_publisher",
                name=name or f"static_tf_{parent}_to_{child}".replace("/", "_"), output="log", arguments=args,
                parameters=[{"use_sim_time": use_sim_time}])


# --- MoveIt ------------------------------------------------------------------------------------------------

def moveit_config(robot: str):
    """MoveItConfigs of ``robot`` with bopask's moveit_py parameters (config/moveit_py.yaml). The URDF's
    ros2_control block names mock_components; it is used only with use_fake_hardware:=true (else the robot's
    driver, started separately, owns the hardware and the controllers, and ros2_control_node is not started)."""
    from moveit_configs_utils import MoveItConfigsBuilder

    spec = ROBOTS[robot]
    builder = MoveItConfigsBuilder(robot, package_name=spec["moveit_package"])
    pkg, rel = spec["robot_description"]
    mappings = {"ros2_control_hardware_type": "mock_components"}
    builder = builder.robot_description(file_path=package_file(pkg, rel), mappings=mappings)
    if spec["robot_description_semantic"] is not None:
        pkg, rel = spec["robot_description_semantic"]
        builder = builder.robot_description_semantic(file_path=package_file(pkg, rel))
    if spec["joint_limits"] is not None:
        builder = builder.joint_limits(file_path=spec["joint_limits"])
    config = (builder.trajectory_execution(file_path=robot_file(robot, "trajectory_execution"))
              .planning_pipelines(default_planning_pipeline="ompl", pipelines=PIPELINES)
              .moveit_cpp(file_path=share_file("config", "moveit_py.yaml"))
              .to_moveit_configs())
    validate_pilz_solutions(config.planning_pipelines)
    return config


def robot_actions(robot: str, config, use_fake_hardware: bool, use_sim_time: bool = False) -> list:
    """robot_state_publisher of the robot description, and ros2_control (mock components) + spawners."""
    spec = ROBOTS[robot]
    actions = [Node(package="robot_state_publisher", executable="robot_state_publisher",
                    name="robot_state_publisher", output="log",
                    parameters=[config.robot_description, {"use_sim_time": use_sim_time}])]
    if use_fake_hardware:
        actions.append(Node(package="controller_manager", executable="ros2_control_node", output="log",
                            parameters=[robot_file(robot, "ros2_controllers"),
                                        {"use_sim_time": use_sim_time}],
                            remappings=[("/controller_manager/robot_description", "/robot_description")]))
        actions += [Node(package="controller_manager", executable="spawner", output="log",
                         arguments=[c, "--controller-manager", "/controller_manager"]) for c in spec["controllers"]]
    else:
        actions.append(LogInfo(msg=f"use_fake_hardware:=false: the {robot} driver must provide /joint_states and "
                                   "the trajectory controllers of the MoveIt config"))
    return actions


# --- VLM and bopask_node -----------------------------------------------------------------------------------

def vllm_process(model_path: str, endpoint: str, served_name: str) -> ExecuteProcess:
    if not model_path:
        raise ValueError("start_vllm:=true needs model_path:=MODEL_DIR")
    url = urlparse(endpoint)
    port = url.port or 8000
    host = url.hostname or "127.0.0.1"
    return ExecuteProcess(cmd=["bopask", "serve", model_path, "--host", host, "--port", str(port),
                               "--served-name", served_name], name="bopask_vllm", output="screen")


def bopask_node(moveit_params: dict, params_file: str, overrides: dict) -> Node:
    """bopask_node with [MoveIt config dict, params_file, overrides] (later entries win)."""
    return Node(package=PACKAGE, executable="bopask_node", name="bopask_node", output="screen", emulate_tty=True,
                parameters=[moveit_params, params_file, overrides])


def rviz_node(config, use_sim_time: bool = False) -> Node:
    params = [{"use_sim_time": use_sim_time}]
    if config is not None:
        params = [config.robot_description, config.robot_description_semantic,
                  config.robot_description_kinematics] + params
    return Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                arguments=["-d", share_file("config", "bopask.rviz")], parameters=params)


# --- launch ------------------------------------------------------------------------------------------------

def launch_setup(context: LaunchContext, *_args, **_kwargs) -> list:
    robot = arg(context, "robot")
    if robot not in ROBOTS and robot != "none":
        raise ValueError(f"robot:={robot}: use one of {sorted(ROBOTS)} or none"
                         + (" (FR3 is not supported: see the README, robot set-up)" if robot == "fr3" else ""))
    use_fake_hardware = as_bool(arg(context, "use_fake_hardware"))
    calibration_path = arg(context, "calibration") or share_file("config", "camera_calibration.yaml")
    params_file = arg(context, "params_file") or share_file("config", "bopask_node.yaml")
    endpoint = arg(context, "vlm_endpoint")
    vlm_model = arg(context, "vlm_model")
    actions: list = []

    # camera extrinsic from the calibration YAML, then the camera driver
    cal = read_calibration(calibration_path)
    actions.append(static_tf(cal["parent_frame"], cal["child_frame"], cal["translation"], cal["rotation"],
                             name="camera_extrinsic"))
    if as_bool(arg(context, "use_camera")):
        # the driver publishes camera_link -> camera_*_frame -> camera_*_optical_frame (factory extrinsics); it must
        # not when the calibration names an optical frame (that frame would get two parents)
        publish_tf = cal["child_frame"] == "camera_link"
        rs_launch = os.path.join(package_file("realsense2_camera", "launch"), "rs_launch.py")
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(rs_launch),
            launch_arguments={
                "camera_namespace": "camera",
                "camera_name": "camera",
                "align_depth.enable": str(as_bool(arg(context, "align_depth"))).lower(),
                "enable_sync": "true",
                "pointcloud.enable": "false",
                "publish_tf": str(publish_tf).lower(),
            }.items()))

    # the tabletop scene (no camera: see above; no robot: its own description below)
    scene = share_file("urdf", "tabletop.urdf.xacro")
    scene_description = ParameterValue(
        Command([FindExecutable(name="xacro"), " ", scene, " with_camera:=false with_robot:=false",
                 " robot_x:=", LaunchConfiguration("robot_x"), " robot_y:=", LaunchConfiguration("robot_y"),
                 " robot_yaw:=", LaunchConfiguration("robot_yaw")]),
        value_type=str)
    actions.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                        name="scene_state_publisher", namespace="scene", output="log",
                        parameters=[{"robot_description": scene_description}]))

    # robot: MoveIt config, robot description, ros2_control
    config = None
    moveit_params: dict = {}
    overrides: dict = {"vlm_endpoint": endpoint, "vlm_model": vlm_model,
                       "allow_execution": as_bool(arg(context, "allow_execution")), "use_sim_time": False}
    if robot != "none":
        config = moveit_config(robot)
        moveit_params = config.to_dict()
        actions.append(static_tf("robot_base", ROBOTS[robot]["base_link"], name="robot_mount"))
        actions += robot_actions(robot, config, use_fake_hardware)
        if robot != "panda":  # bopask_node.yaml is written for the panda
            overrides.update(ROBOTS[robot]["node"])
    elif overrides["allow_execution"]:
        raise ValueError("allow_execution:=true needs a robot")
    else:  # no robot, no MoveIt config: the node answers, lifts and checks, and plans nothing
        overrides["motion_backend"] = "none"

    if as_bool(arg(context, "start_vllm")):
        actions.append(vllm_process(arg(context, "model_path"), endpoint, vlm_model))
    actions.append(bopask_node(moveit_params, params_file, overrides))
    if as_bool(arg(context, "rviz")):
        actions.append(rviz_node(config))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("use_camera", default_value="true", description="start realsense2_camera (rs_launch.py)"),
        DeclareLaunchArgument("align_depth", default_value="true",
                              description="align_depth.enable of the camera (bopask_node reads the aligned depth)"),
        DeclareLaunchArgument("start_vllm", default_value="false",
                              description="start `bopask serve MODEL_PATH` (vLLM; host/port from vlm_endpoint)"),
        DeclareLaunchArgument("model_path", default_value="", description="model or LoRA directory for start_vllm"),
        DeclareLaunchArgument("vlm_endpoint", default_value="http://127.0.0.1:8000/v1",
                              description="OpenAI-compatible endpoint of the VLM"),
        DeclareLaunchArgument("vlm_model", default_value="bopask",
                              description="model name the node asks for (the served name with start_vllm)"),
        DeclareLaunchArgument("robot", default_value="panda", choices=["panda", "none"],
                              description="panda (moveit_resources_panda_moveit_config) or none (no MoveIt: "
                                          "nothing is planned); FR3 is not supported (see the README)"),
        DeclareLaunchArgument("use_fake_hardware", default_value="true",
                              description="ros2_control mock components and the controller spawners"),
        DeclareLaunchArgument("robot_x", default_value="-0.45", description="robot base on the table top, x [m]"),
        DeclareLaunchArgument("robot_y", default_value="0.0", description="robot base on the table top, y [m]"),
        DeclareLaunchArgument("robot_yaw", default_value="0.0", description="robot base on the table top, yaw [rad]"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 (config/bopask.rviz)"),
        DeclareLaunchArgument("calibration", default_value="",
                              description="camera extrinsic YAML (empty: share/bopask_ros/config/camera_calibration.yaml)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="bopask_node parameters (empty: share/bopask_ros/config/bopask_node.yaml)"),
        DeclareLaunchArgument("allow_execution", default_value="false",
                              description="let bopask_node execute the planned trajectories (else plan only)"),
        OpaqueFunction(function=launch_setup),
    ])
