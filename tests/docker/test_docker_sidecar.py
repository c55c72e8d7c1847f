"""A queue-proxy container in front of an app container that joins its network namespace."""

from __future__ import annotations

import asyncio
import secrets
from types import MappingProxyType

import aiohttp
import pytest

from dataplane.stat import Stat
from dataplane.types import RevisionKey
from docker_helpers import HELD_APP, free_port, wait_for
from serving.platform import PodTemplate
from serving.platform.docker_pod import HostPorts, app_container_spec, queue_proxy_container_spec
from serving.platform.probe import probe_queue_proxy

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(300)]

KEY = RevisionKey("default", "held-00001")
CLIENTS = 3


@pytest.fixture
async def pair(images, engine):
    """A started sidecar (containerConcurrency 1) + held app; (host ports, control port)."""
    ports, control = HostPorts(free_port(), free_port(), free_port()), free_port()
    template = PodTemplate(command=("/opt/venv/bin/python", "-c", HELD_APP), image="surge-helloworld:dev",
                           env=MappingProxyType({}), container_concurrency=1, service="held",
                           configuration="held")
    labels = {"dev.surge.test": "sidecar"}
    pod, suffix = "held-00001-pair0", secrets.token_hex(3)
    qp_spec = queue_proxy_container_spec("surge-queue-proxy:dev", template, KEY, pod, ports,
                                         labels, drain_quiet_s=1.0)
    # The app's control port goes out through the pod's namespace like the sidecar's.
    qp_spec["ExposedPorts"]["8081/tcp"] = {}
    qp_spec["HostConfig"]["PortBindings"]["8081/tcp"] = [{"HostIp": "127.0.0.1",
                                                          "HostPort": str(control)}]
    ids = []
    try:
        ids.append(await engine.create(f"surge-test-{suffix}-queue-proxy", qp_spec))
        await engine.start(ids[0])
        ids.insert(0, await engine.create(f"surge-test-{suffix}-app",
                                          app_container_spec(template, KEY, ids[-1], labels)))
        await engine.start(ids[0])
        await wait_for(lambda: probe_queue_proxy("127.0.0.1", ports.serving, 5.0), 30.0, 0.05)
        yield ports, control
    finally:
        for cid in ids:  # the app first: it lives in the sidecar's namespace
            await engine.remove(cid)


async def _stat(session: aiohttp.ClientSession, port: int) -> Stat:
    async with session.get(f"http://127.0.0.1:{port}/metrics",
                           headers={"Accept": "application/protobuf"}) as resp:
        assert resp.status == 200
        return Stat.from_protobuf(await resp.read())


async def test_sidecar_enforces_container_concurrency_and_reports_its_stat(pair):
    ports, control = pair
    async with aiohttp.ClientSession() as session:
        calls = [asyncio.ensure_future(session.get(f"http://127.0.0.1:{ports.serving}/"))
                 for _ in range(CLIENTS)]
        try:
            # All three are in the sidecar once a whole reporting period averages ~3.
            async def all_held() -> Stat | None:
                stat = await _stat(session, ports.stats)
                return stat if stat.average_concurrent_requests >= CLIENTS - 0.1 else None
            stat = await wait_for(all_held, 30.0)
            assert stat.pod_name == "held-00001-pair0"
            async with session.get(f"http://127.0.0.1:{control}/state") as resp:
                assert await resp.json() == {"in_flight": 1, "peak": 1}
            async with session.get(f"http://127.0.0.1:{control}/release") as resp:
                assert resp.status == 200
            async with asyncio.timeout(30):
                responses = await asyncio.gather(*calls)
            assert [r.status for r in responses] == [200] * CLIENTS
            assert [await r.text() for r in responses] == ["done"] * CLIENTS
            async with session.get(f"http://127.0.0.1:{control}/state") as resp:
                assert await resp.json() == {"in_flight": 0, "peak": 1}
        finally:
            for call in calls:
                call.cancel()
            for call in calls:
                if call.done() and not call.cancelled() and call.exception() is None:
                    call.result().release()
