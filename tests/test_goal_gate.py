"""One goal at a time: reject or queue, FIFO turns, cancel while waiting, tickets of goals that never ran."""

from __future__ import annotations

import threading
import time

import pytest

from bopask_ros.node_support.goal_gate import GoalGate
from bopask_ros.perception.frame_cache import FrameCache, NoFrameError
from bopask_ros.pipeline import Frame
from bopask_vlm.geometry import CameraModel


def test_reject_policy_refuses_a_second_goal_while_one_runs():
    g = GoalGate("reject")
    t1, _ = g.admit()
    assert g.acquire(t1, lambda: False)
    t2, why = g.admit()
    assert t2 is None and "busy_policy: reject" in why
    g.release(t1)
    t3, _ = g.admit()
    assert t3 is not None


def test_queue_policy_runs_goals_in_arrival_order_and_bounds_the_queue():
    g = GoalGate("queue", queue_size=2)
    tickets = [g.admit()[0] for _ in range(3)]
    assert None not in tickets
    assert g.admit() == (None, "goal queue is full (2 waiting)")
    order: list[int] = []
    assert g.acquire(tickets[0], lambda: False)

    def run(t: int) -> None:
        assert g.acquire(t, lambda: False)
        order.append(t)
        g.release(t)

    threads = [threading.Thread(target=run, args=(t,)) for t in reversed(tickets[1:])]
    for th in threads:
        th.start()
    time.sleep(0.1)
    assert order == []  # still held by the first goal
    g.release(tickets[0])
    for th in threads:
        th.join(2)
    assert order == tickets[1:]


def test_cancel_while_queued_leaves_without_running():
    g = GoalGate("queue", queue_size=1)
    t1, t2 = g.admit()[0], g.admit()[0]
    assert g.acquire(t1, lambda: False)
    flag = threading.Event()
    threading.Timer(0.1, flag.set).start()
    assert g.acquire(t2, flag.is_set) is False
    g.release(t1)
    assert not g.busy and g.admit()[0] is not None


def test_bad_policy():
    with pytest.raises(ValueError, match="busy policy"):
        GoalGate("ignore")


class FakeClock:
    """A settable monotonic clock, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_ticket_whose_goal_never_runs_expires_and_frees_the_gate():
    """rclpy accepts a goal, then fails to send the response: the execute callback never runs (defect 11)."""
    clock = FakeClock()
    g = GoalGate("reject", bind_timeout_s=5.0, clock=clock)
    leaked, _ = g.admit()
    assert leaked is not None
    assert g.admit()[0] is None  # the leaked goal holds the only place...
    clock.t = 5.1
    t2, why = g.admit()  # ...until its ticket expires
    assert t2 is not None and why == "" and g.expired == 1 and not g.holds(leaked)
    assert g.bind(t2) and not g.bind(leaked)
    clock.t = 100.0  # a bound ticket never expires
    assert g.acquire(t2, lambda: False) and g.holds(t2) and g.admit()[0] is None


def test_an_expired_ticket_does_not_block_the_queue():
    clock = FakeClock()
    g = GoalGate("queue", queue_size=2, bind_timeout_s=1.0, clock=clock)
    leaked, t2 = g.admit()[0], g.admit()[0]
    assert g.bind(t2)
    clock.t = 2.0
    # the older, leaked ticket would run first by admission order: it expires instead of blocking t2
    assert g.acquire(t2, lambda: False)
    with pytest.raises(ValueError, match="expired"):
        g.acquire(leaked, lambda: False)
def test_frame_cache_age_check():
    cam = CameraModel(K=[[500, 0, 2], [0, 500, 2], [0, 0, 1]], width=4, height=4)
    c = FrameCache(max_age_s=0.5)
    with pytest.raises(NoFrameError, match="no synchronised"):
        c.snapshot(10.0)
    c.update(Frame(rgb=None, depth_m=None, camera=cam, stamp=10.0))
    c.update(Frame(rgb=None, depth_m=None, camera=cam, stamp=9.0))  # older frame arriving late is ignored
    assert c.snapshot(10.2).stamp == 10.0
    with pytest.raises(NoFrameError, match="old"):
        c.snapshot(11.0)
