"""The queue-proxy handler on fake engine heads: probes, drain, stats, breaker, headers, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from dataplane.breaker import new_queue_proxy_breaker
from dataplane.clock import FakeClock
from dataplane.proxy import Forward, LocalResponse, Outcome, RequestHead
from dataplane.stats import RequestStats
from queue_proxy import probe
from queue_proxy.drain import Drainer
from queue_proxy.handler import (
    ROUTE_TAG_DEFAULT,
    ROUTE_TAG_DISABLED,
    ROUTE_TAG_UNDEFINED,
    QueueProxyHandler,
    route_tag,
)

USER = ("127.0.0.1", 8080)
TIMEOUT_S = 300.0
KUBE = (b"user-agent", b"kube-probe/1.31")
QUEUE = (b"k-network-probe", b"queue")


class FakeReadiness:
    """Answers readiness from a flag and counts the probes."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.calls = 0

    async def probe(self) -> bool:
        self.calls += 1
        return self.ready


@dataclass
class FakeMetrics:
    """Records what the handler reports."""

    requests: list[tuple[int, str, float]] = field(default_factory=list)
    app_requests: list[tuple[int, float]] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)

    def record_request(self, status: int, tag: str, latency_s: float) -> None:
        self.requests.append((status, tag, latency_s))

    def record_app_request(self, status: int, latency_s: float) -> None:
        self.app_requests.append((status, latency_s))

    def set_queue_depth(self, depth: int) -> None:
        self.depths.append(depth)


class Rig:
    """A handler with real breaker, stats and drainer on a fake clock."""

    def __init__(self, clock: FakeClock, cc: int = 1, ready: bool = True, **timeouts: float) -> None:
        self.clock = clock
        self.breaker = new_queue_proxy_breaker(cc)
        self.stats = RequestStats(clock.now())
        self.metrics = FakeMetrics()
        self.drainer = Drainer(clock, quiet_s=30.0)
        self.readiness = FakeReadiness(ready)
        self.handler = QueueProxyHandler(
            upstream=USER, breaker=self.breaker, stats=self.stats, metrics=self.metrics,
            drainer=self.drainer, readiness=self.readiness, clock=clock,
            timeout_s=timeouts.pop("timeout_s", TIMEOUT_S), **timeouts,
        )

    def head(self, *headers: tuple[bytes, bytes]) -> RequestHead:
        """A request head as the engine hands it over (arrival stamped now)."""
        return RequestHead(b"GET", b"/any/path", b"1.1", [(b"host", b"rev.ns"), *headers],
                           b"10.0.0.1", True, None, False, False, False, self.clock.now())

    def finish(self, head: RequestHead, status: int = 200) -> None:
        self.handler.finish(head, Outcome(status, True, None, USER, False, 0, self.clock.now()))


async def decide(decision):
    """Resolve begin()'s answer the way the engine does (a future as is, others in a task)."""
    if isinstance(decision, (Forward, LocalResponse)):
        return decision
    async with asyncio.timeout(1):
        if isinstance(decision, asyncio.Future):
            # The engine's done callback runs after those the handler added in begin().
            called = asyncio.get_running_loop().create_future()
            decision.add_done_callback(called.set_result)
            await called
            return decision.result()
        return await asyncio.ensure_future(decision)


PROBES = [
    # (request headers, draining, user container ready, status, body, echoed hash)
    pytest.param([KUBE, QUEUE], False, True, 200, b"queue", None, id="kubelet-probe-ready"),
    pytest.param([KUBE, QUEUE], False, False, 503, b"", None, id="kubelet-probe-not-ready"),
    pytest.param([KUBE, QUEUE], True, True, 503, b"shutting down\n", None, id="kubelet-probe-draining"),
    pytest.param([QUEUE], False, True, 200, b"queue", None, id="bare-queue-probe"),
    pytest.param([(b"user-agent", b"Knative-Activator-Probe"), QUEUE], False, True, 200, b"queue", None,
                 id="activator-probe"),
    pytest.param([(b"k-kubelet-probe", b"1")], False, True, 400, b"unexpected probe header value: \n", None,
                 id="kubelet-header-without-queue-value"),
    pytest.param([KUBE, (b"k-network-probe", b"nope")], False, True, 400,
                 b"unexpected probe header value: nope\n", None, id="kubelet-probe-wrong-value"),
    pytest.param([(b"k-network-probe", b"probe"), (b"k-network-hash", b"abc123")], False, True, 200, b"",
                 b"abc123", id="network-probe-echoes-hash"),
    pytest.param([(b"k-network-probe", b"probe")], False, True, 400,
                 b'a probe request must contain a non-empty "K-Network-Hash" header\n', None,
                 id="network-probe-without-hash"),
    pytest.param([(b"k-network-probe", b"probe"), (b"k-network-hash", b"abc")], True, True, 503,
                 b"shutting down\n", None, id="network-probe-draining"),
]


@pytest.mark.parametrize(("headers", "draining", "ready", "status", "body", "echoed"), PROBES)
async def test_probes_are_answered_locally_and_never_counted(clock, headers, draining, ready, status, body,
                                                             echoed):
    rig = Rig(clock, ready=ready)
    if draining:
        rig.drainer.start()
    deadline_before = rig.drainer.stats().deadline
    head = rig.head(*headers)
    answer = await decide(rig.handler.begin(head))
    rig.finish(head, answer.status)
    assert isinstance(answer, LocalResponse)
    assert (answer.status, answer.body) == (status, body)
    if echoed is not None:
        assert b"k-network-hash: " + echoed + b"\r\n" in answer.keep_alive_wire
    assert rig.stats.report(clock.now()).request_count == 0
    assert rig.metrics.requests == [] and rig.metrics.app_requests == []
    assert rig.breaker.stats().in_flight == 0
    assert rig.drainer.stats().deadline == deadline_before  # probes do not extend a drain
    await rig.drainer.aclose()


async def test_draining_health_check_does_not_probe_the_user_container(clock):
    rig = Rig(clock)
    rig.drainer.start()
    answer = await decide(rig.handler.begin(rig.head(KUBE, QUEUE)))
    assert answer.status == 503 and rig.readiness.calls == 0
    await rig.drainer.aclose()


async def test_other_network_probe_values_are_proxied(clock):
    rig = Rig(clock)
    head = rig.head((b"k-network-probe", b"activator"))
    assert isinstance(rig.handler.begin(head), Forward)
    assert rig.stats.concurrency == 1


def test_forward_carries_the_revision_timeouts(clock):
    rig = Rig(clock, timeout_s=10.0, response_start_timeout_s=4.0, idle_timeout_s=6.0)
    forward = rig.handler.begin(rig.head())
    assert (forward.upstream, forward.timeout_s, forward.response_start_timeout_s, forward.idle_timeout_s) == (
        USER, 10.0, 4.0, 6.0)


def test_internal_headers_are_rewritten_for_the_user_container(clock):
    rig = Rig(clock)
    head = rig.head((b"k-original-host", b"hello.example.com"), (b"knative-serving-revision", b"r-1"),
                    (b"knative-serving-namespace", b"ns"), (b"x-keep", b"1"))
    rig.handler.begin(head)
    names = [k for k, _ in head.headers]
    assert head.get(b"host") == b"hello.example.com" and names.count(b"host") == 1
    assert not {b"k-original-host", b"knative-serving-revision", b"knative-serving-namespace"} & set(names)
    assert head.get(b"x-keep") == b"1"


def test_without_internal_headers_the_head_is_untouched(clock):
    rig = Rig(clock)
    head = rig.head((b"x-a", b"1"))
    before = list(head.headers)
    rig.handler.begin(head)
    assert head.headers == before


ROUTE_TAGS = [
    pytest.param(None, None, ROUTE_TAG_DISABLED, id="no-headers-disabled"),
    pytest.param(None, b"true", ROUTE_TAG_DEFAULT, id="default-route-only"),
    pytest.param(b"", b"", ROUTE_TAG_DISABLED, id="empty-values-read-as-absent"),
    pytest.param(b"canary", b"true", ROUTE_TAG_UNDEFINED, id="tag-on-default-route-undefined"),
    pytest.param(b"canary", None, "canary", id="tag-only"),
    pytest.param(b"canary", b"false", "canary", id="tag-and-non-true-default"),
]


@pytest.mark.parametrize(("tag", "default_route", "label"), ROUTE_TAGS)
def test_route_tag_label(tag, default_route, label):
    assert route_tag(tag, default_route) == label


def test_route_tag_label_reaches_the_request_metric(clock):
    rig = Rig(clock)
    head = rig.head((b"knative-serving-tag", b"canary"))
    rig.handler.begin(head)
    rig.finish(head)
    assert [tag for _, tag, _ in rig.metrics.requests] == ["canary"]


async def test_breaker_admits_cc_queues_ten_cc_and_refuses_the_next_at_once(clock):
    # containerConcurrency 2: 2 execute, 20 wait, the 23rd gets 503 with the reason.
    rig = Rig(clock, cc=2)
    heads = [rig.head() for _ in range(23)]
    decisions = [rig.handler.begin(head) for head in heads]  # a waiter parks in begin()
    assert all(isinstance(d, Forward) for d in decisions[:2])
    waiting = decisions[2:22]
    assert all(isinstance(w, asyncio.Future) and not w.done() for w in waiting)  # no task
    refused = decisions[22]
    assert isinstance(refused, LocalResponse)
    assert (refused.status, refused.body) == (503, b"pending request queue full\n")
    assert b"x-content-type-options: nosniff" in refused.keep_alive_wire
    # Counted before the breaker: executing, queued and refused are all load until finish.
    assert rig.stats.concurrency == 23
    assert (rig.breaker.stats().executing, rig.breaker.stats().waiting) == (2, 20)
    rig.finish(heads[22], 503)
    assert rig.stats.concurrency == 22 and rig.breaker.stats().in_flight == 22
    assert rig.metrics.requests[-1][:2] == (503, ROUTE_TAG_DISABLED) and rig.metrics.app_requests == []
    # A finished request hands its slot to the oldest waiter.
    rig.finish(heads[0])
    async with asyncio.timeout(1):
        assert isinstance(await waiting[0], Forward)
    assert not any(w.done() for w in waiting[1:])
    for waiter in waiting[1:]:
        waiter.cancel()
    await asyncio.sleep(0)  # the breaker counts cancelled waiters out on their callback
    assert rig.breaker.stats().waiting == 0


WAIT_TIMEOUTS = [
    # (revision timeouts) -> the head of a queued request carries all three for the engine
    pytest.param({"timeout_s": 10.0, "idle_timeout_s": 3.0}, id="total-and-idle"),
    pytest.param({"timeout_s": 10.0, "response_start_timeout_s": 4.0, "idle_timeout_s": 6.0}, id="all-three"),
    pytest.param({"timeout_s": 10.0}, id="total-only"),
]


@pytest.mark.parametrize("timeouts", WAIT_TIMEOUTS)
async def test_queued_request_wait_is_bounded_by_every_revision_timeout(clock, timeouts):
    rig = Rig(clock, cc=1, **timeouts)
    rig.handler.begin(rig.head())
    queued = rig.head()
    waiter = rig.handler.begin(queued)
    want = tuple(timeouts.get(k) for k in ("timeout_s", "response_start_timeout_s", "idle_timeout_s"))
    assert (queued.timeout_s, queued.response_start_timeout_s, queued.idle_timeout_s) == want
    waiter.cancel()


async def test_hand_off_racing_the_engine_giving_up_still_releases_the_slot(clock):
    # The slot reaches the waiter, then (before its callbacks run) the client goes away:
    # the engine's cancel finds the future done, and finish() must give the slot back.
    rig = Rig(clock, cc=1)
    first, queued, third = rig.head(), rig.head(), rig.head()
    rig.handler.begin(first)
    waiter = rig.handler.begin(queued)
    later = rig.handler.begin(third)
    rig.finish(first)  # hands the slot to `queued`
    assert waiter.done() and not waiter.cancel()
    rig.finish(queued, 0)
    async with asyncio.timeout(1):
        assert isinstance(await later, Forward)  # the slot moved on to the next waiter
    rig.finish(third)
    assert rig.breaker.stats().in_flight == 0 and rig.stats.concurrency == 0


async def test_cancelled_wait_leaks_no_slot_and_still_counts_out(clock):
    rig = Rig(clock, cc=1)
    first = rig.head()
    rig.handler.begin(first)
    queued = rig.head()
    waiter = rig.handler.begin(queued)
    waiter.cancel()  # what the engine does on a timeout or a client gone while queued
    rig.finish(queued, 0)
    await asyncio.sleep(0)  # the breaker's done callback counts the waiter out
    assert rig.breaker.stats().in_flight == 1 and rig.stats.concurrency == 1
    rig.finish(first)
    assert rig.breaker.stats().in_flight == 0 and rig.stats.concurrency == 0
    assert [s for s, _, _ in rig.metrics.requests] == [502, 200]  # nothing sent counts as 502


async def test_finish_accounts_exactly_once(clock):
    rig = Rig(clock, cc=1)
    head = rig.head()
    rig.handler.begin(head)
    rig.finish(head)
    rig.finish(head)  # a duplicate must not release or count again
    assert rig.breaker.stats().in_flight == 0 and rig.stats.concurrency == 0
    assert len(rig.metrics.requests) == 1 and len(rig.metrics.app_requests) == 1


async def test_latency_includes_queue_wait_and_app_latency_excludes_it(clock):
    rig = Rig(clock, cc=1)
    first, queued = rig.head(), rig.head()
    rig.handler.begin(first)
    waiter = rig.handler.begin(queued)
    await clock.advance(2.0)
    rig.finish(first)  # t+2: the queued request gets the slot
    await decide(waiter)
    await clock.advance(1.0)
    rig.finish(queued)  # t+3
    assert rig.metrics.requests == [(200, ROUTE_TAG_DISABLED, 2.0), (200, ROUTE_TAG_DISABLED, 3.0)]
    assert rig.metrics.app_requests == [(200, 2.0), (200, 1.0)]


async def test_queue_depth_is_sampled_as_each_request_passes_the_breaker(clock):
    # Knative samples InFlight() behind the breaker: the starting request is counted,
    # a queued one only when it gets its slot, a refused one never.
    rig = Rig(clock, cc=1)
    heads = [rig.head() for _ in range(13)]
    decisions = [rig.handler.begin(h) for h in heads]
    assert isinstance(decisions[0], Forward) and isinstance(decisions[-1], LocalResponse)
    assert rig.metrics.depths == [1]  # 11 in flight now, but only the first has started
    rig.finish(heads[0])  # the slot passes to heads[1]: 1 executing + 9 waiting
    await decide(decisions[1])
    assert rig.metrics.depths == [1, 10]
    for waiter in decisions[2:11]:
        waiter.cancel()
    rig.finish(heads[1])
    await asyncio.sleep(0)
    assert rig.metrics.depths == [1, 10] and rig.breaker.stats().in_flight == 0


def test_proxied_requests_count_in_the_proxied_figures(clock):
    rig = Rig(clock, cc=0)
    heads = [rig.head((b"k-proxy-request", b"activator")), rig.head((b"k-proxy-request", b"Activator"))]
    for head in heads:
        assert isinstance(rig.handler.begin(head), Forward)  # CC 0: no breaker at all
    report = rig.stats.report(clock.now())
    assert (report.request_count, report.proxied_request_count) == (2, 1)
    for head in heads:
        rig.finish(head)
    assert rig.stats.concurrency == 0 and rig.metrics.depths == []


async def test_ordinary_request_restarts_the_drain_quiet_period(clock):
    rig = Rig(clock)
    rig.drainer.start()
    await clock.advance(20.0)
    rig.handler.begin(rig.head())
    assert rig.drainer.stats().deadline == clock.now() + 30.0
    await rig.drainer.aclose()


async def test_burst_begun_in_one_loop_step_still_admits_exactly_eleven_cc(clock):
    # Many heads parsed before the loop turns: each waiter joins the queue inside begin(),
    # so begin() itself refuses the overflow with 503 and the reason.
    rig = Rig(clock, cc=1)
    heads = [rig.head() for _ in range(15)]
    decisions = [rig.handler.begin(h) for h in heads]
    assert isinstance(decisions[0], Forward)
    parked = [d for d in decisions[1:] if isinstance(d, asyncio.Future)]
    refused = [d for d in decisions[1:] if isinstance(d, LocalResponse)]
    assert (len(parked), len(refused)) == (10, 4)
    assert {(r.status, r.body) for r in refused} == {(503, b"pending request queue full\n")}
    assert rig.breaker.stats().in_flight == 11 and rig.stats.concurrency == 15
    for waiter in parked:
        waiter.cancel()
    await asyncio.sleep(0)
    assert rig.breaker.stats().in_flight == 1


CLASSIFY_CASES = [
    # request headers -> forwarded to the user container (True) or answered locally
    pytest.param([(b"user-agent", b"hey/0.0.1")], True, id="ordinary-ua"),
    pytest.param([], True, id="no-ua"),
    pytest.param([(b"user-agent", b"kube-probe-ish")], True, id="ua-lookalike-without-slash"),
    pytest.param([(b"k-kubelet-probe", b"")], True, id="empty-kubelet-header-is-absent"),
    pytest.param([(b"k-network-probe", b"activator")], True, id="other-network-probe-value"),
    pytest.param([(b"user-agent", b"Knative-Autoscaling-Probe")], False, id="autoscaling-probe-ua"),
    pytest.param([(b"user-agent", b"kube-probe/1.31")], False, id="kubelet-ua"),
    pytest.param([(b"k-network-probe", b"probe")], False, id="network-probe"),
]


@pytest.mark.parametrize(("headers", "forwarded"), CLASSIFY_CASES)
async def test_bytes_fast_path_agrees_with_the_probe_table(clock, headers, forwarded):
    rig = Rig(clock, cc=0)
    decision = await decide(rig.handler.begin(rig.head(*headers)))
    text = {k.decode(): v.decode() for k, v in headers}
    kind = probe.classify_request(text.get("user-agent"), text.get("k-kubelet-probe"),
                                  text.get("k-network-probe"))
    assert isinstance(decision, Forward) is forwarded
    assert (kind is probe.ProbeKind.NONE) is forwarded
