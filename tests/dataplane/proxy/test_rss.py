"""Backpressure proven by memory: 200 MB each way through a proxy subprocess keeps its
peak RSS within 20 MB of its warmed-up size (the transfers are `support.bigbody`'s).

The proxy runs as `python -m dataplane.proxy` (the same entry point benchmarks use), so
what is measured is the engine alone, on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from support.bigbody import LIMIT, TOTAL, WARM_REQUEST, download, memory, serve, upload

from .conftest import Reader, Upstream, connect

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


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
                writer.write(WARM_REQUEST)
                assert (await responses.next()).status == 200
                baseline = memory(proc.pid)["VmRSS"]

                await upload(writer)
                assert bytes((await responses.next()).body) == b"up"

                head, received = await download(reader, writer)
                assert head.startswith(b"HTTP/1.1 200 OK")
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
