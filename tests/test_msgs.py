"""bopask_msgs: every interface parses with ROS 2 Jazzy's own rosidl tools (rosidl_adapter and rosidl_parser, from
the ros-jazzy wheels that ``make test`` installs and colcon builds bopask_msgs with) and registers in the rosbags
typestore next to the real ROS 2 Jazzy message types; results serialise to CDR and back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bopask_ros.node_support.msg_types import interface_texts, msgs_dir, register_bopask_types

ROSIDL_SCRIPT = r"""
import json, sys, tempfile, pathlib
from rosidl_adapter.parser import parse_message_file, parse_action_file
from rosidl_adapter.msg import convert_msg_to_idl
from rosidl_adapter.action import convert_action_to_idl
from rosidl_parser.parser import parse_idl_file
from rosidl_parser.definition import IdlLocator
root = pathlib.Path(sys.argv[1])
out = {}
tmp = pathlib.Path(tempfile.mkdtemp())
for f in sorted((root / "msg").glob("*.msg")):
    spec = parse_message_file("bopask_msgs", str(f))
    idl = convert_msg_to_idl(root, "bopask_msgs", f.relative_to(root), tmp)
    parse_idl_file(IdlLocator(tmp, idl.relative_to(tmp)))
    out[f.stem] = [str(x.type) + " " + x.name for x in spec.fields]
for f in sorted((root / "action").glob("*.action")):
    spec = parse_action_file("bopask_msgs", str(f))
    idl = convert_action_to_idl(root, "bopask_msgs", f.relative_to(root), tmp)
    parse_idl_file(IdlLocator(tmp, idl.relative_to(tmp)))
    out[f.stem] = {"goal": [x.name for x in spec.goal.fields], "result": [x.name for x in spec.result.fields],
                   "feedback": [x.name for x in spec.feedback.fields]}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.ros  # rosidl comes with the ROS wheels: where they are missing this fails (conftest), never skips
def test_every_interface_parses_with_rosidl():
    root = msgs_dir()
    r = subprocess.run([sys.executable, "-c", ROSIDL_SCRIPT, str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    parsed = json.loads(r.stdout.split("RESULT ", 1)[1])
    files = {p.stem for p in (root / "msg").glob("*.msg")} | {p.stem for p in (root / "action").glob("*.action")}
    assert set(parsed) == files
    assert parsed["Grasp"]["goal"] == ["object_description", "execute", "question"]
    assert "grasp_pose" in parsed["Grasp"]["result"] and parsed["Grasp"]["feedback"] == ["feedback"]
    assert any(f.endswith(" u") for f in parsed["Keypoint2D"])


def test_cmake_lists_every_interface():
    root = msgs_dir()
    cmake = (root / "CMakeLists.txt").read_text()
    for f in list((root / "msg").glob("*.msg")) + list((root / "action").glob("*.action")):
        assert f'"{f.parent.name}/{f.name}"' in cmake, f"{f.name} missing from rosidl_generate_interfaces"


@pytest.fixture(scope="module")
def typestore():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    names = register_bopask_types(ts)
    assert "bopask_msgs/action/Grasp_Result" in names
    return ts


def test_all_interfaces_register_in_rosbags(typestore):
    for name in interface_texts():
        assert name in typestore.types


def test_grasp_result_round_trips_through_cdr(typestore):
    ts = typestore
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    Pose = ts.types["geometry_msgs/msg/Pose"]
    Point = ts.types["geometry_msgs/msg/Point"]
    Quaternion = ts.types["geometry_msgs/msg/Quaternion"]
    PoseStamped = ts.types["geometry_msgs/msg/PoseStamped"]
    PointStamped = ts.types["geometry_msgs/msg/PointStamped"]
    M = {n.rsplit("/", 1)[1]: ts.types[n] for n in ts.types if n.startswith("bopask_msgs/")}
    header = Header(stamp=Time(sec=12, nanosec=5), frame_id="base_link")
    pose = PoseStamped(header=header, pose=Pose(position=Point(x=0.4, y=0.0, z=0.1),
                                                orientation=Quaternion(x=1.0, y=0.0, z=0.0, w=0.0)))
    status = M["TaskStatus"](code=M["TaskStatus"].SAFETY_REJECTED, reason="below the table", failed_check="min_height")
    answer = M["Answer2D"](task="grasp", question="q", raw_text="Grasp center: [1, 2], ...", model="m",
                           points=[M["Keypoint2D"](name="Grasp center", u=1.0, v=2.0)], yes_no=False)
    lifted = M["LiftedPoint"](point=PointStamped(header=header, point=Point(x=0.1, y=0.2, z=0.3)), valid=True,
                              rule="depth", reason="")
    res = M["Grasp_Result"](status=status, answer=answer, grasp_pose=pose, pre_grasp_pose=pose, gripper_width=0.08,
                            keypoints=[lifted], executed=False,
                            timings=[M["StageTiming"](stage="query", seconds=0.25)],
                            refinement=M["GraspRefinement"](mode="local", refined=True, moved_m=0.012, moved_deg=7.5,
                                                            score=0.6, candidates=181, range_source="depth",
                                                            answer_pose=pose, reason="moved"),
                            attempts=[M["Attempt"](index=0, failure="no_object", reason="on the table",
                                                   points=[M["Keypoint2D"](name="", u=3.0, v=4.0)]),
                                      M["Attempt"](index=1, failure="", reason="", points=[])])
    raw = ts.serialize_cdr(res, "bopask_msgs/action/Grasp_Result")
    back = ts.deserialize_cdr(raw, "bopask_msgs/action/Grasp_Result")
    assert back.status.code == 5 and back.status.failed_check == "min_height"
    assert back.grasp_pose.header.frame_id == "base_link"
    assert np.isclose(back.keypoints[0].point.point.z, 0.3)
    assert back.timings[0].stage == "query"
    assert back.refinement.candidates == 181 and back.refinement.range_source == "depth"
    assert [a.failure for a in back.attempts] == ["no_object", ""] and back.attempts[0].points[0].v == 4.0


def test_feedback_stage_constants_match_pipeline_stages(typestore):
    from bopask_ros.pipeline import Stage

    fb = typestore.types["bopask_msgs/msg/StageFeedback"]
    consts = {getattr(fb, n) for n in dir(fb) if n.startswith("STAGE_")}
    assert consts <= {s.value for s in Stage}
    assert {"query", "lift", "plan", "execute"} <= consts


def test_bad_action_definition_is_a_clear_error(tmp_path: Path):
    from bopask_ros.node_support.msg_types import InterfaceError, split_action

    with pytest.raises(InterfaceError, match="two '---'"):
        split_action("string a\n---\nstring b\n")
