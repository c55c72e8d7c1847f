"""`surge activator` against the in-memory API server on 127.0.0.1: requests are routed by
Host from Route status to stand-in pods (loopback servers answering the activator's
probe); a request for a revision at zero is held until its EndpointSlice lists an
endpoint whose probe passes (a not-ready one will do, Knative's probe optimisation,
unless the revision has a startupProbe: then only a ready one); a pod the slice moves
from ready to not ready is reprobed; the stats it pushes over a websocket reach a
StatServer, and its metrics port shows the requests served and the stats connection;
the mode annotation switches a revision to serve mode."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import signal
import socket
import sys

import aiohttp
import pytest
from aiohttp import web
from k8s_world import children_of
from support.http import catch_all, serving
from support.stack import free_port

from activator import Activator, ActivatorConfig
from dataplane import Mode, MonotonicClock, RevisionKey
from serving.kubernetes import make_private_service
from serving.kubernetes.activator_main import KubernetesActivator, WebSocketStatSink
from serving.kubernetes.client import load_api
from serving.kubernetes.endpoints import MODE_ANNOTATION
from autoscaler import StatServer

KSVC = "serving.knative.dev/v1"
SLICES = "discovery.k8s.io/v1"



class Probes:
    """How a stand-in answers the activator's probe; `failed` is set on each 503 it gives."""

    def __init__(self) -> None:
        self.passing = True
        self.failed = asyncio.Event()


@contextlib.asynccontextmanager
async def stand_in_pod(name: str, probes: Probes | None = None):
    """A queue-proxy stand-in on 127.0.0.1: answers the activator's probe, names itself."""
    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("K-Network-Probe") == "queue":
            if probes is None or probes.passing:
                return web.Response(text="queue")
            probes.failed.set()
            return web.Response(status=503)
        return web.Response(text=f"{name} {request.host}")
    async with serving(catch_all(handle), shutdown_timeout=0.1) as port:
        yield port


def endpoint_slice(rev: str, port: int, *, ready: bool = True) -> dict:
    return {"metadata": {"name": f"{rev}-private-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": f"{rev}-private"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}]}


async def seed_route(fake, route: str, rev: str, **container) -> None:
    """A Revision (`container` fields added to its container), its private Service, and a
    Route whose status sends it 100%."""
    _, _, _, revision = children_of("basic/service.yaml")
    revision["metadata"]["name"] = rev
    revision["spec"]["containers"][0].update(container)
    revision = await fake.put(KSVC, "revisions", revision)
    await fake.put("v1", "services", make_private_service(revision))
    await fake.put(KSVC, "routes", {
        "metadata": {"name": route, "namespace": "default"},
        "status": {"url": f"http://{route}.default.example.com",
                   "traffic": [{"revisionName": rev, "percent": 100, "latestRevision": True},
                               {"revisionName": rev, "percent": 0, "tag": "current",
                                "url": f"http://current-{route}.default.example.com"}]}})


@contextlib.asynccontextmanager
async def running_activator(fake, tmp_path, stats_url: str):
    api = await load_api(str(fake.kubeconfig(tmp_path)))
    clock = MonotonicClock()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with aiohttp.ClientSession() as session:
        sink = WebSocketStatSink(stats_url, session, clock=clock)
        activator = Activator(clock, sink, config=ActivatorConfig(shutdown_timeout_s=1.0))
        kube = KubernetesActivator(api, activator, clock=clock, connection=sink)
        await activator.start(sock=sock)
        tasks = [asyncio.create_task(sink.run()),
                 asyncio.create_task(kube.run(host="127.0.0.1", metrics_port=0))]
        try:
            yield activator, sink, kube
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await activator.aclose()
            await api.close()


async def get(session, port: int, host: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as resp:
        return resp.status, await resp.text()


async def park(activator, client, host: str, key: RevisionKey) -> asyncio.Task:
    """Send a request for a revision at zero; return once the activator holds it."""
    # Polls, bounded by the caller's timeout: the activator has no event for either step.
    while host not in activator.stats().hosts:
        await asyncio.sleep(0.01)
    held = asyncio.create_task(get(client, activator.port, host))
    while activator.revision_stats(key).waiting == 0 and not held.done():
        await asyncio.sleep(0.01)
    assert not held.done(), held.result()
    return held


async def test_routes_by_host_and_holds_a_revision_at_zero_until_a_ready_endpoint(
        fake, tmp_path):
    cold = RevisionKey("default", "cold-00001")
    ingested = []
    cold_stat = asyncio.Event()

    def ingest(key, stat, now):
        ingested.append((key, stat))
        if key == cold:
            cold_stat.set()
    stat_server = StatServer(ingest, clock=MonotonicClock())
    stats_sock = socket.socket()
    stats_sock.bind(("127.0.0.1", 0))
    await stat_server.start(sock=stats_sock)
    try:
        async with asyncio.timeout(20), stand_in_pod("warm") as warm_port, \
                stand_in_pod("cold") as cold_port:
            await seed_route(fake, "hello", "hello-00001")
            await seed_route(fake, "cold", "cold-00001")
            await fake.put(SLICES, "endpointslices", endpoint_slice("hello-00001", warm_port))
            url = f"ws://127.0.0.1:{stat_server.port}"
            async with running_activator(fake, tmp_path, url) as (activator, sink, kube), \
                    aiohttp.ClientSession() as client:
                await activator.wait_healthy(RevisionKey("default", "hello-00001"))
                for host in ("hello.default.example.com", "hello.default.svc.cluster.local",
                             "current-hello.default.example.com",
                             "current-hello.default.svc.cluster.local",
                             "current-hello.default.svc", "current-hello.default"):
                    assert await get(client, activator.port, host) == (200, f"warm {host}")
                assert (await get(client, activator.port, "nope.example.com"))[0] == 404

                held = asyncio.create_task(get(client, activator.port, "cold.default.example.com"))
                try:
                    await cold_stat.wait()  # the cold-start poke, pushed over the websocket
                    assert not held.done()
                    await fake.put(SLICES, "endpointslices",
                                   endpoint_slice("cold-00001", cold_port))
                    assert await held == (200, "cold cold.default.example.com")
                finally:
                    held.cancel()
                assert sink.connects == 1
                # Prometheus sees the six served requests under Knative's legacy name,
                # labelled from the Revision's labels, and the connection as up.
                async with client.get(
                        f"http://127.0.0.1:{kube.metrics_server.port}/metrics") as resp:
                    assert resp.status == 200
                    metrics = await resp.text()
                assert re.search(r'^activator_request_count\{[^}]*response_code="200"[^}]*'
                                 r'revision_name="hello-00001",service_name="helloworld-python"'
                                 r'\} 6\.0$', metrics, re.M), metrics
                assert 'kn_activator_stats_conn_reachable{peer="autoscaler"} 1.0' in metrics
                # Titled like its samples, as OpenCensus did (no `_total`).
                assert "# TYPE activator_request_count counter" in metrics.splitlines()
    finally:
        await stat_server.close()
        stats_sock.close()
    poke = next(stat for key, stat in ingested if key == cold)
    assert poke.pod_name == "activator" and poke.average_concurrent_requests >= 1


async def test_mode_annotation_switches_the_revision_to_serve(fake, tmp_path):
    key = RevisionKey("default", "hello-00001")
    async with asyncio.timeout(20), stand_in_pod("warm") as port:
        await seed_route(fake, "hello", "hello-00001")
        await fake.put(SLICES, "endpointslices", endpoint_slice("hello-00001", port))
        # No autoscaler listening: the sink keeps reconnecting, routing is unaffected.
        async with running_activator(fake, tmp_path, "ws://127.0.0.1:1") as (activator, sink,
                                                                             kube):
            await activator.wait_healthy(key)
            assert activator.revision_stats(key).mode is Mode.PROXY
            svc = copy.deepcopy(fake.find("services/v1", "default", "hello-00001-private"))
            svc["metadata"]["annotations"] = {MODE_ANNOTATION: "Serve"}
            await fake.modify("v1", "services", svc)
            async with asyncio.timeout(5):
                while activator.revision_stats(key).mode is not Mode.SERVE:
                    await asyncio.sleep(0.02)
            async with aiohttp.ClientSession() as client:
                assert await get(client, activator.port, "hello.default.example.com") \
                    == (200, "warm hello.default.example.com")
                while sink.errors == 0:
                    await asyncio.sleep(0.01)  # the sink has no event for a failed attempt
                async with client.get(
                        f"http://127.0.0.1:{kube.metrics_server.port}/metrics") as resp:
                    metrics = await resp.text()
            assert 'kn_activator_stats_conn_reachable{peer="autoscaler"} 0.0' in metrics
            assert re.search(r'^kn_activator_stats_conn_errors_total\{peer="autoscaler"\} '
                             r'[1-9]\d*\.0$', metrics, re.M), metrics


async def test_a_not_ready_endpoint_serves_a_parked_request_once_its_probe_passes(
        fake, tmp_path):
    key = RevisionKey("default", "cold-00001")
    async with asyncio.timeout(20), stand_in_pod("cold") as port:
        await seed_route(fake, "cold", key.name)
        async with running_activator(fake, tmp_path, "ws://127.0.0.1:1") as (activator, _, _), \
                aiohttp.ClientSession() as client:
            held = await park(activator, client, "cold.default.example.com", key)
            try:
                # The kubelet has not said Ready (and never does here): the queue-proxy's
                # answer to the activator's own probe is enough.
                await fake.put(SLICES, "endpointslices",
                               endpoint_slice(key.name, port, ready=False))
                assert await held == (200, "cold cold.default.example.com")
            finally:
                held.cancel()


async def test_with_a_startup_probe_a_not_ready_endpoint_waits_for_ready(fake, tmp_path):
    slow, hello = RevisionKey("default", "slow-00001"), RevisionKey("default", "hello-00001")
    async with asyncio.timeout(20), stand_in_pod("slow") as slow_port, \
            stand_in_pod("warm") as warm_port:
        await seed_route(fake, "slow", slow.name,
                         startupProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1})
        await seed_route(fake, "hello", hello.name)
        async with running_activator(fake, tmp_path, "ws://127.0.0.1:1") as (activator, _, _), \
                aiohttp.ClientSession() as client:
            held = await park(activator, client, "slow.default.example.com", slow)
            try:
                await fake.put(SLICES, "endpointslices",
                               endpoint_slice(slow.name, slow_port, ready=False))
                # One watch delivers slices in order, and a pod listed earlier is probed
                # no later than one listed after it: once hello's pod is healthy, slow's
                # would be too had it been listed.
                await fake.put(SLICES, "endpointslices", endpoint_slice(hello.name, warm_port))
                await activator.wait_healthy(hello)
                assert activator.healthy_pods(slow) == frozenset()
                assert not held.done()
                await fake.modify(SLICES, "endpointslices", endpoint_slice(slow.name, slow_port))
                assert await held == (200, "slow slow.default.example.com")
            finally:
                held.cancel()


async def test_a_pod_that_stops_being_ready_is_reprobed(fake, tmp_path):
    key = RevisionKey("default", "hello-00001")
    probes = Probes()
    async with asyncio.timeout(20), stand_in_pod("warm", probes) as port:
        await seed_route(fake, "hello", key.name)
        await fake.put(SLICES, "endpointslices", endpoint_slice(key.name, port))
        async with running_activator(fake, tmp_path, "ws://127.0.0.1:1") as (activator, _, _), \
                aiohttp.ClientSession() as client:
            await activator.wait_healthy(key)
            probes.passing = False
            await fake.modify(SLICES, "endpointslices",
                              endpoint_slice(key.name, port, ready=False))
            # Only a reprobe sends a probe to a pod that already passed one; the pod was
            # out of rotation before it was sent.
            await probes.failed.wait()
            assert activator.healthy_pods(key) == frozenset()
            probes.passing = True
            await activator.wait_healthy(key)  # back once its probe passes, still not Ready
            assert await get(client, activator.port, "hello.default.example.com") \
                == (200, "warm hello.default.example.com")


@pytest.mark.integration
async def test_surge_activator_command_pushes_to_the_autoscaler_and_stops_on_sigterm(
        fake, tmp_path):
    stat_server = StatServer(lambda key, stat, now: None, clock=MonotonicClock())
    stats_sock = socket.socket()
    stats_sock.bind(("127.0.0.1", 0))
    await stat_server.start(sock=stats_sock)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "serving.cli", "activator", "--kubeconfig",
        str(fake.kubeconfig(tmp_path)), "--port", "0",
        "--autoscaler", f"ws://127.0.0.1:{stat_server.port}",
        "--metrics-port", str(metrics_port := free_port()), stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            while stat_server.stats().websockets_accepted == 0:
                await asyncio.sleep(0.05)  # the subprocess has no event to wait on
            async with aiohttp.ClientSession() as http:
                metrics = ""
                while 'kn_activator_stats_conn_reachable{peer="autoscaler"} 1.0' not in metrics:
                    await asyncio.sleep(0.05)  # polled: another process, no event to wait on
                    with contextlib.suppress(aiohttp.ClientConnectorError):  # not bound yet
                        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                            assert r.status == 200
                            metrics = await r.text()
            proc.send_signal(signal.SIGTERM)
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await stat_server.close()
        stats_sock.close()
