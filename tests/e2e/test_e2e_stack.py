"""The local stack end to end: `surge up` as a real process, driven by `surge` and HTTP.

Each test runs its own stack on a free port with its own state directory, shortens the
autoscaler's windows through a config-autoscaler ConfigMap where time matters, and stops
everything by PID at the end (the fixture also kills what a failing test left behind).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest
import pytest_asyncio

from e2e_stack import (
    Stack, config_autoscaler, get, pids_of, run_load, service_yaml,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ANN = "autoscaling.knative.dev/"


@pytest_asyncio.fixture
async def stack(tmp_path):
    s = Stack(tmp_path / "state")
    await s.start()
    try:
        yield s
    finally:
        if s.proc is not None:
            pid = s.proc.pid
            assert await s.stop() == 0, "\n".join(s.lines)
            assert not (s.state_dir / "admin.json").exists()
            # Nothing of the stack may outlive it.
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def _wait_pods(stack: Stack, session: aiohttp.ClientSession, predicate, timeout_s: float,
                     revision: str | None = None) -> list[dict]:
    """Poll the pods (every 0.25 s: the stack has no push API) until `predicate` holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate(pods := await stack.pods(session, revision)):
            await asyncio.sleep(0.25)
    return pods


async def test_first_request_to_a_service_at_zero_pods_gets_200(stack, session):
    await stack.apply(config_autoscaler(allow_zero_initial_scale="true") + "---\n" +
                      service_yaml("cold", annotations={ANN + "initial-scale": "0"}))
    assert await stack.pods(session) == []

    async with asyncio.timeout(30):
        status, body = await get(session, stack, "cold")

    assert (status, body["revision"]) == (200, "cold-00001")
    pods = await stack.pods(session)
    assert [p["revision"] for p in pods] == ["cold-00001"]


CANARY_TRAFFIC = """\
traffic:
  - revisionName: canary-v1
    percent: 80
    tag: v1
  - revisionName: canary-v2
    percent: 20
    tag: v2
"""


async def test_canary_80_20_split_and_tags_reach_their_revision(stack, session):
    await stack.apply(service_yaml("canary", revision_name="canary-v1"))
    # v2 is routed only once ready: apply returns when the split is in force.
    await stack.apply(service_yaml("canary", target="v2", revision_name="canary-v2",
                                   traffic=CANARY_TRAFFIC))

    load = await run_load(session, stack, "canary", clients=20, requests=2000)

    assert load.statuses == {200: 2000}
    share = load.revisions["canary-v1"] / 2000
    assert 0.76 <= share <= 0.84, load.revisions
    assert set(load.revisions) == {"canary-v1", "canary-v2"}
    for tag, revision in (("v1", "canary-v1"), ("v2", "canary-v2")):
        by_host = [await get(session, stack, "canary", tag=tag) for _ in range(20)]
        assert {(s, b["revision"]) for s, b in by_host} == {(200, revision)}, tag
        by_header = [await get(session, stack, "canary", headers={"Knative-Serving-Tag": tag})
                     for _ in range(20)]
        assert {(s, b["revision"]) for s, b in by_header} == {(200, revision)}, tag


async def test_container_concurrency_1_never_gives_the_app_two_requests(stack, session):
    await stack.apply(service_yaml("one", container_concurrency=1,
                                   annotations={ANN + "max-scale": "1"}))

    load = await run_load(session, stack, "one", clients=20, requests=100,
                          path="/?sleep=0.02")

    assert load.statuses == {200: 100}
    status, body = await get(session, stack, "one", "/max")
    assert (status, body["max_in_flight"]) == (200, 1)
