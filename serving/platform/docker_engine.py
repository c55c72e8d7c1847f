"""A small client of the Docker Engine API over its unix socket (aiohttp's UnixConnector).

The Docker platform needs about ten endpoints (ping, image inspect, container create,
start, kill, stop, wait, inspect, logs, remove, list by label); aiohttp is already a
dependency of the stack, so it talks to the engine directly instead of adding a client
library. API version 1.41 (Engine 20.10, Debian bookworm's docker.io) is pinned in
every path, so a newer engine answers the way this code expects.

Errors: an engine that cannot be reached at all raises `EngineUnavailableError` (also a
ConnectionError) with one line saying where it was looked for and what to do; an error
answer raises `EngineError` carrying the HTTP status and the engine's own message.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from .base import PlatformError

__all__ = ["DEFAULT_SOCKET", "DockerEngine", "append_logs", "EngineError", "EngineUnavailableError",
           "remove_now", "socket_path_from_env", "unavailable_message"]

_log = logging.getLogger(__name__)

API = "/v1.41"
DEFAULT_SOCKET = "/var/run/docker.sock"
# A stream frame of /logs without a TTY: 1 byte stream, 3 zero bytes, 4-byte big-endian size.
_FRAME = struct.Struct(">BxxxI")


class EngineError(PlatformError):
    """The engine answered a request with an error (status and its message)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Docker engine: {message} (HTTP {status})")


class EngineUnavailableError(PlatformError, ConnectionError):
    """No engine answers on the socket (not installed, not started, no permission)."""


def socket_path_from_env(environ: Mapping[str, str]) -> str:
    """The engine's socket: DOCKER_HOST if it is a unix:// address, else the default."""
    host = environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host.removeprefix("unix://")
    return DEFAULT_SOCKET


class DockerEngine:
    """Async calls to one engine; `await open()` first, `await aclose()` at the end."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> dict[str, Any]:
        """Connect and check the engine answers; returns its /version document."""
        # limit=0: waits and log streams hold a connection each for a pod's whole life.
        connector = aiohttp.UnixConnector(path=self.socket_path, limit=0)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=None))
        try:
            return await self._call("GET", "/version", timeout_s=10.0)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- images and containers ----------------------------------------------------------

    async def has_image(self, ref: str) -> bool:
        """True when the engine has the image `ref` locally."""
        try:
            await self._call("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def inspect_image(self, ref: str) -> dict[str, Any]:
        """The image's inspect document (its Config: user, entrypoint, exposed ports)."""
        return await self._call("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")

    async def create(self, name: str, body: Mapping[str, Any]) -> str:
        """Create a container; its id."""
        doc = await self._call("POST", "/containers/create", params={"name": name}, body=body)
        return str(doc["Id"])

    async def start(self, cid: str) -> None:
        """Start a created container."""
        await self._call("POST", f"/containers/{cid}/start")

    async def kill(self, cid: str, sig: str = "SIGKILL") -> None:
        """Send a signal; a container that is gone or not running is left alone."""
        try:
            await self._call("POST", f"/containers/{cid}/kill", params={"signal": sig})
        except EngineError as exc:
            if exc.status not in (404, 409):
                raise

    async def stop(self, cid: str, grace_s: float) -> None:
        """SIGTERM (the image's stop signal), SIGKILL after `grace_s`; waits for the exit."""
        try:
            await self._call("POST", f"/containers/{cid}/stop",
                             params={"t": str(max(int(grace_s), 0))}, timeout_s=grace_s + 30.0)
        except EngineError as exc:
            if exc.status != 404:
                raise

    async def wait(self, cid: str) -> int:
        """Wait for the container to stop; its exit code (-1 if it is gone)."""
        try:
            doc = await self._call("POST", f"/containers/{cid}/wait",
                                   params={"condition": "not-running"}, timeout_s=None)
        except EngineError as exc:
            if exc.status == 404:
                return -1
            raise
        return int(doc.get("StatusCode", -1))

    async def inspect(self, cid: str) -> dict[str, Any]:
        """The container's inspect document."""
        return await self._call("GET", f"/containers/{cid}/json")

    async def remove(self, cid: str) -> None:
        """Remove a container, killing it if it runs; gone already is fine."""
        try:
            await self._call("DELETE", f"/containers/{cid}", params={"force": "1", "v": "1"})
        except EngineError as exc:
            if exc.status != 404:
                raise

    async def list(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) carrying all of `labels`."""
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        return await self._call("GET", "/containers/json",
                                params={"all": "1", "filters": filters})

    async def logs(self, cid: str) -> AsyncIterator[bytes]:
        """The container's output from its start, followed until it stops."""
        assert self._session is not None, "open() first"
        params = {"follow": "1", "stdout": "1", "stderr": "1"}
        async with self._session.get(f"http://docker{API}/containers/{cid}/logs",
                                     params=params) as resp:
            if resp.status != 200:
                raise EngineError(resp.status, _message(await resp.read()))
            while True:
                try:
                    head = await resp.content.readexactly(_FRAME.size)
                except aiohttp.ClientPayloadError:
                    return
                except EOFError:  # asyncio.IncompleteReadError: the stream ended
                    return
                _, size = _FRAME.unpack(head)
                yield await resp.content.readexactly(size)

    # -- the wire -----------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                    body: Any = None, timeout_s: float | None = 60.0) -> Any:
        if self._session is None:
            raise EngineUnavailableError("the Docker engine client is not open")
        try:
            async with self._session.request(
                    method, f"http://docker{API}{path}", params=params,
                    json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                data = await resp.read()
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionError) as exc:
            raise EngineUnavailableError(unavailable_message(self.socket_path, exc)) from None
        if resp.status >= 400:
            raise EngineError(resp.status, _message(data))
        return json.loads(data) if data.strip() else None


async def append_logs(engine: DockerEngine, cid: str, path: str) -> None:
    """Append a container's output to the file at `path` until the container stops."""
    try:
        with open(path, "ab") as log:
            async for chunk in engine.logs(cid):
                log.write(chunk)
                log.flush()
    except (OSError, PlatformError) as exc:
        _log.warning("logs of container %s: %s", cid[:12], exc)


def unavailable_message(socket_path: str, exc: BaseException) -> str:
    """One line: which socket, why it failed, what to do."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error is not None:
        reason = exc.os_error.strerror or str(exc.os_error)
    return (f"no Docker engine answers at unix://{socket_path} ({reason}): start dockerd "
            f"(scripts/docker-setup does), or point DOCKER_HOST at its socket")


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message", "")) or data.decode(errors="replace")
    except (ValueError, AttributeError):
        return data.decode(errors="replace").strip() or "no message"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout_s: float) -> None:
        super().__init__("docker", timeout=timeout_s)
        self._socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._socket_path)


def remove_now(socket_path: str, container_ids: list[str], timeout_s: float = 10.0) -> None:
    """Force-remove containers with blocking calls: for exit paths with no running loop."""
    for cid in container_ids:
        conn = _UnixHTTPConnection(socket_path, timeout_s)
        try:
            conn.request("DELETE", f"{API}/containers/{cid}?force=1&v=1")
            conn.getresponse().read()
        except OSError as exc:  # the engine is gone: say so, nothing more can be done
            _log.warning("cannot remove container %s: %s", cid[:12], exc)
        finally:
            conn.close()
