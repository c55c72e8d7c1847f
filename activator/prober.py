"""Pod prober: a pod takes traffic only after its queue-proxy answered a probe.

Theory of operation (Knative `pkg/activator/net/revision_backends.go`, reference 5.3).
The control plane lists every pod of a revision, ready or not. Each listed pod is either
*unprobed* or *healthy*:

    listed      -> unprobed   (set_pods names a pod not yet healthy)
    unprobed    -> healthy    (its probe answered 200 `queue`)
    healthy     -> unprobed   (reprobe: the proxy could not connect to it)
    any         -> gone       (set_pods leaves it out, or the revision is removed)

While any pod is unprobed, `run()` probes all unprobed pods together every 200 ms
(`PROBE_FREQUENCY`), each bounded by 300 ms (`PROBE_TIMEOUT`): `GET /healthz` with
`K-Network-Probe: queue` and `User-Agent: Knative-Activator-Probe`; success is status 200
with body `queue`. When nothing is unprobed it sleeps until `set_pods` or `reprobe` wakes
it, so a new pod is probed at once rather than on the next tick.

Removal is synchronous: `set_pods` returns the healthy set without the removed pods, so
the caller stops routing to them before it returns. Promotions arrive through
`on_healthy(key, healthy)`, called from `run()`.

Worked example: pods a, b listed at t=0; a's probe passes at t=0.0, b's queue-proxy is
still starting and fails at t=0.0 and t=0.2, passes at t=0.4. `on_healthy` fires with
{a} after the first round and with {a, b} after the third; then the prober idles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

import aiohttp

from dataplane import Clock, PodAddress, RevisionKey

__all__ = [
    "PROBE_BODY",
    "PROBE_PATH",
    "PROBE_PERIOD_S",
    "PROBE_TIMEOUT_S",
    "PROBE_USER_AGENT",
    "HttpProbe",
    "PodProber",
]

_log = logging.getLogger(__name__)

PROBE_PATH = "/healthz"
PROBE_USER_AGENT = "Knative-Activator-Probe"
PROBE_BODY = b"queue"
# Knative's activator PROBE_FREQUENCY and PROBE_TIMEOUT (revision_backends.go).
PROBE_PERIOD_S = 0.2
PROBE_TIMEOUT_S = 0.3

ProbeFn = Callable[[PodAddress], Awaitable[bool]]


class HttpProbe:
    """The real probe: one aiohttp GET per pod; open it with `async with`."""

    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpProbe:
        # force_close: a probe is once per new pod; idle connections to pods that may be
        # gone soon would only linger.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), timeout=self._timeout,
            headers={"User-Agent": PROBE_USER_AGENT, "K-Network-Probe": "queue"},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, pod: PodAddress) -> bool:
        """True when the pod's queue-proxy answered 200 `queue` in time."""
        assert self._session is not None, "HttpProbe used outside `async with`"
        url = f"http://{pod.host}:{pod.port}{PROBE_PATH}"
        try:
            async with self._session.get(url) as resp:
                return resp.status == 200 and await resp.read() == PROBE_BODY
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return False


class PodProber:
    """Which listed pods passed their probe, per revision; probes the rest in `run()`."""

    def __init__(
        self,
        clock: Clock,
        on_healthy: Callable[[RevisionKey, frozenset[PodAddress]], None],
        *,
        probe: ProbeFn | None = None,
        period_s: float = PROBE_PERIOD_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self._clock = clock
        self._on_healthy = on_healthy
        self._probe = probe
        self._period_s = period_s
        self._timeout_s = timeout_s
        self._healthy: dict[RevisionKey, set[PodAddress]] = {}
        self._unprobed: dict[RevisionKey, set[PodAddress]] = {}
        self._wake = asyncio.Event()
        self.probes = 0  # probes sent (a plain counter for metrics and tests)

    def set_pods(self, key: RevisionKey, pods: Iterable[PodAddress]) -> frozenset[PodAddress]:
        """Make `pods` the revision's listed pods; returns the healthy ones among them."""
        wanted = set(pods)
        healthy = self._healthy.setdefault(key, set())
        healthy &= wanted
        unprobed = wanted - healthy
        if unprobed:
            self._unprobed[key] = unprobed
            self._wake.set()
        else:
            self._unprobed.pop(key, None)
        return frozenset(healthy)

    def reprobe(self, key: RevisionKey, pod: PodAddress) -> frozenset[PodAddress]:
        """Take a healthy pod out of rotation until its probe passes again."""
        healthy = self._healthy.get(key)
        if healthy is not None and pod in healthy:
            healthy.discard(pod)
            self._unprobed.setdefault(key, set()).add(pod)
            self._wake.set()
        return frozenset(healthy or ())

    def remove(self, key: RevisionKey) -> None:
        """Forget a revision and stop probing its pods."""
        self._healthy.pop(key, None)
        self._unprobed.pop(key, None)

    def healthy(self, key: RevisionKey) -> frozenset[PodAddress]:
        """The revision's pods whose probe passed."""
        return frozenset(self._healthy.get(key, ()))

    def unprobed(self, key: RevisionKey) -> frozenset[PodAddress]:
        """The revision's listed pods still waiting for a passing probe."""
        return frozenset(self._unprobed.get(key, ()))

    async def run(self) -> None:
        """Probe unprobed pods every period until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            probe = self._probe
            if probe is None:
                probe = await stack.enter_async_context(HttpProbe(self._timeout_s))
            while True:
                if not self._unprobed:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                started = self._clock.now()
                await self.probe_round(probe)
                if self._unprobed:
                    await self._clock.sleep(max(0.0, started + self._period_s - self._clock.now()))

    async def probe_round(self, probe: ProbeFn) -> int:
        """Probe every unprobed pod once, together; returns how many became healthy."""
        batch = [(key, pod) for key, pods in self._unprobed.items() for pod in pods]
        results = await asyncio.gather(*(self._probe_one(probe, pod) for _, pod in batch))
        changed: set[RevisionKey] = set()
        for (key, pod), ok in zip(batch, results):
            pending = self._unprobed.get(key)
            # The pod may have been removed (or its revision) while the probe ran.
            if ok and pending is not None and pod in pending:
                pending.discard(pod)
                if not pending:
                    del self._unprobed[key]
                self._healthy.setdefault(key, set()).add(pod)
                changed.add(key)
        for key in sorted(changed):
            self._on_healthy(key, frozenset(self._healthy[key]))
        return sum(1 for ok in results if ok)

    async def _probe_one(self, probe: ProbeFn, pod: PodAddress) -> bool:
        self.probes += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                return await probe(pod)
        except TimeoutError:
            return False
        except Exception:  # a broken probe must fail this pod, not stop probing
            _log.exception("probe of %s raised", pod)
            return False
