"""Suite-wide fixtures: both event loops for I/O tests, and no silent loop errors."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import pytest_asyncio
import uvloop

from dataplane.clock import FakeClock


def pytest_asyncio_loop_factories(config, item):
    """Run async tests on asyncio and uvloop; integration tests (real subprocesses,
    seconds each) run on uvloop only, the loop production uses."""
    if item.get_closest_marker("integration") or item.get_closest_marker("e2e"):
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True)
def _guard_coroutine_tests(request):
    """Every coroutine test runs under `_loop_guard`."""
    func = getattr(request.node, "function", None)
    if func is not None and inspect.iscoroutinefunction(func):
        request.getfixturevalue("_loop_guard")


@pytest_asyncio.fixture
async def _loop_guard():
    """Fail the test if its loop's exception handler fired: a task died unseen."""
    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    yield
    # Give callbacks scheduled by the test's last step a chance to report.
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    if seen:
        ctx = seen[0]
        pytest.fail(f"event loop exception handler fired: {ctx.get('message')}: {ctx.get('exception')!r}")


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 1000.0."""
    return FakeClock()
