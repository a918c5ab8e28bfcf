"""Camera synchronisation in the ROS-free core: colour, aligned depth and camera_info paired by stamp."""

from __future__ import annotations

import threading

import pytest

from bopask_ros.perception.camera_sync import CameraSync

MS = 1_000_000  # ns


def feed(sync: CameraSync, events: list[tuple[str, int]]) -> list[tuple[int, tuple[int, int, int], int]]:
    """Add (stream, stamp) events; the sets made as (stamp, (colour, depth, info) stamps, epoch)."""
    out = []
    for stream, t in events:
        s = sync.add(stream, t, (stream, t))
        if s is not None:
            assert s.color[0] == "color" and s.depth[0] == "depth" and s.info[0] == "info"
            out.append((s.stamp_ns, (s.color[1], s.depth[1], s.info[1]), s.epoch))
    return out


def test_exact_stamps_pair_in_any_arrival_order():
    sync = CameraSync(slop_s=0.0)
    events = [("depth", 100), ("info", 100), ("color", 100),  # colour last
              ("color", 200), ("info", 200), ("depth", 200),
              ("info", 300), ("depth", 300), ("color", 300)]
    assert feed(sync, events) == [(t, (t, t, t), 0) for t in (100, 200, 300)]
    assert sync.pending() == {"color": 0, "depth": 0, "info": 0}
    assert sync.stats.frames == 3 and sum(sync.stats.dropped.values()) == 0


def test_slop_zero_refuses_one_nanosecond_apart_and_slop_accepts_up_to_its_edge():
    assert feed(CameraSync(0.0), [("color", 10 * MS), ("depth", 10 * MS + 1), ("info", 10 * MS)]) == []
    sync = CameraSync(slop_s=0.005)
    # spread exactly the slop: paired
    assert feed(sync, [("color", 100 * MS), ("depth", 105 * MS), ("info", 102 * MS)]) == \
        [(100 * MS, (100 * MS, 105 * MS, 102 * MS), 0)]
    # spread one ns over the slop: not paired (each pair is within slop, the set is not)
    assert feed(sync, [("depth", 200 * MS), ("color", 204 * MS), ("info", 209 * MS + 1)]) == []


def test_slop_picks_the_closest_partners():
    sync = CameraSync(slop_s=0.02)
    got = feed(sync, [("depth", 95 * MS), ("depth", 101 * MS), ("info", 100 * MS), ("color", 100 * MS)])
    assert got == [(100 * MS, (100 * MS, 101 * MS, 100 * MS), 0)]
    assert sync.stats.dropped["depth"] == 1  # 95 arrived before the chosen 101: superseded


def test_out_of_order_across_streams_and_a_lost_depth():
    sync = CameraSync(0.0)
    events = [("color", 1), ("color", 2), ("info", 1), ("info", 2),
              ("depth", 2),  # depth 1 is late: frame 2 is made, colour/info 1 are superseded
              ("depth", 1),  # arrives after frame 2 was made: never paired
              ("color", 3), ("info", 3), ("depth", 3)]
    assert [s for s, _, _ in feed(sync, events)] == [2, 3]
    assert sync.stats.dropped == {"color": 1, "depth": 1, "info": 1}
    assert sync.pending() == {"color": 0, "depth": 0, "info": 0}


def test_queues_are_bounded_and_drop_the_oldest():
    sync = CameraSync(0.0, queue_size=3)
    feed(sync, [("color", t) for t in range(10)])  # no depth ever comes
    assert sync.pending()["color"] == 3 and sync.stats.dropped["color"] == 7
    assert feed(sync, [("depth", 9), ("info", 9)]) == [(9, (9, 9, 9), 0)]
    assert feed(sync, [("depth", 2), ("info", 2)]) == []  # colour 2 was dropped long ago


def test_bag_loop_stamps_going_backwards_start_a_new_epoch():
    sync = CameraSync(0.0)
    first = [(s, t) for t in (100, 200, 300) for s in ("color", "depth", "info")]
    # the bag restarts: colour and info of the new pass come before the old pass's last depth straggles in
    second = [("color", 100), ("info", 100), ("depth", 300), ("depth", 100),
              ("color", 200), ("depth", 200), ("info", 200)]
    got = feed(sync, first[:-3] + [("color", 300), ("info", 300)] + second)
    # frame 300 of the first pass completes with the straggler depth 300; then the new pass pairs normally
    assert got == [(100, (100,) * 3, 0), (200, (200,) * 3, 0), (300, (300,) * 3, 0),
                   (100, (100,) * 3, 1), (200, (200,) * 3, 1)]
    assert sync.stats.resets == 1


def test_bag_loop_with_a_straggler_of_the_old_pass_left_unpaired():
    sync = CameraSync(0.0)
    got = feed(sync, [("color", 500), ("info", 500),  # old pass, its depth is lost
                      ("color", 10), ("depth", 10), ("info", 10),  # new pass
                      ("color", 20), ("depth", 20), ("info", 20)])
    assert got == [(10, (10,) * 3, 0), (20, (20,) * 3, 0)]  # first set ever: no reset to report
    assert sync.pending() == {"color": 0, "depth": 0, "info": 0}  # 500 superseded by the set at 10


def test_bad_arguments():
    with pytest.raises(ValueError, match="slop_s"):
        CameraSync(-0.1)
    with pytest.raises(ValueError, match="queue_size"):
        CameraSync(0.0, queue_size=0)
    with pytest.raises(ValueError, match="unknown stream"):
        CameraSync().add("ir", 0, None)


def test_concurrent_callbacks_make_each_frame_once():
    sync = CameraSync(0.0, queue_size=50)
    made: list[int] = []
    epochs: set[int] = set()
    lock = threading.Lock()

    def run(stream: str) -> None:
        for t in range(200):
            s = sync.add(stream, t, t)
            if s is not None:
                with lock:
                    made.append(s.stamp_ns)
                    epochs.add(s.epoch)

    threads = [threading.Thread(target=run, args=(s,)) for s in ("color", "depth", "info")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(made) == len(set(made)) == sync.stats.frames
    assert max(made) == 199 and epochs == {0}  # each stream in order: the sets' stamps never go back
