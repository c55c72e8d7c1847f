"""docker-compose.yml is valid and its stack answers the example request."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess

import aiohttp
import pytest

from docker_helpers import ROOT, free_port, wait_for
from serving.platform.docker_pod import LABEL_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.integration]

COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def _compose(project: str, *args: str, port: int, timeout_s: float = 120.0):
    env = {**os.environ, "SURGE_PORT": str(port)}
    return subprocess.run([COMPOSE, "-p", project, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)


@needs_compose
@pytest.mark.timeout(60)
def test_compose_file_is_valid():
    done = _compose("surge", "config", port=8080)
    assert done.returncode == 0, done.stderr
    assert "surge:dev" in done.stdout and "surge-state" in done.stdout


@needs_compose
@pytest.mark.timeout(600)
async def test_compose_stack_answers_the_example_request(images, engine):
    project, port = f"surgetest{secrets.token_hex(3)}", free_port()
    pods: list[dict] = []
    up = await asyncio.to_thread(_compose, project, "up", "-d", port=port)
    try:
        assert up.returncode == 0, up.stderr

        async def hello() -> str | None:
            try:
                async with session.get(f"http://127.0.0.1:{port}/",
                                       headers={"Host": "helloworld.default.example.com"}) as resp:
                    return await resp.text() if resp.status == 200 else None
            except aiohttp.ClientConnectionError:
                return None  # the stack is still starting
        async with aiohttp.ClientSession() as session:
            assert await wait_for(hello, 120.0, 0.25) == "Hello Docker!\n"
        pods = [c for c in await engine.list({LABEL_PREFIX + "service": "helloworld"})
                if c["Labels"].get(LABEL_PREFIX + "state-dir") == "/var/lib/surge"]
        assert len(pods) >= 2
    finally:
        down = await asyncio.to_thread(_compose, project, "down", "-v", port=port)
    assert down.returncode == 0, down.stderr
    # The stack drained and removed its pods when compose stopped it.
    ids = {c["Id"] for c in pods}
    assert not ids & {c["Id"] for c in await engine.list({LABEL_PREFIX + "service": "helloworld"})}
