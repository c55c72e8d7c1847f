"""The stats, metrics and admin servers (on the proxy engine) on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from dataplane.clock import FakeClock
from dataplane.proxy import LocalHandler, ProxyServer
from dataplane.stat import Stat
from dataplane.stats import RequestStats, StatReporter
from queue_proxy.drain import Drainer
from queue_proxy.metrics import RequestMetrics, ResourceLabels, register_metrics
from queue_proxy.servers import (
    build_admin_handler,
    build_metrics_handler,
    build_stats_handler,
    start_side_server,
)


@pytest_asyncio.fixture
async def serve() -> AsyncIterator:
    """Start handlers on 127.0.0.1:0 sockets; yields a starter returning the base URL."""
    servers: list[ProxyServer] = []
    socks: list[socket.socket] = []

    async def start(handler: LocalHandler) -> str:
        sock = socket.socket()
        socks.append(sock)
        sock.bind(("127.0.0.1", 0))
        servers.append(await start_side_server(handler, sock=sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server in servers:
        await server.shutdown(0.1)
    for sock in socks:
        sock.close()  # the server holds a duplicate; ours is closed here


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_stats_before_first_report_is_pod_name_only(serve, http, clock: FakeClock):
    reporter = StatReporter(RequestStats(clock.now()), "pod-a", clock)
    base = await serve(build_stats_handler(reporter.current))
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
    base = await serve(build_stats_handler(reporter.current))
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
    base = await serve(build_stats_handler(lambda: Stat(pod_name="p")))
    async with asyncio.timeout(5):
        async with http.get(base + path, headers=headers) as resp:
            assert resp.status == status


async def test_metrics_app_renders_the_registry(serve, http):
    registry = CollectorRegistry()
    metrics = RequestMetrics(ResourceLabels("ns", "svc", "cfg", "rev", "pod"), has_queue_depth=True)
    register_metrics(metrics, registry)
    metrics.set_queue_depth(3)
    base = await serve(build_metrics_handler(registry))
    async with asyncio.timeout(5):
        async with http.get(base + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body = await resp.text()
    assert 'revision_queue_depth{configuration_name="cfg"' in body
    assert body.count("kn_serving_queue_depth{") == 1


METHOD_CASES = [
    pytest.param("GET", 200, True, id="get"),
    pytest.param("HEAD", 200, False, id="head-no-body"),
    pytest.param("POST", 405, True, id="post-refused"),
]


@pytest.mark.parametrize(("method", "status", "has_body"), METHOD_CASES)
async def test_metrics_paths_answer_get_and_head_only(serve, http, method, status, has_body):
    registry = CollectorRegistry()
    register_metrics(RequestMetrics(ResourceLabels("ns", "svc", "cfg", "rev", "pod"), has_queue_depth=True),
                     registry)
    bases = [await serve(build_metrics_handler(registry)),
             await serve(build_stats_handler(lambda: Stat(pod_name="p")))]
    async with asyncio.timeout(5):
        for base in bases:
            async with http.request(method, base + "/metrics?x=1") as resp:
                assert resp.status == status
                assert bool(await resp.read()) is has_body
                if status == 405:
                    assert resp.headers["Allow"] == "GET, HEAD"


async def test_wait_for_drain_returns_when_drained(serve, http):
    clock = FakeClock()
    drainer = Drainer(clock, quiet_s=30)
    terminating = asyncio.Event()
    base = await serve(build_admin_handler(drainer, terminating))
    async with asyncio.timeout(5):
        request = asyncio.create_task(http.get(base + "/wait-for-drain"))
        while not drainer.is_draining:
            await asyncio.sleep(0.001)
        terminating.set()
        await clock.advance(1)
        assert not request.done()
        # The wait holds only its own request: the server answers others meanwhile.
        async with http.get(base + "/other") as other:
            assert other.status == 404
        assert not request.done()
        await clock.advance(29)
        async with await request as resp:
            assert resp.status == 200
    assert drainer.is_draining
    await drainer.aclose()


async def test_wait_for_drain_without_sigterm_resets(serve, http):
    clock = FakeClock()
    drainer = Drainer(clock, quiet_s=30)
    base = await serve(build_admin_handler(drainer, asyncio.Event()))
    async with asyncio.timeout(5):
        request = asyncio.create_task(http.post(base + "/wait-for-drain"))
        while clock.sleepers < 2:  # the drain timer and the SIGTERM watchdog
            await asyncio.sleep(0.001)
        await clock.advance(1)
        async with await request as resp:
            assert resp.status == 200
    assert not drainer.is_draining
    await drainer.aclose()


async def test_start_side_server_needs_exactly_one_address():
    with pytest.raises(ValueError):
        await start_side_server(LocalHandler({}))
