"""The docker suite: tests marked `docker` run against a Docker engine, or skip saying why.

`scripts/docker-setup` installs and starts the engine and builds the base image; the
session fixture `images` then runs `make images` once (warm: the engine's layer cache
makes it a few seconds), so every test below sees the images of this work tree.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from serving.platform.docker_engine import (
    DockerEngine, EngineUnavailableError, socket_path_from_env,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("surge:dev", "surge-queue-proxy:dev", "surge-helloworld:dev")
MAKE_TIMEOUT_S = 900.0


def _engine_problem() -> str | None:
    async def ping() -> None:
        engine = DockerEngine(socket_path_from_env(os.environ))
        try:
            await engine.open()
        finally:
            await engine.aclose()
    try:
        asyncio.run(ping())
    except EngineUnavailableError as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(config, items):
    """Skip the `docker` tests, with the engine's error as the reason, when none answers."""
    docker_items = [item for item in items if item.get_closest_marker("docker")]
    if not docker_items:
        return
    problem = _engine_problem()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"no Docker engine: {problem}")
    for item in docker_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def images() -> subprocess.CompletedProcess[str]:
    """`make images` once per session (it builds the base image first if it is missing)."""
    done = subprocess.run(["make", "images"], cwd=ROOT, capture_output=True, text=True,
                          timeout=MAKE_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"make images failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
async def engine():
    """An open engine client, closed after the test."""
    client = DockerEngine(socket_path_from_env(os.environ))
    await client.open()
    try:
        yield client
    finally:
        await client.aclose()
