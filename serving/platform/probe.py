"""The health check the platform sends a pod's queue-proxy (Knative's activator probe).

`GET /` with `K-Network-Probe: queue` and `User-Agent: Knative-Activator-Probe`: the
queue-proxy answers on any path, 200 with body `queue` when the user container passes
its readiness probe, 503 when it does not or while draining (reference 4.6, 4.7).
A plain asyncio stream suffices: one request per connection, a few per second at most.
"""

from __future__ import annotations

import asyncio

__all__ = ["probe_queue_proxy"]

_REQUEST = (
    b"GET / HTTP/1.1\r\n"
    b"Host: queue-proxy\r\n"
    b"K-Network-Probe: queue\r\n"
    b"User-Agent: Knative-Activator-Probe\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)
# The answer is a status line, a few headers and `queue`; anything longer is not it.
_MAX_HEAD_BYTES = 16 * 1024


async def probe_queue_proxy(host: str, port: int, timeout_s: float) -> bool:
    """True when the queue-proxy at host:port says its pod is ready (200 `queue`)."""
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, limit=_MAX_HEAD_BYTES)
            writer.write(_REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
                return False
            length = _content_length(head)
            if length is None or length > _MAX_HEAD_BYTES:
                return False
            return await reader.readexactly(length) == b"queue"
    except (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError):
        return False  # IncompleteReadError is an EOFError
    finally:
        if writer is not None:
            writer.close()


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None
