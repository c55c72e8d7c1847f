"""The hook interface as its two consumers use it: local answers, admission waits,
header edits, retries, accounting exactly once, and graceful drain."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.proxy import ErrorKind, Forward, LocalResponse, ProxyConfig, ServiceUnavailable
from dataplane.proxy import headers as h

from .conftest import Reader, RecordingHandler, Upstream, connect, ok_upstream, read_until_closed, running_proxy
from .test_errors import refused_address

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
PROBE_OK = LocalResponse(200, b"queue")


async def test_local_response_never_touches_the_upstream(closing):
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        fwd = Forward(up.address)
        handler = RecordingHandler(lambda head: PROBE_OK if head.get(h.K_NETWORK_PROBE) else fwd)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            responses = Reader(reader, response=True)
            writer.write(b"GET /any/path HTTP/1.1\r\nHost: a\r\nK-Network-Probe: queue\r\n\r\n" + GET)
            probe, proxied = await responses.next(), await responses.next()
            await handler.wait_finished(2)
    assert (probe.status, bytes(probe.body), bytes(proxied.body)) == (200, b"queue", b"hello")
    assert len(seen) == 1
    assert [(o.status, o.local) for _, o in handler.finished] == [(200, True), (200, False)]


async def test_queue_proxy_header_edits_and_forwarded_shim(closing):
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        fwd = Forward(up.address)

        def begin(head):
            host = head.pop(h.K_ORIGINAL_HOST)
            if host is not None:
                head.set(h.HOST, host)
            head.remove(h.KNATIVE_SERVING_REVISION, h.KNATIVE_SERVING_NAMESPACE)
            return fwd

        async with running_proxy(RecordingHandler(begin), ProxyConfig(forwarded_shim=True)) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: rev.ns.svc\r\nK-Original-Host: hello.example.com\r\n"
                b"Knative-Serving-Revision: r\r\nKnative-Serving-Namespace: n\r\n"
                b"X-Forwarded-For: 1.2.3.4, ::1\r\nX-Forwarded-Proto: https\r\n\r\n"
            )
            assert (await Reader(reader, response=True).next()).status == 200
    req = seen[0]
    assert req.header(b"host") == b"hello.example.com"
    assert not req.names() & {h.K_ORIGINAL_HOST, h.KNATIVE_SERVING_REVISION, h.KNATIVE_SERVING_NAMESPACE}
    assert req.header(b"forwarded") == b'for=1.2.3.4;proto=https, for="[::1]"'
    assert req.header(b"x-forwarded-for") == b"1.2.3.4, ::1, 127.0.0.1"
    assert req.header(b"x-forwarded-proto") == b"https"


async def test_admission_wait_then_forward_and_queue_full_503(closing):
    serve, seen = ok_upstream()
    gate = asyncio.Event()
    async with Upstream(serve) as up:
        fwd = Forward(up.address)

        async def admit(head):
            if head.target == b"/full":
                raise ServiceUnavailable(b"pending request queue full")
            await gate.wait()
            return fwd

        handler = RecordingHandler(admit)
        async with running_proxy(handler) as proxy:
            (r1, w1), (r2, w2) = await connect(proxy.port), await connect(proxy.port)
            closing.extend([w1, w2])
            w1.write(b"POST /wait HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
            w2.write(b"GET /full HTTP/1.1\r\nHost: a\r\n\r\n")
            full = await Reader(r2, response=True).next()
            assert (full.status, bytes(full.body)) == (503, b"pending request queue full\n")
            assert proxy.stats().busy == 1 and seen == []
            gate.set()
            resp = await Reader(r1, response=True).next()
            await handler.wait_finished(2)
    assert resp.status == 200 and bytes(seen[0].body) == b"body"
    assert sorted((o.status, o.error) for _, o in handler.finished) == [(200, None), (503, ErrorKind.REJECTED)]


WAIT_DEADLINES = [
    # (head timeouts set in begin(), status, body, error): each runs from arrival during
    # the wait and fires on its own, as Knative's timeout handler around the breaker does.
    pytest.param({"timeout_s": 0.1}, 504, b"request timeout", ErrorKind.TIMEOUT, id="total"),
    pytest.param({"timeout_s": 30.0, "response_start_timeout_s": 0.1}, 504, b"request timeout",
                 ErrorKind.RESPONSE_START_TIMEOUT, id="response-start-before-total"),
    pytest.param({"timeout_s": 30.0, "idle_timeout_s": 0.1}, 504, b"request timeout",
                 ErrorKind.IDLE_TIMEOUT, id="idle-from-arrival"),
]


@pytest.mark.parametrize(("timeouts", "status", "body", "error"), WAIT_DEADLINES)
async def test_every_deadline_counts_the_admission_wait_and_cancels_it(closing, timeouts, status, body, error):
    cancelled = asyncio.Event()

    async def admit(head):
        head.context = "waiting"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def begin(head):
        head.bound_wait_by(Forward(("127.0.0.1", 9), **timeouts))
        return admit(head)

    handler = RecordingHandler(begin)
    async with running_proxy(handler) as proxy:
        reader, writer = await connect(proxy.port)
        closing.append(writer)
        writer.write(GET)
        resp = await Reader(reader, response=True).next()
        await handler.wait_finished(1)
        async with asyncio.timeout(5):
            await cancelled.wait()
    assert (resp.status, bytes(resp.body)) == (status, body)
    head, outcome = handler.finished[0]
    assert (outcome.error, head.context, len(handler.finished)) == (error, "waiting", 1)


async def test_forward_without_timeouts_keeps_the_waits_deadlines(closing):
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()  # never answers

    async with Upstream(serve) as up:
        bare = Forward(up.address)  # no timeouts of its own

        def begin(head):
            head.bound_wait_by(Forward(up.address, response_start_timeout_s=0.1))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(bare)
            return fut

        handler = RecordingHandler(begin)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(GET)
            resp = await Reader(reader, response=True).next()
            await handler.wait_finished(1)
    assert (resp.status, bytes(resp.body)) == (504, b"request timeout")
    assert handler.finished[0][1].error is ErrorKind.RESPONSE_START_TIMEOUT


async def test_a_future_from_begin_is_waited_on_without_a_task_and_cancelled_on_timeout(closing):
    serve, seen = ok_upstream()
    async with Upstream(serve) as up:
        fwd = Forward(up.address)
        waiters: list[asyncio.Future] = []

        def begin(head):
            waiters.append(asyncio.get_running_loop().create_future())
            head.timeout_s = 0.2 if head.target == b"/late" else None
            return waiters[-1]

        handler = RecordingHandler(begin)
        async with running_proxy(handler) as proxy:
            (r1, w1), (r2, w2) = await connect(proxy.port), await connect(proxy.port)
            closing.extend([w1, w2])
            tasks_before = len(asyncio.all_tasks())
            w1.write(GET)
            w2.write(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")
            async with asyncio.timeout(5):
                while len(waiters) < 2:
                    await asyncio.sleep(0.001)
            assert len(asyncio.all_tasks()) == tasks_before  # parked requests cost no task
            waiters[0].set_result(fwd)
            resp = await Reader(r1, response=True).next()
            late = await Reader(r2, response=True).next()
            await handler.wait_finished(2)
    assert (resp.status, bytes(resp.body), len(seen)) == (200, b"hello", 1)
    assert (late.status, bytes(late.body)) == (504, b"request timeout")
    assert waiters[1].cancelled()  # the engine gave up on it: the owner sees a cancel


async def test_retry_hook_moves_to_another_upstream_before_any_response_byte(closing):
    serve, seen = ok_upstream()
    tried = []
    async with Upstream(serve) as good:
        def retry(head, error):
            tried.append((head.attempts, error))
            return Forward(good.address)

        first = Forward(refused_address(), retry=retry)
        handler = RecordingHandler(lambda head: first)
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
            resp = await Reader(reader, response=True).next()
            await handler.wait_finished(1)
    assert resp.status == 200 and bytes(seen[0].body) == b"abc"
    assert tried == [(1, ErrorKind.UPSTREAM_CONNECT)]
    assert handler.finished[0][1].upstream == good.address


async def test_retries_are_bounded_by_max_attempts(closing):
    calls = []
    dead = refused_address()

    def retry(head, error):
        calls.append(head.attempts)
        return Forward(dead, retry=retry)

    handler = RecordingHandler(lambda head: Forward(dead, retry=retry))
    async with running_proxy(handler, ProxyConfig(max_attempts=3)) as proxy:
        reader, writer = await connect(proxy.port)
        closing.append(writer)
        writer.write(GET)
        resp = await Reader(reader, response=True).next()
    assert resp.status == 502 and calls == [1, 2]


async def test_shutdown_closes_idle_lets_busy_finish_and_stops_accepting(closing):
    gate = asyncio.Event()

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await gate.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
        await reader.read()

    async with Upstream(serve) as up:
        handler = RecordingHandler(lambda head: Forward(up.address))
        async with running_proxy(handler) as proxy:
            port = proxy.port
            busy_reader, busy = await connect(port)
            idle_reader, idle = await connect(port)
            closing.extend([busy, idle])
            busy.write(GET)
            async with asyncio.timeout(5):
                while not up.connections:
                    await asyncio.sleep(0.01)
            assert proxy.stats().busy == 1
            shutdown = asyncio.ensure_future(proxy.shutdown(timeout_s=5.0))
            assert await read_until_closed(idle_reader) == b""
            gate.set()
            raw = await read_until_closed(busy_reader)
            assert await shutdown == 0
            try:
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
                accepted = True
            except OSError:
                accepted = False
    assert raw.startswith(b"HTTP/1.1 200 OK") and raw.endswith(b"done") and b"connection: close" in raw
    assert not accepted


async def test_shutdown_deadline_cuts_what_is_left(closing):
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()

    async with Upstream(serve) as up:
        handler = RecordingHandler(lambda head: Forward(up.address))
        async with running_proxy(handler) as proxy:
            reader, writer = await connect(proxy.port)
            closing.append(writer)
            writer.write(GET)
            async with asyncio.timeout(5):
                while not up.connections:
                    await asyncio.sleep(0.01)
            assert await proxy.shutdown(timeout_s=0.1) == 1
            raw = await read_until_closed(reader)
            await handler.wait_finished(1)
    assert raw.startswith(b"HTTP/1.1 503 ") and raw.endswith(b"shutting down\n")
    assert handler.finished[0][1].error is ErrorKind.SHUTDOWN


_PICK_SLOTS = {b"user-agent": 0, b"k-network-probe": 1}.get


@pytest.mark.parametrize(("headers", "want"), [
    pytest.param([], [None, None], id="none-present"),
    pytest.param([(b"user-agent", b"a"), (b"host", b"x")], [b"a", None], id="one-present"),
    pytest.param([(b"user-agent", b"a"), (b"user-agent", b"b"), (b"k-network-probe", b"queue")],
                 [b"a", b"queue"], id="first-value-wins"),
])
def test_pick_reads_the_first_value_of_each_wanted_header(headers, want):
    from dataplane.proxy.hooks import RequestHead

    head = RequestHead(b"GET", b"/", b"1.1", headers, b"127.0.0.1", keep_alive=True,
                       content_length=None, chunked=False, expect_continue=False,
                       upgrade=False, arrival=1_000.0)
    assert head.pick(_PICK_SLOTS, (None, None)) == want
