"""Forwarding on real sockets: headers, keep-alive both sides, pipelining, the pool."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.proxy import ProxyConfig

from .conftest import Reader, Upstream, connect, forward_to, ok_upstream, read_until_closed, running_proxy


async def test_get_is_forwarded_with_forwarding_headers_and_without_hop_by_hop(closing):
    serve, seen = ok_upstream(extra=b"connection: keep-alive, x-private\r\nx-private: 1\r\nkeep-alive: timeout=5\r\n")
    async with Upstream(serve) as up:
        handler = forward_to(up.address)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(
                b"GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Drop\r\n"
                b"X-Drop: secret\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\n"
                b"X-Forwarded-For: 10.0.0.1\r\nUser-Agent: t\r\n\r\n"
            )
            resp = await Reader(reader, response=True).next()
            await handler.wait_finished(1)
    assert resp.status == 200 and bytes(resp.body) == b"hello"
    assert not resp.names() & {b"keep-alive", b"x-private", b"connection"}
    req = seen[0]
    assert req.target == b"/path?q=1"
    assert req.header(b"host") == b"example.com"
    assert req.header(b"x-forwarded-for") == b"10.0.0.1, 127.0.0.1"
    assert req.header(b"x-forwarded-proto") == b"http"
    assert not req.names() & {b"connection", b"keep-alive", b"proxy-connection", b"te", b"x-drop"}
    outcome = handler.finished[0][1]
    assert (outcome.status, outcome.completed, outcome.error) == (200, True, None)
    assert outcome.upstream == up.address and outcome.response_bytes == 5


async def test_keep_alive_reuses_one_upstream_connection(closing):
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        handler = forward_to(up.address)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            responses = Reader(reader, response=True)
            for i in range(3):
                writer.write(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
                assert (await responses.next()).status == 200
            stats = proxy.stats()
    assert [r.target for r in seen] == [b"/0", b"/1", b"/2"]
    assert up.connections == 1
    assert (stats.connections, stats.pool.connects, stats.pool.reuses) == (1, 1, 2)


async def test_pipelined_requests_are_answered_in_order(closing):
    delays = {b"/slow": 0.2, b"/fast": 0.0, b"/mid": 0.05}

    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        while True:
            req = await requests.next()
            await asyncio.sleep(delays[req.target])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(req.target), req.target))

    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(
                b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /mid HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            responses = Reader(reader, response=True)
            bodies = [bytes((await responses.next()).body) for _ in range(3)]
    assert bodies == [b"/slow", b"/fast", b"/mid"]


async def test_pool_keeps_at_most_max_idle_per_upstream(closing):
    gate = asyncio.Event()

    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        while True:
            await requests.next()
            await gate.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")

    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address), ProxyConfig(max_idle_per_upstream=2)) as proxy:
            clients = [await connect(proxy.port) for _ in range(3)]
            closing.extend(w for _, w in clients)
            for _, writer in clients:
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            async with asyncio.timeout(5):
                while up.connections < 3:
                    await asyncio.sleep(0.01)
            gate.set()
            for reader, _ in clients:
                assert (await Reader(reader, response=True).next()).status == 200
            assert proxy.stats().pool.idle == {up.address: 2}


async def test_idle_pooled_connections_close_after_the_idle_timeout(closing):
    closed = asyncio.Event()

    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        await requests.next()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        assert await reader.read(1) == b""  # the proxy closes its idle connection
        closed.set()

    async with Upstream(serve) as up:
        config = ProxyConfig(upstream_idle_timeout_s=0.1)
        async with running_proxy(forward_to(up.address), config) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await Reader(reader, response=True).next()).status == 200
            async with asyncio.timeout(5):
                await closed.wait()
            assert proxy.stats().pool.idle == {}


async def test_a_pooled_connection_closed_by_the_upstream_is_not_reused(closing):
    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        await requests.next()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # then close: the keep-alive connection dies while idle in the pool

    async with Upstream(serve) as up:
        handler = forward_to(up.address)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            responses = Reader(reader, response=True)
            writer.write(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await responses.next()).status == 200
            async with asyncio.timeout(5):
                while proxy.stats().pool.idle:
                    await asyncio.sleep(0.01)
            writer.write(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await responses.next()).status == 200
            assert (proxy.stats().pool.connects, proxy.stats().pool.reuses) == (2, 0)


async def test_connection_close_request_closes_after_the_response(closing):
    serve, _ = ok_upstream()
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in raw


@pytest.mark.parametrize(
    ("request_line", "expect_close"),
    [
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", True, id="http10-closes"),
        pytest.param(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False, id="http10-keep-alive"),
    ],
)
async def test_http10_clients_get_their_connection_semantics(closing, request_line, expect_close):
    serve, _ = ok_upstream()
    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(request_line)
            resp = await Reader(reader, response=True).next()
            assert resp.status == 200
            if expect_close:
                assert await read_until_closed(reader) == b""
            else:
                assert resp.header(b"connection") == b"keep-alive"


async def test_keep_alive_race_is_retried_once_on_a_fresh_connection(closing):
    async def serve(reader, writer):
        requests = Reader(reader, response=False)
        await requests.next()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        if up.connections == 1:
            await requests.next()   # the reused connection dies as the request arrives
            writer.transport.abort()
            return
        while True:
            await requests.next()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async with Upstream(serve) as up:
        handler = forward_to(up.address)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            responses = Reader(reader, response=True)
            for _ in range(2):
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await responses.next()).status == 200
            stats = proxy.stats().pool
    assert (up.connections, stats.connects, stats.reuses) == (2, 2, 1)
    assert [o.error for _, o in handler.finished] == [None, None]


async def test_early_response_with_unread_body_closes_both_connections(closing):
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await reader.read()

    async with Upstream(serve) as up:
        async with running_proxy(forward_to(up.address)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nstart")
            raw = await read_until_closed(reader)
            assert proxy.stats().pool.idle == {}
    assert raw.startswith(b"HTTP/1.1 413 ") and raw.endswith(b"big")
