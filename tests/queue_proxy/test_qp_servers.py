"""The stats, metrics and admin apps on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from dataplane.clock import FakeClock
from dataplane.stat import Stat
from dataplane.stats import RequestStats, StatReporter
from queue_proxy.drain import Drainer
from queue_proxy.metrics import RequestMetrics, ResourceLabels, register_metrics
from queue_proxy.servers import build_admin_app, build_metrics_app, build_stats_app, start_app


@pytest_asyncio.fixture
async def serve() -> AsyncIterator:
    """Start apps on 127.0.0.1:0 sockets; yields a starter returning the base URL."""
    runners: list[web.AppRunner] = []
    socks: list[socket.socket] = []

    async def start(app: web.Application) -> str:
        sock = socket.socket()
        socks.append(sock)
        sock.bind(("127.0.0.1", 0))
        runners.append(await start_app(app, sock=sock, shutdown_timeout_s=0.1))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
    for sock in socks:
        sock.close()  # the server holds a duplicate; ours is closed here


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_stats_before_first_report_is_pod_name_only(serve, http, clock: FakeClock):
    reporter = StatReporter(RequestStats(clock.now()), "pod-a", clock)
    base = await serve(build_stats_app(reporter.current))
    async with asyncio.timeout(5):
        async with http.get(base + "/metrics", headers={"Accept": "application/protobuf"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/protobuf"
            assert Stat.from_protobuf(await resp.read()) == Stat(pod_name="pod-a")


async def test_stats_serves_latest_report_as_protobuf_or_json(serve, http, clock: FakeClock):
    stats = RequestStats(clock.now())
    reporter = StatReporter(stats, "pod-a", clock)
    stats.request_in(clock.now(), False)
    clock.set(clock.now() + 1.0)
    reporter.report_once()
    base = await serve(build_stats_app(reporter.current))
    want = Stat("pod-a", 1.0, 0.0, 1.0, 0.0, 1.0, 0)
    async with asyncio.timeout(5):
        async with http.get(base + "/metrics", headers={"Accept": "application/protobuf"}) as resp:
            assert Stat.from_protobuf(await resp.read()) == want
        async with http.get(base + "/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("application/json")
            assert Stat.from_dict(await resp.json()) == want


PROBE_CASES = [
    pytest.param({"User-Agent": "kube-probe/1.31"}, "/anything", 200, id="kubelet-ua-any-path"),
    pytest.param({"K-Kubelet-Probe": "queue"}, "/", 200, id="kubelet-header"),
    pytest.param({}, "/other", 404, id="not-a-probe-unknown-path"),
]


@pytest.mark.parametrize(("headers", "path", "status"), PROBE_CASES)
async def test_stats_port_answers_kubelet_probes(serve, http, clock: FakeClock, headers, path, status):
    base = await serve(build_stats_app(lambda: Stat(pod_name="p")))
    async with asyncio.timeout(5):
        async with http.get(base + path, headers=headers) as resp:
            assert resp.status == status


async def test_metrics_app_renders_the_registry(serve, http):
    registry = CollectorRegistry()
    metrics = RequestMetrics(ResourceLabels("ns", "svc", "cfg", "rev", "pod"), has_queue_depth=True)
    register_metrics(metrics, registry)
    metrics.set_queue_depth(3)
    base = await serve(build_metrics_app(registry))
    async with asyncio.timeout(5):
        async with http.get(base + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body = await resp.text()
    assert 'revision_queue_depth{configuration_name="cfg"' in body
    assert body.count("kn_serving_queue_depth{") == 1


async def test_wait_for_drain_returns_when_drained(serve, http):
    clock = FakeClock()
    drainer = Drainer(clock, quiet_s=30)
    terminating = asyncio.Event()
    base = await serve(build_admin_app(drainer, terminating))
    async with asyncio.timeout(5):
        request = asyncio.create_task(http.get(base + "/wait-for-drain"))
        while not drainer.is_draining:
            await asyncio.sleep(0.001)
        terminating.set()
        await clock.advance(1)
        assert not request.done()
        await clock.advance(29)
        async with await request as resp:
            assert resp.status == 200
    assert drainer.is_draining
    await drainer.aclose()


async def test_wait_for_drain_without_sigterm_resets(serve, http):
    clock = FakeClock()
    drainer = Drainer(clock, quiet_s=30)
    base = await serve(build_admin_app(drainer, asyncio.Event()))
    async with asyncio.timeout(5):
        request = asyncio.create_task(http.post(base + "/wait-for-drain"))
        while clock.sleepers < 2:  # the drain timer and the SIGTERM watchdog
            await asyncio.sleep(0.001)
        await clock.advance(1)
        async with await request as resp:
            assert resp.status == 200
    assert not drainer.is_draining
    await drainer.aclose()


async def test_start_app_needs_exactly_one_address():
    with pytest.raises(ValueError):
        await start_app(web.Application())
