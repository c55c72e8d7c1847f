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
import socket
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 200 * 1024 * 1024
PIECE = b"x" * (1024 * 1024)
STALL_S = 0.5
LIMIT = 20 * 1024 * 1024


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """GET /warm: tiny. GET /down: 200 MB. POST /up: stall, then read the body, answer 'up'."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /warm"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            elif head.startswith(b"GET /down"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % TOTAL)
                for _ in range(TOTAL // len(PIECE)):
                    writer.write(PIECE)
                    await writer.drain()
            else:
                await asyncio.sleep(STALL_S)  # the sidecar must stop reading its client
                left = TOTAL
                while left:
                    left -= len(await reader.read(min(left, 1 << 20)))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


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
            writer.write(b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\nok")).startswith(b"HTTP/1.1 200")
            baseline = memory(proc.pid)["VmRSS"]

            writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % TOTAL)
            for _ in range(TOTAL // len(PIECE)):
                writer.write(PIECE)
                await writer.drain()
            assert (await reader.readuntil(b"\r\n\r\nup")).startswith(b"HTTP/1.1 200")

            writer.write(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
            await asyncio.sleep(STALL_S)  # a stalled client: the sidecar must stop reading
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            received = 0
            while received < TOTAL:
                chunk = await reader.read(1 << 20)
                assert chunk, "the download ended early"
                received += len(chunk)
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
