"""The end-to-end tests' app: says which revision answered and how busy it ever was.

GET /?sleep=S   sleeps S seconds, then answers JSON {"revision", "target", "pid"}
GET /max        {"max_in_flight": the most requests this process ever held at once}

Standard library only (a thread per connection), so a pod starts in a blink; `/max` is
not counted, so reading it never changes it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_lock = threading.Lock()
_in_flight = 0
_max_in_flight = 0


class Handler(BaseHTTPRequestHandler):
    """The two endpoints above, over HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm holds
        # the body for the client's delayed ACK (40 ms) on every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        global _in_flight, _max_in_flight
        url = urlsplit(self.path)
        if url.path == "/max":
            self._send({"max_in_flight": _max_in_flight})
            return
        with _lock:
            _in_flight += 1
            _max_in_flight = max(_max_in_flight, _in_flight)
        try:
            time.sleep(float(parse_qs(url.query).get("sleep", ["0"])[0]))
            self._send({"revision": os.environ.get("K_REVISION", ""),
                        "target": os.environ.get("TARGET", ""), "pid": os.getpid()})
        finally:
            with _lock:
                _in_flight -= 1

    def _send(self, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests: keep the pod log for the platform's notes


class Server(ThreadingHTTPServer):
    """Threads die with the process; the listen backlog fits a burst of 50 clients."""

    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
