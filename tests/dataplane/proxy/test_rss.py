"""Backpressure proven by memory: 200 MB each way through a proxy subprocess keeps its
peak RSS within 20 MB of its warmed-up size.

Each transfer starts with the receiving side stalled for a moment while the sender
pushes as fast as it can: a proxy without backpressure would buffer everything sent
during the stall (hundreds of MB on loopback); with it, it holds about two high-water
marks. The proxy runs as `python -m dataplane.proxy` (the same entry point benchmarks
use), so what is measured is the engine alone, on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from .conftest import Reader, Upstream, connect

pytestmark = pytest.mark.integration

TOTAL = 200 * 1024 * 1024
PIECE = b"x" * (1024 * 1024)
STALL_S = 0.5
LIMIT = 20 * 1024 * 1024
REPO = Path(__file__).resolve().parents[3]


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


async def serve(reader, writer):
    """GET /down: 200 MB body. POST /up: read the body slowly at first, answer its size."""
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
            await asyncio.sleep(STALL_S)  # the proxy must stop reading its client meanwhile
            left = TOTAL
            while left:
                left -= len(await reader.read(min(left, 1 << 20)))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup")
        await writer.drain()


async def test_200mb_up_and_down_keep_proxy_rss_growth_under_20mb():
    async with Upstream(serve) as up:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dataplane.proxy", "--listen", "127.0.0.1:0",
            "--upstream", f"{up.address[0]}:{up.address[1]}",
            stdout=asyncio.subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            async with asyncio.timeout(60):
                line = await proc.stdout.readline()
                port = int(line.rsplit(b":", 1)[1])
                reader, writer = await connect(port)
                responses = Reader(reader, response=True)
                writer.write(b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await responses.next()).status == 200
                baseline = memory(proc.pid)["VmRSS"]

                writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % TOTAL)
                for _ in range(TOTAL // len(PIECE)):
                    writer.write(PIECE)
                    await writer.drain()
                assert bytes((await responses.next()).body) == b"up"

                writer.write(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
                await asyncio.sleep(STALL_S)  # a stalled client: the proxy must stop reading
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK")
                received = 0
                while received < TOTAL:
                    received += len(await reader.read(1 << 20))
                assert received == TOTAL
                peak = memory(proc.pid)["VmHWM"]
                writer.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    print(f"proxy RSS growth {(peak - baseline) / 2**20:.1f} MiB")
    assert peak - baseline < LIMIT, f"proxy RSS grew by {(peak - baseline) / 2**20:.1f} MiB"
