"""The activator's Prometheus metrics: names, labels, buckets, code classes, `unknown`.

Unit tables drive the collector from real recorders (`RevisionRequests`, and the
`ConcurrencyReporter` stepped on a fake clock); one integration test puts a real
Activator on loopback in front of a stand-in pod and reads what its collector renders
for requests it served, parked, refused, and never routed.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from support.http import serve_loopback
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from activator import (
    LEGACY_COUNTERS,
    Activator,
    ActivatorConfig,
    ActivatorMetrics,
    HostRoute,
    RevisionMetrics,
    RevisionRequests,
)
from activator.metrics import LEGACY_LATENCY_BUCKETS_MS
from activator.reporter import ConcurrencyReporter
from dataplane import Mode, MonotonicClock, PodAddress, RevisionEndpoints, RevisionKey, Stat

KEY = RevisionKey("default", "hello-00001")
NAMES = {KEY: ("hello", "hello")}


class Source:
    """A MetricsSource over fixed per-revision figures."""

    def __init__(self, revisions: list[RevisionMetrics]) -> None:
        self.revisions = revisions

    def revision_metrics(self) -> list[RevisionMetrics]:
        return self.revisions


class Connection:
    """A StatsConnection with settable state."""

    def __init__(self, reachable: bool, errors: int) -> None:
        self.reachable = reachable
        self.errors = errors


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def render(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def scrape(source, **kwargs) -> Samples:
    registry = CollectorRegistry()
    ActivatorMetrics(source, registry, **kwargs)
    return render(registry)


def legacy(ns="default", service="hello", configuration="hello", revision="hello-00001",
           pod="activator", **extra) -> tuple[tuple[str, str], ...]:
    labels = dict(namespace_name=ns, service_name=service, configuration_name=configuration,
                  revision_name=revision, pod_name=pod, container_name="activator", **extra)
    return tuple(sorted(labels.items()))


def otel(ns="default", service="hello", configuration="hello",
         revision="hello-00001") -> tuple[tuple[str, str], ...]:
    labels = dict(k8s_namespace_name=ns, kn_service_name=service,
                  kn_configuration_name=configuration, kn_revision_name=revision)
    return tuple(sorted(labels.items()))


def short(ns="default", revision="hello-00001") -> tuple[tuple[str, str], ...]:
    return (("k8s_namespace_name", ns), ("kn_revision_name", revision))


def code(status: str, cls: str, **extra) -> tuple[tuple[str, str], ...]:
    return legacy(response_code=status, response_code_class=cls, **extra)


# -- requests: counts, classes, buckets ---------------------------------------------------

# (requests as (status, seconds from arrival to end), samples that must be rendered)
REQUEST_CASES = [
    pytest.param([(200, 0.030)], {
        ("activator_request_count", code("200", "2xx")): 1,
        ("activator_request_latencies_bucket", code("200", "2xx", le="20.0")): 0,
        ("activator_request_latencies_bucket", code("200", "2xx", le="40.0")): 1,
        ("activator_request_latencies_bucket", code("200", "2xx", le="+Inf")): 1,
        ("activator_request_latencies_count", code("200", "2xx")): 1,
        ("activator_request_latencies_sum", code("200", "2xx")): 30.0,
    }, id="one-200-in-30ms-from-the-40ms-bucket-up"),
    pytest.param([(200, 0.040), (200, 0.0401)], {
        ("activator_request_latencies_bucket", code("200", "2xx", le="40.0")): 1,
        ("activator_request_latencies_bucket", code("200", "2xx", le="60.0")): 2,
    }, id="a-latency-on-a-boundary-is-in-that-bucket"),
    pytest.param([(200, 0.001), (201, 0.001), (404, 0.001), (503, 0.001), (503, 0.001),
                  (502, 0.001)], {
        ("activator_request_count", code("200", "2xx")): 1,
        ("activator_request_count", code("201", "2xx")): 1,
        ("activator_request_count", code("404", "4xx")): 1,
        ("activator_request_count", code("503", "5xx")): 2,
        ("activator_request_count", code("502", "5xx")): 1,
    }, id="one-series-per-code-with-its-class"),
    pytest.param([(504, 200.0)], {
        ("activator_request_latencies_bucket", code("504", "5xx", le="100000.0")): 0,
        ("activator_request_latencies_bucket", code("504", "5xx", le="+Inf")): 1,
        ("activator_request_latencies_sum", code("504", "5xx")): 200_000.0,
    }, id="beyond-the-last-bucket-only-inf"),
]


@pytest.mark.parametrize(("requests", "want"), REQUEST_CASES)
def test_requests_render_as_legacy_count_and_latency_histogram(requests, want):
    recorder = RevisionRequests()
    for status, latency_s in requests:
        recorder.record(status, latency_s)
    got = scrape(Source([RevisionMetrics(KEY, 0.0, 0, 0, recorder.snapshot())]),
                 names=NAMES.get)
    assert {k: got.get(k) for k in want} == pytest.approx(want)
    buckets = [k for k in got if k[0] == "activator_request_latencies_bucket"]
    statuses = {status for status, _ in requests}
    assert len(buckets) == len(statuses) * (len(LEGACY_LATENCY_BUCKETS_MS) + 1)


def test_the_legacy_counter_keeps_its_bare_name():
    recorder = RevisionRequests()
    recorder.record(200, 0.01)
    registry = CollectorRegistry()
    ActivatorMetrics(Source([RevisionMetrics(KEY, 0.0, 0, 0, recorder.snapshot())]), registry)
    text = generate_latest(registry).decode()
    assert LEGACY_COUNTERS == ("activator_request_count",)
    assert "\nactivator_request_count{" in text
    assert "activator_request_count_total{" not in text


# -- labels: real names, unknown, the names cache ------------------------------------------

OTHER = RevisionKey("", "orphan-00001")

# (revision key, names resolver, legacy labels, OTel labels)
LABEL_CASES = [
    pytest.param(KEY, NAMES.get, legacy(), otel(), id="names-from-the-resolver"),
    pytest.param(KEY, None, legacy(service="unknown", configuration="unknown"),
                 otel(service="", configuration=""), id="no-resolver-reads-unknown"),
    pytest.param(KEY, lambda key: ("", "hello-config"),
                 legacy(service="unknown", configuration="hello-config"),
                 otel(service="", configuration="hello-config"),
                 id="a-configuration-without-a-service"),
    pytest.param(OTHER, lambda key: ("", ""),
                 legacy(ns="unknown", service="unknown", configuration="unknown",
                        revision="orphan-00001"),
                 otel(ns="", service="", configuration="", revision="orphan-00001"),
                 id="empty-namespace-reads-unknown-in-legacy-only"),
]


@pytest.mark.parametrize(("key", "names", "legacy_labels", "otel_labels"), LABEL_CASES)
def test_every_revision_series_carries_the_resource_labels(key, names, legacy_labels,
                                                            otel_labels):
    got = scrape(Source([RevisionMetrics(key, 2.5, 3, 4)]), names=names)
    shorter = short(ns=key.namespace, revision=key.name)
    assert got == {
        ("activator_request_concurrency", legacy_labels): 2.5,
        ("kn_revision_request_concurrency", otel_labels): 2.5,
        ("kn_revision_request_queued", shorter): 3,
        ("kn_revision_request_active", shorter): 4,
    }


def test_a_revision_the_resolver_forgets_keeps_its_names_while_listed():
    known = dict(NAMES)
    source = Source([RevisionMetrics(KEY, 1.0, 0, 0)])
    registry = CollectorRegistry()
    ActivatorMetrics(source, registry, names=lambda key: known.get(key, ("", "")))
    assert ("activator_request_concurrency", legacy()) in render(registry)
    known.clear()  # e.g. the Revision left the informer's cache before the activator
    assert ("activator_request_concurrency", legacy()) in render(registry)
    source.revisions = []  # gone from the activator: gone from the cache too
    assert render(registry) == {}
    source.revisions = [RevisionMetrics(KEY, 1.0, 0, 0)]
    assert ("activator_request_concurrency",
            legacy(service="unknown", configuration="unknown")) in render(registry)


def test_pod_name_labels_the_legacy_series():
    got = scrape(Source([RevisionMetrics(KEY, 0.0, 0, 0)]), names=NAMES.get,
                 pod_name="activator-7d9f-abcde")
    assert ("activator_request_concurrency", legacy(pod="activator-7d9f-abcde")) in got


# -- the stats connection --------------------------------------------------------------------

CONNECTION_CASES = [
    pytest.param(None, {}, id="in-process-no-connection-families"),
    pytest.param(Connection(True, 0), {
        ("kn_activator_stats_conn_reachable", (("peer", "autoscaler"),)): 1,
        ("kn_activator_stats_conn_errors_total", (("peer", "autoscaler"),)): 0,
    }, id="connected"),
    pytest.param(Connection(False, 3), {
        ("kn_activator_stats_conn_reachable", (("peer", "autoscaler"),)): 0,
        ("kn_activator_stats_conn_errors_total", (("peer", "autoscaler"),)): 3,
    }, id="down-after-three-failures"),
]


@pytest.mark.parametrize(("connection", "want"), CONNECTION_CASES)
def test_stats_connection_reachable_gauge_and_errors_counter(connection, want):
    assert scrape(Source([]), connection=connection) == want


# -- the concurrency gauge over time ---------------------------------------------------------

class NullSink:
    def send(self, key: RevisionKey, stat: Stat) -> None:
        pass


# Steps: (seconds from the start, op, gauge wanted after the step); op: "in"/"out" a
# request, or "report" (the reporter's 1 s tick). Reference 3.4's worked example.
CONCURRENCY_CASES = [
    pytest.param([
        (0.2, "in", 0.0),  # the poke goes to the autoscaler, not to the gauge
        (1.0, "report", 0.0),  # 0.8 s at 1 over 0.8 s = 1.0, minus the poke
        (1.7, "out", 0.0),
        (2.0, "report", 0.7),
        (3.0, "report", 0.0),  # idle: the entry goes, the gauge reads 0
    ], id="worked-example-poke-subtracted"),
    pytest.param([
        (0.0, "in", 0.0), (0.0, "in", 0.0), (0.0, "in", 0.0),
        (1.0, "report", 2.0),
        (2.0, "report", 3.0),
    ], id="three-held-requests"),
]


@pytest.mark.parametrize("steps", CONCURRENCY_CASES)
async def test_concurrency_gauge_is_the_last_adjusted_report(clock, steps):
    reporter = ConcurrencyReporter(NullSink(), clock)
    start = clock.now()
    for t, op, want in steps:
        await clock.advance(start + t - clock.now())
        if op == "in":
            reporter.request_in(KEY, clock.now())
        elif op == "out":
            reporter.request_out(KEY, clock.now())
        else:
            reporter.report(clock.now())
        got = scrape(Source([RevisionMetrics(KEY, reporter.concurrency(KEY), 0, 0)]),
                     names=NAMES.get)
        assert got[("activator_request_concurrency", legacy())] == pytest.approx(want), t
        assert got[("kn_revision_request_concurrency", otel())] == pytest.approx(want), t


# -- a real activator on loopback ------------------------------------------------------------

HOST = "hello.default.example.com"


class Pod:
    """A queue-proxy stand-in: answers the probe; `/fail` answers 500; `gate` holds requests."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("K-Network-Probe") == "queue":
            return web.Response(text="queue")
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        return web.Response(status=500 if request.path == "/fail" else 200, text="ok")

    async def start(self) -> PodAddress:
        self._runner, port = await serve_loopback(self._handle)
        return PodAddress("127.0.0.1", port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.mark.integration
async def test_activator_counts_routed_requests_and_its_queue():
    pod = Pod()
    address = await pod.start()
    act = Activator(MonotonicClock(), NullSink(), config=ActivatorConfig(shutdown_timeout_s=2))
    registry = CollectorRegistry()
    act.metrics_collector(registry, names=NAMES.get)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await act.start(sock=sock)
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            async def get(path="/", host=HOST, **headers) -> int:
                async with session.get(f"http://127.0.0.1:{act.port}{path}",
                                       headers={"Host": host, **headers}) as resp:
                    await resp.read()
                    return resp.status

            act.set_revision(RevisionEndpoints(KEY, (address,), Mode.PROXY, 1, 10.0))
            act.set_routes([HostRoute(HOST, ((KEY, 100),))])
            await act.wait_healthy(KEY)
            assert [await get(), await get("/fail"), await get(host="nope.example.com"),
                    await get(**{"User-Agent": "kube-probe/1.31"}),
                    await get(**{"K-Network-Probe": "activator"})] == [200, 500, 404, 200, 200]

            # CC 1: one request holds the pod, the next parks in the throttler.
            pod.gate = asyncio.Event()
            first = asyncio.ensure_future(get())
            await pod.arrived.wait()
            second = asyncio.ensure_future(get())
            while act.revision_stats(KEY).waiting == 0:
                await asyncio.sleep(0.01)  # the throttler has no event for "parked"
            held = render(registry)
            pod.gate.set()
            assert [await first, await second] == [200, 200]
            done = render(registry)
            act.remove_revision(KEY)
            gone = render(registry)
    finally:
        if pod.gate is not None:
            pod.gate.set()
        await act.aclose()
        await pod.stop()
    assert (held[("kn_revision_request_queued", short())],
            held[("kn_revision_request_active", short())]) == (1, 1)
    assert (done[("kn_revision_request_queued", short())],
            done[("kn_revision_request_active", short())]) == (0, 0)
    counts = {k[1]: v for k, v in done.items() if k[0] == "activator_request_count"}
    # The 404 (no revision), the kubelet probe and the activator probe are not counted.
    assert counts == {code("200", "2xx"): 3, code("500", "5xx"): 1}
    assert done[("activator_request_latencies_count", code("200", "2xx"))] == 3
    assert gone == {}  # a removed revision's series go with it
