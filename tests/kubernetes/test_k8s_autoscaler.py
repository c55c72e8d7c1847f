"""`surge autoscaler` against the in-memory API server on 127.0.0.1: ready endpoints of a
revision's private EndpointSlices are scraped (stand-in queue-proxy stats servers) and
the Deployment's scale subresource is patched to the KPA's count; the mode is published
on the private Service; a bad config-autoscaler gets a Warning Event and the old one stays;
pushed activator stats reach the Multiscaler through the stat server; a revision the
controller marks reserve once its Route moves on goes to zero despite its min-scale."""

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
from k8s_world import children_of, seed
from support.http import serving
from support.stack import free_port

from dataplane import MonotonicClock, RevisionKey, Stat, encode_wire_stats
from dataplane.stat import PROTOBUF_CONTENT_TYPE
from serving.kubernetes import make_private_service
from serving.kubernetes.autoscaler_main import KubernetesAutoscaler
from serving.kubernetes.client import load_api
from serving.kubernetes.controller import Controller
from serving.kubernetes.endpoints import MODE_ANNOTATION

KSVC = "serving.knative.dev/v1"
REV = "helloworld-python-00001"
KEY = RevisionKey("default", REV)



@contextlib.asynccontextmanager
async def stats_pod(concurrency: float):
    """A stand-in queue-proxy stats endpoint on 127.0.0.1 serving one protobuf Stat."""
    async def metrics(request: web.Request) -> web.Response:
        stat = Stat(pod_name="pod", average_concurrent_requests=concurrency)
        return web.Response(body=stat.to_protobuf(), content_type=PROTOBUF_CONTENT_TYPE)
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with serving(app, shutdown_timeout=0.1) as port:
        yield port


def endpoint_slice(name: str, stats_port: int, *, ready: bool = True) -> dict:
    """A slice of the private Service with one loopback endpoint (its own stats port)."""
    return {"metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": f"{REV}-private"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 1, "protocol": "TCP"},
                      {"name": "http-autometric", "port": stats_port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready},
                           "targetRef": {"kind": "Pod", "name": name}}]}


async def seed_revision(fake, annotations: dict[str, str], replicas: int) -> None:
    _, _, _, rev = children_of("basic/service.yaml")
    rev["metadata"]["annotations"] = annotations
    rev = await fake.put(KSVC, "revisions", rev)
    await fake.put("v1", "services", make_private_service(rev))
    await fake.put("apps/v1", "deployments", {
        "metadata": {"name": f"{REV}-deployment", "namespace": "default"},
        "spec": {"replicas": replicas}})


@contextlib.asynccontextmanager
async def running_autoscaler(fake, tmp_path):
    api = await load_api(str(fake.kubeconfig(tmp_path)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with aiohttp.ClientSession() as session:
        autoscaler = KubernetesAutoscaler(api, session, clock=MonotonicClock(),
                                          tick_interval_s=0.2)
        task = asyncio.create_task(autoscaler.run(sock=sock, metrics_port=0))
        try:
            yield autoscaler
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await api.close()
            sock.close()


@contextlib.asynccontextmanager
async def running_controller(fake, tmp_path):
    api = await load_api(str(fake.kubeconfig(tmp_path)))
    task = asyncio.create_task(Controller(api, clock=MonotonicClock(), workers=2).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


async def deployment_ready(fake, name: str) -> None:
    """Play the kubelet: the Deployment reports its one replica ready."""
    dep = copy.deepcopy(await fake.wait_for(lambda: fake.find("deployments", "default", name)))
    dep["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    await fake.modify("apps/v1", "deployments", dep)


def routing_state(fake, revision: str) -> str | None:
    rev = fake.find("revisions", "default", revision) or {}
    return (rev.get("metadata", {}).get("labels") or {}).get("serving.knative.dev/routingState")


async def eventually(predicate, timeout_s: float = 10.0) -> None:
    """Until `predicate()` holds (for state outside the API server, which has no event)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


def replicas(fake) -> int | None:
    dep = fake.find("deployments", "default", f"{REV}-deployment")
    return dep["spec"]["replicas"] if dep else None


def mode(fake) -> str | None:
    svc = fake.find("services/v1", "default", f"{REV}-private")
    return ((svc or {}).get("metadata", {}).get("annotations") or {}).get(MODE_ANNOTATION)


async def test_ready_endpoints_are_scraped_and_the_deployment_scaled_to_the_kpa_count(
        fake, tmp_path):
    # Target 1 per pod at 100% utilization: two pods reporting 3 each -> 6 pods.
    anns = {"autoscaling.knative.dev/target": "1",
            "autoscaling.knative.dev/target-utilization-percentage": "100"}
    async with asyncio.timeout(20):
        async with stats_pod(3.0) as port_a, stats_pod(3.0) as port_b:
            await seed_revision(fake, anns, replicas=2)
            await fake.put("discovery.k8s.io/v1", "endpointslices", endpoint_slice("a", port_a))
            await fake.put("discovery.k8s.io/v1", "endpointslices", endpoint_slice("b", port_b))
            # A not-ready endpoint is neither scraped nor counted.
            await fake.put("discovery.k8s.io/v1", "endpointslices",
                           endpoint_slice("c", 1, ready=False))
            async with running_autoscaler(fake, tmp_path) as autoscaler:
                await fake.wait_for(lambda: replicas(fake) == 6)
                assert [p.address.stats_port for p in autoscaler.scaler.pods(KEY)] \
                    == sorted([port_a, port_b])
                # TBC 211 with 6 pods of capacity 1 leaves no spare: the activator stays in.
                await fake.wait_for(lambda: mode(fake) == "Proxy")
                # Prometheus sees the decision under Knative's name on the metrics port.
                async with aiohttp.ClientSession() as http, http.get(
                        f"http://127.0.0.1:{autoscaler.metrics_server.port}/metrics") as resp:
                    text = await resp.text()
                assert resp.status == 200
                assert re.search(r'^autoscaler_desired_pods\{[^}]*revision_name="'
                                 + REV + r'"[^}]*\} 6\.0$', text, re.M), text
    scale_patches = [w for w in fake.writes if w[1].endswith("/scale")]
    assert scale_patches == [("PATCH", f"/apis/apps/v1/namespaces/default/deployments/"
                                       f"{REV}-deployment/scale")]


async def test_restart_takes_over_the_deployment_replicas_without_patching(fake, tmp_path):
    anns = {"autoscaling.knative.dev/target": "1",
            "autoscaling.knative.dev/target-utilization-percentage": "100"}
    async with asyncio.timeout(20):
        async with stats_pod(2.0) as port:
            await seed_revision(fake, anns, replicas=2)
            await fake.put("discovery.k8s.io/v1", "endpointslices", endpoint_slice("a", port))
            async with running_autoscaler(fake, tmp_path) as autoscaler:
                await fake.wait_for(lambda: mode(fake) == "Proxy")
                await eventually(
                    lambda: autoscaler.autoscaling.multiscaler.decision(KEY) is not None)
                assert autoscaler.autoscaling.replicas(KEY) == 2
    assert not [w for w in fake.writes if w[1].endswith("/scale")]


async def test_bad_config_autoscaler_gets_an_event_and_the_old_one_stays(fake, tmp_path):
    def config_map(data):
        return {"metadata": {"name": "config-autoscaler", "namespace": "knative-serving"},
                "data": data}
    async with asyncio.timeout(20):
        await fake.put("v1", "configmaps", config_map({"stable-window": "90s"}))
        async with running_autoscaler(fake, tmp_path) as autoscaler:
            await eventually(lambda: autoscaler.config.stable_window == 90.0)
            cm = copy.deepcopy(fake.find("configmaps", "knative-serving", "config-autoscaler"))
            cm["data"] = {"stable-window": "2s"}
            await fake.modify("v1", "configmaps", cm)
            event = await fake.wait_for(lambda: next(iter(fake.all("events")), None))
            assert autoscaler.config.stable_window == 90.0
            cm = copy.deepcopy(cm)
            cm["data"] = {"stable-window": "120s"}
            await fake.modify("v1", "configmaps", cm)
            await eventually(lambda: autoscaler.config.stable_window == 120.0)
    assert event["type"] == "Warning"
    assert event["reason"] == "InvalidConfig"
    assert event["involvedObject"]["name"] == "config-autoscaler"
    assert "stable-window: '2s' must be between 6s and 1h" in event["message"]
    assert len(fake.all("events")) == 1


async def test_pushed_activator_stats_reach_the_multiscaler(fake, tmp_path):
    async with asyncio.timeout(20):
        await seed_revision(fake, {}, replicas=0)
        async with running_autoscaler(fake, tmp_path) as autoscaler:
            await fake.wait_for(lambda: mode(fake) == "Proxy")
            port = autoscaler.stat_server.port
            batch = encode_wire_stats([(KEY, Stat(pod_name="activator",
                                                  average_concurrent_requests=1.0))])
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
                    await ws.send_bytes(batch)
                    # A stat for a revision at zero is the cold-start poke: 1 pod wanted.
                    await fake.wait_for(lambda: replicas(fake) == 1)
            assert autoscaler.stat_server.stats().stats_ingested == 1


@pytest.mark.integration
async def test_surge_autoscaler_command_publishes_the_mode_and_stops_on_sigterm(fake, tmp_path):
    await seed_revision(fake, {}, replicas=0)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "serving.cli", "autoscaler", "--kubeconfig",
        str(fake.kubeconfig(tmp_path)), "--stats-port", "0", "--metrics-port",
        str(metrics_port := free_port()), stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            await fake.wait_for(lambda: mode(fake) == "Proxy", timeout_s=25)
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
            proc.send_signal(signal.SIGTERM)
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.integration
async def test_revision_that_lost_its_traffic_goes_to_zero_despite_min_scale(fake, tmp_path):
    # The controller labels hello-00001 reserve once the Route moves to hello-00002;
    # the autoscaler then ignores its min-scale 1 and scales it to zero (reference 1.4).
    # The PA must be Active for a whole stable window before it may go to zero: the
    # shortest window Knative accepts (6s) bounds this test's length.
    service = seed("basic/service.yaml")
    service["spec"]["template"].setdefault("metadata", {})["annotations"] = {
        "autoscaling.knative.dev/min-scale": "1"}
    await fake.put("v1", "configmaps", {
        "metadata": {"name": "config-autoscaler", "namespace": "knative-serving"},
        "data": {"scale-to-zero-grace-period": "100ms", "stable-window": "6s"}})
    v2 = "helloworld-python-00002"
    async with asyncio.timeout(30):
        async with stats_pod(0.0) as port, running_controller(fake, tmp_path), \
                running_autoscaler(fake, tmp_path) as autoscaler:
            await fake.put(KSVC, "services", service)
            await fake.put("discovery.k8s.io/v1", "endpointslices", endpoint_slice("a", port))
            await deployment_ready(fake, f"{REV}-deployment")
            await fake.wait_for(lambda: routing_state(fake, REV) == "active")
            # Idle but active: min-scale holds it at one pod through the KPA's decisions.
            await eventually(lambda: autoscaler.autoscaling.multiscaler.decision(KEY))
            assert replicas(fake) == 1
            svc = copy.deepcopy(fake.find("services", "default", "helloworld-python"))
            svc["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
                {"name": "TARGET", "value": "v2"})
            svc["metadata"]["generation"] += 1
            await fake.modify(KSVC, "services", svc)
            await deployment_ready(fake, f"{v2}-deployment")
            await fake.wait_for(lambda: routing_state(fake, REV) == "reserve"
                                and routing_state(fake, v2) == "active")
            await fake.wait_for(lambda: replicas(fake) == 0, timeout_s=20)
    assert fake.find("deployments", "default", f"{v2}-deployment")["spec"]["replicas"] == 1
