"""A small app for the local platform's tests: `/` greets, `/env` echoes, `/slow` answers late.

Standard library only, so it starts fast; the default SIGTERM action kills it at once,
so a request still in flight when it gets SIGTERM fails: the drain test relies on that.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """GET / -> hello; /env -> JSON env, cwd, argv and interpreter; /slow?s=N -> headers now, body after N s."""

    def do_GET(self) -> None:
        if self.path == "/env":
            self._send(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv,
                                    "executable": sys.executable}).encode())
        elif self.path.startswith("/slow"):
            seconds = float(self.path.partition("s=")[2] or 1)
            body = b"slow done"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            time.sleep(seconds)
            self.wfile.write(body)
        else:
            self._send(b"Hello test!\n")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        print("platform_app:", format % args, flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
