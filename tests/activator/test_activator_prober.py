"""Pod prober on a FakeClock with a scripted probe; one real HTTP probe on loopback."""

from __future__ import annotations

import asyncio

from aiohttp import web

from activator.prober import HttpProbe, PodProber
from dataplane import PodAddress, RevisionKey

KEY = RevisionKey("default", "hello-00001")
A = PodAddress("127.0.0.1", 9001)
B = PodAddress("127.0.0.1", 9002)


class ScriptedProbe:
    """Answers from a per-pod list of results (the last one repeats); records calls."""

    def __init__(self, script: dict[PodAddress, list[bool]]) -> None:
        self.script = script
        self.calls: list[PodAddress] = []

    async def __call__(self, pod: PodAddress) -> bool:
        self.calls.append(pod)
        results = self.script[pod]
        return results.pop(0) if len(results) > 1 else results[0]


async def test_probes_every_period_until_healthy_then_idles(clock):
    probe = ScriptedProbe({A: [True], B: [False, False, True]})
    changes = []
    prober = PodProber(clock, lambda key, pods: changes.append((key, pods)), probe=probe)
    assert prober.set_pods(KEY, [A, B]) == frozenset()
    task = asyncio.ensure_future(prober.run())
    await asyncio.sleep(0.01)  # the first round runs at once, with no clock movement
    assert changes == [(KEY, frozenset({A}))]
    assert prober.unprobed(KEY) == {B}
    await clock.advance(0.2)
    await asyncio.sleep(0.01)
    assert changes[1:] == []  # B failed again
    await clock.advance(0.2)
    await asyncio.sleep(0.01)
    assert changes[1:] == [(KEY, frozenset({A, B}))]
    assert sorted(probe.calls) == [A, B, B, B]
    await clock.advance(1.0)  # nothing unprobed: no more probes
    assert len(probe.calls) == prober.probes == 4
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_removal_is_immediate_and_reprobe_demotes(clock):
    probe = ScriptedProbe({A: [True], B: [True]})
    changes = []
    prober = PodProber(clock, lambda key, pods: changes.append(pods), probe=probe)
    prober.set_pods(KEY, [A, B])
    await prober.probe_round(probe)
    assert prober.healthy(KEY) == {A, B}
    assert prober.set_pods(KEY, [B]) == {B}  # A dropped synchronously
    assert prober.reprobe(KEY, B) == frozenset()
    assert prober.unprobed(KEY) == {B}
    await prober.probe_round(probe)
    assert changes[-1] == {B}
    prober.remove(KEY)
    assert prober.healthy(KEY) == frozenset() and prober.unprobed(KEY) == frozenset()


async def test_pod_removed_while_its_probe_runs_is_not_promoted(clock):
    gate = asyncio.Event()

    async def slow_probe(pod):
        await gate.wait()
        return True

    prober = PodProber(clock, lambda key, pods: None, probe=slow_probe)
    prober.set_pods(KEY, [A])
    round_ = asyncio.ensure_future(prober.probe_round(slow_probe))
    await asyncio.sleep(0)
    prober.set_pods(KEY, [])
    gate.set()
    await round_
    assert prober.healthy(KEY) == frozenset()


async def test_hung_probe_times_out_as_a_failure(clock):
    async def hang(pod):
        await asyncio.Event().wait()

    prober = PodProber(clock, lambda key, pods: None, probe=hang, timeout_s=0.01)
    prober.set_pods(KEY, [A])
    async with asyncio.timeout(5):
        assert await prober.probe_round(hang) == 0
    assert prober.unprobed(KEY) == {A}


async def test_http_probe_needs_200_queue_and_sends_knative_headers():
    seen = []
    state = {"ready": False}

    async def health(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("K-Network-Probe"),
                     request.headers.get("User-Agent")))
        body = "queue" if state["ready"] else "nope"
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(5), HttpProbe(timeout_s=1.0) as probe:
            pod = PodAddress("127.0.0.1", port)
            assert await probe(pod) is False
            state["ready"] = True
            assert await probe(pod) is True
            assert await probe(PodAddress("127.0.0.1", 1)) is False  # refused
    finally:
        await runner.cleanup()
    assert seen[0] == ("/healthz", "queue", "Knative-Activator-Probe")
