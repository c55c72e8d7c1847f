"""Backpressure proven by memory: 200 MB each way through a proxy process, each receiver
stalled first, for the engine's and the sidecar's RSS tests.

`serve` is the upstream (the app behind the proxy under test); `upload` and `download`
drive the client side. Each transfer starts with its receiving side stalled for
`STALL_S` while the sender pushes as fast as it can: a proxy without backpressure
buffers everything sent meanwhile (hundreds of MB on loopback); with it, it holds about
two high-water marks. The tests compare the proxy's peak RSS (`VmHWM`) after both
transfers with its RSS after a warm-up request, against `LIMIT`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

TOTAL = 200 * 1024 * 1024
PIECE = b"x" * (1024 * 1024)
STALL_S = 0.5
LIMIT = 20 * 1024 * 1024

WARM_REQUEST = b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n"


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """GET /warm: 'ok'. GET /down: 200 MB. POST /up: stall, then read the body, answer 'up'."""
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
                await asyncio.sleep(STALL_S)  # the proxy must stop reading its client meanwhile
                left = TOTAL
                while left:
                    left -= len(await reader.read(min(left, 1 << 20)))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client is done with this connection
    finally:
        writer.close()


async def upload(writer: asyncio.StreamWriter) -> None:
    """POST /up with a 200 MB body, sent as fast as the connection takes it."""
    writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % TOTAL)
    for _ in range(TOTAL // len(PIECE)):
        writer.write(PIECE)
        await writer.drain()


async def download(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bytes, int]:
    """GET /down, stall, then read the whole body: (response head, body bytes received).

    Stops early if the connection ends, so a short body shows as fewer than TOTAL bytes.
    """
    writer.write(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.sleep(STALL_S)  # a stalled client: the proxy must stop reading its upstream
    head = await reader.readuntil(b"\r\n\r\n")
    received = 0
    while received < TOTAL:
        chunk = await reader.read(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    return head, received
