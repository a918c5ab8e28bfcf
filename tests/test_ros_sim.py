"""Closed loop through the real node, under real rclpy and DDS: ``python -m bopask_ros.ros.sim_bringup`` in its
own process (bopask_node with ``motion_backend: sim`` and the simulator's camera on the realsense-ros topics, one
pybullet world), a client in the test process. The scene's QA records come from the datagen run on that scene's
BOP export (``bopask_sim.evaluate.prepare_scene``, the same seed: the world is deterministic), and the oracle
answers from them.

- a grasp goal with ``execute: true`` ends SUCCEEDED, executed, its reason the physical outcome ("lifted: rose
  ... cm"), and a camera frame received after the result shows the object gone from where it lay;
- a grasp of an object outside the node's safety envelope (the workspace box's y bound set between that object
  and the others) aborts SAFETY_REJECTED with a reason, nothing moves, and the node serves the next goal.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from _ros_helpers import GoalRun, NodeProcess, RosClient, action_client, wait_for, wait_for_action

pytestmark = [pytest.mark.ros]

SEED = 0


@pytest.fixture(scope="module")
def sim_scene(tmp_path_factory):
    """The scene the bring-up builds (seed 0, 5 objects, the repository's calibration), its datagen records, and
    for each instance its x and y extents in the base frame and its pixels in the camera image."""
    from bopask_sim.evaluate import prepare_scene
    from bopask_vlm.answers import Task

    work = tmp_path_factory.mktemp("ros_sim")
    prep = prepare_scene(SEED, work)
    w = prep.world
    try:
        recs = work / "records.jsonl"
        recs.write_text("".join(r.to_line() + "\n" for r in prep.records))
        grasps = {r.objects[0].description: r for r in prep.by_task(Task.GRASP)}
        objects = []
        for i, inst in enumerate(w.instances):
            v = w.world_to_base(inst.mesh.vertices @ w.object_pose(i)[:3, :3].T + w.object_pose(i)[:3, 3])
            objects.append({"index": i, "name": inst.name, "ext": [(float(v[:, k].min()), float(v[:, k].max()))
                                                                   for k in (0, 1)],
                            "xy": w.world_to_base(w.object_pose(i)[:3, 3][None])[0][:2],
                            "mask": prep.frame.seg == inst.body, "record": grasps.get(f"the {inst.name}")})
        yield {"records_file": recs, "objects": objects, "width": w.camera.width, "height": w.camera.height}
    finally:
        w.close()


class FrameTap:
    """The latest aligned depth frame the simulated camera published (stamp in s, depth in m, frame id)."""

    def __init__(self, client: RosClient, topic: str) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.latest: tuple[float, np.ndarray, str] | None = None
        self.count = 0
        self._lock = threading.Lock()
        client.node.create_subscription(Image, topic, self._on, qos_profile_sensor_data)

    def _on(self, msg: Any) -> None:
        from bopask_ros.node_support.conversions import depth_from_image

        d = depth_from_image(msg)
        with self._lock:
            self.latest = (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, d, msg.header.frame_id)
            self.count += 1

    def after(self, t: float, timeout_s: float = 30.0) -> tuple[float, np.ndarray, str]:
        """The first frame stamped after ``t`` (seconds, system clock)."""
        wait_for(lambda: self.latest is not None and self.latest[0] > t, timeout_s, f"a depth frame after {t}")
        with self._lock:
            return self.latest  # type: ignore[return-value]


@pytest.fixture(scope="module")
def sim_ros(sim_scene, tmp_path_factory):
    # the object that stands most apart from the others along x or y goes outside the workspace box (its bound
    # halfway across the gap); the scene is fixed (seed 0), the test checks it has such a gap
    best = None
    for axis in (0, 1):
        for side in (-1, 1):  # -1: below the others (workspace_min), +1: above them (workspace_max)
            objs = sorted(sim_scene["objects"], key=lambda o: side * o["ext"][axis][1 if side > 0 else 0])
            out, rest = objs[-1], objs[:-1]
            inner = max(side * o["ext"][axis][1 if side > 0 else 0] for o in rest)
            outer = side * out["ext"][axis][0 if side > 0 else 1]
            if best is None or outer - inner > best[0]:
                best = (outer - inner, axis, side, side * (outer + inner) / 2, out, rest)
    gap, axis, side, bound, rejected, rest = best
    assert gap > 0.03, f"scene {SEED}: no object stands 3 cm apart from the others to put outside the envelope"
    lo, hi = [-0.3, -0.7, -0.05], [0.9, 0.7, 0.9]
    (hi if side > 0 else lo)[axis] = bound
    # the target: the object nearest the middle of the others, with a grasp record under its catalogue name
    centre = np.mean([o["xy"] for o in rest], axis=0)
    target = min((o for o in rest if o["record"] is not None), key=lambda o: float(np.linalg.norm(o["xy"] - centre)))
    log = tmp_path_factory.mktemp("ros_sim_log") / "bringup.log"
    node = NodeProcess({"tf_source": "calibration", "vlm_client": "oracle", "vlm_model": "oracle",
                        "oracle_records": sim_scene["records_file"], "allow_execution": True,
                        "planning_frame": "panda_link0", "max_frame_age_s": 10.0,
                        "sim.scene_seed": SEED, "sim.num_objects": 5, "sim.camera_rate_hz": 1.0,
                        "safety.workspace_min": lo, "safety.workspace_max": hi},
                       log, module="bopask_ros.ros.sim_bringup")
    client = RosClient("bopask_sim_test_client")
    depth = FrameTap(client, "/camera/camera/aligned_depth_to_color/image_raw")

    from bopask_msgs.action import Grasp

    grasp = action_client(client.node, Grasp, "/bopask_node/grasp")
    try:
        assert wait_for_action(grasp, 60), f"grasp server not up:\n{node.output()}"
        wait_for(lambda: depth.count > 0, 60, f"the simulated camera:\n{node.output()}")
        yield {"node": node, "grasp": grasp, "depth": depth, "target": target, "rejected": rejected,
               "others": [o for o in rest if o is not target]}
    finally:
        rc = node.interrupt()
        client.close()
        out = node.output()
        assert rc == 0, f"bring-up exited {rc}:\n{out}"
        assert "Traceback" not in out, out


def _grasp_goal(obj: dict[str, Any]) -> Any:
    from bopask_msgs.action import Grasp

    rec = obj["record"]
    return Grasp.Goal(object_description=rec.objects[0].description, question=rec.question, execute=True)


def test_grasp_outside_envelope_aborts_then_grasp_lifts_and_camera_sees_it(sim_ros):
    from action_msgs.msg import GoalStatus

    from bopask_msgs.msg import TaskStatus

    node, depth = sim_ros["node"], sim_ros["depth"]
    t_before, d_before, frame_id = depth.after(0.0)
    assert frame_id == "camera_color_optical_frame"
    assert d_before.shape == sim_ros["target"]["mask"].shape

    # 1. outside the safety envelope: aborted with a reason, nothing executed
    rej = GoalRun(sim_ros["grasp"], _grasp_goal(sim_ros["rejected"]))
    status, res = rej.result(60)
    assert status == GoalStatus.STATUS_ABORTED, res.status.reason
    assert res.status.code == TaskStatus.SAFETY_REJECTED, res.status.reason
    assert res.status.failed_check == "workspace_box" and res.status.reason
    assert not res.executed
    assert node.alive()

    # 2. the node goes on serving: the target is grasped and lifted in the simulator
    run = GoalRun(sim_ros["grasp"], _grasp_goal(sim_ros["target"]))
    status, res = run.result(90)
    t_done = time.time()
    assert status == GoalStatus.STATUS_SUCCEEDED, f"{res.status.reason}\n{node.output()[-3000:]}"
    assert res.status.code == TaskStatus.SUCCEEDED and res.executed
    assert res.status.reason.startswith("lifted: rose"), res.status.reason
    rose_cm = float(res.status.reason.split("rose ")[1].split(" cm")[0])
    assert rose_cm >= 5.0, res.status.reason

    # 3. a frame rendered after the motion shows the object gone from where it lay (the camera renders the very
    # world the backend moved), while an object nobody touched stays put
    t_after, d_after, _ = depth.after(t_done)
    assert t_after > t_before

    def change_m(mask: np.ndarray) -> float:
        ok = mask & np.isfinite(d_before) & np.isfinite(d_after)
        assert ok.sum() > 50, "too few pixels with depth in both frames"
        return float(np.median(np.abs(d_after[ok] - d_before[ok])))

    assert change_m(sim_ros["target"]["mask"]) > 0.02
    assert change_m(sim_ros["rejected"]["mask"]) < 0.005
    assert node.alive()
    out = node.output()
    assert "goal failed" not in out, out  # no internal error on either goal
