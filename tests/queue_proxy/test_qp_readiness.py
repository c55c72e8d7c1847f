"""Readiness probing against real loopback servers, and the aggressive loop on a fake clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from dataplane.clock import FakeClock, MonotonicClock
from queue_proxy.config import PROBE_HTTP, PROBE_TCP, ProbeSpec
from queue_proxy.readiness import ReadinessProber, probe_once


def free_port() -> int:
    """A loopback port with (for the moment) no listener."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpStub:
    """A tiny HTTP server on 127.0.0.1 answering with scripted statuses and recording heads."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        status = self.statuses[min(len(self.heads), len(self.statuses)) - 1]
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nLocation: /elsewhere\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return self.server.sockets[0].getsockname()[1]


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[list[asyncio.Server]]:
    started: list[asyncio.Server] = []
    yield started
    for server in started:
        server.close()
        await server.wait_closed()


async def http_stub(servers, statuses: list[int]) -> tuple[HttpStub, int]:
    stub = HttpStub(statuses)
    port = await stub.start()
    servers.append(stub.server)
    return stub, port


HTTP_CASES = [
    pytest.param(200, True, id="200-ready"),
    pytest.param(302, True, id="302-ready-not-followed"),
    pytest.param(399, True, id="399-ready"),
    pytest.param(400, False, id="400-not-ready"),
    pytest.param(500, False, id="500-not-ready"),
]


@pytest.mark.parametrize(("status", "want"), HTTP_CASES)
async def test_http_probe_status(servers, status, want):
    stub, port = await http_stub(servers, [status])
    spec = ProbeSpec(PROBE_HTTP, port, path="/healthz", period_s=1)
    async with asyncio.timeout(5):
        assert await ReadinessProber([spec], MonotonicClock()).probe() is want
    assert len(stub.heads) == 1  # one attempt when periodSeconds is set


async def test_http_probe_sends_kubelet_user_agent_and_custom_headers(servers):
    stub, port = await http_stub(servers, [200])
    spec = ProbeSpec(PROBE_HTTP, port, path="/ready?x=1", http_headers=(("X-Probe", "yes"), ("Host", "app.local")),
                     period_s=1)
    async with asyncio.timeout(5):
        assert await probe_once(spec, 1.0)
    head = stub.heads[0].decode()
    assert head.startswith("GET /ready?x=1 HTTP/1.1\r\n")
    assert "\r\nUser-Agent: kube-probe/1.31\r\n" in head
    assert "\r\nX-Probe: yes\r\n" in head
    assert "\r\nHost: app.local\r\n" in head and f"127.0.0.1:{port}" not in head


async def test_tcp_probe_against_listener_and_closed_port(servers):
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    servers.append(server)
    port = server.sockets[0].getsockname()[1]
    async with asyncio.timeout(5):
        assert await probe_once(ProbeSpec(PROBE_TCP, port), 1.0)
        assert not await probe_once(ProbeSpec(PROBE_TCP, free_port()), 1.0)


async def test_http_probe_to_silent_server_times_out(servers):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the prober hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    servers.append(server)
    port = server.sockets[0].getsockname()[1]
    async with asyncio.timeout(5):
        assert not await probe_once(ProbeSpec(PROBE_HTTP, port), 0.05)


async def test_aggressive_probe_waits_for_a_server_that_starts_late(servers):
    port = free_port()
    attempts = 0
    first_failure = asyncio.Event()

    async def counting(spec: ProbeSpec, timeout_s: float) -> bool:
        nonlocal attempts
        attempts += 1
        ok = await probe_once(spec, timeout_s)
        if not ok:
            first_failure.set()
        return ok

    prober = ReadinessProber([ProbeSpec(PROBE_HTTP, port)], MonotonicClock(), attempt=counting)
    async with asyncio.timeout(5):
        task = asyncio.create_task(prober.probe())
        await first_failure.wait()
        stub = HttpStub([200])
        await stub.start(port)
        servers.append(stub.server)
        assert await task is True
    assert attempts >= 2 and len(stub.heads) == 1


async def test_aggressive_probe_needs_consecutive_successes(servers):
    stub, port = await http_stub(servers, [200, 500, 200, 200])
    prober = ReadinessProber([ProbeSpec(PROBE_HTTP, port, success_threshold=2)], MonotonicClock())
    async with asyncio.timeout(5):
        assert await prober.probe() is True
    assert len(stub.heads) == 4  # the 500 reset the count
    async with asyncio.timeout(5):
        assert await prober.probe() is True  # the count carries over: one attempt suffices
    assert len(stub.heads) == 5


def scripted(results: list[bool], clock: FakeClock, times: list[float]) -> tuple[Callable, list[float]]:
    """A fake attempt returning `results` in order (then False), recording timeouts."""
    timeouts: list[float] = []

    async def attempt(spec: ProbeSpec, timeout_s: float) -> bool:
        timeouts.append(timeout_s)
        times.append(clock.now())
        return results.pop(0) if results else False

    return attempt, timeouts


async def settle(task: asyncio.Task, clock: FakeClock, step: float, limit: int) -> None:
    for _ in range(limit):
        if task.done():
            return
        await clock.advance(step)


async def test_aggressive_probe_gives_up_after_ten_seconds(clock: FakeClock):
    times: list[float] = []
    attempt, timeouts = scripted([], clock, times)
    prober = ReadinessProber([ProbeSpec(PROBE_TCP, 1)], clock, attempt=attempt)
    task = asyncio.create_task(prober.probe())
    await settle(task, clock, 0.05, 400)
    assert task.done() and task.result() is False
    assert len(timeouts) == 200 and set(timeouts) == {0.1}  # every 50 ms for 10 s
    assert times[-1] - times[0] == pytest.approx(9.95)


async def test_periodic_probe_uses_its_timeout_once(clock: FakeClock):
    attempt, timeouts = scripted([False], clock, [])
    prober = ReadinessProber([ProbeSpec(PROBE_TCP, 1, period_s=10, timeout_s=3)], clock, attempt=attempt)
    assert await prober.probe() is False
    assert timeouts == [3.0]


async def test_concurrent_callers_share_one_run(clock: FakeClock):
    gate = asyncio.Event()
    calls = 0

    async def attempt(spec: ProbeSpec, timeout_s: float) -> bool:
        nonlocal calls
        calls += 1
        await gate.wait()
        return True

    prober = ReadinessProber([ProbeSpec(PROBE_TCP, 1)], clock, attempt=attempt)
    callers = [asyncio.create_task(prober.probe()) for _ in range(5)]
    await asyncio.sleep(0)
    callers[0].cancel()  # one caller leaving does not cancel the shared run
    gate.set()
    results = await asyncio.gather(*callers[1:])
    assert results == [True] * 4 and calls == 1 and prober.runs == 1
    assert await prober.probe() is True and prober.runs == 2  # a later call starts a new run


async def test_multi_container_probes_all_must_pass(clock: FakeClock):
    async def attempt(spec: ProbeSpec, timeout_s: float) -> bool:
        return spec.port == 1

    both = ReadinessProber([ProbeSpec(PROBE_TCP, 1, period_s=1), ProbeSpec(PROBE_TCP, 2, period_s=1)],
                           clock, attempt=attempt)
    assert await both.probe() is False
    one = ReadinessProber([ProbeSpec(PROBE_TCP, 1, period_s=1)], clock, attempt=attempt)
    assert await one.probe() is True


def test_header_injection_refused():
    with pytest.raises(ValueError):
        ReadinessProber([ProbeSpec(PROBE_HTTP, 1, http_headers=(("X", "a\r\nEvil: 1"),))], FakeClock())
