"""Failures map to the right response (or a cut), on real sockets, and finish() says why."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dataplane.proxy import ErrorKind, ProxyConfig

from .conftest import (
    Reader,
    RecordingHandler,
    Upstream,
    connect,
    forward_to,
    ok_upstream,
    read_until_closed,
    running_proxy,
)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def refused_address() -> tuple[str, int]:
    """A 127.0.0.1 port with nothing listening (bound, never listened)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    sock.close()
    return address


async def hang(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.Event().wait()


async def reset_after_head(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.transport.abort()


async def garbage(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await reader.read()


async def head_then_hang(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
    await asyncio.Event().wait()


async def head_then_break(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
    await writer.drain()
    writer.transport.abort()


async def trickle(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("serve", "forward_kwargs", "want_status", "want_body", "want_error"),
    [
        pytest.param(None, {}, 502, b"upstream connect error\n", ErrorKind.UPSTREAM_CONNECT, id="refused-502"),
        pytest.param(reset_after_head, {}, 502, b"upstream closed before responding\n",
                     ErrorKind.UPSTREAM_RESET, id="reset-before-response-502"),
        pytest.param(garbage, {}, 502, b"upstream sent a malformed response\n",
                     ErrorKind.UPSTREAM_BAD_RESPONSE, id="malformed-response-502"),
        pytest.param(hang, {"timeout_s": 0.1}, 504, b"request timeout", ErrorKind.TIMEOUT, id="total-timeout-504"),
        pytest.param(hang, {"response_start_timeout_s": 0.1}, 504, b"request timeout",
                     ErrorKind.RESPONSE_START_TIMEOUT, id="response-start-timeout-504"),
        pytest.param(hang, {"idle_timeout_s": 0.1}, 504, b"request timeout", ErrorKind.IDLE_TIMEOUT, id="idle-timeout-504"),
    ],
)
async def test_failures_before_the_response_get_a_canned_answer(
    closing, serve, forward_kwargs, want_status, want_body, want_error
):
    async def run(address):
        handler = forward_to(address, **forward_kwargs)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(GET)
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(len(want_body))
            await handler.wait_finished(1)
            # The client connection survives a canned answer: the next request is served.
            writer.write(GET)
            async with asyncio.timeout(5):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 %d" % want_status)
        return head, body, handler

    if serve is None:
        head, body, handler = await run(refused_address())
    else:
        async with Upstream(serve) as up:
            head, body, handler = await run(up.address)
    assert head.startswith(b"HTTP/1.1 %d " % want_status) and body == want_body
    outcome = handler.finished[0][1]
    assert (outcome.status, outcome.completed, outcome.error) == (want_status, True, want_error)
    assert len(handler.begun) == 2


@pytest.mark.parametrize(
    ("serve", "forward_kwargs", "want_error"),
    [
        pytest.param(head_then_hang, {"timeout_s": 0.1}, ErrorKind.TIMEOUT, id="total-timeout-cuts"),
        pytest.param(trickle, {"idle_timeout_s": 0.1}, ErrorKind.IDLE_TIMEOUT, id="idle-timeout-cuts"),
        pytest.param(head_then_break, {}, ErrorKind.UPSTREAM_BROKEN, id="upstream-breaks-mid-body"),
    ],
)
async def test_failures_after_the_response_head_cut_the_connection(closing, serve, forward_kwargs, want_error):
    async with Upstream(serve) as up:
        handler = forward_to(up.address, **forward_kwargs)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(GET)
            try:
                raw = await read_until_closed(reader)
            except ConnectionResetError:
                raw = b""  # the cut may arrive as a reset
            await handler.wait_finished(1)
    assert raw.count(b"HTTP/1.1") <= 1 and b"504" not in raw  # never a second status line
    outcome = handler.finished[0][1]
    assert (outcome.status, outcome.completed, outcome.error) == (200, False, want_error)


SMUGGLING = [
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 id="cl-and-te"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
                 id="te-and-cl"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", id="two-cl"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                 id="two-equal-cl"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", id="te-gzip-chunked"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", id="te-gzip"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 id="te-twice"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", id="cl-signed"),
    pytest.param(b"GARBAGE\r\n\r\n", id="not-http"),
    pytest.param(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", id="header-without-colon"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"),
    pytest.param(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", id="connect"),
]


@pytest.mark.parametrize("request_bytes", SMUGGLING)
async def test_malformed_or_ambiguous_requests_get_400_and_close(closing, request_bytes):
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(request_bytes)
            raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in raw
    assert seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 2000 + b"\r\n\r\n", id="one-complete-big-header"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 5000, id="never-ending-header"),
        pytest.param(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n",
                     id="too-many-headers"),
    ],
)
async def test_oversized_heads_get_431_and_close(closing, request_bytes):
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        config = ProxyConfig(max_head_bytes=1024, max_headers=20)
        async with running_proxy(forward_to(up.address), config) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(request_bytes)
            raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 431 ") and b"connection: close" in raw
    assert seen == []


async def test_a_slow_head_gets_408_and_an_idle_client_is_closed_silently(closing):
    serve, _ = ok_upstream()
    async with Upstream(serve) as up:
        config = ProxyConfig(header_timeout_s=0.1, keepalive_timeout_s=0.1)
        async with running_proxy(forward_to(up.address), config) as proxy:
            slow_reader, slow = await connect(proxy.port)
            idle_reader, idle = await connect(proxy.port)
            closing.extend([slow, idle])
            slow.write(b"GET / HTTP/1.1\r\nHost:")
            idle.write(GET)
            responses = await read_until_closed(idle_reader)
            assert responses.startswith(b"HTTP/1.1 200 OK") and responses.count(b"HTTP/1.1") == 1
            assert (await read_until_closed(slow_reader)).startswith(b"HTTP/1.1 408 ")


async def test_head_timer_after_a_long_keepalive_wait_still_fires_on_time(closing):
    # Idle past the first head timer, the one connection timer waits for the keep-alive
    # deadline (5 s); the next head's (0.1 s) is earlier, so the timer must move earlier,
    # or the stalled head would wait 5 s for its 408.
    serve, _ = ok_upstream()
    async with Upstream(serve) as up:
        config = ProxyConfig(header_timeout_s=0.1, keepalive_timeout_s=5.0)
        async with running_proxy(forward_to(up.address), config) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(GET)
            assert (await Reader(reader, response=True).next()).status == 200
            await asyncio.sleep(0.3)  # the head timer fires and re-arms for keep-alive
            writer.write(b"GET / HTTP/1.1\r\nHost:")
            async with asyncio.timeout(2):
                raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 408 ")


async def test_an_early_head_timer_moves_on_to_the_keepalive_deadline(closing):
    # The head timer armed for a request fires after its response, while the connection
    # is idle with a later keep-alive deadline: it must re-arm, not close.
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        config = ProxyConfig(header_timeout_s=0.05, keepalive_timeout_s=5.0)
        async with running_proxy(forward_to(up.address), config) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            responses = Reader(reader, response=True)
            writer.write(GET)
            assert (await responses.next()).status == 200
            await asyncio.sleep(0.2)  # well past the head deadline, well before keep-alive
            writer.write(GET)
            assert (await responses.next()).status == 200
    assert len(seen) == 2 and up.connections == 1


async def test_client_gone_mid_request_finishes_once_with_client_gone(closing):
    async with Upstream(hang) as up:
        handler = forward_to(up.address)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            writer.write(GET)
            async with asyncio.timeout(5):
                while not up.connections:
                    await asyncio.sleep(0.01)
            writer.close()
            await handler.wait_finished(1)
            assert proxy.stats().pool.idle == {}  # the half-done upstream connection was dropped
    outcome = handler.finished[0][1]
    assert (outcome.status, outcome.completed, outcome.error) == (0, False, ErrorKind.CLIENT_GONE)
    assert len(handler.finished) == 1


async def test_handler_exception_gives_500_and_finish(closing):
    def boom(head):
        raise RuntimeError("bug")

    handler = RecordingHandler(boom)
    async with running_proxy(handler) as proxy:
        reader, writer = await connect(proxy.port)
        closing.append(writer)
        writer.write(GET)
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 500 ")
        await handler.wait_finished(1)
    assert handler.finished[0][1].error is ErrorKind.HANDLER
