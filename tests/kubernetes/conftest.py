"""Fixtures shared by the Kubernetes tests."""

from __future__ import annotations

import pytest
from k8s_fake_api import FakeApiServer


@pytest.fixture
async def fake():
    """A fake API server on loopback speaking the real REST paths (k8s_fake_api.py)."""
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()
