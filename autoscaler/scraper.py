"""Scrape a revision's queue-proxies for load: Knative's direct pod scraping with sampling.

Theory of operation (pkg/autoscaler/metrics/stats_scraper.go, direct-pod mode). Every
second the collector asks for one revision-wide Stat. With N ready pods:

1. n = sample_size(N) (at most 16); N = 0 means "nothing to record" (None, not an error).
2. Pods are split by age against the stable window: *old* pods (up at least one stable
   window) have a full window of history; *young* ones do not and would understate load.
   If at least n pods are old, the old pods are shuffled and tried first; otherwise the
   old pods come first as they are and the young ones follow, shuffled.
3. n workers run in parallel; each takes the next untried pod from that list until one
   scrape succeeds. A worker that runs out of pods fails the whole scrape: averaging
   fewer than n answers would bias the estimate, so partial success is an error.
4. The n answers are summed and scaled by N/n into `Stat(pod_name="service-scraper")`.

Worked example: N = 5 ready pods each reporting concurrency 3.0, one of them unreachable.
n = 4; four workers start on four pods; the one that hits the dead pod moves on to the
fifth pod and succeeds. Sum = 4 × 3.0 = 12.0, × 5/4 = 15.0 revision-wide concurrency.

One pod scrape is `GET http://<pod>:<stats_port>/metrics` with `Accept:
application/protobuf`, a 3 s timeout, a 2xx status and that content type required, and a
body of at most 336 bytes (Knative's bound: a Stat is a pod name plus six numbers).
Service scraping (for meshes that hide pod IPs) is not implemented: pods are addressable
in every Surge platform.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from dataplane.stat import PROTOBUF_CONTENT_TYPE, Stat
from dataplane.types import PodAddress

from .sample_size import sample_size

__all__ = [
    "DEFAULT_STATS_PORT",
    "MAX_STAT_BYTES",
    "SCRAPER_POD_NAME",
    "PodScraper",
    "ReadyPod",
    "ScrapeError",
    "extrapolate",
    "order_pods",
]

SCRAPER_POD_NAME = "service-scraper"
DEFAULT_STATS_PORT = 9090  # queue-proxy's autoscaling stats port (Knative's number)
# Knative's LimitedReader bound: 6 numeric fields × 10 bytes + 256 for the name + 20 spare.
MAX_STAT_BYTES = 6 * 10 + 256 + 20
SCRAPE_TIMEOUT_S = 3.0  # Knative's httpClientTimeout


class ScrapeError(Exception):
    """A scrape that produced no usable stat (one pod, or the revision's sample)."""


class Shuffler(Protocol):
    """What the scraper needs from a random source (`random.Random` fits)."""

    def shuffle(self, x: MutableSequence[PodAddress], /) -> None: ...


@dataclass(frozen=True, slots=True)
class ReadyPod:
    """A Running-and-Ready pod: where to scrape it and when it started (Clock seconds)."""

    address: PodAddress
    started_at: float


def order_pods(
    pods: Sequence[ReadyPod], *, now: float, stable_window_s: float, rng: Shuffler
) -> list[PodAddress]:
    """The order in which the sample's workers try pods: old pods first (Knative's split)."""
    old = [p.address for p in pods if now - p.started_at >= stable_window_s]
    young = [p.address for p in pods if now - p.started_at < stable_window_s]
    # Shuffle only the part the sample draws from at random: when old pods cannot fill
    # the sample all of them are used anyway, and the young ones make up the rest.
    if len(old) < sample_size(len(pods)):
        rng.shuffle(young)
    else:
        rng.shuffle(old)
    return old + young


def extrapolate(stats: Sequence[Stat], *, population: int) -> Stat:
    """Sum the sampled stats and scale by population/sample to revision-wide totals."""
    scale = population / len(stats)
    return Stat(
        pod_name=SCRAPER_POD_NAME,
        average_concurrent_requests=sum(s.average_concurrent_requests for s in stats) * scale,
        average_proxied_concurrent_requests=sum(
            s.average_proxied_concurrent_requests for s in stats
        ) * scale,
        request_count=sum(s.request_count for s in stats) * scale,
        proxied_request_count=sum(s.proxied_request_count for s in stats) * scale,
    )


def _stats_url(pod: PodAddress, default_port: int) -> str:
    host = f"[{pod.host}]" if ":" in pod.host else pod.host  # IPv6 literal
    port = pod.stats_port if pod.stats_port is not None else default_port
    return f"http://{host}:{port}/metrics"


class PodScraper:
    """Scrapes queue-proxy stats endpoints over a caller-owned aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = SCRAPE_TIMEOUT_S,
        max_body_bytes: int = MAX_STAT_BYTES,
        default_stats_port: int = DEFAULT_STATS_PORT,
        rng: Shuffler | None = None,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_body_bytes = max_body_bytes
        self._default_stats_port = default_stats_port
        self._rng: Shuffler = rng if rng is not None else random.Random()
        self._headers = {"Accept": PROTOBUF_CONTENT_TYPE}

    async def fetch_stat(self, pod: PodAddress) -> Stat:
        """One pod's latest Stat; raises `ScrapeError` (or a client/timeout error)."""
        url = _stats_url(pod, self._default_stats_port)
        async with self._session.get(url, headers=self._headers, timeout=self._timeout) as resp:
            if not 200 <= resp.status < 300:
                raise ScrapeError(f"GET {url} returned HTTP {resp.status}")
            if resp.content_type != PROTOBUF_CONTENT_TYPE:
                raise ScrapeError(f"GET {url} returned Content-Type {resp.content_type!r}")
            if resp.content_length is not None and resp.content_length > self._max_body_bytes:
                raise ScrapeError(f"GET {url} body of {resp.content_length} bytes is too large")
            body = await self._read_bounded(resp)
        if len(body) > self._max_body_bytes:
            # Knative silently truncates; a truncated protobuf can decode to wrong numbers.
            raise ScrapeError(f"GET {url} body exceeds {self._max_body_bytes} bytes")
        try:
            return Stat.from_protobuf(body)
        except ValueError as exc:
            raise ScrapeError(f"GET {url}: {exc}") from exc

    async def _read_bounded(self, resp: aiohttp.ClientResponse) -> bytes:
        # Read one byte past the limit so an oversized body is detected, not truncated.
        body = bytearray()
        limit = self._max_body_bytes + 1
        while len(body) < limit:
            chunk = await resp.content.read(limit - len(body))
            if not chunk:
                break
            body += chunk
        return bytes(body)

    async def scrape(
        self, pods: Sequence[ReadyPod], *, now: float, stable_window_s: float
    ) -> Stat | None:
        """The revision-wide Stat from a sample of `pods`; None when there are no pods."""
        population = len(pods)
        if population == 0:
            return None
        wanted = sample_size(population)
        candidates: Iterator[PodAddress] = iter(
            order_pods(pods, now=now, stable_window_s=stable_window_s, rng=self._rng)
        )
        results: list[Stat] = []
        failures: list[str] = []

        async def worker() -> None:
            # The iterator is shared: each pod is tried by exactly one worker.
            for pod in candidates:
                try:
                    results.append(await self.fetch_stat(pod))
                    return
                except (ScrapeError, aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(f"{pod}: {exc or type(exc).__name__}")

        async with asyncio.TaskGroup() as tg:
            for _ in range(wanted):
                tg.create_task(worker())
        if len(results) < wanted:
            raise ScrapeError(
                f"scraped {len(results)} of a sample of {wanted} from {population} ready "
                f"pods; failures: {'; '.join(failures[:3])}"
            )
        return extrapolate(results, population=population)
