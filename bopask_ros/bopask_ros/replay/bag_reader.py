"""Read a RealSense-style rosbag2 (mcap or sqlite3) back into RGB-D frames, TF and ground truth (ROS-free).

Colour, aligned depth and camera_info are matched by their header stamps (the node's synchroniser does
the same). A bag that is truncated or corrupt is not an exception: :func:`read_bag` keeps every
complete frame read before the damage and reports what went wrong in ``BagData.errors`` with
``complete=False``. Bad arguments (no such path, not a bag at all) raise :class:`BagReadError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bopask_ros.node_support.conversions import camera_from_info, depth_from_image, rgb_from_image
from bopask_ros.perception.tf_buffer import TransformBuffer, stamp_to_sec
from bopask_ros.pipeline import Frame
from bopask_ros.replay.bag_writer import (
    CAMERA_FRAME,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    GT_FILE,
    INFO_TOPIC,
    RECORDS_FILE,
    TF_STATIC_TOPIC,
    TF_TOPIC,
)

__all__ = ["BagData", "BagFrame", "BagReadError", "iter_bag_frames", "read_bag"]


class BagReadError(ValueError):
    """The path is not a readable rosbag2 at all."""


@dataclass
class BagFrame:
    """A synchronised RGB-D frame of the bag, its index and stamp (ns), and its BOP image id if known."""

    index: int
    stamp_ns: int
    frame: Frame
    im_id: int | None = None


@dataclass
class BagData:
    """Everything :func:`read_bag` recovered. ``complete`` is False when the bag was damaged."""

    path: Path
    frames: list[BagFrame]
    tf: TransformBuffer
    gt: dict[str, Any] = field(default_factory=dict)
    records: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    complete: bool = True
    messages_read: int = 0


def _stamp_ns(msg: Any) -> int:
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise BagReadError(f"no bag at {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # rosbags raises ReaderError, but damaged files surface as other errors too
        raise BagReadError(f"{path} cannot be opened as a rosbag2: {type(e).__name__}: {e}") from e
    return reader


def _mcap_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".mcap":
        return path
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        return files[0] if files else None
    return None


def _salvage_mcap(mcap: Path) -> tuple[Any, list[Any], Iterator[tuple[Any, int, bytes]]]:
    """Scan a damaged mcap (no footer/summary, e.g. the recorder was killed) from its start.

    Uses rosbags' own MCAP record scanner (``McapReader.meta_scan``/``messages_scan``) with the footer
    check skipped, so connections and messages before the damage are recovered.
    """
    from rosbags.rosbag2.storage_mcap import McapReader, read_sized

    class _Salvage(McapReader):
        def _open(self) -> None:
            bio = self.bio
            assert bio is not None
            if bio.read(8) != b"\x89MCAP0\r\n":
                raise BagReadError(f"{mcap} is not an MCAP file (bad magic)")
            if bio.read(1) != b"\x01":
                raise BagReadError(f"{mcap}: no MCAP header record")
            read_sized(bio)
            self.data_start = bio.tell()
            self.data_end = bio.seek(0, 2)
            try:
                self.meta_scan()  # fills schemas/channels/connections up to the damage
            except Exception:
                pass

    r = _Salvage(mcap)
    r.open()
    conns = list(r.connections)
    return r, conns, r.messages_scan(conns)


def iter_bag_frames(path: str | Path, data: BagData | None = None) -> Iterator[BagFrame]:
    """Yield synchronised frames in stamp order; TF messages go to ``data.tf`` when given.

    A bag whose mcap lost its end (truncated recording) is scanned from the start instead. Stops
    (without raising) at the first damaged record, recording the error in ``data``.
    """
    path = Path(path)
    errors: list[str] = data.errors if data is not None else []

    def damaged(msg: str) -> None:
        errors.append(msg)
        if data is not None:
            data.complete = False

    try:
        reader = _open_reader(path)
        conns = [c for c in reader.connections if c.topic in _TOPICS]
        source = reader.messages(connections=conns)
    except BagReadError as e:
        mcap = _mcap_file(path)
        if mcap is None:
            raise
        try:
            reader, conns, source = _salvage_mcap(mcap)
        except Exception as e2:
            raise BagReadError(f"{e}; scanning {mcap.name} from its start failed too: {e2}") from e
        damaged(f"{e}; recovered by scanning {mcap.name} from its start")
        conns = [c for c in conns if c.topic in _TOPICS]
    ts = _typestore()
    pending: dict[int, dict[str, Any]] = {}
    index = 0
    try:
        if not any(c.topic == COLOR_TOPIC for c in conns):
            damaged(f"no {COLOR_TOPIC} messages in the bag")
            return
        wanted = {c.id for c in conns}
        try:
            for conn, _t, raw in source:
                if conn.id not in wanted:
                    continue
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                if data is not None:
                    data.messages_read += 1
                if conn.topic in (TF_STATIC_TOPIC, TF_TOPIC):
                    if data is not None:
                        data.tf.add_tf_message(msg, static=conn.topic == TF_STATIC_TOPIC)
                    continue
                st = _stamp_ns(msg)
                slot = pending.setdefault(st, {})
                slot[conn.topic] = msg
                if len(slot) == 3:
                    del pending[st]
                    yield _make_frame(index, st, slot)
                    index += 1
        except Exception as e:  # damaged chunk / record / CDR payload: keep what was read
            damaged(f"bag damaged after {index} complete frames: {type(e).__name__}: {e}")
            return
        if pending:
            damaged(f"{len(pending)} image stamps lack colour, depth or camera_info")
    finally:
        try:
            reader.close()
        except Exception:
            pass


@lru_cache(maxsize=1)
def _typestore() -> Any:
    """The ROS 2 Jazzy typestore, built once (its deserialisers are generated and cached inside it)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


_TOPICS = (COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC, TF_STATIC_TOPIC, TF_TOPIC)


def _make_frame(index: int, st: int, slot: dict[str, Any]) -> BagFrame:
    # the same message conversions the node uses
    rgb = rgb_from_image(slot[COLOR_TOPIC])
    depth_m = depth_from_image(slot[DEPTH_TOPIC])
    cam = camera_from_info(slot[INFO_TOPIC])
    frame_id = slot[COLOR_TOPIC].header.frame_id or CAMERA_FRAME
    # the stamp in seconds exactly as the TF buffer computes it from a header (float64 at ~1.7e9 s resolves
    # only ~0.2 us, so ns * 1e-9 and sec + nanosec * 1e-9 may differ by one ulp)
    stamp = stamp_to_sec(slot[COLOR_TOPIC].header.stamp)
    return BagFrame(index, st, Frame(rgb=rgb, depth_m=depth_m, camera=cam, stamp=stamp, frame_id=frame_id))


def read_bag(path: str | Path, load_records: bool = True) -> BagData:
    """Read the whole bag (frames, TF, ground-truth side files). Damage is reported, not raised."""
    path = Path(path)
    data = BagData(path=path, frames=[], tf=TransformBuffer(cache_time_s=1e9))
    gt_file = path / GT_FILE if path.is_dir() else path.parent / GT_FILE
    if gt_file.is_file():
        try:
            data.gt = json.loads(gt_file.read_text())
        except json.JSONDecodeError as e:
            data.errors.append(f"{gt_file.name} is not JSON: {e}")
    try:
        for bf in iter_bag_frames(path, data):
            data.frames.append(bf)
    except BagReadError as e:
        data.errors.append(str(e))
        data.complete = False
        if not data.gt:
            raise
    by_stamp = {int(f["stamp_ns"]): f for f in data.gt.get("frames", [])}
    for bf in data.frames:
        entry = by_stamp.get(bf.stamp_ns)
        if entry is not None:
            bf.im_id = int(entry["im_id"])
    rec_file = gt_file.parent / RECORDS_FILE
    if load_records and rec_file.is_file():
        from bopask_vlm.records import QARecord, RecordError

        for n, line in enumerate(rec_file.read_text().splitlines(), 1):
            if line.strip():
                try:
                    data.records.append(QARecord.from_line(line))
                except RecordError as e:
                    data.errors.append(f"{RECORDS_FILE}:{n}: {e}")
    return data
