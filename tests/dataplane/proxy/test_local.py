"""LocalHandler: local endpoints on the engine, with no upstream at all."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.proxy import GET_HEAD, LocalHandler, LocalResponse, LocalRoute, RequestHead, path_of

from .conftest import Reader, connect, running_proxy

PONG = LocalResponse(200, b"pong")

PATH_CASES = [
    pytest.param(b"/metrics", b"/metrics", id="plain"),
    pytest.param(b"/metrics?format=json", b"/metrics", id="query"),
    pytest.param(b"/a#frag", b"/a", id="fragment"),
    pytest.param(b"/a?x=#y", b"/a", id="query-then-fragment"),
    pytest.param(b"", b"", id="empty"),
]


@pytest.mark.parametrize(("target", "path"), PATH_CASES)
def test_path_of(target, path):
    assert path_of(target) == path


def _head(method: bytes, target: bytes) -> RequestHead:
    return RequestHead(method, target, b"1.1", [], b"127.0.0.1", True, None, False, False, False, 0.0)


BEGIN_CASES = [
    pytest.param(b"GET", b"/ping", 200, None, id="route-get"),
    pytest.param(b"HEAD", b"/ping?x", 200, None, id="route-head-with-query"),
    pytest.param(b"POST", b"/ping", 405, b"GET, HEAD", id="method-not-allowed-names-allowed"),
    pytest.param(b"DELETE", b"/any", 200, None, id="route-without-method-limit"),
    pytest.param(b"GET", b"/nope", 404, None, id="unknown-path"),
]


@pytest.mark.parametrize(("method", "target", "status", "allow"), BEGIN_CASES)
def test_begin_routes_by_path_and_method(method, target, status, allow):
    handler = LocalHandler({b"/ping": LocalRoute(lambda head: PONG, GET_HEAD),
                            b"/any": LocalRoute(lambda head: PONG)})
    response = handler.begin(_head(method, target))
    head_lines = response.keep_alive_wire.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    allows = [line[len(b"allow: "):] for line in head_lines if line.startswith(b"allow: ")]
    assert response.status == status
    assert allows == ([allow] if allow else [])
    assert (response is PONG) == (status == 200)


async def test_awaitable_endpoint_waits_without_holding_other_connections(closing):
    gate = asyncio.Event()

    async def slow() -> LocalResponse:
        await gate.wait()
        return LocalResponse(200, b"late")

    handler = LocalHandler({b"/slow": LocalRoute(lambda head: slow()),
                            b"/fast": LocalRoute(lambda head: LocalResponse(200, b"fast " + head.method))})
    async with running_proxy(handler) as proxy:
        (r1, w1), (r2, w2) = await connect(proxy.port), await connect(proxy.port)
        closing.extend([w1, w2])
        w1.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        w2.write(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
        fast = await Reader(r2, response=True).next()
        assert (fast.status, bytes(fast.body)) == (200, b"fast GET")
        assert proxy.stats().busy == 1  # the slow one is still waiting
        gate.set()
        late = await Reader(r1, response=True).next()
    assert (late.status, bytes(late.body)) == (200, b"late")
    assert proxy.stats().pool.connects == 0
