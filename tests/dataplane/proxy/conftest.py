"""Raw-socket helpers for the proxy tests: a scriptable upstream, a recording handler,
HTTP readers that see exact bytes, and a fixture that runs a ProxyServer."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httptools
import pytest_asyncio

from dataplane.proxy import Forward, ProxyConfig, ProxyServer

TIMEOUT_S = 5.0


class Message:
    """A parsed HTTP message as a test sees it."""

    def __init__(self) -> None:
        self.status = 0
        self.method = b""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.complete = False
        self.head_done = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def names(self) -> set[bytes]:
        return {k.lower() for k, _ in self.headers}


class _Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.current: Message | None = None

    def on_message_begin(self) -> None:
        self.current = Message()

    def on_url(self, url: bytes) -> None:
        self.current.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.current.head_done:
            self.current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.current.head_done = True

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.current.complete = True
        self.messages.append(self.current)


class Reader:
    """Reads whole HTTP messages from a stream with httptools, keeping leftovers."""

    def __init__(self, reader: asyncio.StreamReader, response: bool) -> None:
        self.reader = reader
        self.collector = _Collector()
        cls = httptools.HttpResponseParser if response else httptools.HttpRequestParser
        self.parser = cls(self.collector)
        self.response = response
        self.eof = False

    async def next(self) -> Message:
        """The next complete message; for a close-delimited response, what came before EOF."""
        async with asyncio.timeout(TIMEOUT_S):
            while not self.collector.messages:
                data = await self.reader.read(65536)
                if not data:
                    self.eof = True
                    msg = self.collector.current
                    if msg is not None and msg.head_done and not msg.complete:
                        msg.complete = None  # ended by close (or cut: the test decides)
                        return msg
                    raise EOFError("connection closed before a complete message")
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    pass  # the upgrade request/101 itself is complete; the rest is a tunnel
                if self.response and self.collector.current is not None:
                    msg = self.collector.current
                    if msg.head_done:
                        msg.status = self.parser.get_status_code()
            msg = self.collector.messages.pop(0)
            if self.response and not msg.status:
                msg.status = self.parser.get_status_code()
            else:
                msg.method = self.parser.get_method() if not self.response else b""
            return msg


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF (bounded in time)."""
    async with asyncio.timeout(TIMEOUT_S):
        chunks = []
        while data := await reader.read(65536):
            chunks.append(data)
        return b"".join(chunks)


class Upstream:
    """A raw TCP upstream; `serve(reader, writer)` scripts each connection."""

    def __init__(self, serve) -> None:
        self.serve = serve
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.address: tuple[str, int] = ("", 0)

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.address = ("127.0.0.1", self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _on_client(self, reader, writer) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, EOFError):
            pass
        finally:
            writer.close()


def ok_upstream(body: bytes = b"hello", extra: bytes = b""):
    """An upstream answering every request with 200 and `body`, keep-alive; records requests."""
    seen: list[Message] = []

    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        while True:
            try:
                req = await requests.next()
            except EOFError:
                return
            seen.append(req)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body))
            await writer.drain()

    return serve, seen


class RecordingHandler:
    """Decides with `decide(head)`; records begin/finish so tests can count them."""

    def __init__(self, decide) -> None:
        self.decide = decide
        self.begun = []
        self.finished = []
        self._event = asyncio.Event()

    def begin(self, head):
        self.begun.append(head)
        return self.decide(head)

    def finish(self, head, outcome):
        self.finished.append((head, outcome))
        self._event.set()

    async def wait_finished(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while len(self.finished) < count:
                self._event.clear()
                await self._event.wait()


def forward_to(address, **kwargs) -> RecordingHandler:
    fwd = Forward(address, **kwargs)
    return RecordingHandler(lambda head: fwd)


@contextlib.asynccontextmanager
async def running_proxy(handler, config: ProxyConfig | None = None):
    """A ProxyServer on a pre-bound 127.0.0.1 socket; shut down on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = ProxyServer(handler, config)
    await server.start(sock=sock)
    try:
        yield server
    finally:
        await server.shutdown(timeout_s=1.0)


async def connect(port: int):
    """A raw client connection to the proxy."""
    async with asyncio.timeout(TIMEOUT_S):
        return await asyncio.open_connection("127.0.0.1", port)


@pytest_asyncio.fixture
async def closing():
    """Collects writers to close at the end of a test."""
    writers = []
    yield writers
    for writer in writers:
        writer.close()
