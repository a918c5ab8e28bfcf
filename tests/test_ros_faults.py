"""bopask_node's faults under real rclpy and DDS, each ending the goal with a reason while the node keeps
serving the next goal: no frame yet, VLM unreachable, VLM timeout, unparseable answer, stale frame,
missing calibration, a target outside the safety envelope; cancel during a slow VLM request ends
CANCELED; busy_policy reject and queue with concurrent goals; SIGINT shuts the node down cleanly.

The VLM is a stand-in OpenAI-compatible HTTP server in this process (no model can be served in a CI
test; :class:`_ros_helpers.FakeVLMServer`); the node talks to it with its real OpenAI client. The frame
is an analytic tabletop (a box on a table) with a known camera pose given as a fixed calibration."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from _eval_helpers import table_frame
from _ros_helpers import (
    CameraPublisher,
    FakeVLMServer,
    GoalRun,
    NodeProcess,
    RosClient,
    action_client,
    wait_for,
    wait_for_action,
    write_calibration,
)

pytestmark = [pytest.mark.ros]

W, H = 160, 120
BOX_PX = (W / 2, H / 2)  # the top of the box in the middle of the image: 5 cm above the table
TABLE_PX = (12.0, H / 2)  # bare table at the left edge: behind the robot base
# The camera publishes at 10 Hz, but on a loaded 2-core CI machine three node processes and this one can
# stall a frame for over a second (seen once in CI at 1 s: a VLM-unreachable goal ended "frame 1.31 s old").
# Only test_stale_frame is about frame age, so the limit leaves the others slack.
MAX_FRAME_AGE_S = 3.0


def _rearrangement_json(u: float, v: float) -> str:
    from bopask_vlm.answers import CoordConvention, RearrangementAnswer, answer_to_json

    return json.dumps(answer_to_json(RearrangementAnswer(np.array([[u, v]])), decimals=CoordConvention.PIXELS.decimals))


def _answer(task: str, question: str) -> tuple[str, float]:
    """The stand-in model: what to say (and how long to take) by the object named in the question."""
    good = _rearrangement_json(*BOX_PX)
    if "garbage" in question:
        return "the mug is somewhere on the left, I think", 0.0
    if "timeout" in question:
        return good, 4.0  # the node's vlm_timeout_s is 2 s
    if "slow" in question:
        return good, 6.0
    if "sluggish" in question:
        return good, 1.0
    if "drowsy" in question:  # the queue node's goals: long enough that a loaded machine sends the next two first
        return good, 4.0
    if "table spot" in question:
        return _rearrangement_json(*TABLE_PX), 0.0
    return good, 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):


    rgb, depth_mm, cam, T_world_cam = table_frame(W, H)
    cal = write_calibration(tmp_path_factory.mktemp("ros_faults") / "calibration.yaml", "world", "camera_color_optical_frame", T_world_cam)
    return {"rgb": rgb, "depth_mm": depth_mm, "K": cam.K, "cam": cam, "T": T_world_cam, "calibration": cal}


def _node_params(world, server: FakeVLMServer, **extra) -> dict:
    return {"tf_source": "calibration", "calibration_file": world["calibration"], "motion_backend": "none",
            "vlm_client": "openai", "vlm_endpoint": server.url, "vlm_retries": 0, "vlm_timeout_s": 2.0,
            "planning_frame": "world", "max_frame_age_s": MAX_FRAME_AGE_S, **extra}


@pytest.fixture(scope="module")
def env(world, tmp_path_factory):
    """Two node processes against one stand-in VLM: ``reject`` (the default namespace) and ``queue``
    (namespace /queue); a camera publisher that starts paused (no frame yet)."""

    from bopask_msgs.action import Rearrangement

    logs = tmp_path_factory.mktemp("ros_faults_logs")
    server = FakeVLMServer(_answer)
    sim_topics = {k: "/sim" + CameraPublisher.__dict__[t] for k, t in
                  (("color_topic", "COLOR"), ("depth_topic", "DEPTH"), ("camera_info_topic", "INFO"))}
    nodes = {"reject": NodeProcess(_node_params(world, server), logs / "reject.log"),
             "queue": NodeProcess(_node_params(world, server, busy_policy="queue", queue_size=1, vlm_timeout_s=8.0),
                                  logs / "queue.log", namespace="/queue"),
             "sim": NodeProcess(_node_params(world, server, use_sim_time=True, **sim_topics), logs / "sim.log",
                                namespace="/sim")}
    client = RosClient("bopask_fault_client")
    # paused from the start: test_no_frame_received_yet needs the node never to have had a frame (pausing after
    # the constructor let the publisher thread send one first, which failed CI once)
    cam = CameraPublisher(client, world["rgb"], world["depth_mm"], world["K"], paused=True)
    sim_cam = CameraPublisher(client, world["rgb"], world["depth_mm"], world["K"], prefix="/sim", sim_start_s=1000.0)
    acs = {"reject": action_client(client.node, Rearrangement, "/bopask_node/rearrangement"),
           "queue": action_client(client.node, Rearrangement, "/queue/bopask_node/rearrangement"),
           "sim": action_client(client.node, Rearrangement, "/sim/bopask_node/rearrangement")}
    try:
        for name, ac in acs.items():
            assert wait_for_action(ac, 60), f"{name} node not up:\n{nodes[name].output()}"
        yield {"server": server, "nodes": nodes, "client": client, "cam": cam, "sim_cam": sim_cam, "ac": acs}
    finally:
        cam.close()
        sim_cam.close()
        for proc in nodes.values():
            proc.stop()
        client.close()
        server.stop()


def _goal(obj: str):
    from bopask_msgs.action import Rearrangement

    return Rearrangement.Goal(object_description=obj)


def _run(env, obj: str, node: str = "reject"):
    status, result = GoalRun(env["ac"][node], _goal(obj)).result()
    return status, result.status


def _serves(env, node: str = "reject") -> None:
    """The node answers a good goal (after whatever went before)."""
    status, st = _run(env, "the mug", node)
    assert st.code == st.SUCCEEDED, st.reason


def test_expected_geometry_of_the_stand_in_answers(world):
    """The box point is inside the node's default envelope, the bare-table point at the left edge is not."""
    from bopask_ros.node_support.params import NodeParams

    env_ = NodeParams.from_mapping({}).safety()
    d = world["depth_mm"].astype(float) / 1000.0
    pts = []
    for u, v in (BOX_PX, TABLE_PX):
        p_cam = world["cam"].deproject(np.array([[u, v]]), [d[int(v), int(u)]])[0]
        pts.append(world["T"][:3, :3] @ p_cam + world["T"][:3, 3])
    assert env_.check_points(pts[0][None]).ok
    bad = env_.check_points(pts[1][None])
    assert not bad.ok and bad.check == "workspace_box"  # behind the base (x < -0.3 m)


def test_no_frame_received_yet(env):
    try:
        status, st = _run(env, "the mug")
        assert st.code == st.NO_FRAME and "no synchronised" in st.reason
    finally:  # the frames start whatever happened, so the tests after this one see a live camera
        env["cam"].paused.clear()
    wait_for(lambda: env["cam"].published > 3, 10, "frames published")
    _serves(env)


def test_vlm_unreachable(env):
    env["server"].stop()
    try:
        status, st = _run(env, "the mug")
        assert st.code == st.VLM_ERROR and "cannot reach" in st.reason
    finally:
        env["server"].start()  # the same port: the VLM comes back
    _serves(env)


def test_vlm_timeout(env):
    status, st = _run(env, "the timeout mug")
    assert st.code == st.VLM_ERROR and "timed out" in st.reason
    _serves(env)


def test_unparseable_answer(env):
    status, st = _run(env, "the garbage mug")
    assert st.code == st.INVALID_ANSWER and "unparseable" in st.reason
    _serves(env)


def test_stale_frame(env):
    cam = env["cam"]
    cam.paused.set()
    try:
        time.sleep(MAX_FRAME_AGE_S + 0.6)
        status, st = _run(env, "the mug")
        assert st.code == st.NO_FRAME and "old" in st.reason
    finally:
        cam.paused.clear()
    wait_for(lambda: _run(env, "the mug")[1].code == 0, 10, "a fresh frame")


def test_missing_calibration_for_the_camera_frame(env):
    cam = env["cam"]
    cam.frame_id = "camera2_color_optical_frame"  # a camera the calibration says nothing about
    try:
        wait_for(lambda: _run(env, "the mug")[1].code != 0, 10, "frames of the uncalibrated camera")
        status, st = _run(env, "the mug")
        assert st.code == st.TF_FAILED and "missing calibration" in st.reason
        assert "camera2_color_optical_frame" in st.reason
    finally:
        cam.frame_id = "camera_color_optical_frame"
    wait_for(lambda: _run(env, "the mug")[1].code == 0, 10, "frames of the calibrated camera")


def test_target_outside_the_safety_envelope(env):
    status, st = _run(env, "the table spot")
    assert st.code == st.SAFETY_REJECTED and st.failed_check == "workspace_box"
    _serves(env)


def test_cancel_during_a_slow_vlm_request_ends_canceled(env):
    from action_msgs.msg import GoalStatus

    run = GoalRun(env["ac"]["reject"], _goal("the slow mug"))
    assert run.accepted()
    wait_for(lambda: "query" in run.stages, 10, "the query stage")
    assert run.cancel().return_code == 0  # ERROR_NONE
    status, result = run.result()
    assert status == GoalStatus.STATUS_CANCELED
    assert result.status.code == result.status.CANCELED and "canceled" in result.status.reason
    # the node did not wait for the answer: the stand-in is still sleeping on that request
    assert not any("slow" in q for q in env["server"].finished)
    _serves(env)


def test_busy_policy_reject_refuses_a_concurrent_goal(env):
    first = GoalRun(env["ac"]["reject"], _goal("the sluggish mug"))
    assert first.accepted()
    wait_for(lambda: "query" in first.stages, 10, "the first goal running")
    assert not GoalRun(env["ac"]["reject"], _goal("the mug")).accepted()
    _, result = first.result()
    assert result.status.code == result.status.SUCCEEDED
    _serves(env)


def test_busy_policy_queue_runs_goals_in_turn_and_bounds_the_queue(env):
    # 4 s running (sluggish's 1 s failed once beside a vLLM server: the first goal ended before the third was sent)
    first = GoalRun(env["ac"]["queue"], _goal("the drowsy mug"))
    assert first.accepted()
    wait_for(lambda: "query" in first.stages, 10, "the first goal running")
    t_first_query = time.monotonic()
    second = GoalRun(env["ac"]["queue"], _goal("the mug"))
    assert second.accepted()
    assert not GoalRun(env["ac"]["queue"], _goal("the mug")).accepted()  # queue_size 1: full
    _, r2 = second.result()
    # the queued goal (answered at once) ran after the first one's 4 s answer, not beside it (the first's result
    # message itself may reach this client a moment after the second's)
    assert time.monotonic() - t_first_query > 3.0
    assert r2.status.code == r2.status.SUCCEEDED and first.result()[1].status.code == 0


def test_a_queued_goal_canceled_leaves_without_stopping_the_running_one(env):
    from action_msgs.msg import GoalStatus

    first = GoalRun(env["ac"]["queue"], _goal("the drowsy mug"))
    assert first.accepted()
    wait_for(lambda: "query" in first.stages, 10, "the first goal running")
    queued = GoalRun(env["ac"]["queue"], _goal("the mug"))
    assert queued.accepted()
    queued.cancel()
    status, result = queued.result()
    assert status == GoalStatus.STATUS_CANCELED and "queued" in result.status.reason
    status, result = first.result()
    assert status == GoalStatus.STATUS_SUCCEEDED and result.status.code == 0
    _serves(env, "queue")


def test_bag_loop_under_sim_time_goals_use_the_new_pass_not_the_last_frame_of_the_first(env):
    """Defect 13 end to end: /clock and the frame stamps jump back (a bag replayed in a loop); no goal may
    succeed on the first pass's last frame, and goals succeed on the new pass's frames."""
    cam = env["sim_cam"]

    def run() -> tuple[int, float]:
        _, result = GoalRun(env["ac"]["sim"], _goal("the mug")).result()
        st = result.objects_to_move[0].point.header.stamp if result.objects_to_move else None
        return result.status.code, (st.sec + st.nanosec * 1e-9) if st else float("nan")

    wait_for(lambda: run()[0] == 0, 20, "a goal on the first pass")
    code, stamp = run()
    assert code == 0 and 1000.0 <= stamp < 1100.0
    n0 = cam.published
    cam.jump(500.0)
    # the goals below start once the node has had the jumped /clock and frames for a few ticks
    wait_for(lambda: cam.published >= n0 + 3, 10, "the jump published")
    seen = []
    end = time.monotonic() + 20
    while time.monotonic() < end:
        code, stamp = run()
        seen.append((code, stamp))
        if code == 0:
            break
    assert seen[-1][0] == 0 and 500.0 <= seen[-1][1] < 600.0, seen
    assert all(c != 0 or s < 1000.0 for c, s in seen), seen  # never the old pass's frame


def test_sigint_shuts_the_nodes_down_cleanly(env):
    """Ctrl-C (SIGINT; SIGTERM for the others, as ``ros2 launch`` escalates): exit code 0 and no traceback; the
    goal waiting on the VLM ends ABORTED with the reason, its result sent before the node goes."""
    from action_msgs.msg import GoalStatus

    run = GoalRun(env["ac"]["queue"], _goal("the slow mug"))
    assert run.accepted()
    try:
        wait_for(lambda: "query" in run.stages or run.done(), 10, "the slow goal running")
    except TimeoutError as e:
        raise AssertionError(f"{e}: stages {run.stages}, VLM requests {env['server'].requests[-3:]}\n"
                             f"{env['nodes']['queue'].output()[-3000:]}") from e
    assert not run.done(), run.result()[1].status
    for name, proc in sorted(env["nodes"].items(), key=lambda kv: kv[0] != "queue"):  # the busy node first
        sig = signal.SIGINT if name in ("queue", "sim") else signal.SIGTERM
        rc = proc.interrupt(sig=sig)
        out = proc.output()
        assert rc == 0, f"{name} ({sig.name}): exit {rc}\n{out}"
        assert "Traceback" not in out and "never retrieved" not in out, out
        if name == "queue":
            status, result = run.result(timeout_s=10)
            assert status == GoalStatus.STATUS_ABORTED, (status, result.status.reason)
            assert result.status.code == result.status.VLM_ERROR, result.status
            assert "shutting down" in result.status.reason, result.status.reason
            assert "ending 1 goal(s) in flight" in out, out
