"""The ROS node's own overhead per goal through real DDS, against the ROS-free pipeline in the same run.

A synthetic 1280x720 scene (written as a bag by the project's bag writer and read back) is streamed on the
realsense-ros topics at 5 Hz to ``bopask_node`` running in its own process (oracle answers from the scene's
QA records, fixed calibration, no motion). For every unambiguous record (one goal per task kind and
object) the time from sending the goal to receiving the result is measured, and the same goal is run
through the ROS-free :class:`TaskPipeline` on the same frame (a fresh lifter each time, as the node gets
a new frame each time). Prints per-task means, the node's overhead (node - pipeline) and ratios; the
last line is one JSON object. Needs the ROS set-up of ``make ros`` (``make bench`` sources it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, all its threads (/proc/PID/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(rounds: int = 4) -> int:
    from _ros_helpers import (
        CameraPublisher,
        GoalRun,
        NodeProcess,
        RosClient,
        action_client,
        image_msg,
        info_msg,
        write_calibration,
    )

    from bopask_msgs.action import Grasp, Pose, Rearrangement, Trajectory, YesNoQuestion
    from bopask_ros.node_support.conversions import camera_from_info, depth_from_image, rgb_from_image
    from bopask_ros.node_support.params import CameraCalibration, NodeParams
    from bopask_ros.pipeline import Frame, Goal, TaskPipeline
    from bopask_ros.replay.bag_reader import read_bag
    from bopask_ros.replay.bag_writer import bop_scene_to_bag, read_bop_scene_frames
    from bopask_ros.replay.demo import make_dataset
    from bopask_vlm.clients import OracleClient
    from bopask_vlm.records import QARecord

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        scene_dir, records, _ = make_dataset(work / "data", 0, 5, 1, 1280, 720, None)
        bag = bop_scene_to_bag(scene_dir, work / "bag", records=records, im_ids=[0])
        data = read_bag(bag)
        bf = data.frames[0]
        fid = bf.frame.frame_id
        T = data.tf.lookup_transform("base_link", fid, bf.stamp_ns * 1e-9)
        cal = write_calibration(work / "calibration.yaml", "base_link", fid, T)
        recs_file = work / "records.jsonl"
        recs_file.write_text("".join(r.to_line() + "\n" for r in records))
        keys = [(r.task.value, tuple(o.description for o in r.objects)) for r in records]
        recs = [r for r, k in zip(records, keys) if keys.count(k) == 1]
        sf = read_bop_scene_frames(scene_dir, [0])[0]
        print(f"setup {time.perf_counter() - t:.1f} s: {len(recs)} goals at {sf.rgb.shape[1]}x{sf.rgb.shape[0]}")

        # the ROS-free reference on the frame decoded from the very messages the node receives
        frame = Frame(rgb=rgb_from_image(image_msg(sf.rgb, "rgb8", fid)),
                      depth_m=depth_from_image(image_msg(sf.depth_mm.astype(np.uint16), "16UC1", fid)),
                      camera=camera_from_info(info_msg(sf.camera.K, sf.rgb.shape[1], sf.rgb.shape[0], fid)),
                      stamp=0.0, frame_id=fid)
        params = NodeParams.from_mapping({"planning_frame": "base_link"})
        safety = params.safety()
        pipe = TaskPipeline(OracleClient(), CameraCalibration.from_file(str(cal)).transform_buffer(fid),
                            base_frame="base_link", safety=safety, waypoint_height=params["waypoint_height"],
                            table_height=safety.table_height, grasp_refine=params["grasp_refine"],
                            max_attempts=params["max_attempts"])  # as the node builds its own (its defaults)

        # a namespace of its own: another node named /bopask_node on the same DDS domain (other test runs on the
        # machine) would answer the goals too ("Ignoring unexpected goal response", a goal lost)
        ns = f"/bench{os.getpid()}"
        node = NodeProcess({"tf_source": "calibration", "calibration_file": cal, "motion_backend": "none",
                            "vlm_client": "oracle", "oracle_records": recs_file, "planning_frame": "base_link",
                            "vlm_model": "oracle", "max_frame_age_s": 5.0, "publish_debug_image": False},
                           work / "node.log", namespace=ns)
        client = RosClient("bopask_bench_client")
        cam = CameraPublisher(client, sf.rgb, sf.depth_mm, sf.camera.K, fid, rate_hz=5.0)
        kinds = {"grasp": Grasp, "pose": Pose, "trajectory": Trajectory, "rearrangement": Rearrangement,
                 "spatial": YesNoQuestion, "depth": YesNoQuestion}
        names = {"spatial": "yes_no", "depth": "yes_no"}
        # (the tests' race-free ActionClient: rclpy 7.1's drops a goal response now and then, ros2/rclpy#1123)
        acs = {k: action_client(client.node, cls, f"{ns}/bopask_node/{names.get(k, k)}") for k, cls in kinds.items()}
        try:
            for k, ac in acs.items():
                if not ac.wait_for_server(timeout_sec=60):
                    print(node.output(), file=sys.stderr)
                    raise RuntimeError(f"the node's {k} server did not come up")

            def goal_msg(r):
                n, q, task = [o.description for o in r.objects], r.question, r.task.value
                cls = kinds[task]
                if task in ("spatial", "depth"):
                    return cls.Goal(task=task, object_a=n[0], object_b=n[1], question=q)
                if task == "trajectory":
                    return cls.Goal(object_description=n[0], target_description=n[1], question=q)
                return cls.Goal(object_description=n[0], question=q)

            end = time.monotonic() + 60  # the node's first synchronised 1280x720 frame
            while GoalRun(acs[recs[0].task.value], goal_msg(recs[0])).result()[1].status.code == 10:
                if time.monotonic() > end:
                    print(node.output(), file=sys.stderr)
                    raise RuntimeError("the node received no frame within 60 s")
                time.sleep(0.2)

            def run_pipeline(r: QARecord) -> None:
                pipe._lifter_key = None  # a fresh lifter, as for the node's new frame
                pipe.run(frame, Goal(r.task, [o.description for o in r.objects], question=r.question, record=r))

            for r in recs:  # warm-up, of both sides: imports, first lifters, DDS discovery of every result path
                GoalRun(acs[r.task.value], goal_msg(r)).result()
                run_pipeline(r)
            node_s: dict[str, list[float]] = {}
            ref_s: dict[str, list[float]] = {}
            overhead_s: list[float] = []  # per goal: the node's time minus the pipeline's on the same goal
            statuses: dict[str, int] = {}
            reasons: dict[str, str] = {}
            # the node process's CPU time: over an idle window (the camera stream alone), then over the timed goals
            idle_wall, idle_cpu = time.perf_counter(), process_cpu_s(node.proc.pid)
            time.sleep(3.0)
            idle_rate = (process_cpu_s(node.proc.pid) - idle_cpu) / (time.perf_counter() - idle_wall)
            ref_cpu_s = 0.0
            timed_wall, timed_cpu = time.perf_counter(), process_cpu_s(node.proc.pid)
            for _ in range(rounds):
                for r in recs:
                    t0 = time.perf_counter()
                    _, res = GoalRun(acs[r.task.value], goal_msg(r)).result()
                    node_s.setdefault(r.task.value, []).append(time.perf_counter() - t0)
                    statuses[str(res.status.code)] = statuses.get(str(res.status.code), 0) + 1
                    reasons.setdefault(str(res.status.code), res.status.reason)
                    t0, c0 = time.perf_counter(), time.thread_time()
                    run_pipeline(r)
                    ref_cpu_s += time.thread_time() - c0
                    ref_s.setdefault(r.task.value, []).append(time.perf_counter() - t0)
                    overhead_s.append(node_s[r.task.value][-1] - ref_s[r.task.value][-1])
            timed_cpu, timed_wall = process_cpu_s(node.proc.pid) - timed_cpu, time.perf_counter() - timed_wall
            # the idle rate again after the goals, averaged with the first (one 3 s window on the loaded machine
            # swung the per-goal figure by several ms)
            idle_wall, idle_cpu = time.perf_counter(), process_cpu_s(node.proc.pid)
            time.sleep(3.0)
            idle_rate = 0.5 * (idle_rate + (process_cpu_s(node.proc.pid) - idle_cpu) / (time.perf_counter() - idle_wall))
            # the reference's runs happen between the goals: the node only streams then
            node_cpu_s = timed_cpu - idle_rate * timed_wall
        finally:
            cam.close()
            rc = node.interrupt()
            client.close()
        if rc != 0:
            print(node.output(), file=sys.stderr)
            raise RuntimeError(f"the node exited {rc}")

    all_node = np.concatenate([v for v in node_s.values()])
    all_ref = np.concatenate([v for v in ref_s.values()])
    print("result codes:", statuses, reasons)
    print(f"{'task':14s} {'node ms':>9s} {'pipeline ms':>12s} {'overhead ms':>12s} {'ratio':>7s}")
    per_task = {}
    for task in node_s:
        n, p = float(np.mean(node_s[task]) * 1e3), float(np.mean(ref_s[task]) * 1e3)
        per_task[task] = {"node_ms": n, "pipeline_ms": p, "overhead_ms": n - p, "ratio": n / p}
        print(f"{task:14s} {n:9.2f} {p:12.2f} {n - p:12.2f} {n / p:7.2f}")
    fig = {
        "goals": int(all_node.size),
        "width": 1280,
        "height": 720,
        "node_ms_mean": float(all_node.mean() * 1e3),
        "node_ms_p95": float(np.percentile(all_node, 95) * 1e3),
        "pipeline_ms_mean": float(all_ref.mean() * 1e3),
        "overhead_ms_mean": float((all_node.mean() - all_ref.mean()) * 1e3),
        "overhead_ms_p95": float(np.percentile(overhead_s, 95) * 1e3),
        "node_vs_pipeline_ratio": float(all_node.mean() / all_ref.mean()),
        # CPU (all threads of the node process, less its idle camera-streaming rate) per goal, and the pipeline's
        # own CPU per goal: a load-independent view of the node's overhead
        "node_cpu_ms_per_goal": float(node_cpu_s / all_node.size * 1e3),
        "pipeline_cpu_ms_per_goal": float(ref_cpu_s / all_ref.size * 1e3),
        "overhead_cpu_ms_per_goal": float((node_cpu_s - ref_cpu_s) / all_node.size * 1e3),
        "per_task": per_task,
        "result_codes": statuses,
    }
    print(f"node: goal sent -> result received {fig['node_ms_mean']:.1f} ms mean (p95 {fig['node_ms_p95']:.1f}); "
          f"ROS-free pipeline {fig['pipeline_ms_mean']:.1f} ms; the node's own overhead "
          f"{fig['overhead_ms_mean']:.1f} ms per goal, p95 {fig['overhead_ms_p95']:.1f} ms (ratio "
          f"{fig['node_vs_pipeline_ratio']:.2f}); CPU per goal: node {fig['node_cpu_ms_per_goal']:.1f} ms, pipeline "
          f"{fig['pipeline_cpu_ms_per_goal']:.1f} ms")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="timed rounds over the goals (default 4)")
    sys.exit(main(ap.parse_args().rounds))
