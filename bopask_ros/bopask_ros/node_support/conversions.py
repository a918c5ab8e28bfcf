"""Conversions between ROS messages and the ROS-free core, duck-typed.

The functions read message fields by name only, so the same code takes rclpy messages on the
robot and ``rosbags`` messages in replay and tests. Outgoing messages are built through a
:class:`MessageFactory` that looks classes up by ROS type name ("geometry_msgs/msg/PoseStamped"):
the node gives it rclpy's classes, tests give it the rosbags typestore's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_ros.perception.tf_buffer import stamp_to_sec
from bopask_vlm.answers import GRASP_FIELD_NAMES, Answer, GraspAnswer, PoseAnswer, Task, YesNoAnswer
from bopask_vlm.geometry import CameraModel, depth_to_metres, quat_from_matrix
from bopask_vlm.gripper import skeleton_to_hand

__all__ = ["ConversionError", "MessageFactory", "build_result", "camera_from_info", "depth_from_image",
           "image_to_array", "rgb_from_image", "sec_to_stamp", "stamp_to_sec"]

STATUS_CODES: dict[str, int] = {
    "succeeded": 0, "vlm_error": 1, "invalid_answer": 2, "lift_failed": 3, "tf_failed": 4,
    "safety_rejected": 5, "plan_failed": 6, "execution_failed": 7, "canceled": 8, "rejected": 9, "no_frame": 10,
}


class ConversionError(ValueError):
    """A message that cannot be converted (unknown encoding, size mismatch, ...)."""


# -- time ---------------------------------------------------------------------------------------
def sec_to_stamp(t: float) -> tuple[int, int]:
    """(sec, nanosec) of a time in seconds."""
    ns = int(round(t * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


# -- images -------------------------------------------------------------------------------------
_CHANNELS = {"rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
             "mono8": (1, np.uint8), "8UC1": (1, np.uint8), "mono16": (1, np.uint16), "16UC1": (1, np.uint16),
             "32FC1": (1, np.float32)}


def image_to_array(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> HxW or HxWxC array (row padding and endianness handled)."""
    enc = str(msg.encoding)
    if enc not in _CHANNELS:
        raise ConversionError(f"unsupported image encoding {enc!r} (supported: {sorted(_CHANNELS)})")
    c, dt = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    row = w * c * dtype.itemsize
    try:  # rclpy's array.array, bytes, a rosbags ndarray: no copy
        buf = np.frombuffer(msg.data, np.uint8)
    except (TypeError, ValueError):  # a list of ints (dict messages), a non-contiguous array
        buf = np.frombuffer(bytes(np.asarray(msg.data, dtype=np.uint8)), np.uint8)
    if step < row or buf.size < h * step:
        raise ConversionError(f"{enc} image {w}x{h}: {buf.size} bytes with step {step}, need {h} rows of {row}")
    rows = buf[: h * step].reshape(h, step)[:, :row]
    arr = np.ascontiguousarray(rows).view(dtype).reshape((h, w, c) if c > 1 else (h, w))
    return arr.astype(dtype.newbyteorder("="), copy=False)


def rgb_from_image(msg: Any) -> NDArray[np.uint8]:
    """A colour ``sensor_msgs/Image`` as HxWx3 uint8 RGB."""
    arr = image_to_array(msg)
    enc = str(msg.encoding)
    if enc in ("bgr8", "bgra8"):
        arr = arr[:, :, 2::-1]
    elif enc in ("rgba8",):
        arr = arr[:, :, :3]
    elif arr.ndim == 2 and arr.dtype == np.uint8:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ConversionError(f"{enc} is not a colour image encoding")
    return np.ascontiguousarray(arr)


def depth_from_image(msg: Any, depth_scale: float = 1.0) -> NDArray[np.float32]:
    """An aligned depth ``sensor_msgs/Image`` (16UC1 mm / 32FC1 m) as float32 metres, NaN = none."""
    enc = str(msg.encoding)
    if enc not in ("16UC1", "mono16", "32FC1"):
        raise ConversionError(f"depth must be 16UC1 or 32FC1, got {enc!r}")
    return depth_to_metres(image_to_array(msg), enc, depth_scale)


def camera_from_info(msg: Any) -> CameraModel:
    """``sensor_msgs/CameraInfo`` -> :class:`CameraModel`.

    Distortion: the lifting undistorts pixels with OpenCV (``cv2.undistortPoints``), so ``plumb_bob``
    and ``rational_polynomial`` are read as OpenCV's *forward* Brown-Conrady model (distorted pixel =
    f(undistorted point), ROS's meaning of those names) and ``equidistant`` as OpenCV's fisheye model.
    realsense-ros publishes the colour stream's *inverse* Brown-Conrady coefficients (librealsense's
    RS2_DISTORTION_INVERSE_BROWN_CONRADY, which maps distorted to undistorted) labelled ``plumb_bob``.
    On D4xx colour streams those coefficients are zero, so nothing is undistorted and nothing is lost;
    non-zero ones would be applied the wrong way round (the node warns once when it sees any). Aligned
    depth (``aligned_depth_to_color``) is in the colour image's geometry and takes its CameraInfo.
    """
    try:
        return CameraModel.from_camera_info(msg)
    except ValueError as e:
        raise ConversionError(f"invalid CameraInfo: {e}") from e


def array_to_image_fields(arr: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` (less the header) for an array."""
    a = np.ascontiguousarray(arr)
    return {"height": int(a.shape[0]), "width": int(a.shape[1]), "encoding": encoding, "is_bigendian": 0,
            "step": int(a.strides[0]), "data": a.reshape(-1).view(np.uint8)}


# -- outgoing messages ----------------------------------------------------------------------------
_EYE3 = np.eye(3)
_EYE4 = np.eye(4)
_IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])
class MessageFactory:
    """Builds our result and feedback messages from the ROS-free pipeline result.

    ``lookup(type_name)`` returns the message class for a ROS type name, e.g.
    ``"bopask_msgs/action/Grasp_Result"``.
    """

    def __init__(self, lookup: Callable[[str], Any] | Mapping[str, Any]) -> None:
        self._lookup = lookup.__getitem__ if isinstance(lookup, Mapping) else lookup

    def make(self, type_name: str, **fields: Any) -> Any:
        return self._lookup(type_name)(**fields)

    def header(self, frame_id: str, stamp: float) -> Any:
        sec, nsec = sec_to_stamp(stamp)
        return self.make("std_msgs/msg/Header", stamp=self.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec),
                         frame_id=frame_id)

    def point(self, p: NDArray[np.float64]) -> Any:
        return self.make("geometry_msgs/msg/Point", x=float(p[0]), y=float(p[1]), z=float(p[2]))

    def pose(self, T: NDArray[np.float64]) -> Any:
        # an exact identity rotation (a waypoint, a missing pose) is (0, 0, 0, 1), as scipy's conversion gives it,
        # without its ~0.1 ms per call (bench_node: poses were most of a Trajectory result's build)
        q = _IDENTITY_QUAT if np.array_equal(T[:3, :3], _EYE3) else quat_from_matrix(T[:3, :3])
        return self.make("geometry_msgs/msg/Pose", position=self.point(T[:3, 3]),
                         orientation=self.make("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]),
                                               z=float(q[2]), w=float(q[3])))

    def pose_stamped(self, T: NDArray[np.float64] | None, frame_id: str, stamp: float) -> Any:
        return self.make("geometry_msgs/msg/PoseStamped", header=self.header(frame_id, stamp),
                         pose=self.pose(_EYE4 if T is None else T))

    def status(self, status: str, reason: str, failed_check: str = "") -> Any:
        code = STATUS_CODES.get(str(status), STATUS_CODES["rejected"])
        return self.make("bopask_msgs/msg/TaskStatus", code=code, reason=reason, failed_check=failed_check)

    def answer2d(self, task: Task, answer: Answer | None, question: str = "", raw_text: str = "",
                 model: str = "") -> Any:
        pts, names = np.zeros((0, 2)), []
        if answer is not None and not isinstance(answer, YesNoAnswer):
            pts = answer.points
            if isinstance(answer, GraspAnswer):
                names = list(GRASP_FIELD_NAMES)
            elif isinstance(answer, PoseAnswer):
                names = [f"corner {i}" for i in range(8)]
            else:
                names = [f"point {i}" for i in range(len(pts))]
        kp = [self.make("bopask_msgs/msg/Keypoint2D", name=n, u=float(p[0]), v=float(p[1])) for n, p in zip(names, pts)]
        yes = bool(answer.value) if isinstance(answer, YesNoAnswer) else False
        return self.make("bopask_msgs/msg/Answer2D", task=Task(task).value, question=question, raw_text=raw_text,
                         model=model, points=kp, yes_no=yes)

    def lifted_points(self, result: Any, frame_id: str, stamp: float, camera_frame_id: str | None = None) -> list[Any]:
        """The result's points in ``frame_id`` (the planning frame); where they never got there (LIFT_FAILED,
        TF_FAILED) the camera-frame points, stamped with ``camera_frame_id`` (the image's frame)."""
        in_base = len(result.points_base) > 0
        pts = np.asarray(result.points_base if in_base else result.points_cam, dtype=np.float64)
        if not in_base:
            frame_id = camera_frame_id or frame_id
        valid = list(result.valid) if len(result.valid) == len(pts) else [True] * len(pts)
        rules = [getattr(r, "value", str(r)) for r in result.rules] if len(result.rules) == len(pts) else [""] * len(pts)
        out = []
        for p, ok, rule in zip(np.nan_to_num(pts.reshape(-1, 3)).tolist(), valid, rules):  # (one pass, not per point)
            out.append(self.make("bopask_msgs/msg/LiftedPoint",
                                 point=self.make("geometry_msgs/msg/PointStamped", header=self.header(frame_id, stamp),
                                                 point=self.point(p)),
                                 valid=bool(ok), rule=str(rule), reason="" if ok else "not lifted"))
        return out

    def timings(self, timings: Mapping[str, float]) -> list[Any]:
        return [self.make("bopask_msgs/msg/StageTiming", stage=str(k), seconds=float(v)) for k, v in timings.items()]

    def feedback(self, action: str, stage: str, detail: str, elapsed: float, attempt: int = 0) -> Any:
        fb = self.make("bopask_msgs/msg/StageFeedback", stage=stage, detail=detail, elapsed=float(elapsed),
                       attempt=int(attempt))
        return self.make(f"bopask_msgs/action/{action}_Feedback", feedback=fb)


    def attempts(self, result: Any) -> list[Any]:
        out = []
        for a in getattr(result, "attempts", []) or []:
            pts = np.asarray(a.points, dtype=np.float64).reshape(-1, 2)
            kp = [self.make("bopask_msgs/msg/Keypoint2D", name="", u=float(p[0]), v=float(p[1])) for p in pts]
            out.append(self.make("bopask_msgs/msg/Attempt", index=int(a.index), failure=str(a.failure),
                                 reason=str(a.reason), points=kp))
        return out

    def refinement(self, result: Any, frame_id: str, stamp: float) -> Any:
        r = getattr(result, "refinement", None)
        T = None if r is None or r.answer_pose_base is None else skeleton_to_hand(r.answer_pose_base)
        return self.make("bopask_msgs/msg/GraspRefinement", mode=str(getattr(r, "mode", "")),
                         refined=bool(getattr(r, "refined", False)), moved_m=float(getattr(r, "moved_m", 0.0)),
                         moved_deg=float(getattr(r, "moved_deg", 0.0)), score=float(getattr(r, "score", 0.0)),
                         candidates=int(getattr(r, "candidates", 0)), range_source=str(getattr(r, "range_source", "")),
                         answer_pose=self.pose_stamped(T, frame_id, stamp), reason=str(getattr(r, "reason", "")))


def failed_check_of(reason: str) -> str:
    """The safety check named at the start of a SAFETY_REJECTED reason ("min_height: ...")."""
    head = reason.split(":", 1)[0].strip()
    return head if head and " " not in head else ""


def build_result(factory: MessageFactory, action: str, result: Any, *, frame_id: str, stamp: float,
                 question: str = "", model: str = "", pre_grasp_distance: float = 0.1,
                 camera_frame_id: str | None = None) -> Any:
    """The ``bopask_msgs/action/<action>_Result`` of a pipeline result (any status); ``camera_frame_id``: the
    frame of camera-frame points (results that never reached the planning frame)."""
    from bopask_vlm.eval.metrics import MetricError, box_from_corners_3d

    status_value = getattr(result.status, "value", str(result.status))
    failed = failed_check_of(result.reason) if status_value == "safety_rejected" else ""
    task = {"Grasp": Task.GRASP, "Pose": Task.POSE, "Trajectory": Task.TRAJECTORY,
            "Rearrangement": Task.REARRANGEMENT}.get(action)
    if task is None:
        task = result.answer.task if isinstance(result.answer, YesNoAnswer) else Task.SPATIAL
    common = {
        "status": factory.status(status_value, result.reason, failed),
        "answer": factory.answer2d(task, result.answer, question, getattr(result, "raw_text", ""), model),
        "timings": factory.timings(result.timings),
    }
    executed = bool(result.plan is not None and getattr(result.plan, "executed", False))
    if action == "Grasp":
        # the action's poses are panda_hand poses (what MoveIt is sent); the pipeline's is the M2T2 skeleton's
        T = None if result.grasp_pose_base is None else skeleton_to_hand(result.grasp_pose_base)
        pre = None
        if T is not None:
            pre = np.array(T, dtype=np.float64)
            pre[:3, 3] -= pre_grasp_distance * pre[:3, 2]
        return factory.make("bopask_msgs/action/Grasp_Result", **common,
                            grasp_pose=factory.pose_stamped(T, frame_id, stamp),
                            pre_grasp_pose=factory.pose_stamped(pre, frame_id, stamp),
                            gripper_width=float(result.grasp_width or 0.0),
                            keypoints=factory.lifted_points(result, frame_id, stamp, camera_frame_id), executed=executed,
                            refinement=factory.refinement(result, frame_id, stamp), attempts=factory.attempts(result))
    if action == "Pose":
        T, size = None, np.zeros(3)
        pts = np.asarray(result.points_base)
        if pts.shape == (8, 3) and np.all(np.isfinite(pts)):
            try:
                box = box_from_corners_3d(pts)
                T = np.eye(4)
                T[:3, :3], T[:3, 3], size = box.R, box.center, box.size
            except MetricError:
                pass
        return factory.make("bopask_msgs/action/Pose_Result", **common,
                            object_pose=factory.pose_stamped(T, frame_id, stamp),
                            size=factory.make("geometry_msgs/msg/Vector3", x=float(size[0]), y=float(size[1]),
                                              z=float(size[2])),
                            corners=factory.lifted_points(result, frame_id, stamp, camera_frame_id))
    if action == "Trajectory":
        poses = []
        for p in np.nan_to_num(np.asarray(result.points_base, dtype=np.float64).reshape(-1, 3)):
            T = np.eye(4)
            T[:3, 3] = p
            poses.append(factory.pose(T))
        return factory.make("bopask_msgs/action/Trajectory_Result", **common,
                            waypoints=factory.make("geometry_msgs/msg/PoseArray", header=factory.header(frame_id, stamp),
                                                   poses=poses),
                            points=factory.lifted_points(result, frame_id, stamp, camera_frame_id), executed=executed,
                            path_moved_m=float(getattr(result, "path_moved_m", 0.0)),
                            path_repair=str(getattr(result, "path_repair", "")), attempts=factory.attempts(result))
    if action == "Rearrangement":
        return factory.make("bopask_msgs/action/Rearrangement_Result", **common,
                            objects_to_move=factory.lifted_points(result, frame_id, stamp, camera_frame_id))
    if action == "YesNoQuestion":
        yes = bool(result.answer.value) if isinstance(result.answer, YesNoAnswer) else False
        return factory.make("bopask_msgs/action/YesNoQuestion_Result", **common, answer_yes=yes)
    raise ConversionError(f"unknown action {action!r}")
