"""`python -m queue_proxy` as a real process in front of a real aiohttp app: the issue's
"Done when" (concurrency limit, queue-full 503, timeout 504, drain on SIGTERM, Stat
endpoint, bad environment, probes, /wait-for-drain, Prometheus)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from dataplane.stat import Stat
from support.stack import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
HEALTH = {"K-Network-Probe": "queue", "User-Agent": "kube-probe/1.31"}




class App:
    """The user container: counts requests in flight and their maximum; can hold or delay them."""

    def __init__(self) -> None:
        self.seen = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_s = 0.0
        self.gate: asyncio.Event | None = None  # requests wait on it when set
        self.port = 0
        self._watchers: list[tuple[int, asyncio.Future[None]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for n, fut in self._watchers:
            if self.in_flight >= n and not fut.done():
                fut.set_result(None)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return web.Response(text="ok")
        finally:
            self.in_flight -= 1

    async def wait_in_flight(self, n: int) -> None:
        """Return once `n` requests are in the app at the same time."""
        if self.in_flight >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._watchers.append((n, fut))
        await fut


class QueueProxy:
    """A running `python -m queue_proxy` child and its ports."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int]) -> None:
        self.proc = proc
        self.ports = ports
        self.stderr: list[str] = []
        self.serving = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['serving']}"

    async def read_stderr(self) -> None:
        while line := await self.proc.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())
            if "serving on" in self.stderr[-1]:
                self.serving.set()

    async def wait_exit(self) -> int:
        """The exit status, with the reader done so stderr is complete."""
        code = await self.proc.wait()
        await self.reader
        return code


@pytest_asyncio.fixture
async def app() -> AsyncIterator[App]:
    """The app on a free loopback port, in this test's loop."""
    state = App()
    web_app = web.Application()
    web_app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    state.port = sock.getsockname()[1]
    yield state
    if state.gate is not None:
        state.gate.set()  # let held handlers end before the runner stops
    await runner.cleanup()
    sock.close()


def qp_env(user_port: int, ports: dict[str, int], **overrides: str) -> dict[str, str]:
    """A valid queue-proxy environment on these ports."""
    env = {
        "CONTAINER_CONCURRENCY": "3", "QUEUE_SERVING_PORT": str(ports["serving"]),
        "USER_PORT": str(user_port), "REVISION_TIMEOUT_SECONDS": "30",
        "SERVING_NAMESPACE": "default", "SERVING_CONFIGURATION": "hello",
        "SERVING_REVISION": "hello-00001", "SERVING_POD": "hello-pod",
        "QUEUE_ADMIN_PORT": str(ports["admin"]), "QUEUE_STATS_PORT": str(ports["stats"]),
        "QUEUE_METRICS_PORT": str(ports["metrics"]), "QUEUE_DRAIN_QUIET_SECONDS": "1",
    }
    env.update(overrides)
    return env


async def run_qp(env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start `python -m queue_proxy` with exactly this queue-proxy environment."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "queue_proxy", cwd=ROOT, env={**base, **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


@pytest_asyncio.fixture
async def start_qp(app: App) -> AsyncIterator[Callable[..., Awaitable[QueueProxy]]]:
    """Starts queue-proxies in front of `app`, ready to serve; kills each by PID at the end."""
    started: list[QueueProxy] = []

    async def start(**overrides: str) -> QueueProxy:
        names = ("serving", "admin", "stats", "metrics")
        ports = dict(zip(names, free_ports(len(names))))
        qp = QueueProxy(await run_qp(qp_env(app.port, ports, **overrides)), ports)
        started.append(qp)
        qp.reader = asyncio.ensure_future(qp.read_stderr())
        async with asyncio.timeout(START_TIMEOUT_S):
            exited = asyncio.ensure_future(qp.proc.wait())
            serving = asyncio.ensure_future(qp.serving.wait())
            await asyncio.wait((exited, serving), return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            serving.cancel()
            assert qp.serving.is_set(), f"queue-proxy did not start: {qp.stderr}"
            # One kubelet-style probe: the queue-proxy answers once the app is reachable.
            async with aiohttp.ClientSession() as http, http.get(qp.url + "/", headers=HEALTH) as resp:
                assert (resp.status, await resp.text()) == (200, "queue")
        return qp

    yield start
    for qp in started:
        if qp.proc.returncode is None:
            qp.proc.kill()  # by PID: only the child we started
        await qp.proc.wait()
        if qp.reader is not None:
            qp.reader.cancel()
            await asyncio.gather(qp.reader, return_exceptions=True)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client with no connection limit and no keep-alive reuse (each request its own)."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def fetch(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.read()


async def fetch_stat(http: aiohttp.ClientSession, qp: QueueProxy) -> Stat:
    url = f"http://127.0.0.1:{qp.ports['stats']}/metrics"
    async with http.get(url, headers={"Accept": "application/protobuf"}) as resp:
        assert resp.headers["Content-Type"] == "application/protobuf"
        return Stat.from_protobuf(await resp.read())


async def new_stats(http: aiohttp.ClientSession, qp: QueueProxy, after: Stat, count: int) -> list[Stat]:
    """The next `count` Stat reports cut after `after` (each is cut once a second; poll for it)."""
    seen: list[Stat] = []
    last = after.process_uptime
    while len(seen) < count:
        stat = await fetch_stat(http, qp)
        if stat.process_uptime > last:
            seen.append(stat)
            last = stat.process_uptime
        else:
            await asyncio.sleep(0.05)  # no event to wait on across processes: poll the endpoint
    return seen


async def scrape(http: aiohttp.ClientSession, qp: QueueProxy) -> dict[str, float]:
    """Prometheus samples by name, summed over label sets."""
    status, body = await fetch(http, f"http://127.0.0.1:{qp.ports['metrics']}/metrics")
    assert status == 200
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            # The parser names a counter's samples `<family>_total`; ours are bare (7.2).
            name = family.name if family.type == "counter" else sample.name
            totals[name] = totals.get(name, 0.0) + sample.value
    return totals


async def test_concurrency_limit_holds_with_30_clients_and_all_succeed(app, start_qp, http):
    app.delay_s = 0.1
    qp = await start_qp(CONTAINER_CONCURRENCY="3")
    async with asyncio.timeout(20):
        results = await asyncio.gather(*(fetch(http, qp.url + f"/r{i}") for i in range(30)))
        metrics = await scrape(http, qp)
    assert [status for status, _ in results] == [200] * 30
    assert app.max_in_flight == 3 and app.seen == 30
    assert metrics["revision_request_count"] == 30.0
    assert metrics["kn_serving_invocation_duration_seconds_count"] == 30.0
    assert metrics["revision_app_request_count"] == 30.0


async def test_arrivals_past_eleven_times_cc_get_immediate_503(app, start_qp, http):
    # CC 3 admits 3 + 30 queued; of 40 held together exactly 7 are refused at once.
    app.gate = asyncio.Event()
    qp = await start_qp(CONTAINER_CONCURRENCY="3")
    async with asyncio.timeout(20):
        tasks = [asyncio.ensure_future(fetch(http, qp.url + f"/r{i}")) for i in range(40)]
        done: set[asyncio.Future] = set()
        while len(done) < 7:  # the refusals come back while the app still holds everyone
            finished, _ = await asyncio.wait(set(tasks) - done, return_when=asyncio.FIRST_COMPLETED)
            done |= finished
        await app.wait_in_flight(3)
        held = [t for t in tasks if not t.done()]
        assert app.in_flight == 3 and len(held) == 33
        app.gate.set()
        results = await asyncio.gather(*tasks)
    refused = [r for r in results if r[0] == 503]
    assert refused == [(503, b"pending request queue full\n")] * 7
    assert [s for s, _ in results].count(200) == 33
    assert app.max_in_flight == 3 and app.seen == 33


STALL_TIMEOUTS = [
    # Knative's timeout handler gives each of the three the same 504 body (reference 4.5).
    pytest.param({"REVISION_TIMEOUT_SECONDS": "1"}, id="total"),
    pytest.param({"REVISION_TIMEOUT_SECONDS": "30", "REVISION_RESPONSE_START_TIMEOUT_SECONDS": "1"},
                 id="response-start"),
    pytest.param({"REVISION_TIMEOUT_SECONDS": "30", "REVISION_IDLE_TIMEOUT_SECONDS": "1"}, id="idle"),
]


@pytest.mark.parametrize("timeouts", STALL_TIMEOUTS)
async def test_stalled_upstream_answers_504_after_the_revision_timeout(app, start_qp, http, timeouts):
    app.gate = asyncio.Event()  # never set during the request: the app stalls
    qp = await start_qp(**timeouts)
    async with asyncio.timeout(10):
        started = time.monotonic()
        status, body = await fetch(http, qp.url + "/stall")
        elapsed = time.monotonic() - started
    assert (status, body) == (504, b"request timeout")
    # A behaviour bound, not a speed claim: the timeout fired, and not much later.
    assert 0.95 <= elapsed < 3.0


async def test_sigterm_with_100_in_flight_loses_none_and_exits_0(app, start_qp, http):
    app.gate = asyncio.Event()
    qp = await start_qp(CONTAINER_CONCURRENCY="0", QUEUE_DRAIN_QUIET_SECONDS="1")
    async with asyncio.timeout(30):
        tasks = [asyncio.ensure_future(fetch(http, qp.url + f"/r{i}")) for i in range(100)]
        await app.wait_in_flight(100)
        qp.proc.send_signal(signal.SIGTERM)
        assert await fetch(http, qp.url + "/healthz", HEALTH) == (503, b"shutting down\n")
        # A request in the quiet period is still served (and restarts the period).
        late = asyncio.ensure_future(fetch(http, qp.url + "/late"))
        await app.wait_in_flight(101)
        # Keep them in flight past the quiet period, so the graceful shutdown must wait.
        app.delay_s = 1.5
        app.gate.set()
        results = await asyncio.gather(*tasks, late)
        code = await qp.wait_exit()
    assert [s for s, _ in results] == [200] * 101
    assert code == 0, qp.stderr
    waited = [int(m.group(1)) for line in qp.stderr if (m := re.search(r"waiting for (\d+) request", line))]
    assert waited and waited[0] > 0, qp.stderr  # the shutdown really had requests to wait for


async def test_stat_counts_queued_requests_as_concurrency(app, start_qp, http):
    app.delay_s = 0.1
    qp = await start_qp(CONTAINER_CONCURRENCY="3")
    stop = asyncio.Event()

    async def closed_loop() -> None:
        while not stop.is_set():
            assert (await fetch(http, qp.url + "/load"))[0] == 200

    async with asyncio.timeout(30):
        async with http.get(f"http://127.0.0.1:{qp.ports['stats']}/metrics") as resp:
            assert resp.content_type == "application/json"
            assert (await resp.json())["pod_name"] == "hello-pod"
        averages = []
        loops: list[asyncio.Task] = []
        for clients in (3, 30):
            loops += [asyncio.ensure_future(closed_loop()) for _ in range(clients - len(loops))]
            await app.wait_in_flight(3)
            # The first report may cover the ramp; the second is a whole second under load.
            stats = await new_stats(http, qp, await fetch_stat(http, qp), 2)
            averages.append(stats[-1].average_concurrent_requests)
        stop.set()
        await asyncio.gather(*loops)
    assert averages[0] == pytest.approx(3.0, abs=0.3)
    assert averages[1] == pytest.approx(30.0, abs=1.0)  # 3 executing + 27 queued
    assert app.max_in_flight == 3


BAD_ENV = [
    pytest.param({"USER_PORT": None}, "queue-proxy: USER_PORT: is required (not set)", id="missing"),
    pytest.param({"USER_PORT": "http"}, "queue-proxy: USER_PORT: 'http' must be an integer in 1-65535",
                 id="not-a-port"),
    pytest.param({"CONTAINER_CONCURRENCY": "-1"},
                 "queue-proxy: CONTAINER_CONCURRENCY: '-1' must be an integer >= 0", id="negative-cc"),
]


@pytest.mark.parametrize(("change", "first_line"), BAD_ENV)
async def test_bad_environment_exits_2_naming_the_variable(change, first_line):
    names = ("serving", "admin", "stats", "metrics")
    env = qp_env(8080, dict(zip(names, free_ports(4))))
    for key, value in change.items():
        if value is None:
            del env[key]
        else:
            env[key] = value
    proc = await run_qp(env)
    async with asyncio.timeout(START_TIMEOUT_S):
        stderr = (await proc.stderr.read()).decode()
        code = await proc.wait()
    assert code == 2
    assert stderr.splitlines() == [first_line]


async def test_serving_port_in_use_exits_1_naming_the_port(app):
    names = ("serving", "admin", "stats", "metrics")
    ports = dict(zip(names, free_ports(4)))
    busy = socket.socket()
    busy.bind(("127.0.0.1", ports["serving"]))
    busy.listen()
    try:
        proc = await run_qp(qp_env(app.port, ports))
        async with asyncio.timeout(START_TIMEOUT_S):
            stderr = (await proc.stderr.read()).decode()
            code = await proc.wait()
    finally:
        busy.close()
    assert code == 1
    assert f"queue-proxy: QUEUE_SERVING_PORT: cannot listen on 127.0.0.1:{ports['serving']}" in stderr


async def test_probes_never_reach_the_app_and_are_not_counted(app, start_qp, http):
    qp = await start_qp()
    async with asyncio.timeout(20):
        before = await fetch_stat(http, qp)
        assert await fetch(http, qp.url + "/any/path", HEALTH) == (200, b"queue")
        assert await fetch(http, qp.url + "/x", {"K-Kubelet-Probe": "queue", "K-Network-Probe": "queue"}) == (
            200, b"queue")
        async with http.get(qp.url + "/y", headers={"K-Network-Probe": "probe", "K-Network-Hash": "h1"}) as resp:
            assert (resp.status, resp.headers["K-Network-Hash"]) == (200, "h1")
        assert (await fetch(http, qp.url + "/z", {"K-Network-Probe": "probe"}))[0] == 400
        probe_stats = await new_stats(http, qp, before, 3)
        probe_metrics = await scrape(http, qp)
        # One real request shows the same checks do count what they should.
        assert await fetch(http, qp.url + "/real") == (200, b"ok")
        real_stats = await new_stats(http, qp, probe_stats[-1], 2)
    # The startup probe above (in start_qp) and these probes: none reached the app.
    assert app.seen == 1
    assert sum(s.request_count for s in probe_stats) == 0.0
    assert "revision_request_count" not in probe_metrics
    assert sum(s.request_count for s in real_stats) == 1.0


async def test_wait_for_drain_returns_200_after_the_drain(app, start_qp, http):
    qp = await start_qp(QUEUE_DRAIN_QUIET_SECONDS="1")
    async with asyncio.timeout(20):
        admin = f"http://127.0.0.1:{qp.ports['admin']}/wait-for-drain"
        drain = asyncio.ensure_future(fetch(http, admin))
        while (await fetch(http, qp.url + "/", HEALTH))[0] != 503:
            await asyncio.sleep(0.02)  # the preStop call starts the drain: health soon fails
        assert not drain.done()
        qp.proc.send_signal(signal.SIGTERM)  # within Knative's 1 s, so the drain is not reset
        assert (await drain)[0] == 200
        assert await qp.wait_exit() == 0


async def test_second_signal_ends_the_quiet_period_early(app, start_qp, http):
    qp = await start_qp(QUEUE_DRAIN_QUIET_SECONDS="30")
    async with asyncio.timeout(10):  # far below the 30 s quiet period
        qp.proc.send_signal(signal.SIGTERM)
        assert await fetch(http, qp.url + "/", HEALTH) == (503, b"shutting down\n")
        assert await fetch(http, qp.url + "/still-served") == (200, b"ok")
        qp.proc.send_signal(signal.SIGINT)
        assert await qp.wait_exit() == 0
    assert any("ending the quiet period now" in line for line in qp.stderr), qp.stderr
