"""Message conversions against the real ROS 2 Jazzy message classes of the rosbags typestore."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from bopask_ros.node_support.conversions import (
    ConversionError,
    MessageFactory,
    array_to_image_fields,
    build_result,
    camera_from_info,
    depth_from_image,
    failed_check_of,
    rgb_from_image,
    sec_to_stamp,
    stamp_to_sec,
)
from bopask_ros.node_support.msg_types import register_bopask_types
from bopask_ros.perception.tf_buffer import TransformBuffer
from bopask_ros.pipeline import PipelineResult, ResultStatus
from bopask_vlm.answers import GraspAnswer, PoseAnswer, TrajectoryAnswer, YesNoAnswer
from bopask_vlm.answers.types import Task
from bopask_vlm.geometry import CameraModel, make_transform


@pytest.fixture(scope="module")
def ts():
    store = get_typestore(Stores.ROS2_JAZZY)
    register_bopask_types(store)
    return store


def _header(ts, sec=10, nsec=500, frame="camera_color_optical_frame"):
    return ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                           frame_id=frame)


def _image(ts, arr, encoding, pad=0, bigendian=False):
    a = np.ascontiguousarray(arr)
    if bigendian:
        a = a.astype(a.dtype.newbyteorder(">"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    step = rows.shape[1] + pad
    data = np.zeros((a.shape[0], step), np.uint8)
    data[:, :rows.shape[1]] = rows
    return ts.types["sensor_msgs/msg/Image"](header=_header(ts), height=a.shape[0], width=a.shape[1], encoding=encoding,
                                             is_bigendian=int(bigendian), step=step, data=data.reshape(-1))


def test_color_images_with_padding(ts):
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(rgb_from_image(_image(ts, rgb, "rgb8", pad=3)), rgb)
    assert np.array_equal(rgb_from_image(_image(ts, rgb[:, :, ::-1], "bgr8")), rgb)


def test_depth_16uc1_mm_and_32fc1_m_with_holes(ts):
    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    d = depth_from_image(_image(ts, mm, "16UC1", pad=2))
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.0) and d[1, 0] == pytest.approx(1.5)
    be = depth_from_image(_image(ts, mm, "16UC1", bigendian=True))
    assert be[1, 0] == pytest.approx(1.5)
    m = np.array([[0.5, np.nan], [0.0, 2.0]], dtype=np.float32)
    d2 = depth_from_image(_image(ts, m, "32FC1"))
    assert d2[0, 0] == pytest.approx(0.5) and np.isnan(d2[0, 1]) and np.isnan(d2[1, 0])


def test_bad_images(ts):
    with pytest.raises(ConversionError, match="unsupported image encoding"):
        rgb_from_image(_image(ts, np.zeros((2, 2, 3), np.uint8), "yuv422"))
    with pytest.raises(ConversionError, match="depth must be"):
        depth_from_image(_image(ts, np.zeros((2, 2, 3), np.uint8), "rgb8"))
    msg = _image(ts, np.zeros((4, 4, 3), np.uint8), "rgb8")
    msg.data = msg.data[:10]
    with pytest.raises(ConversionError, match="bytes"):
        rgb_from_image(msg)


def test_camera_info_round_trip(ts):
    cam = CameraModel(K=np.array([[615.0, 0, 320.5], [0, 615.5, 240.25], [0, 0, 1]]), width=640, height=480)
    d = cam.to_camera_info_dict()
    info = ts.types["sensor_msgs/msg/CameraInfo"](
        header=_header(ts), height=480, width=640, distortion_model=d["distortion_model"], d=np.array(d["d"]),
        k=np.array(d["k"]), r=np.array(d["r"]), p=np.array(d["p"]), binning_x=0, binning_y=0,
        roi=ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    back = camera_from_info(info)
    assert np.allclose(back.K, cam.K) and (back.width, back.height) == (640, 480)


def test_time_conversions(ts):
    h = _header(ts, 12, 250_000_000)
    assert stamp_to_sec(h.stamp) == pytest.approx(12.25)
    assert sec_to_stamp(12.25) == (12, 250_000_000)


def test_tf_message_into_buffer(ts):
    g = ts.types
    T = make_transform([0, 0, 0.7071068, 0.7071068], [0.5, 0.1, 0.6])
    tr = g["geometry_msgs/msg/TransformStamped"](
        header=_header(ts, frame="panda_link0"), child_frame_id="camera_color_optical_frame",
        transform=g["geometry_msgs/msg/Transform"](translation=g["geometry_msgs/msg/Vector3"](x=0.5, y=0.1, z=0.6),
                                                   rotation=g["geometry_msgs/msg/Quaternion"](x=0, y=0, z=0.7071068,
                                                                                              w=0.7071068)))
    buf = TransformBuffer()
    buf.add_tf_message(g["tf2_msgs/msg/TFMessage"](transforms=[tr]), static=True)
    assert np.allclose(buf.lookup_transform("panda_link0", "camera_color_optical_frame", None), T, atol=1e-6)


def _result(answer, **kw):
    return PipelineResult(ResultStatus.SUCCEEDED, "ok", answer=answer, timings={"query": 0.2, "lift": 0.001}, **kw)


def test_grasp_result_message(ts):
    f = MessageFactory(ts.types)
    T = make_transform([1, 0, 0, 0], [0.4, 0.0, 0.2])
    ans = GraspAnswer(np.arange(10, dtype=float).reshape(5, 2))
    res = _result(ans, points_base=np.ones((5, 3)), valid=np.ones(5, bool), grasp_pose_base=T, grasp_width=0.08)
    msg = build_result(f, "Grasp", res, frame_id="panda_link0", stamp=5.5, pre_grasp_distance=0.1)
    assert msg.status.code == 0 and msg.answer.points[1].name == "Left finger base"
    assert msg.grasp_pose.header.frame_id == "panda_link0" and msg.grasp_pose.header.stamp.sec == 5
    # approach (+z of the gripper) points down: the pre-grasp stands 0.1 m higher
    assert msg.pre_grasp_pose.pose.position.z == pytest.approx(0.3)
    # the message carries the panda_hand pose: its y (closing axis) is the skeleton's x, approach shared
    q = msg.grasp_pose.pose.orientation
    R_hand = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    np.testing.assert_allclose(R_hand[:, 1], T[:3, 0], atol=1e-9)
    np.testing.assert_allclose(R_hand[:, 2], T[:3, 2], atol=1e-9)
    assert len(msg.keypoints) == 5 and msg.timings[0].stage == "query"
    ts.serialize_cdr(msg, "bopask_msgs/action/Grasp_Result")  # field types as ROS has them


def test_safety_rejection_names_the_check(ts):
    f = MessageFactory(ts.types)
    res = PipelineResult(ResultStatus.SAFETY_REJECTED, "min_height: target point 0 is -0.010 m above the table",
                         answer=TrajectoryAnswer(np.array([[1.0, 2.0], [3.0, 4.0]])))
    msg = build_result(f, "Trajectory", res, frame_id="panda_link0", stamp=1.0)
    assert msg.status.code == msg.status.SAFETY_REJECTED and msg.status.failed_check == "min_height"
    assert failed_check_of("VLM request failed: timed out") == ""


def test_pose_and_yes_no_results(ts):
    f = MessageFactory(ts.types)
    cube = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float) * 0.1
    res = _result(PoseAnswer(np.zeros((8, 2))), points_base=cube + [0.4, 0, 0], valid=np.ones(8, bool))
    msg = build_result(f, "Pose", res, frame_id="panda_link0", stamp=1.0)
    assert msg.size.x == pytest.approx(0.1) and msg.object_pose.pose.position.x == pytest.approx(0.45)
    ts.serialize_cdr(msg, "bopask_msgs/action/Pose_Result")
    yn = build_result(f, "YesNoQuestion", _result(YesNoAnswer(True, Task.DEPTH)), frame_id="b", stamp=1.0)
    assert yn.answer_yes is True and yn.answer.task == "depth"


def test_feedback_and_debug_image(ts):
    f = MessageFactory(ts.types)
    fb = f.feedback("Grasp", "lift", "", 0.3)
    assert fb.feedback.stage == "lift"
    img = ts.types["sensor_msgs/msg/Image"](header=_header(ts), **array_to_image_fields(np.zeros((3, 4, 3), np.uint8)))
    assert img.step == 12 and img.data.size == 36


def test_points_that_never_reached_the_planning_frame_carry_the_camera_frame(ts):
    """Issue 20, defect 6: a TF_FAILED / LIFT_FAILED result has only camera-frame points; they are stamped with
    the image's frame, not the planning frame."""
    f = MessageFactory(ts.types)
    ans = PoseAnswer(np.arange(16, dtype=float).reshape(8, 2))
    for status in (ResultStatus.TF_FAILED, ResultStatus.LIFT_FAILED):
        res = _result(ans, points_cam=np.ones((8, 3)), valid=np.ones(8, bool))
        res.status = status
        msg = build_result(f, "Pose", res, frame_id="panda_link0", stamp=1.0,
                           camera_frame_id="camera_color_optical_frame")
        assert {c.point.header.frame_id for c in msg.corners} == {"camera_color_optical_frame"}
    res = _result(ans, points_base=np.ones((8, 3)), points_cam=np.ones((8, 3)), valid=np.ones(8, bool))
    msg = build_result(f, "Pose", res, frame_id="panda_link0", stamp=1.0, camera_frame_id="camera_color_optical_frame")
    assert {c.point.header.frame_id for c in msg.corners} == {"panda_link0"}
