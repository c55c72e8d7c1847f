"""A fixed-response HTTP/1.1 upstream, fast enough that the proxy in front of it is the bottleneck.

    python bench/upstream.py [--host 127.0.0.1] [--port 0] [--workers 1] [--body-bytes 13]

Every request, whatever its method or path, gets the same small 200 response with a
Content-Length, on a keep-alive connection unless the client asked to close. Once it
listens it prints one line, `listening HOST:PORT`, so a caller can wait for that line
instead of polling (and can pass `--port 0` to let the kernel pick a free port).

Why it is fast: one `asyncio.Protocol` per connection on uvloop, httptools as the parser
with a single callback (`on_message_complete`), and the response precomputed as bytes.
The responses for all the requests found in one read are joined and written with one
`transport.write`, so a pipelining client costs one syscall per read, not per request.
Measured on the development machine (2 cores, one core each for `hey -c 50` and the
upstream), it answers several times the rate of the Python proxy under test; the bench
README shows how to re-measure it.

`--workers N` forks N-1 extra processes that accept on the same listening socket, for a
machine with cores to spare; on two cores one worker is the right setting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import httptools
import uvloop

_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def render_response(body_bytes: int) -> tuple[bytes, bytes]:
    """The keep-alive and the closing form of the fixed 200 response, with a body of `body_bytes`."""
    body = (b"Hello, World!\n" * (body_bytes // 14 + 1))[:body_bytes]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body, head + b"Connection: close\r\n\r\n" + body


class FixedResponseProtocol(asyncio.Protocol):
    """Answers every complete request on the connection with the same precomputed bytes."""

    __slots__ = ("_transport", "_parser", "_pending", "_closing", "_keep", "_close")

    def __init__(self, keep_alive_response: bytes, close_response: bytes) -> None:
        self._keep = keep_alive_response
        self._close = close_response
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._pending: list[bytes] = []
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and turn Nagle off: responses are small and must leave at once."""
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; write the responses of every request it completed in one go."""
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._pending.append(_BAD_REQUEST)
            self._closing = True
        if self._pending:
            transport = self._transport
            assert transport is not None
            transport.write(b"".join(self._pending) if len(self._pending) > 1 else self._pending[0])
            self._pending.clear()
            if self._closing:
                transport.close()

    def on_message_complete(self) -> None:
        """httptools callback: one request is whole; queue its response."""
        if self._closing:
            return
        if self._parser.should_keep_alive():
            self._pending.append(self._keep)
        else:
            self._pending.append(self._close)
            self._closing = True

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the transport; nothing else is held per connection."""
        self._transport = None


async def serve(sock: socket.socket, body_bytes: int) -> None:
    """Serve on an already listening socket until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    keep, close = render_response(body_bytes)
    server = await loop.create_server(lambda: FixedResponseProtocol(keep, close), sock=sock, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, listen, fork the extra workers, print the address, serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the kernel choose (printed)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    parser.add_argument("--body-bytes", type=int, default=13)
    args = parser.parse_args(argv)
    sock = _listen(args.host, args.port)
    children: list[int] = []
    for _ in range(max(args.workers, 1) - 1):
        pid = os.fork()
        if pid == 0:
            # A forked worker: serve the inherited socket, never return into the parent's code.
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(serve(sock, args.body_bytes))
            os._exit(0)
        children.append(pid)
    host, port = sock.getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(sock, args.body_bytes))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
