"""Colour, aligned depth and camera_info paired by header stamp, ROS-free (the node needs no
message_filters).

realsense-ros 4.x with ``enable_sync: true`` stamps the colour image, the depth aligned to it and the
colour camera_info of one capture identically: ``slop_s = 0`` (the default) pairs exactly those. A
positive ``slop_s`` pairs messages whose stamps spread at most that much (other drivers, or
unsynchronised sensors), choosing the set of the smallest spread.

Messages wait in one bounded queue per stream (``queue_size``, oldest dropped first). Each new message
completes at most one set (one with the new message in it): that set is returned, and everything that
arrived in any stream before its members is dropped (older captures are superseded, as in
message_filters). A message that never finds partners is therefore dropped, at the latest, once
``queue_size`` later messages of its stream have arrived or a newer set is made.

Time going backwards (a bag replayed in a loop, a clock reset) needs no special input: the next pass's
messages pair among themselves, and the stragglers of the previous pass are dropped with everything
that arrived before the first new set. A set whose stamp is older than the previous set's starts a new
``epoch`` (:attr:`SyncedFrame.epoch`), so a consumer keeping "the newest frame" knows to take it (see
:class:`bopask_ros.perception.frame_cache.FrameCache`). Thread-safe.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STREAMS", "CameraSync", "SyncStats", "SyncedFrame"]

#: the three streams of one frame
STREAMS: tuple[str, ...] = ("color", "depth", "info")


@dataclass(frozen=True)
class SyncedFrame:
    """One complete set: the three messages, the colour stamp (ns) and the time epoch it belongs to."""

    color: Any
    depth: Any
    info: Any
    stamp_ns: int
    epoch: int


@dataclass
class SyncStats:
    """Counts since start: sets made, messages dropped per stream, times the stamps went backwards."""

    frames: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    resets: int = 0


@dataclass(frozen=True)
class _Entry:
    seq: int  # arrival order over all streams
    stamp_ns: int
    msg: Any


class CameraSync:
    """Pairs colour, aligned depth and camera_info by stamp; see the module docstring."""

    def __init__(self, slop_s: float = 0.0, queue_size: int = 10) -> None:
        if not (math.isfinite(slop_s) and slop_s >= 0.0):
            raise ValueError(f"slop_s must be a finite number >= 0, got {slop_s!r}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size!r}")
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = int(queue_size)
        self.stats = SyncStats()
        self._queues: dict[str, deque[_Entry]] = {s: deque() for s in STREAMS}
        self._seq = itertools.count()
        self._last_ns: int | None = None
        self._epoch = 0
        self._lock = threading.Lock()

    def add(self, stream: str, stamp_ns: int, msg: Any) -> SyncedFrame | None:
        """Add one message of ``stream`` ("color", "depth" or "info") stamped ``stamp_ns``
        (nanoseconds); the set it completes, or None."""
        if stream not in self._queues:
            raise ValueError(f"unknown stream {stream!r}; expected one of {list(STREAMS)}")
        stamp_ns = int(stamp_ns)
        with self._lock:
            q = self._queues[stream]
            if len(q) >= self.queue_size:
                q.popleft()
                self.stats.dropped[stream] += 1
            entry = _Entry(next(self._seq), stamp_ns, msg)
            q.append(entry)
            match = self._match(stream, entry)
            if match is None:
                return None
            for s, e in match.items():
                # the members, and everything that arrived before them, leave their queues
                qs = self._queues[s]
                while qs and qs[0].seq <= e.seq:
                    gone = qs.popleft()
                    if gone is not e:
                        self.stats.dropped[s] += 1
            stamp = match["color"].stamp_ns
            if self._last_ns is not None and stamp < self._last_ns:
                self._epoch += 1
                self.stats.resets += 1
            self._last_ns = stamp
            self.stats.frames += 1
            return SyncedFrame(match["color"].msg, match["depth"].msg, match["info"].msg, stamp, self._epoch)

    def _match(self, stream: str, entry: _Entry) -> dict[str, _Entry] | None:
        """The set of the smallest stamp spread (at most the slop) that holds ``entry``."""
        others = [s for s in STREAMS if s != stream]
        lo, hi = entry.stamp_ns - self.slop_ns, entry.stamp_ns + self.slop_ns
        cands = [[e for e in self._queues[s] if lo <= e.stamp_ns <= hi] for s in others]
        best: tuple[int, int, dict[str, _Entry]] | None = None
        for a, b in itertools.product(*cands):
            stamps = (entry.stamp_ns, a.stamp_ns, b.stamp_ns)
            spread = max(stamps) - min(stamps)
            if spread > self.slop_ns:
                continue
            # smallest spread; among equals, the newest arrivals
            key = (spread, -(a.seq + b.seq))
            if best is None or key < best[:2]:
                best = (*key, {stream: entry, others[0]: a, others[1]: b})
        return None if best is None else best[2]

    def pending(self) -> dict[str, int]:
        """Messages waiting per stream."""
        with self._lock:
            return {s: len(q) for s, q in self._queues.items()}
