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

__all__ = ["STREAMS", "CameraSync", "DepthHealth", "SyncStats", "SyncedFrame", "depth_valid_fraction",
           "frame_size_mismatch"]

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
    unpaired: int = 0  # messages that found no set although every stream had messages waiting


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
        self._mismatch: str | None = None
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
                if all(self._queues[s] for s in STREAMS):
                    # every stream has messages, none pair with this one: the stamps disagree beyond the slop
                    self.stats.unpaired += 1
                    newest = {s: self._queues[s][-1].stamp_ns for s in STREAMS}
                    spread = max(newest.values()) - min(newest.values())
                    self._mismatch = (f"{stream} message stamped {stamp_ns * 1e-9:.3f} s pairs with nothing: the "
                                      "newest stamps are " + ", ".join(f"{s} {t * 1e-9:.3f}" for s, t in newest.items())
                                      + f" (spread {spread * 1e-6:.1f} ms, sync_slop_s {self.slop_ns * 1e-9:g} s); "
                                      f"{self.stats.unpaired} unpaired so far")
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

    def take_mismatch(self) -> str | None:
        """What the last message that paired with nothing (every stream having messages) looked like, once;
        None when there was none since the last call. For a rate-limited log line."""
        with self._lock:
            out, self._mismatch = self._mismatch, None
            return out

    def pending(self) -> dict[str, int]:
        """Messages waiting per stream."""
        with self._lock:
            return {s: len(q) for s, q in self._queues.items()}


# -- checks of a paired set ------------------------------------------------------------------------------
def frame_size_mismatch(color_hw: tuple[int, int], depth_hw: tuple[int, int] | None,
                        info_wh: tuple[int, int]) -> str | None:
    """Why the colour image (rows, cols), the aligned depth (rows, cols; None: none) and camera_info (width,
    height) of one set do not describe one image, naming the stream at fault; None when they agree."""
    (ch, cw), (iw, ih) = color_hw, info_wh
    if (iw, ih) != (cw, ch):
        return (f"camera_info is {iw}x{ih} but the colour image is {cw}x{ch} (camera_info of another stream or "
                "resolution)")
    if depth_hw is not None and tuple(depth_hw) != (ch, cw):
        return (f"depth is {depth_hw[1]}x{depth_hw[0]} but the colour image and camera_info are {cw}x{ch} (the "
                "depth must be aligned to the colour image: aligned_depth_to_color)")
    return None


def depth_valid_fraction(depth_m: Any, roi_fraction: float = 0.5) -> float:
    """Fraction of the pixels of the central region (``roi_fraction`` of the width and of the height) whose depth
    is finite and > 0: where a tabletop scene's objects are. 0 for an empty image."""
    import numpy as np

    d = np.asarray(depth_m)
    if d.ndim != 2 or d.size == 0:
        return 0.0
    h, w = d.shape
    mh, mw = int(round(h * (1 - roi_fraction) / 2)), int(round(w * (1 - roi_fraction) / 2))
    roi = d[mh:h - mh or None, mw:w - mw or None]
    if roi.size == 0:
        roi = d
    with np.errstate(invalid="ignore"):
        return float(np.count_nonzero(np.isfinite(roi) & (roi > 0)) / roi.size)


class DepthHealth:
    """Whether the depth stream is usable, judged per frame by :func:`depth_valid_fraction` against
    ``min_fraction``; :meth:`update` reports the start and the end of an episode of bad depth once each."""

    def __init__(self, min_fraction: float, roi_fraction: float = 0.5) -> None:
        if not 0.0 <= float(min_fraction) <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
        self.min_fraction = float(min_fraction)
        self.roi_fraction = float(roi_fraction)
        self.bad = False
        self.episodes = 0
        # the last image judged and its valid fraction: a goal judges the frame the camera callback judged on
        # arrival (the very array, held here so its id cannot be reused), so that costs no second pass
        self._last: tuple[Any, float] | None = None

    def judge(self, depth_m: Any) -> str | None:
        """None when the depth is usable, else why not (a goal's reason)."""
        last = self._last
        if last is not None and last[0] is depth_m:
            f = last[1]
        else:
            f = depth_valid_fraction(depth_m, self.roi_fraction)
            self._last = (depth_m, f)
        if f >= self.min_fraction and f > 0.0:
            return None
        return (f"the depth image is dead or unusable: {100 * f:.0f} % of the central region has a valid depth "
                f"(finite and > 0; min_depth_valid_fraction {100 * self.min_fraction:.0f} %)")

    def update(self, depth_m: Any) -> tuple[str, str] | None:
        """Judge one frame: ("bad", reason) when an episode of bad depth starts, ("good", "") when it ends, else
        None."""
        why = self.judge(depth_m)
        if why is not None and not self.bad:
            self.bad = True
            self.episodes += 1
            return "bad", why
        if why is None and self.bad:
            self.bad = False
            return "good", ""
        return None
