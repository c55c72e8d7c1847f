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
