"""`surge up --platform docker`: zero to ready on the first request, back to zero, and no
container left behind after `surge delete` or after the stack stops."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
import pytest

from dataplane.clock import MonotonicClock
from docker_helpers import ROOT, DockerStack, config_autoscaler, service_yaml, stack_containers, wait_for
from serving.platform.docker import DockerPlatform
from serving.platform.docker_pod import LABEL_PREFIX, load_stack_id

ANN = "autoscaling.knative.dev/"
HOST = "zero.default.example.com"


@pytest.fixture
async def stack(images, tmp_path):
    """A running `surge up --platform docker`, stopped (by PID) after the test."""
    s = DockerStack(tmp_path / "state")
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def _get(session: aiohttp.ClientSession, stack: DockerStack) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{stack.port}/", headers={"Host": HOST}) as resp:
        return resp.status, await resp.text()


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_service_goes_from_zero_to_ready_and_back_and_leaves_no_container(stack, engine):
    rc, _, err = await stack.surge("apply", "-f", "-", stdin=(
        config_autoscaler(allow_zero_initial_scale="true", stable_window="6s",
                          scale_to_zero_grace_period="2s")
        + "---\n" + service_yaml("zero", annotations={ANN + "initial-scale": "0"})))
    assert rc == 0, err
    assert await stack_containers(engine, stack.state_dir) == []

    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(60):
            assert await _get(session, stack) == (200, "Hello docker!\n")
        running = await stack_containers(engine, stack.state_dir)
        roles = sorted(c["Labels"][LABEL_PREFIX + "role"] for c in running)
        assert roles == ["app", "queue-proxy"]
        assert {c["Labels"][LABEL_PREFIX + "revision"] for c in running} == {"zero-00001"}

        # No traffic: after the 6 s window and the grace period the pod is drained away.
        async def gone() -> bool:
            return await stack_containers(engine, stack.state_dir) == []
        await wait_for(gone, 60.0, 0.5)

        async with asyncio.timeout(60):  # and back again: a second cold start
            assert await _get(session, stack) == (200, "Hello docker!\n")
    assert len(await stack_containers(engine, stack.state_dir)) == 2
    rc, _, err = await stack.surge("delete", "service", "zero")
    assert rc == 0, err
    assert await stack_containers(engine, stack.state_dir) == []


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_stopping_the_stack_removes_its_pods(stack, engine):
    rc, _, err = await stack.surge("apply", "-f", "-", stdin=service_yaml("zero"))
    assert rc == 0, err
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        assert await _get(session, stack) == (200, "Hello docker!\n")
    assert len(await stack_containers(engine, stack.state_dir)) == 2
    assert await stack.stop() == 0
    assert await stack_containers(engine, stack.state_dir) == []
    assert any("pod zero-00001-" in line and "stopped" in line for line in stack.lines)


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_open_removes_this_stacks_leftovers_and_never_anothers(images, engine, tmp_path):
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    made = []
    try:
        for state_dir in (mine, theirs):
            labels = {LABEL_PREFIX + "stack": load_stack_id(state_dir), LABEL_PREFIX + "role": "app"}
            made.append(await engine.create(f"surge-test-{load_stack_id(state_dir)}", {
                "Image": "surge-queue-proxy:dev", "Labels": labels}))
        platform = await DockerPlatform.open(mine, MonotonicClock())
        await platform.aclose()
        assert await stack_containers(engine, mine) == []
        assert [c["Id"] for c in await stack_containers(engine, theirs)] == [made[1]]
    finally:
        for cid in made:
            await engine.remove(cid)


async def test_a_missing_engine_is_one_clear_line(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "serving.cli", "up", "--platform", "docker", "--port", "0",
        "--state-dir", str(tmp_path / "state"), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 1
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("surge: cannot start the stack: no Docker engine answers at unix://")
    assert "no-engine.sock" in lines[0] and "start dockerd" in lines[0]
