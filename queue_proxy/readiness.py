"""Readiness probing of the user container, as Knative's queue-proxy does it (reference 4.6).

Theory of operation (`pkg/queue/readiness/probe.go`, `pkg/queue/health/probe.go`):

- Each probe spec is a TCP connect or an HTTP GET to the user container (127.0.0.1 by
  default). HTTP succeeds on a status in 200-399; redirects are not followed (a 3xx is
  already a success), the request carries `User-Agent: kube-probe/<major>.<minor>` plus
  the spec's custom headers (a custom Host or User-Agent replaces ours).
- Aggressive mode (periodSeconds 0, the default): try at once, then every 50 ms, each
  attempt with a 100 ms timeout, for up to 10 s; succeed after `successThreshold`
  consecutive successes. The success count survives between calls and a failure zeroes
  it, as in Knative, so once ready a single good attempt answers. Otherwise: one attempt
  with `timeoutSeconds` (the kubelet applies its thresholds to the queue-proxy's probe).
- Several specs (multi-container probing) run concurrently; all must pass.
- Concurrent callers share the run in flight: one kubelet probe and ten activator probes
  arriving together cost one probe of the user container.

Example: a user app that starts listening 300 ms after the queue-proxy, default probe
(aggressive TCP, threshold 1): attempts at ~0, 50, ..., 300 ms fail until the listener
exists; the first success answers True and the health check returns 200 `queue`.

Timing of the loop runs on the Clock (tests drive it with FakeClock through an injected
attempt); per-attempt socket timeouts are real time, because they bound real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence

from dataplane.clock import Clock

from .config import PROBE_HTTP, ProbeSpec

__all__ = [
    "AGGRESSIVE_ATTEMPT_TIMEOUT_S",
    "AGGRESSIVE_POLL_TIMEOUT_S",
    "AGGRESSIVE_RETRY_INTERVAL_S",
    "KUBE_PROBE_VERSION",
    "ReadinessProber",
    "probe_once",
]

_log = logging.getLogger(__name__)

# Knative's constants (readiness/probe.go).
AGGRESSIVE_ATTEMPT_TIMEOUT_S = 0.1
AGGRESSIVE_RETRY_INTERVAL_S = 0.05
AGGRESSIVE_POLL_TIMEOUT_S = 10.0
# The Kubernetes version we claim in the kubelet-style User-Agent.
KUBE_PROBE_VERSION = "1.31"
_MAX_STATUS_LINE = 4096

Attempt = Callable[[ProbeSpec, float], Awaitable[bool]]


async def probe_once(spec: ProbeSpec, timeout_s: float, user_agent: str = f"kube-probe/{KUBE_PROBE_VERSION}") -> bool:
    """One TCP or HTTP attempt against `spec`, bounded by `timeout_s`; True on success."""
    try:
        async with asyncio.timeout(timeout_s):
            if spec.kind == PROBE_HTTP:
                return await _http_attempt(spec, user_agent)
            transport, _ = await asyncio.get_running_loop().create_connection(
                asyncio.Protocol, spec.host, spec.port
            )
            transport.close()
            return True
    except (OSError, TimeoutError, ValueError, ssl.SSLError):
        return False


async def _http_attempt(spec: ProbeSpec, user_agent: str) -> bool:
    context = None
    if spec.scheme == "HTTPS":
        # The kubelet does not verify the user container's certificate; neither do we.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(spec.host, spec.port, ssl=context)
    try:
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        headers = {"host": ("Host", f"{host}:{spec.port}"), "user-agent": ("User-Agent", user_agent),
                   "accept": ("Accept", "*/*")}
        for name, value in spec.http_headers:
            headers[name.lower()] = (name, value)
        headers["connection"] = ("Connection", "close")
        head = f"GET {spec.path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers.values())
        writer.write((head + "\r\n").encode("latin-1"))
        line = await reader.readline()
        if len(line) > _MAX_STATUS_LINE:
            return False
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            return False
        return 200 <= int(parts[1]) < 400
    finally:
        writer.transport.abort()  # Connection: close anyway; don't linger on the body


class ReadinessProber:
    """Probes the user container; concurrent `probe()` calls share one run."""

    def __init__(
        self,
        probes: Sequence[ProbeSpec],
        clock: Clock,
        *,
        attempt: Attempt | None = None,
        poll_timeout_s: float = AGGRESSIVE_POLL_TIMEOUT_S,
        retry_interval_s: float = AGGRESSIVE_RETRY_INTERVAL_S,
    ) -> None:
        for spec in probes:
            for name, value in spec.http_headers:
                if any(c in name + value for c in "\r\n\0") or ":" in name:
                    raise ValueError(f"probe header {name!r}: must not contain CR, LF, NUL or ':'")
        self._probes = tuple(probes)
        self._clock = clock
        self._attempt: Attempt = attempt or probe_once
        self._poll_timeout_s = poll_timeout_s
        self._retry_interval_s = retry_interval_s
        self._successes = [0] * len(self._probes)  # consecutive, per spec (Knative's count)
        self._inflight: asyncio.Task[bool] | None = None
        self.runs = 0  # completed-or-started probe runs, for stats and tests

    async def probe(self) -> bool:
        """True when every probe passes; joins a run already in flight."""
        task = self._inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run_all())
            task.add_done_callback(self._finished)
            self._inflight = task
            self.runs += 1
        # Shielded: one caller giving up must not cancel the run the others wait on.
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel a run in flight (daemon shutdown)."""
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _finished(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled() and task.exception() is not None:
            _log.error("readiness probe run failed", exc_info=task.exception())

    async def _run_all(self) -> bool:
        if not self._probes:
            return True
        results = await asyncio.gather(*(self._run_one(i) for i in range(len(self._probes))))
        return all(results)

    async def _run_one(self, index: int) -> bool:
        spec = self._probes[index]
        if not spec.is_aggressive:
            return await self._attempt(spec, float(spec.timeout_s))
        started = self._clock.now()
        tries = 0
        while True:
            if await self._attempt(spec, AGGRESSIVE_ATTEMPT_TIMEOUT_S):
                self._successes[index] += 1
                if self._successes[index] >= spec.success_threshold:
                    return True
            else:
                self._successes[index] = 0
            # Attempts sit on a fixed 50 ms grid from the start (k * interval < 10 s), so
            # slow attempts do not stretch the poll and float sums do not add a try.
            tries += 1
            next_at = tries * self._retry_interval_s
            if next_at >= self._poll_timeout_s - 1e-9:
                return False
            await self._clock.sleep(max(0.0, started + next_at - self._clock.now()))
