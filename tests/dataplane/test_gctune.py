"""GC tuning: parsed from the environment, applied to the collector once start-up is done."""

from __future__ import annotations

import asyncio
import gc
import weakref
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from dataplane.gctune import GcTuning, GcTuningError, apply_gc_tuning, gc_tuning_from_env
from support.stack import free_ports

ROOT = Path(__file__).resolve().parents[2]

PARSE_CASES = [
    pytest.param({}, GcTuning(freeze=True, gen0_threshold=None), id="defaults-freeze-on"),
    pytest.param({"SURGE_GC_FREEZE": "0"}, GcTuning(freeze=False), id="freeze-off"),
    pytest.param({"SURGE_GC_FREEZE": " False "}, GcTuning(freeze=False), id="freeze-off-word"),
    pytest.param({"SURGE_GC_GEN0_THRESHOLD": "7000"}, GcTuning(gen0_threshold=7000), id="gen0"),
]

BAD_CASES = [
    pytest.param({"SURGE_GC_FREEZE": "maybe"}, "SURGE_GC_FREEZE", id="freeze-word"),
    pytest.param({"SURGE_GC_GEN0_THRESHOLD": "0"}, "SURGE_GC_GEN0_THRESHOLD", id="gen0-zero"),
    pytest.param({"SURGE_GC_GEN0_THRESHOLD": "-5"}, "SURGE_GC_GEN0_THRESHOLD", id="gen0-negative"),
]


@pytest.mark.parametrize(("environ", "expected"), PARSE_CASES)
def test_parses_environment(environ, expected):
    assert gc_tuning_from_env(environ) == expected


@pytest.mark.parametrize(("environ", "name"), BAD_CASES)
def test_rejects_malformed_entries(environ, name):
    with pytest.raises(GcTuningError, match=name):
        gc_tuning_from_env(environ)


@pytest.fixture
def restore_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    """A tracked object that can take part in a reference cycle."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def test_freeze_keeps_live_objects_and_collects_garbage_first(restore_gc):
    gc.unfreeze()
    kept = [_Node() for _ in range(1000)]  # alive: must end up frozen
    collected = []
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # an unreachable cycle: must be collected, not frozen
    weakref.finalize(a, collected.append, "a")
    del a, b
    report = apply_gc_tuning(GcTuning(freeze=True))
    assert collected == ["a"]  # gc.collect() ran before the freeze
    assert report.frozen >= len(kept) and gc.get_freeze_count() >= len(kept)


def test_gen0_threshold_keeps_the_older_generations(restore_gc):
    _, gen1, gen2 = gc.get_threshold()
    report = apply_gc_tuning(GcTuning(freeze=False, gen0_threshold=5000))
    assert report.thresholds == gc.get_threshold() == (5000, gen1, gen2)


def test_nothing_applied_when_off(restore_gc):
    gc.unfreeze()
    before = gc.get_threshold()
    report = apply_gc_tuning(GcTuning(freeze=False))
    assert (report.frozen, report.thresholds) == (0, before)




DAEMON_CASES = [
    pytest.param({}, True, id="default-freezes"),
    pytest.param({"SURGE_GC_FREEZE": "0"}, False, id="turned-off"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("extra", "frozen"), DAEMON_CASES)
async def test_queue_proxy_daemon_freezes_once_serving(extra, frozen):
    serving, admin, stats, metrics, user = free_ports(5)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        CONTAINER_CONCURRENCY="10", QUEUE_SERVING_PORT=str(serving), USER_PORT=str(user),
        REVISION_TIMEOUT_SECONDS="300", SERVING_NAMESPACE="default", SERVING_CONFIGURATION="gc",
        SERVING_REVISION="gc-00001", SERVING_POD="gc-pod", QUEUE_ADMIN_PORT=str(admin),
        QUEUE_STATS_PORT=str(stats), QUEUE_METRICS_PORT=str(metrics),
        QUEUE_DRAIN_QUIET_SECONDS="0", **extra,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "queue_proxy", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            seen_serving = False
            while not (match := re.search(rb"gc: (\d+) objects frozen", line := await proc.stderr.readline())):
                assert line, "queue-proxy exited before tuning its collector"
                seen_serving = seen_serving or b"serving on" in line
            assert seen_serving, "the collector was tuned before the servers listened"
            assert (int(match.group(1)) > 0) is frozen
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await proc.wait()


@pytest.mark.integration
async def test_queue_proxy_rejects_a_malformed_gc_entry():
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(CONTAINER_CONCURRENCY="0", QUEUE_SERVING_PORT="8012", USER_PORT="8080",
               REVISION_TIMEOUT_SECONDS="300", SERVING_NAMESPACE="d", SERVING_CONFIGURATION="c",
               SERVING_REVISION="r", SERVING_POD="p", SURGE_GC_FREEZE="maybe")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "queue_proxy", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"SURGE_GC_FREEZE" in err
