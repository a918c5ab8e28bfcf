"""One goal executes at a time: admission and turn-taking for the action servers, ROS-free.

With policy ``reject`` a goal arriving while another runs is refused at once (the client gets
REJECTED); with ``queue`` up to ``queue_size`` goals wait their turn in arrival order. A waiting
goal that is canceled leaves the queue without ever running.

A ticket is handed out when a goal is accepted (rclpy's goal callback) and must be *bound* once the
goal really exists (the accepted-goal callback, or the execute callback): rclpy can accept a goal and
then never execute it (sending the goal response fails when the client went away, or the goal handle
cannot be made). A ticket not bound within ``bind_timeout_s`` expires, so such a goal cannot hold its
place forever (with ``reject`` it would refuse every later goal).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable


class GoalGate:
    def __init__(self, policy: str = "reject", queue_size: int = 1, bind_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if policy not in ("reject", "queue"):
            raise ValueError(f"busy policy must be 'reject' or 'queue', got {policy!r}")
        self.policy = policy
        self.queue_size = max(0, int(queue_size)) if policy == "queue" else 0
        self.bind_timeout_s = float(bind_timeout_s)
        self._clock = clock
        self._cv = threading.Condition()
        self._running: int | None = None
        self._admitted: set[int] = set()
        self._unbound: dict[int, float] = {}  # ticket -> admission time, until bound
        self._tickets = itertools.count()
        self.expired = 0

    def _reap(self) -> None:
        """Drop tickets admitted but never bound in time (their goals never ran)."""
        now = self._clock()
        for t, since in list(self._unbound.items()):
            if now - since > self.bind_timeout_s:
                del self._unbound[t]
                self._admitted.discard(t)
                self.expired += 1
                self._cv.notify_all()

    def admit(self) -> tuple[int | None, str]:
        """A ticket for a new goal, or (None, reason) when it must be rejected."""
        with self._cv:
            self._reap()
            if len(self._admitted) >= 1 + self.queue_size:  # one running (or about to) + the queue
                if self.policy == "reject":
                    return None, "another goal is executing (busy_policy: reject)"
                return None, f"goal queue is full ({self.queue_size} waiting)"
            ticket = next(self._tickets)
            self._admitted.add(ticket)
            self._unbound[ticket] = self._clock()
            return ticket, ""

    def bind(self, ticket: int) -> bool:
        """The ticket's goal exists and will run: it no longer expires. False if it already expired."""
        with self._cv:
            self._reap()
            if ticket not in self._admitted:
                return False
            self._unbound.pop(ticket, None)
            return True

    def holds(self, ticket: int) -> bool:
        """Whether ``ticket`` is still admitted (not released and not expired)."""
        with self._cv:
            return ticket in self._admitted

    def acquire(self, ticket: int, canceled: Callable[[], bool], poll_s: float = 0.05) -> bool:
        """Wait for ``ticket``'s turn; False (and the ticket is dropped) if canceled meanwhile."""
        with self._cv:
            if not self.bind(ticket):
                raise ValueError(f"ticket {ticket} was not admitted (or expired before its goal ran)")
            # turns go by admission order: the oldest admitted goal runs next
            while self._running is not None or ticket != min(self._admitted):
                if canceled():
                    self._admitted.discard(ticket)
                    self._cv.notify_all()
                    return False
                self._cv.wait(poll_s)
                self._reap()  # an expired older ticket must not block this one
            self._running = ticket
            return True

    def release(self, ticket: int) -> None:
        with self._cv:
            if self._running == ticket:
                self._running = None
            self._admitted.discard(ticket)
            self._unbound.pop(ticket, None)
            self._cv.notify_all()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running is not None

    @property
    def running(self) -> int | None:
        """The ticket of the goal running now, or None."""
        with self._cv:
            return self._running
