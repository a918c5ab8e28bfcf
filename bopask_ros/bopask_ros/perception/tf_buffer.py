"""A small transform buffer with tf2's semantics, without ROS: replay recorded /tf and /tf_static.

- Frames form a tree: every child has one parent (a later transform with a new parent re-parents the
  child, as tf2 does). Leading slashes in frame ids are stripped (tf2 does the same).
- Static transforms hold at every time. Dynamic ones are kept ``cache_time_s`` back from the newest
  stamp of their link and interpolated (linear translation, slerp rotation) between neighbours.
- ``lookup_transform(target, source, stamp)`` returns ``T_target_source`` (maps points in ``source``
  into ``target``), composed through the common ancestor, like ``tf2_ros.Buffer.lookup_transform``.
  ``stamp`` 0/None asks for the latest time at which the whole chain is available (the smallest of
  the newest stamps of its dynamic links).
- Errors: :class:`FrameNotFoundError` (unknown frame; also a ``LookupError``), :class:`ConnectivityError`
  (frames in different trees), :class:`ExtrapolationError` (stamp before the oldest or after the newest
  data of a link; a link with a single sample only answers at that exact stamp or for "latest"), and
  :class:`InvalidTransformError` for bad input, all under :class:`TransformError`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from bopask_vlm.geometry import matrix_from_quat, quat_from_matrix

__all__ = [
    "ConnectivityError",
    "ExtrapolationError",
    "FrameNotFoundError",
    "InvalidTransformError",
    "TF2_ERRORS",
    "TransformBuffer",
    "TransformError",
    "TransformWait",
    "map_tf2_error",
    "stamp_to_sec",
    "transform_from_msg",
]


class TransformError(Exception):
    """Base of every transform-buffer error (tf2's TransformException)."""


class FrameNotFoundError(TransformError, LookupError):
    """A frame is not in the buffer (tf2's LookupException)."""


class ConnectivityError(TransformError):
    """The two frames are not connected by any chain of transforms (tf2's ConnectivityException)."""


class ExtrapolationError(TransformError):
    """The requested time is outside the data of a link of the chain (tf2's ExtrapolationException)."""


class InvalidTransformError(TransformError, ValueError):
    """A transform or frame id given to the buffer is malformed (tf2's InvalidArgumentException)."""


def _frame(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidTransformError(f"frame id must be a string, got {type(name).__name__}")
    f = name.lstrip("/")
    if not f:
        raise InvalidTransformError("frame id is empty")
    return f


def _rigid(T: ArrayLike) -> NDArray[np.float64]:
    try:
        M = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidTransformError(f"transform is not numeric: {e}") from e
    if M.shape != (4, 4):
        raise InvalidTransformError(f"transform must be 4x4, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise InvalidTransformError("transform has non-finite entries")
    R = M[:3, :3]
    if not (np.allclose(R.T @ R, np.eye(3), atol=1e-5) and np.linalg.det(R) > 0.0) or \
            not np.allclose(M[3], [0.0, 0.0, 0.0, 1.0]):
        raise InvalidTransformError("transform is not a rigid motion (rotation not orthonormal or bottom row wrong)")
    return M.copy()


def stamp_to_sec(stamp: Any) -> float:
    """Seconds of a float or a ``builtin_interfaces/Time``-like object/dict (``sec`` + ``nanosec``)."""
    if isinstance(stamp, (int, float, np.floating, np.integer)):
        return float(stamp)
    get = stamp.get if isinstance(stamp, dict) else lambda k, d=None: getattr(stamp, k, d)
    sec, nsec = get("sec"), get("nanosec", 0)
    if sec is None:
        raise InvalidTransformError(f"cannot read a time from {stamp!r}")
    return float(sec) + 1e-9 * float(nsec)


def transform_from_msg(msg: Any) -> tuple[NDArray[np.float64], str, str, float]:
    """``(T_parent_child, parent, child, stamp)`` of a ``geometry_msgs/TransformStamped`` (object or dict)."""
    def g(o: Any, k: str) -> Any:
        return o[k] if isinstance(o, dict) else getattr(o, k)

    try:
        tr = g(g(msg, "transform"), "translation")
        rot = g(g(msg, "transform"), "rotation")
        q = [float(g(rot, k)) for k in ("x", "y", "z", "w")]
        t = [float(g(tr, k)) for k in ("x", "y", "z")]
        header = g(msg, "header")
        parent, child = g(header, "frame_id"), g(msg, "child_frame_id")
        stamp = stamp_to_sec(g(header, "stamp"))
    except (KeyError, AttributeError, TypeError) as e:
        raise InvalidTransformError(f"not a TransformStamped: {e}") from e
    try:
        R = matrix_from_quat(q)
    except ValueError as e:
        raise InvalidTransformError(str(e)) from e
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T, parent, child, stamp


#: stamps this close to the end of a link's data count as at the end: seconds since the epoch as
#: float64 carry ~2e-7 s of rounding, and a stamp converted twice must not extrapolate.
STAMP_TOLERANCE_S = 1e-6


@dataclass
class _Link:
    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    poses: list[NDArray[np.float64]] = field(default_factory=list)

    def newest(self) -> float:
        return math.inf if self.static else self.stamps[-1]

    def oldest(self) -> float:
        return -math.inf if self.static else self.stamps[0]

    def at(self, t: float, child: str) -> NDArray[np.float64]:
        if self.static:
            return self.poses[0]
        s = self.stamps
        if t < s[0] - STAMP_TOLERANCE_S or t > s[-1] + STAMP_TOLERANCE_S:
            when = "before the oldest" if t < s[0] else "after the newest"
            raise ExtrapolationError(
                f"lookup of {self.parent} -> {child} at t={t:.9f} is {when} data "
                f"([{s[0]:.9f}, {s[-1]:.9f}], {len(s)} samples)")
        t = min(max(t, s[0]), s[-1])  # within float rounding of an end: that end
        i = bisect.bisect_left(s, t)
        if s[i] == t:
            return self.poses[i]
        t0, t1 = s[i - 1], s[i]
        a = (t - t0) / (t1 - t0)
        T0, T1 = self.poses[i - 1], self.poses[i]
        q0, q1 = quat_from_matrix(T0), quat_from_matrix(T1)
        if float(q0 @ q1) < 0.0:
            q1 = -q1
        # slerp between the two rotations (scipy's geodesic interpolation)
        rv = (Rotation.from_quat(q0).inv() * Rotation.from_quat(q1)).as_rotvec()
        R = (Rotation.from_quat(q0) * Rotation.from_rotvec(a * rv)).as_matrix()
        out = np.eye(4)
        out[:3, :3] = R
        out[:3, 3] = (1.0 - a) * T0[:3, 3] + a * T1[:3, 3]
        return out


class TransformBuffer:
    """tf2-like buffer of static and dynamic transforms, see the module docstring."""

    def __init__(self, cache_time_s: float = 10.0) -> None:
        if not (cache_time_s > 0 and math.isfinite(cache_time_s)):
            raise InvalidTransformError(f"cache_time_s must be positive, got {cache_time_s}")
        self.cache_time_s = float(cache_time_s)
        self._links: dict[str, _Link] = {}  # child -> link to its parent
        self._frames: set[str] = set()

    # -- filling -------------------------------------------------------------------------------
    def set_transform(self, T: ArrayLike, parent: str, child: str, stamp: float | Any = 0.0,
                      static: bool = False) -> None:
        """Add ``T_parent_child`` at ``stamp`` (seconds, or a ``Time`` message)."""
        parent, child = _frame(parent), _frame(child)
        if parent == child:
            raise InvalidTransformError(f"frame {child!r} cannot be its own parent")
        M = _rigid(T)
        t = stamp_to_sec(stamp)
        if not math.isfinite(t):
            raise InvalidTransformError(f"stamp must be finite, got {t}")
        if self._would_loop(parent, child):
            raise InvalidTransformError(f"{parent!r} -> {child!r} would make a loop in the frame tree")
        link = self._links.get(child)
        if link is None or link.parent != parent or link.static != bool(static):
            link = _Link(parent=parent, static=bool(static))
            self._links[child] = link
        self._frames.update((parent, child))
        if link.static:
            link.stamps, link.poses = [t], [M]
            return
        i = bisect.bisect_left(link.stamps, t)
        if i < len(link.stamps) and link.stamps[i] == t:
            link.poses[i] = M
        else:
            link.stamps.insert(i, t)
            link.poses.insert(i, M)
        # drop what is older than cache_time_s before the newest sample
        cut = bisect.bisect_left(link.stamps, link.stamps[-1] - self.cache_time_s)
        if cut:
            del link.stamps[:cut], link.poses[:cut]

    def set_transform_msg(self, msg: Any, static: bool = False) -> None:
        """Add one ``geometry_msgs/TransformStamped`` (rosbags-decoded object or dict)."""
        T, parent, child, stamp = transform_from_msg(msg)
        self.set_transform(T, parent, child, stamp, static=static)

    def add_tf_message(self, tf_msg: Any, static: bool = False) -> int:
        """Add every transform of a ``tf2_msgs/TFMessage`` (as recorded on /tf or /tf_static)."""
        transforms: Iterable[Any] = tf_msg["transforms"] if isinstance(tf_msg, dict) else tf_msg.transforms
        n = 0
        for m in transforms:
            self.set_transform_msg(m, static=static)
            n += 1
        return n

    # -- queries --------------------------------------------------------------------------------
    def frames(self) -> list[str]:
        return sorted(self._frames)

    def parent_of(self, frame: str) -> str | None:
        link = self._links.get(_frame(frame))
        return None if link is None else link.parent

    def lookup_transform(self, target: str, source: str, stamp: float | Any | None = None) -> NDArray[np.float64]:
        """``T_target_source`` at ``stamp`` (seconds; 0/None = latest common time)."""
        target, source = _frame(target), _frame(source)
        for f in (target, source):
            if f not in self._frames:
                known = ", ".join(self.frames()) or "none"
                raise FrameNotFoundError(f"frame {f!r} does not exist (known frames: {known})")
        if target == source:
            return np.eye(4)
        up_s, up_t, _ = self._chains(target, source)
        t = None if stamp is None else stamp_to_sec(stamp)
        if t is None or t == 0.0:
            links = [self._links[c] for c in up_s + up_t]
            dyn = [lk.newest() for lk in links if not lk.static]
            t = min(dyn) if dyn else 0.0
        T_root_source = np.eye(4)
        for c in reversed(up_s):  # root ... source
            T_root_source = T_root_source @ self._links[c].at(t, c)
        T_root_target = np.eye(4)
        for c in reversed(up_t):
            T_root_target = T_root_target @ self._links[c].at(t, c)
        Rt = T_root_target[:3, :3].T
        inv = np.eye(4)
        inv[:3, :3] = Rt
        inv[:3, 3] = -Rt @ T_root_target[:3, 3]
        return inv @ T_root_source

    def can_transform(self, target: str, source: str, stamp: float | Any | None = None) -> bool:
        try:
            self.lookup_transform(target, source, stamp)
        except TransformError:
            return False
        return True

    def latest_common_time(self, target: str, source: str) -> float:
        """The time a ``stamp=None`` lookup uses (0.0 when the chain is all static)."""
        target, source = _frame(target), _frame(source)
        for f in (target, source):
            if f not in self._frames:
                raise FrameNotFoundError(f"frame {f!r} does not exist")
        up_s, up_t, _ = self._chains(target, source)
        dyn = [self._links[c].newest() for c in up_s + up_t if not self._links[c].static]
        return min(dyn) if dyn else 0.0

    # -- internals ------------------------------------------------------------------------------
    def _ancestors(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        out = [frame]
        while out[-1] in self._links:
            out.append(self._links[out[-1]].parent)
        return out

    def _would_loop(self, parent: str, child: str) -> bool:
        f = parent
        while f in self._links:
            if f == child:
                return True
            f = self._links[f].parent
        return f == child

    def _chains(self, target: str, source: str) -> tuple[list[str], list[str], str]:
        """Children on the way up from source and from target to their common ancestor, and that ancestor."""
        a_s, a_t = self._ancestors(source), self._ancestors(target)
        in_t = set(a_t)
        common = next((f for f in a_s if f in in_t), None)
        if common is None:
            raise ConnectivityError(f"cannot transform {source!r} to {target!r}: they are in different trees "
                                    f"(roots {a_s[-1]!r} and {a_t[-1]!r})")
        return a_s[:a_s.index(common)], a_t[:a_t.index(common)], common


# -- waiting for a transform (the tf2 adapter of the node) ----------------------------------------------
#: tf2's exception class names -> ours, most specific first (tf2_py's classes all derive TransformException)
TF2_ERRORS: tuple[tuple[str, type[TransformError]], ...] = (
    ("ExtrapolationException", ExtrapolationError),
    ("ConnectivityException", ConnectivityError),
    ("LookupException", FrameNotFoundError),
    ("InvalidArgumentException", InvalidTransformError),
    ("TransformException", TransformError),
)


def map_tf2_error(error: BaseException, tf2: Any) -> TransformError | None:
    """``error`` raised by tf2_ros (``tf2``: the module) as the core's :class:`TransformError` subclass of the
    same meaning, its message kept; None when it is not a tf2 error."""
    for name, ours in TF2_ERRORS:
        cls = getattr(tf2, name, None)
        if isinstance(cls, type) and isinstance(error, cls):
            return ours(str(error))
    return None


class TransformWait:
    """How long a camera-pose lookup may wait, and waiting in slices that a cancel ends.

    Until one lookup has succeeded a lookup waits ``first_timeout_s`` (a TF tree is often not complete when the
    node starts: /tf_static from another process came 1-2 s after the node); after that ``timeout_s``. A lookup
    is tried every ``slice_s`` (each try may itself wait up to ``slice_s``) until it succeeds, the time is up
    (the last error is raised, saying how long it waited), or ``canceled()`` (a :class:`TransformError` saying
    so). Malformed input (:class:`InvalidTransformError`) is raised at once. Thread-safe enough: the flag is a
    bool set once."""

    def __init__(self, timeout_s: float, first_timeout_s: float | None = None, slice_s: float = 0.05,
                 clock: Any = None, sleep: Any = None) -> None:
        import time

        self.timeout_s = max(0.0, float(timeout_s))
        self.first_timeout_s = max(self.timeout_s, float(first_timeout_s if first_timeout_s is not None
                                                          else timeout_s))
        self.slice_s = max(1e-3, float(slice_s))
        self.ready = False  # a lookup has succeeded
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep

    @property
    def current_timeout_s(self) -> float:
        return self.timeout_s if self.ready else self.first_timeout_s

    def run(self, try_lookup: Any, canceled: Any = None) -> Any:
        """``try_lookup(wait_s)`` (raises TransformError when the transform is not there within ``wait_s``)
        until it returns; see the class docstring."""
        budget = self.current_timeout_s
        start = self._clock()
        while True:
            if canceled is not None and canceled():
                raise TransformError("canceled while waiting for the camera transform")
            left = budget - (self._clock() - start)
            t0 = self._clock()
            try:
                out = try_lookup(max(0.0, min(self.slice_s, left)))
            except InvalidTransformError:
                raise
            except TransformError as e:
                waited = self._clock() - start
                if waited >= budget:
                    note = "" if self.ready else " (no transform has come since the node started)"
                    raise type(e)(f"{e} [waited {waited:.2f} s{note}]") from e
                # a try that returned at once (no wait of its own) sleeps out its slice
                rest = self.slice_s - (self._clock() - t0)
                if rest > 0:
                    self._sleep(min(rest, max(0.0, budget - waited)))
                continue
            self.ready = True
            return out
