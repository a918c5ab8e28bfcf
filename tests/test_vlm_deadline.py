"""The OpenAI client against a misbehaving server (issue 21, items 1, 2, 9): a total deadline per attempt and per
question whatever the server does, a cancel that closes the connection and ends the retries, a size cap that
stops reading. The server is :class:`_vlm_abuse.AbusiveVLMServer` on 127.0.0.1 (standard library)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from _vlm_abuse import AbusiveVLMServer

from bopask_vlm.answers import CoordConvention, RearrangementAnswer, Task, answer_to_json
from bopask_vlm.clients import OpenAICompatibleClient, VLMAnswerError, VLMRequest, VLMServerError
from bopask_vlm.clients.deadline import DaemonWorkers, VLMCanceled, cancel_scope

IMG = np.zeros((120, 160, 3), np.uint8)


def _good(task: str, question: str) -> str:
    return json.dumps(answer_to_json(RearrangementAnswer(np.array([[80.0, 60.0]])),
                                     decimals=CoordConvention.PIXELS.decimals))


@pytest.fixture(scope="module")
def server():
    s = AbusiveVLMServer(_good, trickle_s=0.25, slow_s=1.0, max_hold_s=15.0)
    yield s
    s.close()


def _ask(client: OpenAICompatibleClient, what: str):
    return client.ask(VLMRequest(Task.REARRANGEMENT, IMG, [what]))


def _timed(fn):
    t0 = time.monotonic()
    try:
        fn()
    except Exception as e:  # returned for the assertions
        return time.monotonic() - t0, e
    return time.monotonic() - t0, None


def test_a_trickled_answer_ends_at_the_attempt_deadline_and_its_connection_closes(server):
    """40 bytes at 4 bytes/s would take 10 s, every read well inside httpx's per-read timeout."""
    c = OpenAICompatibleClient(base_url=server.url, retries=0, timeout_s=0.8)
    dt, err = _timed(lambda: _ask(c, "the trickle mug"))
    assert isinstance(err, VLMServerError) and "timed out" in str(err), err
    assert 0.75 <= dt < 0.8 + 0.8, dt  # (the margin: a loaded 2-core machine)
    hit = server.hits_of("trickle")[-1]
    server_wait = time.monotonic() + 2.0
    while hit.closed_at is None and time.monotonic() < server_wait:
        time.sleep(0.02)
    assert hit.closed_at is not None and hit.closed_at - hit.came_at < 0.8 + 0.6


def test_the_question_deadline_bounds_retries_and_backoff(server):
    """3 attempts of 0.5 s plus 0.2 + 0.4 s backoff would be 2.1 s; the question's deadline is 1.0 s."""
    c = OpenAICompatibleClient(base_url=server.url, retries=2, timeout_s=0.5, backoff_s=0.2, total_timeout_s=1.0)
    n0 = len(server.hits_of("hang"))
    dt, err = _timed(lambda: _ask(c, "the hang mug"))
    assert isinstance(err, VLMServerError) and "within 1.0 s" in str(err), err
    assert dt < 1.0 + 0.8, dt  # (2.1 s without the question's deadline)
    assert len(server.hits_of("hang")) - n0 == 2  # the third attempt had no time left


def test_a_cancel_closes_the_running_request_at_once(server):
    c = OpenAICompatibleClient(base_url=server.url, retries=2, timeout_s=30.0)
    flag = threading.Event()
    threading.Timer(0.3, flag.set).start()
    n0 = len(server.hits_of("hang"))
    with cancel_scope(flag.is_set):
        dt, err = _timed(lambda: _ask(c, "the hang mug"))
    assert isinstance(err, VLMCanceled), err
    assert dt < 0.3 + 0.6, dt
    hit = server.hits_of("hang")[-1]
    end = time.monotonic() + 2.0
    while hit.closed_at is None and time.monotonic() < end:
        time.sleep(0.02)
    assert hit.closed_at is not None, "the server never saw the connection close"
    assert hit.closed_at - hit.came_at < 0.3 + 0.8
    time.sleep(0.3)
    assert len(server.hits_of("hang")) - n0 == 1  # no retry after the cancel


def test_a_cancel_during_the_backoff_ends_the_retry_loop(server):
    c = OpenAICompatibleClient(base_url=server.url, retries=3, timeout_s=5.0, backoff_s=0.5)
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    n0 = len(server.hits_of("http500"))
    with cancel_scope(flag.is_set):
        dt, err = _timed(lambda: _ask(c, "the http500 mug"))
    assert isinstance(err, VLMCanceled) and dt < 0.2 + 0.6, (err, dt)
    time.sleep(1.0)  # the second attempt would have come at 0.5 s
    assert len(server.hits_of("http500")) - n0 == 1


@pytest.mark.parametrize("mode", ["oversize", "bigchunk"])
def test_an_oversized_answer_is_refused_without_reading_it_all_and_not_retried(server, mode):
    c = OpenAICompatibleClient(base_url=server.url, retries=2, timeout_s=5.0, max_response_bytes=64 * 1024)
    n0 = len(server.hits_of(mode))
    dt, err = _timed(lambda: _ask(c, f"the {mode} mug"))
    assert isinstance(err, VLMServerError) and "refused" in str(err) and "65536" in str(err), err
    assert dt < 2.0, dt
    assert len(server.hits_of(mode)) - n0 == 1


@pytest.mark.parametrize("mode,error,words", [
    ("http429", VLMServerError, "HTTP 429"),
    ("http500", VLMServerError, "HTTP 500"),
    ("midclose", VLMServerError, "cannot reach"),
    ("garbage", VLMServerError, "not a chat completion"),
    ("nanpoint", VLMAnswerError, "unparseable"),
])
def test_server_faults_end_with_their_reason_within_the_deadline(server, mode, error, words):
    c = OpenAICompatibleClient(base_url=server.url, retries=1, timeout_s=2.0, backoff_s=0.05)
    n0 = len(server.hits_of(mode))
    dt, err = _timed(lambda: _ask(c, f"the {mode} mug"))
    assert isinstance(err, error) and words in str(err), err
    assert dt < 2.0 * 2 + 0.5, dt
    retried = mode in ("http429", "http500", "midclose")
    assert len(server.hits_of(mode)) - n0 == (2 if retried else 1)


def test_a_slow_but_good_answer_within_the_deadline_is_served(server):
    c = OpenAICompatibleClient(base_url=server.url, retries=0, timeout_s=3.0)
    r = _ask(c, "the slow mug")
    assert r.answer.points.tolist() == [[80.0, 60.0]]


def test_daemon_workers_drop_a_queued_call_on_cancel_and_never_hold_the_exit():
    release = threading.Event()
    ran: list[str] = []
    w = DaemonWorkers(1)
    try:
        first = w.submit(lambda: (release.wait(10), ran.append("first")))
        queued = w.submit(lambda: ran.append("queued"))
        assert queued.cancel()
        release.set()
        first.result(5)
        time.sleep(0.1)
        assert ran == ["first"]
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("vlm_"))
    finally:
        release.set()
        w.shutdown()
