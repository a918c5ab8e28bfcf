"""Test helpers of the VLM layer.

FakeChatServer fakes a vLLM server (the real one needs its own 6 GB environment and ~1 min to start:
tests/test_clients_vllm.py runs it under `make test-vllm`): a real HTTP server on 127.0.0.1 that
speaks the same ``/v1/chat/completions`` JSON, and can be slow (time out), fail with 500 or answer
non-JSON, so the client's typed errors and retry count are checked over real sockets.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeChatServer:
    """A local chat-completions server whose behaviour each test sets."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.content = ""
        self.contents: list[str] | None = None  # several choices (a request with n): these, in order
        self.finish_reason = "stop"
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                if outer.mode == "slow":
                    time.sleep(1.0)
                if outer.mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"internal error")
                    return
                texts = outer.contents if outer.contents is not None else [outer.content]
                payload = b"<html>not json</html>" if outer.mode == "html" else json.dumps(
                    {"choices": [{"index": i, "message": {"role": "assistant", "content": t},
                                  "finish_reason": outer.finish_reason} for i, t in enumerate(texts)]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except BrokenPipeError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
