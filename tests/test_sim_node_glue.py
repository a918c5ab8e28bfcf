"""The ROS-free glue of the node's ``motion_backend: sim`` (:mod:`bopask_ros.ros.sim_backend`), plain pytest: the
simulated camera's messages decode with the node's own conversions to what was rendered, the node's calibration
transform is the simulator's camera pose, the parameters map onto the backend, and an executed grasp that lifts
another object than the goal named is a failure, not a success (a real pybullet scene, two objects)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from bopask_ros.node_support.conversions import array_to_image_fields, camera_from_info, depth_from_image
from bopask_ros.node_support.params import NodeParams
from bopask_ros.ros.sim_backend import (
    SimPlanner,
    backend_kwargs,
    camera_info_fields,
    default_sim_calibration,
    depth_mm,
)


def test_depth_and_camera_info_decode_with_the_nodes_conversions():
    from bopask_sim.camera import d435_camera

    rng = np.random.default_rng(0)
    d = rng.uniform(0.3, 2.5, (48, 64)).astype(np.float32)
    d[5:9, 10:20] = np.nan
    d[0, 0] = 0.0
    msg = SimpleNamespace(**array_to_image_fields(depth_mm(d), "16UC1"))
    back = depth_from_image(msg)
    holes = ~np.isfinite(d) | (d <= 0)
    assert np.array_equal(np.isnan(back), holes)  # 0 mm = no reading, as realsense-ros
    assert np.max(np.abs(back[~holes] - d[~holes])) <= 0.0005 + 1e-6
    assert depth_mm(np.array([[70.0]]))[0, 0] == 65535  # beyond 16 bits: clipped, not wrapped

    cam = d435_camera(640, 480)
    model = camera_from_info(SimpleNamespace(**camera_info_fields(cam)))
    assert np.allclose(model.K, cam.K) and (model.width, model.height) == (640, 480)


def test_the_nodes_calibration_is_the_simulators_camera_pose():
    from bopask_sim.camera import CAMERA_FRAME, T_parent_optical, read_calibration

    cal = default_sim_calibration()
    T_node = cal.transform_buffer(CAMERA_FRAME).lookup_transform("panda_link0", CAMERA_FRAME, None)
    assert np.allclose(T_node, T_parent_optical(read_calibration(None)), atol=1e-9)


def test_backend_kwargs_from_node_params():
    cal = default_sim_calibration()
    p = NodeParams.from_mapping({"motion_backend": "sim", "sim": {"scene_seed": 7, "num_objects": 3},
                                 "lift_distance": 0.08, "safety": {"max_reach": 0.8}})
    kw = backend_kwargs(p, cal)
    assert (kw["scene_seed"], kw["num_objects"], kw["scene_file"], kw["lift_distance"]) == (7, 3, None, 0.08)
    assert kw["safety"]["max_reach"] == 0.8 and kw["calibration"]["parent_frame"] == "panda_link0"
    with pytest.raises(ValueError, match="planning_frame"):
        backend_kwargs(NodeParams.from_mapping({"planning_frame": "base_link"}), cal)
    from dataclasses import replace

    with pytest.raises(ValueError, match="robot base"):
        backend_kwargs(p, replace(cal, parent_frame="panda_hand"))


def test_a_grasp_that_lifts_another_object_is_missed():
    from bopask_ros.pipeline import Goal, PipelineResult, ResultStatus
    from bopask_sim.backend import SimMotionBackend
    from bopask_vlm.answers import Task
    from bopask_vlm.gripper import GRASP_DEPTH

    backend = SimMotionBackend.from_params(scene_seed=3, num_objects=2)  # a purple cube and a white cone
    w = backend.world
    try:
        names = [i.name for i in w.instances]
        cube = names.index("purple cube")
        other = names[1 - cube]
        # straight down onto the cube's centre (skeleton z = approach)
        T = np.eye(4)
        T[:3, :3] = np.diag([1.0, -1.0, -1.0])
        T[:3, 3] = w.world_to_base(w.object_pose(cube)[:3, 3][None])[0] + [0.0, 0.0, GRASP_DEPTH]
        res = PipelineResult(ResultStatus.SUCCEEDED)
        res.grasp_pose_base = T
        planner = SimPlanner(backend)

        out = planner.plan(res, Goal(Task.GRASP, [f"the {other}"], plan_only=False))
        assert not out.ok and out.executed
        assert out.reason.startswith(f"missed: lifted the purple cube, not the {other}"), out.reason

        w.reset()
        out = planner.plan(res, Goal(Task.GRASP, ["the purple cube"], plan_only=False))
        assert out.ok and out.executed and out.reason.startswith("lifted: rose"), out.reason
        # a goal naming nothing of the catalogue cannot be checked: the physical outcome stands
        w.reset()
        out = planner.plan(res, Goal(Task.GRASP, ["the thing on the left"], plan_only=False))
        assert out.ok, out.reason
    finally:
        backend.close()


def test_the_world_lock_keeps_renders_out_of_a_motion():
    """While the backend runs a motion (it holds ``world.lock``), another thread cannot take the lock: the
    camera publisher's non-blocking capture skips instead of rendering a half-stepped world."""
    from bopask_ros.pipeline import Goal, PipelineResult, ResultStatus
    from bopask_sim.backend import SimMotionBackend
    from bopask_vlm.answers import Task

    backend = SimMotionBackend.from_params(scene_seed=3, num_objects=1)
    w = backend.world
    seen: list[bool] = []

    def cancel() -> bool:  # called between motion steps, on the backend's thread, inside plan()
        t = threading.Thread(target=lambda: seen.append(w.lock.acquire(blocking=False)))
        t.start()
        t.join()
        return False

    try:
        c = w.world_to_base(w.object_pose(0)[:3, 3][None])[0]
        T = np.eye(4)
        T[:3, :3] = np.diag([1.0, -1.0, -1.0])
        T[:3, 3] = c + [0.0, 0.0, 0.30]
        res = PipelineResult(ResultStatus.SUCCEEDED)
        res.grasp_pose_base = T
        backend.plan(res, Goal(Task.GRASP, ["x"], plan_only=False), cancel)
        assert seen and not any(seen)
        assert w.lock.acquire(blocking=False)  # free again after the motion
        w.lock.release()
    finally:
        backend.close()
