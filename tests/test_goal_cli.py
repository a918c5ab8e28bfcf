"""`bopask goal` (bopask_ros.ros.goal_cli) against bopask_node under real rclpy and DDS (issue 24, item 7): the
node in its own process (oracle answers, fixed calibration, no motion), a synthetic frame on the camera topics;
the command prints each feedback stage and the result, and its exit status follows the result's status."""

from __future__ import annotations

import time

import pytest
import yaml
from _ros_helpers import CameraPublisher, NodeProcess, RosClient, write_calibration

from bopask_ros.ros import goal_cli

pytestmark = [pytest.mark.ros]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from bopask_ros.replay.bag_reader import read_bag
    from bopask_ros.replay.bag_writer import bop_scene_to_bag, read_bop_scene_frames
    from bopask_ros.replay.demo import make_dataset

    work = tmp_path_factory.mktemp("goal_cli")
    scene_dir, records, _ = make_dataset(work / "data", 0, 4, 1, 320, 240, None)
    bag = bop_scene_to_bag(scene_dir, work / "bag", records=records, im_ids=[0])
    data = read_bag(bag)
    bf = data.frames[0]
    T = data.tf.lookup_transform("base_link", bf.frame.frame_id, bf.stamp_ns * 1e-9)
    cal = write_calibration(work / "calibration.yaml", "base_link", bf.frame.frame_id, T)
    recs_file = work / "records.jsonl"
    recs_file.write_text("".join(r.to_line() + "\n" for r in records))
    keys = [(r.task.value, tuple(o.description for o in r.objects)) for r in records]
    unique = {k[0]: k[1] for k in keys if keys.count(k) == 1}  # the oracle finds a record by task and objects
    proc = NodeProcess({"tf_source": "calibration", "calibration_file": cal, "motion_backend": "none",
                        "vlm_client": "oracle", "oracle_records": recs_file, "planning_frame": "base_link",
                        "vlm_model": "oracle", "max_frame_age_s": 5.0}, work / "node.log")
    client = RosClient("bopask_goal_test")
    sf = read_bop_scene_frames(scene_dir, [0])[0]
    cam = CameraPublisher(client, sf.rgb, sf.depth_mm, sf.camera.K, bf.frame.frame_id)
    try:
        from bopask_msgs.action import Pose

        objects = unique["pose"]
        deadline = time.monotonic() + 60
        while True:  # until the node has its first frame (the servers can be up before the camera topics)
            res = goal_cli.send_goal(client.node, "pose", goal_cli.goal_message(Pose, "pose", objects), Pose,
                                     server_timeout_s=30)
            if res.status.code != res.status.NO_FRAME or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert res.status.code == res.status.SUCCEEDED, f"{res.status.reason}\n{proc.output()[-3000:]}"
        yield unique
    finally:
        cam.close()
        rc = proc.interrupt()
        client.close()
        assert rc == 0 and "Traceback" not in proc.output(), proc.output()


def test_goal_prints_feedback_and_result_and_exits_0(node, capsys):
    assert goal_cli.main(["grasp", *node["grasp"]]) == 0
    out = capsys.readouterr().out
    stages = [ln.split("] ")[1].split(" (")[0] for ln in out.splitlines() if ln.startswith("[")]
    assert stages[:3] == ["snapshot", "query", "validate"] and "lift" in stages, out
    result = yaml.safe_load(out[out.index("result:"):out.rindex("\ngrasp:")])["result"]
    assert result["status"]["code"] == 0 and result["grasp_pose"]["header"]["frame_id"] == "base_link"
    assert len(result["answer"]["points"]) == 5 and result["executed"] is False
    assert out.rstrip().splitlines()[-1].startswith("grasp: SUCCEEDED in ")


def test_yes_no_goal_and_a_failed_goal(node, capsys):
    task = next(t for t in ("depth", "spatial") if t in node)
    assert goal_cli.main([task, *node[task], "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "answer_yes:" in out and not any(ln.startswith("[") for ln in out.splitlines())
    assert out.rstrip().splitlines()[-1].startswith(f"{task}: SUCCEEDED")
    # the command in its own process exits with the status, not an abort at interpreter exit (a spin thread did)
    import subprocess
    import sys

    from _ros_helpers import node_source_path, ros_env

    env = ros_env()
    env["PYTHONPATH"] = node_source_path()
    r = subprocess.run([sys.executable, "-m", "bopask_ros.ros.goal_cli", task, *node[task], "--quiet"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.rstrip().splitlines()[-1].startswith(f"{task}: SUCCEEDED"), r.stderr
    # an object no record knows: the oracle has no answer, the goal fails, the status is named, exit 1
    assert goal_cli.main(["pose", "the purple unicorn", "--quiet"]) == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("pose: VLM_ERROR in ") and "the oracle has no record" in last


def test_bad_arguments_and_no_server(node, capsys):
    assert goal_cli.main(["trajectory", "only one"]) == 2
    assert "trajectory takes 2 object descriptions, got 1" in capsys.readouterr().err
    assert goal_cli.main(["grasp", "x", "--node", "/nobody_here", "--server-timeout", "1"]) == 2
    assert "no action server /nobody_here/grasp within 1 s" in capsys.readouterr().err
