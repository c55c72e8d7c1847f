"""Message framing through the proxy: chunked/length bodies, close-delimited responses,
HEAD, 204/304, 100-continue and upgrades, with exact bytes on both sides."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import Reader, Upstream, connect, forward_to, read_until_closed, running_proxy


def canned(response: bytes, close: bool = False):
    """An upstream answering each request with exact bytes; records requests."""
    seen = []

    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        while True:
            try:
                seen.append(await requests.next())
            except EOFError:
                return
            writer.write(response)
            await writer.drain()
            if close:
                return

    return serve, seen


@pytest.mark.parametrize(
    ("request_bytes", "want_body", "want_framing"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"abcde", b"transfer-encoding", id="chunked-request-rechunked"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde",
            b"abcde", b"content-length", id="length-request-passed"),
    ],
)
async def test_request_body_framing(closing, request_bytes, want_body, want_framing):
    serve, seen = canned(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            for i in range(0, len(request_bytes), 7):  # trickled in small pieces
                writer.write(request_bytes[i:i + 7])
                await writer.drain()
            assert (await Reader(reader, response=True).next()).status == 200
    assert bytes(seen[0].body) == want_body
    assert want_framing in seen[0].names()


@pytest.mark.parametrize(
    ("upstream_response", "request_line", "want_body", "want_chunked", "want_close"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"abc", True, False, id="chunked-rechunked"),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\nuntil-close",
                     b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"until-close", True, False,
                     id="close-delimited-to-11-is-chunked-and-kept-alive"),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\nuntil-close",
                     b"GET / HTTP/1.0\r\n\r\n", b"until-close", False, True,
                     id="close-delimited-to-10-closes"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour",
                     b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"four", False, False, id="length-passed"),
    ],
)
async def test_response_body_framing(closing, upstream_response, request_line, want_body, want_chunked, want_close):
    serve, _ = canned(upstream_response, close=upstream_response.startswith(b"HTTP/1.0"))
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(request_line)
            responses = Reader(reader, response=True)
            resp = await responses.next()
            assert bytes(resp.body) == want_body
            assert (resp.header(b"transfer-encoding") == b"chunked") == want_chunked
            assert resp.header(b"t") is None  # trailers dropped
            if want_close:
                assert await read_until_closed(reader) == b""
            else:  # still usable
                writer.write(request_line)
                assert bytes((await responses.next()).body) == want_body


@pytest.mark.parametrize(
    ("method", "upstream_response", "want_head"),
    [
        pytest.param(b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n", id="head-keeps-length-no-body"),
        pytest.param(b"GET", b"HTTP/1.1 204 No Content\r\n\r\n",
                     b"HTTP/1.1 204 No Content\r\n\r\n", id="204-no-body"),
        pytest.param(b"GET", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
                     b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n", id="304-no-body"),
    ],
)
async def test_bodiless_responses_then_the_connection_is_reused(closing, method, upstream_response, want_head):
    serve, _ = canned(upstream_response)
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            for _ in range(2):  # the second proves both connections stayed in sync
                writer.write(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")
                async with asyncio.timeout(5):
                    got = await reader.readexactly(len(want_head))
                assert got == want_head
            assert up.connections == 1


async def test_expect_100_continue_is_forwarded_and_the_upstream_100_relayed(closing):
    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"expect: 100-continue" in head.lower()
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(5)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n" + body)
        await reader.read()

    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            async with asyncio.timeout(5):
                interim = await reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            resp = await Reader(reader, response=True).next()
    assert (resp.status, bytes(resp.body)) == (200, b"hello")


async def test_upgrade_tunnels_frames_both_ways(closing):
    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"upgrade: websocket" in head.lower() and b"connection: upgrade" in head.lower()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: x\r\n\r\n\x81\x05hello")
        while frame := await reader.read(65536):
            writer.write(b"echo:" + frame)

    async with Upstream(serve) as up:
        handler = forward_to(up.address, timeout_s=0.2)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Key: k\r\n\r\n")
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 ")
                assert b"upgrade: websocket" in head and b"sec-websocket-accept: x" in head
                assert await reader.readexactly(7) == b"\x81\x05hello"
                await asyncio.sleep(0.3)  # past the request timeout: tunnels are not timed
                for frame in (b"\x81\x02hi", b"\x82\x03bin"):
                    writer.write(frame)
                    assert await reader.readexactly(5 + len(frame)) == b"echo:" + frame
            writer.close()
            await handler.wait_finished(1)
    outcome = handler.finished[0][1]
    assert (outcome.status, outcome.completed, outcome.error) == (101, True, None)


async def test_upgrade_refused_by_upstream_is_relayed_then_closed(closing):
    serve, _ = canned(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno")
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n") and raw.endswith(b"\r\n\r\nno")


async def test_expect_100_answered_locally_gets_no_100_and_closes(closing):
    from dataplane.proxy import LocalResponse

    from .conftest import RecordingHandler

    denied = LocalResponse(503, b"shutting down\n")
    handler = RecordingHandler(lambda head: denied)
    async with running_proxy(handler) as proxy:
        reader, writer = await connect(proxy.port)
        closing.append(writer)
        writer.write(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 503 ") and b"100 Continue" not in raw and b"connection: close" in raw


async def test_http10_request_without_host_gets_one_and_trailers_stay_out_of_the_head(closing):
    serve, seen = canned(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    async with Upstream(serve) as up:
        handler = forward_to(up.address)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            assert (await Reader(reader, response=True).next()).status == 200
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\r\n\r\n")
            assert (await Reader(reader, response=True).next()).status == 200
            await handler.wait_finished(2)
    assert seen[0].header(b"host") == b"%s:%d" % (up.address[0].encode(), up.address[1])
    assert handler.finished[1][0].get(b"x-t") is None
