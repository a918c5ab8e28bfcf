"""Replay a recorded (or bopask_demo-written) RealSense rosbag2 into bopask_node on simulated time.

    ros2 launch bopask_ros replay.launch.py bag:=/data/run1 rate:=0.5 loop:=true
    ros2 launch bopask_ros replay.launch.py bag:=/data/run1 robot:=panda     # plan with MoveIt (mock hardware)

Starts ``ros2 bag play BAG --rate RATE --clock 100 [--loop]`` (``/tf_static`` replayed transient-local so a late
subscriber still gets the camera extrinsic) and bopask_node with use_sim_time:=true and the same parameters as
tabletop.launch.py ([MoveIt config, params_file, overrides]).  No camera; no robot unless robot:=panda, which
adds the MoveIt config, robot_state_publisher and ros2_control mock components, and links the bag's base frame
(planning_frame, ``base_link`` in bags written by bopask_ros.replay.bag_writer) to the robot's base link.
The helpers are shared with tabletop.launch.py, loaded from the same directory.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import yaml
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction


def _tabletop():
    """tabletop.launch.py next to this file (source tree or share/bopask_ros/launch), as a module."""
    path = Path(__file__).resolve().with_name("tabletop.launch.py")
    spec = importlib.util.spec_from_file_location("bopask_tabletop_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ros2 bag play QoS overrides: /tf_static as tf2 publishes it (a bag written without QoS metadata would
# otherwise be replayed volatile, and a node started after the first message never gets the extrinsic)
QOS_OVERRIDES = {"/tf_static": {"history": "keep_last", "depth": 100, "reliability": "reliable",
                                "durability": "transient_local"}}


def qos_overrides_file() -> str:
    fd, path = tempfile.mkstemp(prefix="bopask_replay_qos_", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(QOS_OVERRIDES, f)
    return path


def launch_setup(context: LaunchContext, *_args, **_kwargs) -> list:
    tt = _tabletop()
    bag = tt.arg(context, "bag")
    if not bag:
        raise ValueError("bag:=PATH is required")
    robot = tt.arg(context, "robot")
    if robot not in tt.ROBOTS and robot != "none":
        raise ValueError(f"robot:={robot}: use one of {sorted(tt.ROBOTS)} or none"
                         + (" (FR3 is not supported: see the README, robot set-up)" if robot == "fr3" else ""))
    params_file = tt.arg(context, "params_file") or tt.share_file("config", "bopask_node.yaml")
    endpoint = tt.arg(context, "vlm_endpoint")
    vlm_model = tt.arg(context, "vlm_model")
    planning_frame = tt.arg(context, "planning_frame")

    play = ["ros2", "bag", "play", bag, "--rate", tt.arg(context, "rate"), "--clock", "100",
            "--qos-profile-overrides-path", qos_overrides_file()]
    if tt.as_bool(tt.arg(context, "loop")):
        play.append("--loop")
    actions: list = [ExecuteProcess(cmd=play, name="bag_play", output="screen")]

    overrides: dict = {"vlm_endpoint": endpoint, "vlm_model": vlm_model, "use_sim_time": True,
                       "planning_frame": planning_frame,
                       "allow_execution": tt.as_bool(tt.arg(context, "allow_execution"))}
    config = None
    moveit_params: dict = {}
    if robot != "none":
        config = tt.moveit_config(robot)
        moveit_params = config.to_dict()
        base_link = tt.ROBOTS[robot]["base_link"]
        if planning_frame != base_link:
            actions.append(tt.static_tf(planning_frame, base_link, name="robot_mount", use_sim_time=True))
        actions += tt.robot_actions(robot, config, use_fake_hardware=True, use_sim_time=True)
        overrides.update(tt.ROBOTS[robot]["node"])
    elif overrides["allow_execution"]:
        raise ValueError("allow_execution:=true needs a robot")
    else:  # no robot, no MoveIt config: the node answers, lifts and checks, and plans nothing
        overrides["motion_backend"] = "none"

    if tt.as_bool(tt.arg(context, "start_vllm")):
        actions.append(tt.vllm_process(tt.arg(context, "model_path"), endpoint, vlm_model))
    actions.append(tt.bopask_node(moveit_params, params_file, overrides))
    if tt.as_bool(tt.arg(context, "rviz")):
        actions.append(tt.rviz_node(config, use_sim_time=True))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 directory (or .mcap file) to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("loop", default_value="false", description="play the bag in a loop"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="bopask_node parameters (empty: share/bopask_ros/config/bopask_node.yaml)"),
        DeclareLaunchArgument("planning_frame", default_value="base_link",
                              description="robot base frame in the bag's TF (bag_writer writes base_link)"),
        DeclareLaunchArgument("start_vllm", default_value="false",
                              description="start `bopask serve MODEL_PATH` (vLLM; host/port from vlm_endpoint)"),
        DeclareLaunchArgument("model_path", default_value="", description="model or LoRA directory for start_vllm"),
        DeclareLaunchArgument("vlm_endpoint", default_value="http://127.0.0.1:8000/v1",
                              description="OpenAI-compatible endpoint of the VLM"),
        DeclareLaunchArgument("vlm_model", default_value="bopask", description="model name the node asks for"),
        DeclareLaunchArgument("robot", default_value="none", choices=["none", "panda"],
                              description="none: answer and lift only; panda: also plan (mock hardware)"),
        DeclareLaunchArgument("allow_execution", default_value="false",
                              description="execute plans on the mock hardware (needs robot)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 (config/bopask.rviz)"),
        OpaqueFunction(function=launch_setup),
    ])
