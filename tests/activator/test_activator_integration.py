"""The activator on loopback in front of real HTTP servers standing in for pods.

Each pod is a small aiohttp app that answers the activator's probe (`K-Network-Probe:
queue` → 200 `queue`) and counts the requests it serves, how many ran at once, and which
carried `K-Proxy-Request`. Everything is bounded by `asyncio.timeout`; readiness is
awaited on events (`Activator.wait_healthy`, the sink's poke event), never slept for.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from support.http import serve_loopback

from activator import Activator, ActivatorConfig, HostRoute
from dataplane import Mode, MonotonicClock, PodAddress, RevisionEndpoints, RevisionKey, Stat

pytestmark = pytest.mark.integration

TIMEOUT_S = 20.0
A = RevisionKey("default", "hello-00001")
B = RevisionKey("default", "hello-00002")
HOST = "hello.default.example.com"
TAG_HOST = "canary-hello.default.example.com"
ROUTES = [
    HostRoute(HOST, ((A, 80), (B, 20)), {"canary": B}),
    HostRoute(TAG_HOST, ((B, 100),)),
]


class Pod:
    """A stand-in for a pod's queue-proxy: probe answers and request accounting."""

    def __init__(self, name: str, *, work_s: float = 0.0, ready: bool = True) -> None:
        self.name = name
        self.work_s = work_s
        self.ready = ready
        self.gate: asyncio.Event | None = None  # when set, requests wait on it
        self.requests = 0
        self.proxied = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrived = asyncio.Event()
        self.hosts: list[str] = []
        self.tags: list[str | None] = []
        self._runner: web.AppRunner | None = None
        self.address: PodAddress | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("K-Network-Probe") == "queue":
            return web.Response(text="queue") if self.ready else web.Response(status=503)
        self.requests += 1
        self.proxied += request.headers.get("K-Proxy-Request") == "activator"
        self.hosts.append(request.headers.get("Host", ""))
        self.tags.append(request.headers.get("Knative-Serving-Tag"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.arrived.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            elif self.work_s:
                await asyncio.sleep(self.work_s)  # simulated work, not a readiness wait
        finally:
            self.in_flight -= 1
        return web.Response(text=self.name)

    async def start(self) -> PodAddress:
        self._runner, port = await serve_loopback(self._handle)
        self.address = PodAddress("127.0.0.1", port)
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class Sink:
    """A StatSink that records every stat and signals the first one."""

    def __init__(self) -> None:
        self.sent: list[tuple[RevisionKey, Stat]] = []
        self.first = asyncio.Event()
        self.changed = asyncio.Event()

    def send(self, key: RevisionKey, stat: Stat) -> None:
        self.sent.append((key, stat))
        self.first.set()
        self.changed.set()

    def request_count(self, key: RevisionKey) -> float:
        return sum(s.request_count for k, s in self.sent if k == key)

    async def wait_request_count(self, key: RevisionKey, count: float) -> None:
        while self.request_count(key) < count:
            self.changed.clear()
            await self.changed.wait()


@pytest_asyncio.fixture
async def pods():
    made: list[Pod] = []

    async def make(name: str, **kwargs) -> Pod:
        pod = Pod(name, **kwargs)
        await pod.start()
        made.append(pod)
        return pod

    yield make
    for pod in made:
        if pod.gate is not None:
            pod.gate.set()
        await pod.stop()


@pytest_asyncio.fixture
async def stack():
    sink = Sink()
    config = ActivatorConfig(seed=1, shutdown_timeout_s=2.0)
    act = Activator(MonotonicClock(), sink, config=config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await act.start(sock=sock)
    session = aiohttp.ClientSession(
        f"http://127.0.0.1:{act.port}", connector=aiohttp.TCPConnector(limit=50)
    )
    yield act, sink, session
    await session.close()
    async with asyncio.timeout(TIMEOUT_S):
        await act.aclose()


def endpoints(key, pods, mode=Mode.PROXY, cc=0, timeout_s=10.0):
    return RevisionEndpoints(key, tuple(p.address for p in pods), mode, cc, timeout_s)


async def get(session, host, headers=None):
    async with session.get("/", headers={"Host": host, **(headers or {})}) as resp:
        return resp.status, await resp.text(), resp.headers


async def test_unknown_host_is_404_naming_it_and_probes_are_local(stack):
    act, _, session = stack
    act.set_routes(ROUTES)
    async with asyncio.timeout(TIMEOUT_S):
        status, body, _ = await get(session, "nope.example.com:8080")
        assert (status, body) == (404, "unknown host: nope.example.com:8080\n")
        assert (await get(session, HOST, {"User-Agent": "kube-probe/1.31"}))[0] == 200
        probe = await get(session, HOST, {"K-Network-Probe": "activator"})
        assert probe[:2] == (200, "activator")
        status, _, headers = await get(session, HOST, {"K-Network-Probe": "probe",
                                                        "K-Network-Hash": "abc"})
        assert (status, headers.get("K-Network-Hash")) == (200, "abc")
        assert (await get(session, HOST, {"K-Network-Probe": "probe"}))[0] == 400
        assert (await get(session, HOST, {"K-Network-Probe": "queue"}))[0] == 400
        # A route to a revision the control plane has not described yet.
        status, body, _ = await get(session, HOST, {"Knative-Serving-Tag": "canary"})
        assert (status, body) == (404, "unknown revision: default/hello-00002\n")
        act.drain()
        assert (await get(session, HOST, {"K-Kubelet-Probe": "1"}))[0] == 500


async def test_percent_split_80_20_over_2000_requests(stack, pods):
    act, _, session = stack
    pa, pb = await pods("a"), await pods("b")
    act.set_revision(endpoints(A, [pa], Mode.SERVE))
    act.set_revision(endpoints(B, [pb], Mode.SERVE))
    act.set_routes(ROUTES)
    bodies: Counter[str] = Counter()
    async with asyncio.timeout(60):
        await act.wait_healthy(A)
        await act.wait_healthy(B)

        async def worker(n):
            for _ in range(n):
                status, body, _ = await get(session, HOST)
                assert status == 200
                bodies[body] += 1

        await asyncio.gather(*(worker(100) for _ in range(20)))
    assert sum(bodies.values()) == 2000
    assert 1520 <= bodies["a"] <= 1680, bodies


async def test_tag_host_and_tag_header_reach_exactly_their_revision(stack, pods):
    act, _, session = stack
    pa, pb = await pods("a"), await pods("b")
    act.set_revision(endpoints(A, [pa]))
    act.set_revision(endpoints(B, [pb]))
    act.set_routes(ROUTES)
    async with asyncio.timeout(TIMEOUT_S):
        await act.wait_healthy(A)
        await act.wait_healthy(B)
        for _ in range(20):
            assert (await get(session, TAG_HOST))[:2] == (200, "b")
            tagged = await get(session, HOST.upper() + ":80", {"Knative-Serving-Tag": "canary"})
            assert tagged[:2] == (200, "b")
        assert pa.requests == 0 and pb.requests == 40
        assert pb.hosts[0] == TAG_HOST  # Host is forwarded as the client sent it
        assert pb.tags[1] == "canary"
        # An unknown tag falls back to the split and does not reach the pod.
        for _ in range(10):
            assert (await get(session, HOST, {"Knative-Serving-Tag": "bogus"}))[0] == 200
    assert pa.requests + pb.requests == 50
    assert set(pa.tags) == {None} and pb.tags[40:] == [None] * (pb.requests - 40)


async def test_cold_start_holds_the_request_pokes_at_once_and_completes(stack, pods):
    act, sink, session = stack
    act.set_revision(endpoints(A, []))
    act.set_routes([HostRoute(HOST, ((A, 100),))])
    pod = Pod("a", ready=False)
    async with asyncio.timeout(TIMEOUT_S):
        request = asyncio.ensure_future(get(session, HOST))
        await sink.first.wait()
        key, poke = sink.sent[0]
        assert key == A and (poke.average_concurrent_requests, poke.request_count) == (1.0, 1.0)
        assert not request.done()
        await pod.start()
        assert act.stats().revisions[A].waiting == 1  # parked in the throttler by now
        act.set_revision(endpoints(A, [pod]))  # listed, but its probe fails: still held
        await asyncio.sleep(0.5)  # several probe rounds: none may let the request through
        assert not request.done() and pod.requests == 0
        pod.ready = True
        status, body, _ = await request
    try:
        assert (status, body) == (200, "a")
        assert pod.proxied == 1  # held by the activator: K-Proxy-Request was set
        assert act.stats().pokes == 1
    finally:
        await pod.stop()


async def test_cc1_two_pods_twenty_clients_never_two_at_once(stack, pods):
    act, _, session = stack
    pa, pb = await pods("a", work_s=0.005), await pods("b", work_s=0.005)
    act.set_revision(endpoints(A, [pa, pb], cc=1))
    act.set_routes([HostRoute(HOST, ((A, 100),))])
    async with asyncio.timeout(60):
        await act.wait_healthy(A, 2)

        async def client():
            return [(await get(session, HOST))[0] for _ in range(10)]

        results = await asyncio.gather(*(client() for _ in range(20)))
    assert all(status == 200 for statuses in results for status in statuses)
    assert pa.requests + pb.requests == 200 and pa.requests > 0 and pb.requests > 0
    assert pa.max_in_flight == 1 and pb.max_in_flight == 1


async def test_mode_flips_under_steady_load_fail_no_request(stack, pods):
    act, sink, session = stack
    pa, pb = await pods("a", work_s=0.002), await pods("b", work_s=0.002)
    act.set_revision(endpoints(A, [pa, pb], Mode.PROXY, cc=2))
    act.set_routes([HostRoute(HOST, ((A, 100),))])
    statuses: Counter[int] = Counter()
    done = 0
    async with asyncio.timeout(60):
        await act.wait_healthy(A, 2)

        async def client():
            nonlocal done
            for _ in range(30):
                statuses[(await get(session, HOST))[0]] += 1
                done += 1

        clients = asyncio.gather(*(client() for _ in range(10)))
        for threshold, mode in ((60, Mode.SERVE), (150, Mode.PROXY), (230, Mode.SERVE)):
            while done < threshold:
                await asyncio.sleep(0.005)  # polling the load's progress, not readiness
            act.set_revision(endpoints(A, [pa, pb], mode, cc=2))
        await clients
        assert statuses == Counter({200: 300})
        proxied = pa.proxied + pb.proxied
        assert 0 < proxied < 300  # proxy-mode requests carried the header, serve-mode ones not
        # Only proxy-mode requests are reported (the poke counted once, then subtracted).
        await sink.wait_request_count(A, proxied)
        await asyncio.sleep(0)
    assert sink.request_count(A) == proxied


async def test_removed_pod_gets_no_new_requests_and_finishes_its_own(stack, pods):
    act, _, session = stack
    pa, pb = await pods("a"), await pods("b")
    act.set_revision(endpoints(A, [pa, pb], Mode.SERVE))
    act.set_routes([HostRoute(HOST, ((A, 100),))])
    async with asyncio.timeout(TIMEOUT_S):
        await act.wait_healthy(A, 2)
        pa.gate = asyncio.Event()
        arrived = asyncio.ensure_future(pa.arrived.wait())
        held = None
        while held is None:  # p2c: send until one request is parked on pod a
            task = asyncio.ensure_future(get(session, HOST))
            await asyncio.wait({task, arrived}, return_when=asyncio.FIRST_COMPLETED)
            if arrived.done():
                held = task
            else:
                assert task.result()[:2] == (200, "b")
        act.set_revision(endpoints(A, [pb], Mode.SERVE))
        before = pa.requests
        for _ in range(30):
            assert (await get(session, HOST))[:2] == (200, "b")
        assert pa.requests == before
        pa.gate.set()
        assert (await held)[:2] == (200, "a")


async def test_connection_refused_pod_is_retried_on_another_and_reprobed(stack, pods):
    act, _, session = stack
    p1, p2 = await pods("1"), await pods("2")
    first, second = sorted([p1, p2], key=lambda p: p.address)
    act.set_revision(endpoints(A, [p1, p2], cc=1))  # CC 1: first available, lowest port first
    act.set_routes([HostRoute(HOST, ((A, 100),))])
    async with asyncio.timeout(TIMEOUT_S):
        await act.wait_healthy(A, 2)
        await first.stop()  # connections to it are now refused
        for _ in range(5):
            assert (await get(session, HOST))[:2] == (200, second.name)
    assert act.healthy_pods(A) == {second.address}
    assert act.stats().revisions[A].in_flight == 0


async def test_reprobe_takes_a_pod_out_until_its_probe_passes_again(stack, pods):
    act, _, session = stack
    pod = await pods("a")
    act.set_revision(endpoints(A, [pod]))
    act.set_routes([HostRoute(HOST, ((A, 100),))])
    async with asyncio.timeout(TIMEOUT_S):
        await act.wait_healthy(A)
        act.reprobe(B, pod.address)  # a revision the activator does not know
        act.reprobe(A, PodAddress("127.0.0.1", 1))  # a pod the revision does not list
        assert act.healthy_pods(A) == {pod.address}
        pod.ready = False
        act.reprobe(A, pod.address)
        assert act.healthy_pods(A) == frozenset()  # out before reprobe returns
        request = asyncio.ensure_future(get(session, HOST))
        while act.stats().revisions[A].waiting == 0:
            await asyncio.sleep(0.01)  # polling for the park, bounded by the timeout above
        probes = act.stats().probes
        while act.stats().probes < probes + 2:
            await asyncio.sleep(0.01)  # two more failing probe rounds, bounded likewise
        assert not request.done() and pod.requests == 0
        pod.ready = True
        status, body, _ = await request
    assert (status, body) == (200, "a")
    assert act.healthy_pods(A) == {pod.address}


async def test_held_request_gets_503_with_reason_at_the_revision_timeout_or_removal(stack):
    act, _, session = stack
    other = RevisionKey("default", "other-00001")
    act.set_revision(endpoints(A, [], timeout_s=0.2))
    act.set_revision(endpoints(other, [], timeout_s=30.0))
    act.set_routes([HostRoute(HOST, ((A, 100),)), HostRoute("other.example.com", ((other, 100),))])
    async with asyncio.timeout(TIMEOUT_S):
        status, body, _ = await get(session, HOST)
        assert (status, body) == (503, "timed out waiting for capacity for revision "
                                        "default/hello-00001\n")
        held = asyncio.ensure_future(get(session, "other.example.com"))
        while act.stats().revisions[other].waiting == 0:
            await asyncio.sleep(0.01)  # polling for the park, bounded by the timeout above
        act.remove_revision(other)
        status, body, _ = await held
        assert (status, body) == (503, "revision removed while waiting for capacity for "
                                        "revision default/other-00001\n")


@pytest.mark.parametrize("kwargs, message", [
    pytest.param(dict(probe_period_s=0), "probe_period_s: 0 must be > 0", id="probe-period"),
    pytest.param(dict(queue_depth=-1), "queue_depth: -1 must be >= 0", id="queue-depth"),
    pytest.param(dict(report_period_s=-1.0, shutdown_timeout_s=-1.0),
                 "report_period_s.*shutdown_timeout_s", id="every-problem-listed"),
])
def test_bad_config_is_rejected_with_every_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ActivatorConfig(**kwargs)
