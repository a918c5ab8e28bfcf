"""One goal executes at a time: admission and turn-taking for the action servers, ROS-free.

With policy ``reject`` a goal arriving while another runs is refused at once (the client gets
REJECTED); with ``queue`` up to ``queue_size`` goals wait their turn in arrival order. A waiting
goal that is canceled leaves the queue without ever running.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable


class GoalGate:
    def __init__(self, policy: str = "reject", queue_size: int = 1) -> None:
        if policy not in ("reject", "queue"):
            raise ValueError(f"busy policy must be 'reject' or 'queue', got {policy!r}")
        self.policy = policy
        self.queue_size = max(0, int(queue_size)) if policy == "queue" else 0
        self._cv = threading.Condition()
        self._running: int | None = None
        self._admitted: set[int] = set()
        self._tickets = itertools.count()

    def admit(self) -> tuple[int | None, str]:
        """A ticket for a new goal, or (None, reason) when it must be rejected."""
        with self._cv:
            if len(self._admitted) >= 1 + self.queue_size:  # one running (or about to) + the queue
                if self.policy == "reject":
                    return None, "another goal is executing (busy_policy: reject)"
                return None, f"goal queue is full ({self.queue_size} waiting)"
            ticket = next(self._tickets)
            self._admitted.add(ticket)
            return ticket, ""

    def acquire(self, ticket: int, canceled: Callable[[], bool], poll_s: float = 0.05) -> bool:
        """Wait for ``ticket``'s turn; False (and the ticket is dropped) if canceled meanwhile."""
        with self._cv:
            if ticket not in self._admitted:
                raise ValueError(f"ticket {ticket} was not admitted")
            # turns go by admission order: the oldest admitted goal runs next
            while self._running is not None or ticket != min(self._admitted):
                if canceled():
                    self._admitted.discard(ticket)
                    self._cv.notify_all()
                    return False
                self._cv.wait(poll_s)
            self._running = ticket
            return True

    def release(self, ticket: int) -> None:
        with self._cv:
            if self._running == ticket:
                self._running = None
            self._admitted.discard(ticket)
            self._cv.notify_all()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running is not None
