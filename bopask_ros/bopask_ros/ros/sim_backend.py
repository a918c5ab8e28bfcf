"""The node's ``motion_backend: sim``, without ROS: node parameters -> a :class:`bopask_sim.backend.SimMotionBackend`,
the planner the node runs (:class:`SimPlanner`), and a simulated frame as the fields of the three realsense-ros
messages. No rclpy here (plain-pytest testable); :mod:`bopask_ros.ros.sim_camera` publishes what this builds.

Only :mod:`bopask_ros.ros` imports :mod:`bopask_sim` (imported here when a sim backend is built); the ROS-free
core of bopask_ros never does, and bopask_sim never imports ROS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.node_support.params import CameraCalibration, NodeParams
from bopask_ros.pipeline import Goal, PipelineResult, PlanOutcome
from bopask_vlm.answers import Task
from bopask_vlm.geometry import CameraModel

SIM_BASE_FRAME = "panda_link0"  # bopask_sim.world.BASE_FRAME (not imported: that would load pybullet)


def default_sim_calibration() -> CameraCalibration:
    """The calibration the simulator places its camera by when the node has none: the repository's
    ``config/camera_calibration.yaml`` (bopask_sim's default), as the node's :class:`CameraCalibration`."""
    from bopask_sim.camera import read_calibration

    return CameraCalibration.from_mapping(read_calibration(None), where="bopask_sim's default calibration")


def calibration_mapping(cal: CameraCalibration) -> dict[str, Any]:
    """A :class:`CameraCalibration` in the layout bopask_sim reads (``config/camera_calibration.yaml``)."""
    return {"parent_frame": cal.parent_frame, "child_frame": cal.child_frame,
            "translation": list(cal.translation), "rotation": list(cal.rotation)}


def backend_kwargs(params: NodeParams, calibration: CameraCalibration) -> dict[str, Any]:
    """The :meth:`SimMotionBackend.from_params` arguments of the node's parameters: the ``sim.*`` scene, the
    node's calibration (the camera the node lifts with is the camera the simulator renders), its safety
    envelope and lift distance."""
    if calibration.parent_frame != SIM_BASE_FRAME:
        raise ValueError(f"motion_backend sim: the simulated camera stands on the table, so its calibration parent "
                         f"must be the robot base {SIM_BASE_FRAME}, not {calibration.parent_frame!r}")
    if params["planning_frame"] != SIM_BASE_FRAME:
        raise ValueError(f"motion_backend sim plans in {SIM_BASE_FRAME}: set planning_frame:={SIM_BASE_FRAME} "
                         f"(not {params['planning_frame']!r})")
    safety = {k.split(".", 1)[1]: v for k, v in params.values.items() if k.startswith("safety.")}
    return {"scene_seed": params["sim.scene_seed"], "num_objects": params["sim.num_objects"],
            "scene_file": params["sim.scene_file"] or None, "calibration": calibration_mapping(calibration),
            "width": params["sim.width"], "height": params["sim.height"], "safety": safety,
            "lift_distance": params["lift_distance"]}


def _name_key(text: str) -> str:
    return re.sub(r"^(the|a|an)\s+", "", text.strip().lower())


class SimPlanner:
    """The node's planner for ``motion_backend: sim``: the simulator's backend (it holds the world's lock while it
    moves), plus the one thing the node can check that the backend does not: that a lifted object is the object
    the goal named (an executed grasp that lifts the neighbour is ``missed``, not a success)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.world = backend.world

    def plan(self, result: PipelineResult, goal: Goal, cancel: Callable[[], bool] | None = None) -> PlanOutcome:
        out = self.backend.plan(result, goal, cancel)
        if Task(goal.task) != Task.GRASP or not (out.ok and out.executed) or not goal.objects:
            return out
        target = getattr(out.plan, "target", None)
        names = [inst.name for inst in self.world.instances]
        wanted = _name_key(goal.objects[0])
        if target is None or wanted not in {_name_key(n) for n in names}:
            return out  # the goal names no object of the scene by its catalogue name: nothing to compare
        got = names[int(target)]
        if _name_key(got) != wanted:
            self.backend.held = None
            return PlanOutcome(False, f"missed: lifted the {got}, not {goal.objects[0]} ({out.reason})",
                               executed=True, plan=out.plan)
        return out

    def stop(self) -> None:
        """Nothing to do: a cancel reaches the simulated motion through ``plan``'s cancel callable (checked
        between motion steps)."""

    def close(self) -> None:
        self.backend.close()


def make_sim_planner(params: NodeParams, calibration: CameraCalibration) -> SimPlanner:
    """A :class:`SimPlanner` over a fresh scene of the node's parameters (builds and settles the pybullet world)."""
    from bopask_sim.backend import SimMotionBackend

    return SimPlanner(SimMotionBackend.from_params(**backend_kwargs(params, calibration)))


# -- the simulated camera as realsense-ros messages --------------------------------------------------------
def depth_mm(depth_m: NDArray[np.floating]) -> NDArray[np.uint16]:
    """Depth in metres (NaN / <= 0 = no reading) as realsense-ros' aligned depth: 16UC1 millimetres, 0 = none."""
    d = np.asarray(depth_m, np.float64)
    mm = np.rint(np.where(np.isfinite(d) & (d > 0), d, 0.0) * 1000.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def camera_info_fields(camera: CameraModel) -> dict[str, Any]:
    """``sensor_msgs/CameraInfo`` fields (less the header) of a pinhole camera: no distortion (plumb_bob, zeros,
    as a D4xx colour stream), P = [K | 0]."""
    K = np.asarray(camera.K, float)
    P = np.hstack([K, np.zeros((3, 1))])
    return {"width": int(camera.width), "height": int(camera.height), "distortion_model": "plumb_bob",
            "d": [0.0] * 5, "k": [float(v) for v in K.reshape(-1)], "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "p": [float(v) for v in P.reshape(-1)]}
