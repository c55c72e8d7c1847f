"""Backpressure through the deployed sidecar: 200 MB up and 200 MB down through
`python -m queue_proxy` (breaker, stats and metrics in the path) keep its peak RSS within
20 MB of its warmed-up size.

tests/dataplane/proxy/test_rss.py proves it for the bare engine; this runs the daemon as
pods run it. Each transfer starts with the receiving side stalled while the sender
pushes as fast as it can, so a sidecar without backpressure would buffer hundreds of MB
(checked: with the engine's write high-water mark raised to 1 GiB it grows ~196 MB).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from support.bigbody import LIMIT, TOTAL, WARM_REQUEST, download, memory, serve, upload
from support.stack import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]




async def test_200mb_up_and_down_through_the_sidecar_keep_rss_growth_under_20mb():
    app = await asyncio.start_server(serve, "127.0.0.1", 0)
    serving, admin, stats, metrics = free_ports(4)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        CONTAINER_CONCURRENCY="10", QUEUE_SERVING_PORT=str(serving),
        USER_PORT=str(app.sockets[0].getsockname()[1]), REVISION_TIMEOUT_SECONDS="300",
        SERVING_NAMESPACE="default", SERVING_CONFIGURATION="big", SERVING_REVISION="big-00001",
        SERVING_POD="big-pod", QUEUE_ADMIN_PORT=str(admin), QUEUE_STATS_PORT=str(stats),
        QUEUE_METRICS_PORT=str(metrics), QUEUE_DRAIN_QUIET_SECONDS="0",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "queue_proxy", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    writer = None
    try:
        async with asyncio.timeout(60):
            while b"serving on" not in (line := await proc.stderr.readline()):
                assert line, "queue-proxy exited before serving"
            reader, writer = await asyncio.open_connection("127.0.0.1", serving)
            writer.write(WARM_REQUEST)
            assert (await reader.readuntil(b"\r\n\r\nok")).startswith(b"HTTP/1.1 200")
            baseline = memory(proc.pid)["VmRSS"]

            await upload(writer)
            assert (await reader.readuntil(b"\r\n\r\nup")).startswith(b"HTTP/1.1 200")

            head, received = await download(reader, writer)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert received == TOTAL, "the download ended early"
            peak = memory(proc.pid)["VmHWM"]
    finally:
        if writer is not None:
            writer.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()  # by PID: only the child we started
            await proc.wait()
        app.close()
        await app.wait_closed()
    assert received == TOTAL
    assert peak - baseline < LIMIT, f"queue-proxy RSS grew by {(peak - baseline) / 2**20:.1f} MiB"
