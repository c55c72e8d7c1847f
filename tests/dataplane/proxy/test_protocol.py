"""ClientConnection against a fake transport: exact pause/resume and write sequences,
and the parser fed whole, byte by byte, and with trailing bytes."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.clock import FakeClock
from dataplane.proxy import Forward, LocalResponse, ProxyServer
from dataplane.proxy.pool import UpstreamPool
from dataplane.proxy.protocol import PAUSE_QUEUE, PAUSE_UPSTREAM, PAUSE_WAIT, ClientConnection
from dataplane.proxy.upstream import UpstreamConnection

from .conftest import RecordingHandler

OK = LocalResponse(200, b"ok")


class FakeTransport:
    """Records what the protocol does to its transport."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts) -> None:
        self.writes.append(b"".join(parts))

    def pause_reading(self) -> None:
        self.events.append("pause")

    def resume_reading(self) -> None:
        self.events.append("resume")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default


def make_connection(handler, clock: FakeClock) -> tuple[ClientConnection, FakeTransport]:
    server = ProxyServer(handler, clock=clock)
    server.loop = asyncio.get_running_loop()
    server.pool = UpstreamPool(server.loop)
    conn = ClientConnection(server)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


PIPELINE = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([PIPELINE], id="whole"),
        pytest.param([PIPELINE[i:i + 1] for i in range(len(PIPELINE))], id="byte-by-byte"),
        pytest.param([PIPELINE + b"GET /3 HTTP/1.1\r\n"], id="trailing-partial-head"),
    ],
)
async def test_pipelined_requests_wait_with_reading_paused_and_run_in_order(clock, pieces):
    gate = asyncio.Event()

    async def admit(head):
        await gate.wait()
        return OK

    handler = RecordingHandler(lambda head: admit(head) if head.target == b"/1" else OK)
    conn, transport = make_connection(handler, clock)
    for piece in pieces:
        conn.data_received(piece)
    assert [head.target for head in handler.begun] == [b"/1"]
    assert transport.events == ["pause"] and conn._read_pause == PAUSE_QUEUE
    gate.set()
    async with asyncio.timeout(5):
        await handler.wait_finished(2)
    assert [head.target for head in handler.begun] == [b"/1", b"/2"]
    assert transport.writes == [OK.keep_alive_wire, OK.keep_alive_wire]
    assert transport.events == ["pause", "resume"] and not conn._read_pause
    assert handler.finished[0][0].arrival == 1000.0  # arrival comes from the Clock
    conn.connection_lost(None)


async def test_pause_reasons_combine_and_resume_only_when_all_clear(clock):
    conn, transport = make_connection(RecordingHandler(lambda head: OK), clock)
    conn.pause_reading(PAUSE_UPSTREAM)
    conn.pause_reading(PAUSE_WAIT)
    conn.resume_reading(PAUSE_UPSTREAM)
    assert transport.events == ["pause"]
    conn.resume_reading(PAUSE_WAIT)
    conn.resume_reading(PAUSE_WAIT)
    assert transport.events == ["pause", "resume"]
    conn.connection_lost(None)


async def test_body_waits_with_reading_paused_while_the_decision_is_pending(clock):
    gate = asyncio.Event()

    async def admit(head):
        await gate.wait()
        return OK

    handler = RecordingHandler(admit)
    conn, transport = make_connection(handler, clock)
    conn.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert transport.events == ["pause"] and conn._read_pause == PAUSE_WAIT
    gate.set()
    await handler.wait_finished(1)
    # A local answer to a request whose body is unread: answered, then closed.
    assert transport.writes == [OK.close_wire] and transport.events[-1] == "close"
    conn.connection_lost(None)


RELAY_CASES = [
    # (upstream reads, client transport writes expected, how the client bytes end)
    pytest.param([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"], 1, b"\r\n\r\nhello",
                 id="length-one-read"),
    pytest.param([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"], 1,
                 b"5\r\nhello\r\n0\r\n\r\n", id="chunked-one-read"),
    pytest.param([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hel", b"lo"], 3, b"\r\n\r\nhello",
                 id="three-reads"),
]


@pytest.mark.parametrize(("reads", "writes", "tail"), RELAY_CASES)
async def test_each_upstream_read_becomes_one_client_write(clock, reads, writes, tail):
    address = ("127.0.0.1", 1)
    handler = RecordingHandler(lambda head: Forward(address))
    conn, client = make_connection(handler, clock)
    up = UpstreamConnection(conn.server.pool, address)
    up_transport = FakeTransport()
    up.connection_made(up_transport)
    up.keep_alive = True
    conn.server.pool.release(up)  # idle in the pool: the request reuses it, no connect
    conn.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert up_transport.writes[0].startswith(b"GET / HTTP/1.1\r\n")
    for data in reads:
        up.data_received(data)
    assert len(client.writes) == writes
    raw = b"".join(client.writes)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(tail)
    assert [o.status for _, o in handler.finished] == [200]
