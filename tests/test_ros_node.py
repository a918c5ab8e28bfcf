"""bopask_node under real rclpy and DDS: the node in its own process (``python -m bopask_ros.ros.node
--ros-args --params-file bopask_ros/config/bopask_node.yaml -p ...``, the YAML loaded by rclpy), frames of
a synthetic scene published on the realsense-ros topic names, every action server answered by the
oracle from the scene's QA records, each result equal to what the ROS-free TaskPipeline gives for the
same frame and answer, feedback stages in order, markers (cleared between results) and the debug image.

The camera pose is a fixed calibration (``tf_source: calibration``: no TF tree on a pip-installed ROS
core); nothing plans (``motion_backend: none``)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from _ros_helpers import (
    CameraPublisher,
    FeedbackTap,
    GoalRun,
    NodeProcess,
    RosClient,
    action_client,
    wait_for,
    wait_for_action,
    write_calibration,
)

pytestmark = [pytest.mark.ros]

ACTION_OF = {"grasp": "grasp", "pose": "pose", "trajectory": "trajectory", "rearrangement": "rearrangement",
             "spatial": "yes_no", "depth": "yes_no"}
IFACE = {"grasp": "Grasp", "pose": "Pose", "trajectory": "Trajectory", "rearrangement": "Rearrangement",
         "yes_no": "YesNoQuestion"}


def _goal_msg(rec: Any) -> Any:
    from bopask_msgs.action import Grasp, Pose, Rearrangement, Trajectory, YesNoQuestion

    names = [o.description for o in rec.objects]
    task, q = rec.task.value, rec.question  # the record's question, as replay asks it
    if task == "grasp":
        return Grasp.Goal(object_description=names[0], question=q)
    if task == "pose":
        return Pose.Goal(object_description=names[0], question=q)
    if task == "trajectory":
        return Trajectory.Goal(object_description=names[0], target_description=names[1], question=q)
    if task == "rearrangement":
        return Rearrangement.Goal(object_description=names[0], question=q)
    return YesNoQuestion.Goal(task=task, object_a=names[0], object_b=names[1], question=q)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A synthetic tabletop scene written as a rosbag2 by the project's bag writer, read back: its first
    frame, its camera pose in the robot base frame as a calibration file, and one QA record per task."""

    from bopask_ros.replay.bag_reader import read_bag
    from bopask_ros.replay.bag_writer import bop_scene_to_bag, read_bop_scene_frames
    from bopask_ros.replay.demo import make_dataset

    work = tmp_path_factory.mktemp("ros_scene")
    scene_dir, records, _ = make_dataset(work / "data", 0, 4, 1, 320, 240, None)
    bag = bop_scene_to_bag(scene_dir, work / "bag", records=records, im_ids=[0])
    data = read_bag(bag)
    bf = data.frames[0]
    T = data.tf.lookup_transform("base_link", bf.frame.frame_id, bf.stamp_ns * 1e-9)
    cal = write_calibration(work / "calibration.yaml", "base_link", bf.frame.frame_id, T)
    recs_file = work / "records.jsonl"
    recs_file.write_text("".join(r.to_line() + "\n" for r in records))
    # one record per task whose (task, objects) identifies it (the node's oracle finds records by those)
    keys = [(r.task.value, tuple(o.description for o in r.objects)) for r in records]
    chosen: dict[str, Any] = {}
    for r, k in zip(records, keys):
        if keys.count(k) == 1 and r.task.value not in chosen:
            chosen[r.task.value] = r
    assert {"grasp", "pose", "trajectory", "rearrangement"} <= set(chosen)
    sf = read_bop_scene_frames(scene_dir, [0])[0]
    return {"rgb": sf.rgb, "depth_mm": sf.depth_mm, "K": sf.camera.K, "frame_id": bf.frame.frame_id,
            "calibration": cal, "records_file": recs_file, "records": chosen}


@pytest.fixture(scope="module")
def ros(scene, tmp_path_factory):
    """The node process (oracle, calibration, no motion), the client node and the camera publisher."""
    log = tmp_path_factory.mktemp("ros_node_log") / "node.log"
    node = NodeProcess({"tf_source": "calibration", "calibration_file": scene["calibration"],
                        "motion_backend": "none", "vlm_client": "oracle", "oracle_records": scene["records_file"],
                        "planning_frame": "base_link", "vlm_model": "oracle", "max_frame_age_s": 5.0}, log)
    client = RosClient("bopask_test_client")
    cam = CameraPublisher(client, scene["rgb"], scene["depth_mm"], scene["K"], scene["frame_id"])
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import MarkerArray

    got: dict[str, list] = {"markers": [], "debug": []}
    client.node.create_subscription(MarkerArray, "/bopask_node/markers", got["markers"].append, 10)
    client.node.create_subscription(Image, "/bopask_node/debug_image", got["debug"].append, 10)

    from bopask_msgs.action import Grasp, Pose, Rearrangement, Trajectory, YesNoQuestion

    kinds = (("grasp", Grasp), ("pose", Pose), ("trajectory", Trajectory), ("rearrangement", Rearrangement),
             ("yes_no", YesNoQuestion))
    clients = {name: action_client(client.node, cls, f"/bopask_node/{name}") for name, cls in kinds}
    taps = {name: FeedbackTap(client, cls, f"/bopask_node/{name}") for name, cls in kinds}
    try:
        for name, ac in clients.items():
            assert wait_for_action(ac, 60), f"{name} server not up:\n{node.output()}"
        _wait_for_the_first_frame(clients["rearrangement"], _goal_msg(scene["records"]["rearrangement"]), node)
        yield {"node": node, "client": client, "cam": cam, "actions": clients, "taps": taps, "got": got}
    finally:
        cam.close()
        rc = node.interrupt()
        client.close()
        out = node.output()
        assert rc == 0, f"node exited {rc}:\n{out}"
        assert "Traceback" not in out, out


def _wait_for_the_first_frame(ac: Any, goal: Any, node: NodeProcess, timeout_s: float = 30.0) -> None:
    """Goals until one gets past the snapshot: the action servers can be discovered before the camera
    topics are (CI once answered the first three goals NO_FRAME)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _, result = GoalRun(ac, goal).result()
        if result.status.code != result.status.NO_FRAME:
            assert result.status.code == result.status.SUCCEEDED, result.status.reason
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no frame reached the node in {timeout_s:.0f} s: {result.status.reason}\n"
                                 f"{node.output()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def reference(scene):
    """The ROS-free pipeline as the node builds it, on the frame decoded from the very messages published."""
    from _ros_helpers import image_msg, info_msg

    from bopask_ros.node_support.conversions import camera_from_info, depth_from_image, rgb_from_image
    from bopask_ros.node_support.params import CameraCalibration, NodeParams
    from bopask_ros.pipeline import Frame, TaskPipeline
    from bopask_vlm.clients import OracleClient

    fid = scene["frame_id"]
    frame = Frame(rgb=rgb_from_image(image_msg(scene["rgb"], "rgb8", fid)),
                  depth_m=depth_from_image(image_msg(scene["depth_mm"].astype(np.uint16), "16UC1", fid)),
                  camera=camera_from_info(info_msg(scene["K"], scene["rgb"].shape[1], scene["rgb"].shape[0], fid)),
                  stamp=0.0, frame_id=fid)
    params = NodeParams.from_mapping({"planning_frame": "base_link"})
    safety = params.safety()
    tf = CameraCalibration.from_file(str(scene["calibration"])).transform_buffer(fid)
    pipe = TaskPipeline(OracleClient(), tf, base_frame="base_link", safety=safety, planner=None,
                        waypoint_height=params["waypoint_height"], table_height=safety.table_height,
                        grasp_refine=params["grasp_refine"], max_attempts=params["max_attempts"])
    return frame, pipe, safety


def _expected_stages(task: str) -> list[str]:
    """The feedback of a goal that succeeds without a planner."""
    geometric = [] if task in ("spatial", "depth") else ["lift", "transform", "safety"]
    return ["snapshot", "query", "validate", *geometric, "done"]


def _assert_msgs_equal(a: Any, b: Any, path: str = "") -> None:
    """Field-by-field equality of two rclpy messages, floats to 1e-9; stamps and timings are not compared."""
    if hasattr(a, "get_fields_and_field_types"):
        for name in a.get_fields_and_field_types():
            if name in ("timings", "stamp"):
                continue
            _assert_msgs_equal(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, (list, tuple)) or (hasattr(a, "__len__") and not isinstance(a, (str, bytes))):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_msgs_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_grasp_result_carries_the_refinement_and_the_attempts(ros, scene):
    """Issue 19 through real rclpy: the Grasp result says how the answer became the executed grasp (the node's
    default grasp_refine local: candidates checked, distance and angle moved, range source, the answer's own
    pose) and lists every ask of the model; feedback carries the attempt."""
    rec = scene["records"]["grasp"]
    run = GoalRun(ros["actions"]["grasp"], _goal_msg(rec))
    _, result = run.result()
    assert result.status.code == result.status.SUCCEEDED, result.status.reason
    r = result.refinement
    assert r.mode == "local" and r.candidates > 10 and r.range_source in ("pnp", "pnp+depth", "depth"), r
    assert r.reason and r.moved_m >= 0.0 and 0.0 <= r.moved_deg <= 30.0 + 1e-6
    assert r.answer_pose.header.frame_id == "base_link"
    if not r.refined:  # the oracle's answer kept as it is: the executed pose is the answer's own
        assert r.moved_m == 0.0
        assert abs(r.answer_pose.pose.position.z - result.grasp_pose.pose.position.z) < 1e-9
    assert len(result.attempts) == 1 and result.attempts[0].index == 0 and result.attempts[0].failure == ""
    assert len(result.attempts[0].points) == 5
    assert abs(result.attempts[0].points[0].u - result.answer.points[0].u) < 1e-9
    tap = ros["taps"]["grasp"]
    assert tap.of(run, 7)[-1] == "done"
    assert tap.attempts[bytes(run.handle.goal_id.uuid)] == [0] * 7


@pytest.mark.parametrize("task", ["grasp", "pose", "trajectory", "rearrangement", "spatial", "depth"])
def test_every_action_matches_the_ros_free_pipeline(ros, scene, reference, task):
    from action_msgs.msg import GoalStatus

    from bopask_ros.node_support.conversions import MessageFactory, build_result
    from bopask_ros.pipeline import Goal
    from bopask_ros.ros.node import _lookup_class

    rec = scene["records"].get(task)
    if rec is None:
        pytest.fail(f"the synthetic scene has no unambiguous {task} record")
    frame, pipe, safety = reference
    ref_stages: list[Any] = []
    goal = Goal(rec.task, [o.description for o in rec.objects], question=rec.question, record=rec)
    ref = pipe.run(frame, goal, feedback=ref_stages.append)
    action = ACTION_OF[task]
    run = GoalRun(ros["actions"][action], _goal_msg(rec))
    status, result = run.result()
    ref_msg = build_result(MessageFactory(_lookup_class), IFACE[action], ref, frame_id="base_link", stamp=0.0,
                           question=rec.question, model="oracle", pre_grasp_distance=safety.pre_grasp_distance)
    _assert_msgs_equal(result, ref_msg)
    assert status == (GoalStatus.STATUS_SUCCEEDED if ref.ok else GoalStatus.STATUS_ABORTED)
    expected = [st.value for st in ref_stages]
    assert ros["taps"][action].of(run, len(expected)) == expected
    # the oracle on this scene: every task succeeds, through every stage of its task
    assert ref.ok, ref.reason
    assert expected == _expected_stages(task)


def test_markers_are_cleared_between_results_and_the_debug_image_is_published(ros, scene):
    from visualization_msgs.msg import Marker

    got = ros["got"]
    n0 = len(got["markers"])
    for task in ("pose", "grasp"):
        GoalRun(ros["actions"][task], _goal_msg(scene["records"][task])).result()
    wait_for(lambda: len(got["markers"]) >= n0 + 2, 10, "two marker arrays")
    for arr in got["markers"][n0:]:
        actions = [m.action for m in arr.markers]
        assert actions[0] == Marker.DELETEALL and actions[1:] and set(actions[1:]) == {Marker.ADD}
    assert {m.ns for m in got["markers"][-1].markers[1:]} >= {"gripper"}
    wait_for(lambda: len(got["debug"]) >= 1, 10, "a debug image")
    img = got["debug"][-1]
    assert (img.width, img.height, img.encoding) == (scene["rgb"].shape[1], scene["rgb"].shape[0], "rgb8")
    drawn = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.width, 3)
    assert np.any(drawn != scene["rgb"])  # the answer is drawn on it


def test_goal_for_an_object_without_record_aborts_and_the_node_keeps_serving(ros, scene):
    from bopask_msgs.action import Pose

    status, result = GoalRun(ros["actions"]["pose"], Pose.Goal(object_description="the flying teapot")).result()
    assert result.status.code == result.status.VLM_ERROR and "no record" in result.status.reason
    status, result = GoalRun(ros["actions"]["pose"], _goal_msg(scene["records"]["pose"])).result()
    assert result.status.code == result.status.SUCCEEDED
    assert ros["node"].alive()


def test_frames_counted_and_node_log_clean(ros):
    assert ros["cam"].published > 0
    out = ros["node"].output()
    assert "bopask_node ready" in out and "tf_source calibration" in out
    assert "dropping" not in out, out  # every published message was converted


@pytest.fixture
def inproc_node():
    """A BopaskNode in this process (its own rclpy context, not spun), for the callbacks' own logic."""
    import rclpy

    from bopask_ros.ros.node import BopaskNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", "tf_source:=calibration", "-p", "motion_backend:=none",
                                  "-r", "__ns:=/inproc"])
    node = BopaskNode(context=ctx)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_cancel_stops_motion_only_for_the_running_goal(inproc_node):
    """A cancel for a queued goal must not stop the running goal's motion (defect 5); with a stand-in
    motion backend (moveit_py cannot run here)."""
    from types import SimpleNamespace

    from rclpy.action import CancelResponse

    class StandInPlanner:
        """Stands in for MoveItPlanner: only records stop() calls."""

        def __init__(self) -> None:
            self.stops = 0

        def stop(self) -> None:
            self.stops += 1

    node = inproc_node
    node.planner = StandInPlanner()
    running, queued = bytes(range(16)), bytes(range(1, 17))
    node._running_goal = running
    handle = lambda gid: SimpleNamespace(goal_id=SimpleNamespace(uuid=list(gid)))  # noqa: E731
    assert node._on_cancel(handle(queued)) == CancelResponse.ACCEPT
    assert node.planner.stops == 0
    assert node._on_cancel(handle(running)) == CancelResponse.ACCEPT
    assert node.planner.stops == 1


def test_any_exception_in_the_camera_callbacks_is_caught(inproc_node):
    """Defect 14: not only ValueError; nothing leaves the callback (it would end the executor's spin)."""
    node = inproc_node
    node._on_camera("color", object())  # no header at all: AttributeError inside
    from sensor_msgs.msg import CameraInfo, Image

    bad_info = CameraInfo(width=4, height=4, k=[0.0] * 9)  # zero focal length
    good = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(48))
    depth = Image(height=4, width=4, encoding="16UC1", step=8, data=bytes(32))
    for stream, msg in (("color", good), ("depth", depth), ("info", bad_info)):
        node._on_camera(stream, msg)  # the set is made, its camera_info does not convert
    assert node.sync.stats.frames == 1 and node.frames.latest() is None


def test_tf2_source_uses_the_node_clock(inproc_node, monkeypatch):
    """Defect 12: tf2_ros.Buffer(node=...) so the buffer runs on the node's (sim) clock. tf2_ros is not on
    PyPI: a stand-in module records how the adapter builds and uses it."""
    import sys
    import types

    from geometry_msgs.msg import TransformStamped

    from bopask_ros.perception.tf_buffer import FrameNotFoundError
    from bopask_ros.ros.node import Tf2Adapter

    made: dict = {}
    fake = types.ModuleType("tf2_ros")  # a stand-in for tf2_ros (not installable here)

    class TransformException(Exception):
        pass

    class LookupException(TransformException):
        pass

    class ExtrapolationException(TransformException):
        pass

    class Buffer:
        def __init__(self, cache_time=None, node=None):
            made["node"] = node

        def lookup_transform(self, target, source, when, timeout=None):
            if source == "nowhere":
                raise LookupException("frame nowhere does not exist")
            made["when"] = when
            t = TransformStamped()
            t.transform.translation.x, t.transform.rotation.w = 0.25, 1.0
            return t

    fake.Buffer, fake.TransformListener = Buffer, lambda buffer, node: made.setdefault("listener", node)
    fake.TransformException, fake.LookupException = TransformException, LookupException
    fake.ExtrapolationException = ExtrapolationException
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    tf = Tf2Adapter(inproc_node, 0.1)
    assert made["node"] is inproc_node and made["listener"] is inproc_node
    T = tf.lookup_transform("base_link", "camera_color_optical_frame", 12.5)
    assert T[0, 3] == 0.25 and made["when"].nanoseconds == 12_500_000_000
    with pytest.raises(FrameNotFoundError, match="nowhere"):
        tf.lookup_transform("base_link", "nowhere", 1.0)


def test_calibration_tf_without_or_with_a_wrong_calibration_names_what_is_missing():
    from bopask_ros.node_support.params import CameraCalibration
    from bopask_ros.perception.tf_buffer import FrameNotFoundError, TransformError
    from bopask_ros.ros.node import CalibrationTF

    with pytest.raises(TransformError, match="missing calibration: tf_source is calibration"):
        CalibrationTF(None).lookup_transform("base_link", "camera_color_optical_frame")
    tf = CalibrationTF(CameraCalibration("base_link", "camera_color_optical_frame", (0.1, 0, 0.5), (0, 0, 0, 1)))
    assert tf.lookup_transform("base_link", "camera_color_optical_frame")[0, 3] == pytest.approx(0.1)
    with pytest.raises(FrameNotFoundError, match="missing calibration for cam2_optical -> base_link"):
        tf.lookup_transform("base_link", "cam2_optical")


def test_cancellable_client_returns_when_the_goal_is_canceled():
    import threading

    from bopask_ros.ros.node import CancellableClient, VLMCanceled

    release = threading.Event()

    class BlockingClient:
        """Stands in for a VLM whose answer takes long: returns only when released."""

        model = "blocking"

        def ask(self, request):
            release.wait(30)
            return request

    c = CancellableClient(BlockingClient(), poll_s=0.01)
    try:
        flag = threading.Event()
        c.set_cancel(flag.is_set)
        threading.Timer(0.1, flag.set).start()
        with pytest.raises(VLMCanceled, match="canceled while waiting"):
            c.ask("q")
        assert not release.is_set()  # it returned while the request was still in flight
        c.set_cancel(None)
        release.set()
        assert c.ask("direct") == "direct"  # without a goal's cancel flag: a plain call
    finally:
        release.set()
        c.shutdown()


@pytest.mark.parametrize("params,message", [
    ({"motion_backend": "none"}, "tf_source tf2 needs tf2_ros"),  # the robot default, without tf2_ros here
    ({"tf_source": "calibration"}, "motion_backend moveit needs the MoveIt config"),
    ({"tf_source": "calibration", "motion_backend": "teleport"}, "motion_backend 'teleport' is not one of"),
    ({"tf_source": "calibration", "motion_backend": "none", "vlm_client": "oracle"}, "needs oracle_records"),
])
def test_the_node_refuses_to_start_with_a_clear_reason(tmp_path, params, message):
    node = NodeProcess(params, tmp_path / "node.log")
    try:
        rc = node.proc.wait(60)
    finally:
        node.stop()
    out = node.output()
    assert rc == 2 and message in out and "Traceback" not in out, out


def test_a_goal_accepted_but_never_executed_does_not_block_later_goals(inproc_node):
    """Defect 11: rclpy accepts a goal (goal callback) and then fails to send the response, so neither the
    accepted-goal nor the execute callback runs. Its ticket expires; an accepted goal's ticket is bound."""
    from types import SimpleNamespace

    from rclpy.action import GoalResponse

    from bopask_ros.node_support.goal_gate import GoalGate

    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    node = inproc_node
    node.gate = GoalGate("reject", bind_timeout_s=5.0, clock=clock)
    lost = SimpleNamespace(name="lost")  # its response never reaches the client
    assert node._on_goal(lost) == GoalResponse.ACCEPT
    assert node._on_goal(SimpleNamespace()) == GoalResponse.REJECT  # busy: the lost goal holds the place
    clock.t = 6.0
    req = SimpleNamespace(name="next")
    assert node._on_goal(req) == GoalResponse.ACCEPT  # the lost goal's ticket expired
    assert id(lost) not in node._pending
    executed = []
    handle = SimpleNamespace(request=req, goal_id=SimpleNamespace(uuid=list(range(16))),
                             execute=lambda: executed.append(True))
    node._on_accepted(handle)
    assert executed == [True] and node._bound[bytes(range(16))] is not None
    clock.t = 100.0  # a bound ticket does not expire while its goal runs
    assert node._on_goal(SimpleNamespace()) == GoalResponse.REJECT
