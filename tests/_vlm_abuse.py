"""A misbehaving OpenAI-compatible server for the abuse tests (standard library only, 127.0.0.1, bounded in time).

Stands in for a vLLM server that goes wrong in the ways a real one or the network between can: the mode is
chosen by a keyword in the question (the object description of the goal), so one server serves every test:

=============  ===========================================================================================
``trickle``    the headers and all but the last bytes of a good answer at once, then a byte every
               ``trickle_s`` (httpx's per-read timeout never fires)
``hang``       reads the request and answers nothing, until the client goes or ``max_hold_s`` passes
``midclose``   the headers and half the body of a good answer, then closes the connection
``oversize``   a 10 MB body (Content-Length declared); ``bigchunk``: 10 MB chunked, no length
``http500``    HTTP 500; ``http429``: HTTP 429 (both retried by the client)
``slow``       a good answer after ``slow_s``
``garbage``    HTTP 200 with a body that is not JSON; ``nanpoint``: a chat completion whose answer holds NaN
               and 1e308 coordinates
(otherwise)    a good answer at once
=============  ===========================================================================================

Every request is recorded (:class:`Hit`): its mode, when it came, when the server saw the client close the
connection (``closed_at``), and when it finished. No handler runs longer than ``max_hold_s``.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("trickle", "hang", "midclose", "oversize", "bigchunk", "http500", "http429", "slow", "garbage", "nanpoint")


@dataclass
class Hit:
    mode: str
    question: str
    came_at: float
    closed_at: float | None = None  # the client closed the connection (seen by the server)
    done_at: float | None = None


def completion(content: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}).encode()


class AbusiveVLMServer:
    """See the module docstring. ``good(task, question)``: the content of a good answer."""

    def __init__(self, good: Callable[[str, str], str], trickle_s: float = 0.25, slow_s: float = 1.0,
                 max_hold_s: float = 20.0) -> None:
        self.good = good
        self.trickle_s = trickle_s
        self.slow_s = slow_s
        self.max_hold_s = max_hold_s
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def hits_of(self, mode: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.mode == mode]

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    # -- the handler ----------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                question = body["messages"][0]["content"][1]["text"]
                task = body.get("response_format", {}).get("json_schema", {}).get("name", "bopask_").split("_", 1)[1]
                mode = next((m for m in MODES if m in question), "good")
                hit = Hit(mode, question, time.monotonic())
                with srv._lock:
                    srv.hits.append(hit)
                try:
                    srv._serve(self, mode, task, question, hit)
                except OSError:  # the client went away mid-write
                    hit.closed_at = hit.closed_at or time.monotonic()
                finally:
                    hit.done_at = time.monotonic()
                    self.close_connection = True

        return Handler

    def _wait_for_close(self, h: BaseHTTPRequestHandler, hit: Hit, seconds: float) -> bool:
        """Hold the connection ``seconds`` (capped by max_hold_s); True (and ``closed_at`` set) once the client
        closed it."""
        end = time.monotonic() + min(seconds, self.max_hold_s)
        sock: socket.socket = h.connection
        while time.monotonic() < end and not self._stop.is_set():
            r, _, _ = select.select([sock], [], [], 0.02)
            if r:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        hit.closed_at = time.monotonic()
                        return True
                except OSError:
                    hit.closed_at = time.monotonic()
                    return True
                time.sleep(0.02)
        return False

    def _head(self, h: BaseHTTPRequestHandler, status: int, length: int | None, chunked: bool = False) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        if length is not None:
            h.send_header("Content-Length", str(length))
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()

    def _serve(self, h: BaseHTTPRequestHandler, mode: str, task: str, question: str, hit: Hit) -> None:
        good = completion(self.good(task, question))
        if mode == "hang":
            self._wait_for_close(h, hit, self.max_hold_s)
        elif mode == "trickle":
            self._head(h, 200, len(good))
            h.wfile.write(good[:-40])
            h.wfile.flush()
            for b in good[-40:]:
                if self._wait_for_close(h, hit, self.trickle_s):
                    return
                h.wfile.write(bytes([b]))
                h.wfile.flush()
        elif mode == "midclose":
            self._head(h, 200, len(good))
            h.wfile.write(good[: len(good) // 2])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        elif mode in ("oversize", "bigchunk"):
            size = 10 * 1024 * 1024
            chunk = b" " * 65536
            self._head(h, 200, size if mode == "oversize" else None, chunked=mode == "bigchunk")
            for _ in range(size // len(chunk)):
                if mode == "bigchunk":
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    h.wfile.write(chunk)
            if mode == "bigchunk":
                h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        elif mode in ("http500", "http429"):
            msg = b'{"error": "overloaded"}'
            self._head(h, 500 if mode == "http500" else 429, len(msg))
            h.wfile.write(msg)
        elif mode == "garbage":
            msg = b"<html>502 Bad Gateway</html> \x00\xff not json"
            self._head(h, 200, len(msg))
            h.wfile.write(msg)
        elif mode == "nanpoint":
            msg = completion('{"points": [[NaN, 1e308]]}')
            self._head(h, 200, len(msg))
            h.wfile.write(msg)
        else:
            if mode == "slow" and self._wait_for_close(h, hit, self.slow_s):
                return
            self._head(h, 200, len(good))
            h.wfile.write(good)
        h.wfile.flush()
