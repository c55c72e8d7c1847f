"""The pod scraper: Knative's sampling order and extrapolation, and real scrapes on loopback."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from autoscaler.scraper import (
    SCRAPER_POD_NAME,
    PodScraper,
    ReadyPod,
    ScrapeError,
    extrapolate,
    order_pods,
)
from dataplane.stat import PROTOBUF_CONTENT_TYPE, Stat
from dataplane.types import PodAddress

NOW = 1_000.0
WINDOW = 60.0


class ReversingRandom(random.Random):
    """A shuffle we can predict: reverse the list."""

    def shuffle(self, x, *args, **kwargs) -> None:  # noqa: D102
        x.reverse()


def _pod(name: str, age_s: float) -> ReadyPod:
    return ReadyPod(PodAddress(name, 8012, 9090), started_at=NOW - age_s)


# (pods as (name, age seconds), expected try order): reversal marks the shuffled part.
ORDER_CASES = [
    pytest.param([], [], id="no-pods"),
    pytest.param([("a", 100), ("b", 100), ("c", 100)], ["c", "b", "a"], id="all-old-shuffled"),
    pytest.param([("a", 1), ("b", 2), ("c", 3)], ["c", "b", "a"], id="all-young-shuffled"),
    pytest.param(
        [("y1", 5), ("o1", 60), ("y2", 59.9), ("o2", 600)],
        ["o1", "o2", "y2", "y1"],
        id="too-few-old-keep-old-then-shuffled-young",
    ),
    pytest.param(
        # N = 5 so n = 4; four old pods fill the sample: they are shuffled, young last.
        [("o1", 61), ("o2", 62), ("y1", 1), ("o3", 63), ("o4", 64)],
        ["o4", "o3", "o2", "o1", "y1"],
        id="enough-old-shuffle-old-young-last",
    ),
    pytest.param([("edge", 60.0)], ["edge"], id="exactly-one-window-is-old"),
]


@pytest.mark.parametrize(("pods", "want"), ORDER_CASES)
def test_order_pods_prefers_old_pods_like_knative(pods, want) -> None:
    ready = [_pod(name, age) for name, age in pods]
    got = order_pods(ready, now=NOW, stable_window_s=WINDOW, rng=ReversingRandom())
    assert [p.host for p in got] == want


def test_order_pods_shuffle_is_random_with_a_real_rng() -> None:
    ready = [_pod(f"p{i}", 100) for i in range(8)]
    orders = {
        tuple(p.host for p in order_pods(ready, now=NOW, stable_window_s=WINDOW,
                                         rng=random.Random(seed)))
        for seed in range(20)
    }
    assert len(orders) > 1
    assert all(sorted(o) == sorted(p.address.host for p in ready) for o in orders)


EXTRAPOLATE_CASES = [
    pytest.param([Stat(average_concurrent_requests=3.0)] * 4, 5,
                 Stat(SCRAPER_POD_NAME, 15.0), id="four-of-five-scaled"),
    pytest.param([Stat("a", 1.0, 0.5, 10.0, 4.0, 99.0, 7), Stat("b", 3.0, 1.5, 20.0, 2.0, 5.0, 8)],
                 2, Stat(SCRAPER_POD_NAME, 4.0, 2.0, 30.0, 6.0), id="all-pods-plain-sum"),
    pytest.param([Stat(request_count=7.0)], 16, Stat(SCRAPER_POD_NAME, request_count=112.0),
                 id="one-sample-times-population"),
]


@pytest.mark.parametrize(("stats", "population", "want"), EXTRAPOLATE_CASES)
def test_extrapolate_sums_times_population_over_sample(stats, population, want) -> None:
    assert extrapolate(stats, population=population) == want


# --- real scrapes on loopback -------------------------------------------------------------

Behaviour = Callable[[web.Request], "asyncio.Future[web.StreamResponse] | web.StreamResponse"]


def _stat_response(stat: Stat) -> web.Response:
    return web.Response(body=stat.to_protobuf(), content_type=PROTOBUF_CONTENT_TYPE)


@asynccontextmanager
async def fake_pods(behaviours: list) -> AsyncIterator[list[ReadyPod]]:
    """One loopback listener per fake pod; each answers /metrics with its behaviour."""
    by_port: dict[int, object] = {}

    async def metrics(request: web.Request) -> web.StreamResponse:
        behaviour = by_port[request.transport.get_extra_info("sockname")[1]]
        if isinstance(behaviour, Stat):
            return _stat_response(behaviour)
        return await behaviour(request)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    pods = []
    try:
        for behaviour in behaviours:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            by_port[port] = behaviour
            await web.SockSite(runner, sock).start()
            pods.append(ReadyPod(PodAddress("127.0.0.1", 1, port), started_at=0.0))
        yield pods
    finally:
        await runner.cleanup()


async def _status(request: web.Request, status: int = 503) -> web.Response:
    return web.Response(status=status, text="unavailable")


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="average_concurrent_requests 3")


async def _huge(request: web.Request) -> web.Response:
    return web.Response(body=Stat(pod_name="x" * 400).to_protobuf(),
                        content_type=PROTOBUF_CONTENT_TYPE)


async def _huge_chunked(request: web.Request) -> web.StreamResponse:
    # No Content-Length: the bound must hold while reading, not only from the header.
    resp = web.StreamResponse(headers={"Content-Type": PROTOBUF_CONTENT_TYPE})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    body = Stat(pod_name="x" * 400).to_protobuf()
    for i in range(0, len(body), 100):
        await resp.write(body[i:i + 100])
    await resp.write_eof()
    return resp


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(body=b"\xff\xff\xff", content_type=PROTOBUF_CONTENT_TYPE)


@asynccontextmanager
async def scraper(**kwargs) -> AsyncIterator[PodScraper]:
    async with aiohttp.ClientSession() as session:
        yield PodScraper(session, rng=random.Random(1), **kwargs)


GOOD = Stat(pod_name="p", average_concurrent_requests=3.0, request_count=2.0,
            process_uptime=100.0)

SCRAPE_CASES = [
    pytest.param([GOOD] * 3, Stat(SCRAPER_POD_NAME, 9.0, request_count=6.0), id="all-three"),
    pytest.param([GOOD, GOOD, GOOD, GOOD, _status], Stat(SCRAPER_POD_NAME, 15.0,
                 request_count=10.0), id="dead-pod-replaced-by-spare-then-extrapolated"),
    pytest.param([GOOD, GOOD, _status], (ScrapeError, "2 of a sample of 3"), id="partial-failure-is-an-error"),
    pytest.param([_status], (ScrapeError, "HTTP 503"), id="non-2xx"),
    pytest.param([_text], (ScrapeError, "Content-Type 'text/plain'"), id="wrong-content-type"),
    pytest.param([_huge], (ScrapeError, "too large"), id="body-over-336-bytes"),
    pytest.param([_huge_chunked], (ScrapeError, "exceeds 336 bytes"), id="chunked-body-over-336"),
    pytest.param([_garbage], (ScrapeError, "malformed Stat"), id="malformed-protobuf"),
    pytest.param([], None, id="no-pods-nothing-to-record"),
]


@pytest.mark.parametrize(("behaviours", "want"), SCRAPE_CASES)
async def test_scrape_real_pods(behaviours, want) -> None:
    async with asyncio.timeout(10), fake_pods(behaviours) as pods, scraper() as s:
        if isinstance(want, tuple):
            with pytest.raises(want[0], match=want[1]):
                await s.scrape(pods, now=NOW, stable_window_s=WINDOW)
        else:
            assert await s.scrape(pods, now=NOW, stable_window_s=WINDOW) == want


async def test_fetch_stat_sends_accept_protobuf_and_decodes() -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept", ""))
        return _stat_response(GOOD)

    async with asyncio.timeout(10), fake_pods([record]) as pods, scraper() as s:
        assert await s.fetch_stat(pods[0].address) == GOOD
    assert seen == [PROTOBUF_CONTENT_TYPE]


async def test_slow_pod_times_out_as_an_error() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return _stat_response(GOOD)

    async with asyncio.timeout(10), fake_pods([hang]) as pods, scraper(timeout_s=0.2) as s:
        with pytest.raises(ScrapeError, match="0 of a sample of 1"):
            await s.scrape(pods, now=NOW, stable_window_s=WINDOW)
        release.set()


async def test_unreachable_pod_is_an_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now: connection refused
    pods = [ReadyPod(PodAddress("127.0.0.1", 1, port), started_at=0.0)]
    async with asyncio.timeout(10), scraper() as s:
        with pytest.raises(ScrapeError, match="failures: 127.0.0.1"):
            await s.scrape(pods, now=NOW, stable_window_s=WINDOW)
