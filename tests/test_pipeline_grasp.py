"""Issue check: on a synthetic scene recorded as a bag, a grasp goal through the ROS-free pipeline
with the oracle client gives a gripper pose within 1 cm / 5 degrees of the ground truth in the robot
base frame, through the recorded camera extrinsic and the transform buffer."""

from __future__ import annotations

import numpy as np
from _eval_helpers import cached_dataset

from bopask_ros.pipeline import Goal, ResultStatus, TaskPipeline
from bopask_ros.replay.bag_reader import read_bag
from bopask_vlm.answers.types import Task
from bopask_vlm.clients import OracleClient
from bopask_vlm.geometry import rotation_angle_deg


def test_grasp_goal_within_1cm_5deg_in_base_frame():
    _, _, bag, _ = cached_dataset()
    data = read_bag(bag)
    frames = {bf.im_id: bf.frame for bf in data.frames}
    pipe = TaskPipeline(OracleClient(), data.tf, base_frame="base_link")
    grasps = [r for r in data.records if r.task == Task.GRASP]
    assert grasps
    errors = []
    for rec in grasps:
        frame = frames[int(rec.im_id)]
        res = pipe.run(frame, Goal(Task.GRASP, [o.description for o in rec.objects], record=rec))
        assert res.status == ResultStatus.SUCCEEDED, res.reason
        T_base_cam = data.tf.lookup_transform("base_link", frame.frame_id, frame.stamp)
        T_gt = T_base_cam @ np.asarray(rec.gt["T_cam_gripper"])
        errors.append((np.linalg.norm(res.grasp_pose_base[:3, 3] - T_gt[:3, 3]),
                       rotation_angle_deg(res.grasp_pose_base, T_gt)))
    errors = np.array(errors)
    print(f"grasp pose error over {len(errors)} goals: max {errors[:, 0].max() * 1e3:.1f} mm, {errors[:, 1].max():.2f} deg")
    assert errors[:, 0].max() < 0.01, errors
    assert errors[:, 1].max() < 5.0, errors
