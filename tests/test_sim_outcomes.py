"""Episode outcomes are classified from measured quantities: one reason per failure, in the order things ran."""

from __future__ import annotations

import pytest

from bopask_sim.outcomes import (
    CarryMeasure,
    GraspMeasure,
    Reason,
    classify_carry,
    classify_grasp,
    reason_from_status,
)

HIT = [{"step": "approach", "a": "robot", "b": "table", "force": 25.0}]


@pytest.mark.parametrize("m, expected", [
    (GraspMeasure(0.099, 0.099, True), (True, Reason.OK)),
    (GraspMeasure(0.051, 0.050, True), (True, Reason.OK)),
    (GraspMeasure(0.099, 0.099, True, ik_failure="lift: no solution"), (False, Reason.IK_FAILURE)),
    (GraspMeasure(0.099, 0.099, True, collisions=HIT), (False, Reason.COLLISION)),
    (GraspMeasure(0.002, 0.001, False), (False, Reason.MISSED)),
    (GraspMeasure(0.03, 0.0, False), (False, Reason.SLIPPED)),  # rose a little, then fell
    (GraspMeasure(0.099, 0.02, False), (False, Reason.SLIPPED)),  # lifted, then slid out during the hold
    (GraspMeasure(0.099, 0.099, False), (False, Reason.SLIPPED)),  # high but no longer between both fingers
    (GraspMeasure(0.049, 0.049, True), (False, Reason.SLIPPED)),  # below the 5 cm bar
])
def test_grasp_classification(m, expected):
    assert classify_grasp(m) == expected


@pytest.mark.parametrize("m, expected", [
    (CarryMeasure(True, True, placement_error=0.012), (True, Reason.OK)),
    (CarryMeasure(True, True, placement_error=0.031), (False, Reason.MISPLACED)),
    (CarryMeasure(True, True, placement_error=None), (False, Reason.MISPLACED)),
    (CarryMeasure(False, False), (False, Reason.GRASP_FAILED)),
    (CarryMeasure(True, False, placement_error=0.2), (False, Reason.DROPPED)),
    (CarryMeasure(True, True, collisions=HIT, placement_error=0.01), (False, Reason.COLLISION)),
    (CarryMeasure(True, True, ik_failure="waypoint 2", placement_error=0.01), (False, Reason.IK_FAILURE)),
])
def test_carry_classification(m, expected):
    assert classify_carry(m) == expected


def test_pipeline_statuses_map_to_reasons():
    assert reason_from_status("safety_rejected") is Reason.REJECTED_BY_SAFETY
    assert reason_from_status("invalid_answer") is Reason.INVALID_ANSWER
    assert reason_from_status("lift_failed") is Reason.LIFT_FAILED
    assert reason_from_status("something new") is Reason.PIPELINE_ERROR


def test_toppled_and_misplaced_are_told_apart():
    # released on the target but it fell off (a ball as support): toppled; released elsewhere: misplaced
    assert classify_carry(CarryMeasure(True, True, placement_error=0.12, release_error=0.021)) == \
        (False, Reason.TOPPLED)
    assert classify_carry(CarryMeasure(True, True, placement_error=0.12, release_error=0.09)) == \
        (False, Reason.MISPLACED)
