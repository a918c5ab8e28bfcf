"""Deadlines, cancellation and a size cap for VLM requests, whatever the server does.

httpx's ``timeout`` bounds each network operation (connect, one read, one write), not a request: a server
that trickles its answer a byte at a time keeps every read alive and the request running for as long as it
likes. And a blocking ``httpx.post`` in a thread cannot be stopped from outside: a canceled goal's request
used to keep its worker thread until the server answered.

So a request here runs as an asyncio task on one event-loop thread per :class:`DeadlineHTTP` (a daemon: it
never holds the process at exit). ``asyncio.timeout`` cancels the task at the attempt's deadline wherever it
waits (connect, headers, a trickled body), and the calling thread, which waits on the task in short slices,
cancels it as soon as its cancel flag (:func:`cancel_scope`) is set. httpx closes the connection of a canceled
request, so the server sees it go. The body is read in chunks and refused once it passes ``max_bytes`` (a
declared ``Content-Length`` above it is refused before any of the body is read).

:func:`cancel_scope` sets the cancel flag of the calling thread (the ROS node: the goal's "cancel
requested"); clients read it with :func:`current_cancel`. :class:`DaemonWorkers` runs the requests of
clients that cannot be aborted (oracle, transformers) on daemon threads: queued ones are dropped when their
goal is canceled, and none holds the process at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bopask_vlm.clients.base import VLMError

__all__ = ["AttemptTimedOut", "DaemonWorkers", "DeadlineHTTP", "HTTPReply", "ResponseTooLarge", "VLMCanceled",
           "cancel_scope", "current_cancel", "sleep_unless_canceled"]


class VLMCanceled(VLMError):
    """The request was canceled (its goal was canceled, or the node is stopping) before its answer came."""


class AttemptTimedOut(Exception):
    """One HTTP attempt did not complete within its total deadline."""


class ResponseTooLarge(Exception):
    """The server's answer is larger than the size cap (it was not read to the end)."""


_local = threading.local()


def current_cancel() -> Callable[[], bool] | None:
    """The cancel flag set for this thread by :func:`cancel_scope` (None: nothing cancels)."""
    return getattr(_local, "cancel", None)


@contextlib.contextmanager
def cancel_scope(canceled: Callable[[], bool] | None) -> Iterator[None]:
    """Within the block, requests made on this thread stop (:class:`VLMCanceled`) once ``canceled()`` is true."""
    previous = current_cancel()
    _local.cancel = canceled
    try:
        yield
    finally:
        _local.cancel = previous


def sleep_unless_canceled(seconds: float, canceled: Callable[[], bool] | None, poll_s: float = 0.02) -> None:
    """Sleep ``seconds``; raise :class:`VLMCanceled` as soon as ``canceled()`` is true."""
    end = time.monotonic() + max(0.0, seconds)
    while True:
        if canceled is not None and canceled():
            raise VLMCanceled("canceled")
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(poll_s, left))


@dataclass(frozen=True)
class HTTPReply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class DeadlineHTTP:
    """POSTs with a total deadline per attempt, abortable by the caller's cancel flag, the body capped at
    ``max_bytes``. Thread-safe; the event-loop thread starts on first use (and again after a fork)."""

    def __init__(self, max_bytes: int = 1 << 20, poll_s: float = 0.02) -> None:
        if int(max_bytes) < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
        self.max_bytes = int(max_bytes)
        self.poll_s = float(poll_s)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:  # picklable (a worker process starts its own loop)
        return {"max_bytes": self.max_bytes, "poll_s": self.poll_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="vlm-http", daemon=True).start()
                self._loop, self._pid, self._client = loop, os.getpid(), None
            return self._loop

    async def _post(self, url: str, content: bytes, headers: dict[str, str], timeout_s: float) -> HTTPReply:
        import httpx

        try:
            async with asyncio.timeout(timeout_s):  # from here: making the first client counts too
                if self._client is None:  # made on the loop's thread, used only there
                    self._client = httpx.AsyncClient(timeout=None)
                async with self._client.stream("POST", url, content=content,
                                               headers={**headers, "Content-Type": "application/json"},
                                               timeout=httpx.Timeout(timeout_s)) as r:
                    declared = r.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise ResponseTooLarge(f"answer of {int(declared)} bytes refused (the cap is "
                                               f"{self.max_bytes} bytes)")
                    body = bytearray()
                    async for chunk in r.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise ResponseTooLarge(f"answer of more than {self.max_bytes} bytes refused "
                                                   "(read stopped at the cap)")
                    return HTTPReply(r.status_code, bytes(body))
        except (TimeoutError, httpx.TimeoutException) as e:
            raise AttemptTimedOut(f"timed out after {timeout_s:.1f} s (total per attempt)") from e

    def post(self, url: str, content: bytes, headers: dict[str, str], timeout_s: float,
             canceled: Callable[[], bool] | None = None) -> HTTPReply:
        """POST ``content`` (JSON bytes); the reply once complete. Raises :class:`AttemptTimedOut` at
        ``timeout_s`` whatever the server does, :class:`VLMCanceled` within ``poll_s`` of ``canceled()`` (the
        connection is closed), :class:`ResponseTooLarge`, or httpx's error when the server cannot be reached."""
        fut = asyncio.run_coroutine_threadsafe(self._post(url, content, headers, float(timeout_s)),
                                               self._event_loop())
        hard_end = time.monotonic() + float(timeout_s) + 1.0  # the loop's own timeout should come first
        while True:
            try:
                return fut.result(timeout=self.poll_s)
            except concurrent.futures.TimeoutError:
                if canceled is not None and canceled():
                    fut.cancel()  # cancels the task: httpx closes the connection
                    raise VLMCanceled("canceled while waiting for the VLM answer") from None
                if time.monotonic() > hard_end:
                    fut.cancel()
                    raise AttemptTimedOut(f"timed out after {timeout_s:.1f} s (total per attempt)") from None
            except concurrent.futures.CancelledError:
                raise VLMCanceled("request canceled") from None


class DaemonWorkers:
    """``workers`` daemon threads running submitted calls in order; :meth:`submit` returns a
    ``concurrent.futures.Future`` that can be canceled while queued. Unlike ThreadPoolExecutor's workers
    they are not joined at interpreter exit, so a call that never returns cannot hold the process."""

    def __init__(self, workers: int = 4, name: str = "vlm") -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future, Callable[..., Any], tuple] | None] = (
            queue.SimpleQueue())
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}_{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():  # canceled while queued
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:
                fut.set_exception(e)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        if self._closed:
            raise RuntimeError("workers shut down")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((fut, fn, args))
        return fut

    def shutdown(self) -> None:
        """No more calls; the threads end after their current call (not waited for)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
