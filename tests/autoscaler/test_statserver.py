"""The stat server on loopback: websocket and POST batches, probes, and shutdown with 1012."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from autoscaler.config import ScalingSpec
from autoscaler.multiscaler import Multiscaler
from autoscaler.statserver import StatServer
from dataplane.clock import FakeClock
from dataplane.stat import Stat, encode_wire_stats
from dataplane.types import RevisionKey

A = RevisionKey("default", "a-00001")
B = RevisionKey("prod", "b-00007")
STAT_A = Stat("activator-x", 2.0, 0.0, 3.0, 0.0, 0.0, 0)
STAT_B = Stat("activator-x", 1.5, 0.0, 1.0, 0.0, 0.0, 1_700_000_000)


class Inbox:
    """An ingest function that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[RevisionKey, Stat, float]] = asyncio.Queue()

    def __call__(self, key: RevisionKey, stat: Stat, now: float) -> None:
        self.queue.put_nowait((key, stat, now))

    async def take(self, n: int) -> list[tuple[RevisionKey, Stat, float]]:
        return [await self.queue.get() for _ in range(n)]


@asynccontextmanager
async def serving(ingest, clock: FakeClock) -> AsyncIterator[tuple[StatServer, str]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = StatServer(ingest, clock=clock, close_timeout_s=2.0)
    await server.start(sock=sock)
    try:
        yield server, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def test_websocket_batches_reach_ingest_with_the_clock_time(clock) -> None:
    inbox = Inbox()
    async with asyncio.timeout(10), serving(inbox, clock) as (server, url), \
            aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_bytes(encode_wire_stats([(A, STAT_A), (B, STAT_B), (A, Stat())]))
        assert await inbox.take(2) == [(A, STAT_A, clock.now()), (B, STAT_B, clock.now())]
        clock.set(clock.now() + 1.0)
        await ws.send_bytes(encode_wire_stats([(B, STAT_A)]))
        assert await inbox.take(1) == [(B, STAT_A, 1_001.0)]
        assert server.stats().stats_ingested == 3      # the empty stat was skipped
        assert server.stats().open_websockets == 1


async def test_malformed_and_text_frames_are_skipped_and_the_stream_continues(clock) -> None:
    inbox = Inbox()
    async with asyncio.timeout(10), serving(inbox, clock) as (server, url), \
            aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_bytes(b"\xff\xff\xff\xff")
        await ws.send_str("not a batch")
        await ws.send_bytes(encode_wire_stats([(A, STAT_A)]))
        assert await inbox.take(1) == [(A, STAT_A, clock.now())]
        stats = server.stats()
        assert (stats.malformed_batches, stats.dropped_frames, stats.batches) == (1, 1, 1)


# (method, headers, body, expected status, stats ingested)
HTTP_CASES = [
    pytest.param("GET", {"User-Agent": "kube-probe/1.30"}, None, 200, 0, id="kubelet-ua-probe"),
    pytest.param("GET", {"K-Kubelet-Probe": "queue"}, None, 200, 0, id="kubelet-header-probe"),
    pytest.param("POST", {}, encode_wire_stats([(A, STAT_A), (B, STAT_B)]), 204, 2,
                 id="post-fallback-ingests"),
    pytest.param("POST", {}, b"\xff\xff\xff\xff", 400, 0, id="post-malformed-400"),
    pytest.param("GET", {}, None, 400, 0, id="plain-get-needs-upgrade"),
    pytest.param("PUT", {}, b"", 405, 0, id="other-methods-405"),
]


@pytest.mark.parametrize(("method", "headers", "body", "status", "ingested"), HTTP_CASES)
async def test_plain_http_requests(clock, method, headers, body, status, ingested) -> None:
    inbox = Inbox()
    async with asyncio.timeout(10), serving(inbox, clock) as (server, url), \
            aiohttp.ClientSession() as http:
        async with http.request(method, url + "/any/path", headers=headers, data=body) as resp:
            assert resp.status == status
        assert server.stats().stats_ingested == ingested
        assert inbox.queue.qsize() == ingested


async def test_shutdown_closes_websockets_with_service_restart(clock) -> None:
    inbox = Inbox()
    async with asyncio.timeout(10), aiohttp.ClientSession() as http:
        async with serving(inbox, clock) as (server, url):
            ws = await http.ws_connect(url)
            await ws.send_bytes(encode_wire_stats([(A, STAT_A)]))
            await inbox.take(1)
            closing = asyncio.create_task(server.close())
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == aiohttp.WSCloseCode.SERVICE_RESTART == 1012
            await ws.close()
            await closing
            assert server.stats().open_websockets == 0


async def test_a_pushed_stat_pokes_the_multiscaler_from_zero(clock) -> None:
    decisions: asyncio.Queue[int] = asyncio.Queue()
    ms = Multiscaler(clock=clock, on_decision=lambda key, d: decisions.put_nowait(d.desired_pods))
    ms.watch(A, ScalingSpec(target_value=7.0, total_value=10.0), panic_window_s=6.0,
             pods=lambda: [])
    async with asyncio.timeout(10), serving(ms.ingest, clock) as (server, url), \
            aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_bytes(encode_wire_stats([(A, Stat("activator-x", 1.0, 0.0, 1.0))]))
        assert await decisions.get() == 1                # no tick ran: the poke decided
        assert ms.stats().ticks == 0


async def test_a_refused_stat_does_not_drop_the_rest_of_its_batch(clock) -> None:
    got: list[RevisionKey] = []
    arrived = asyncio.Event()

    def ingest(key: RevisionKey, stat: Stat, now: float) -> None:
        if stat.average_concurrent_requests != stat.average_concurrent_requests:  # NaN
            raise ValueError("stat is not finite")
        got.append(key)
        arrived.set()

    async with asyncio.timeout(10), serving(ingest, clock) as (server, url), \
            aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_bytes(encode_wire_stats([(A, Stat("x", float("nan"))), (B, STAT_B)]))
        await arrived.wait()
        assert got == [B]
        assert (server.stats().ingest_errors, server.stats().stats_ingested) == (1, 1)
