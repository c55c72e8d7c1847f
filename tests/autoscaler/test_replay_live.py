"""Replay and the live Multiscaler decide alike: the same trace gives the same decisions.

Replay simulates the pods (start delay, scale-to-zero gate) around the autoscaler; the
live path is the Multiscaler fed through its public API. The test replays a bundled
trace, then plays the same seconds into a Multiscaler on a fake clock: each second it
shows the replay's ready-pod count, pushes the stat replay recorded (`ingest`, the
activator's path, which pokes a revision at zero), and ticks every 2 s. Every decision
replay logged must be the live one at that second.

The revisions keep the activator in the path all the time (TBC -1, or a TBC far above
what the pods can cover, so EBC stays negative), because then every stat replay records
is an activator stat; the scrape path is covered by test_multiscaler.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.config import AutoscalerConfig
from autoscaler.multiscaler import Multiscaler
from autoscaler.replay import ReplayOptions, ReplayResult, parse_trace, replay, resolve_revision
from autoscaler.scaling import SKSMode
from autoscaler.scraper import ReadyPod
from dataplane.clock import FakeClock
from dataplane.stat import Stat
from dataplane.types import PodAddress, RevisionKey

TRACES = Path(__file__).resolve().parents[2] / "bench" / "traces"
KEY = RevisionKey("default", "trace-00001")
A = "autoscaling.knative.dev/"

# (trace file, annotations, containerConcurrency)
CASES = [
    pytest.param("step.csv", {A + "target-burst-capacity": "-1"}, 0, id="step-tbc-unlimited"),
    pytest.param("spike.csv", {A + "target-burst-capacity": "-1"}, 0, id="spike-panics"),
    pytest.param("idle-gaps.csv", {A + "target-burst-capacity": "-1", A + "window": "10s"}, 0,
                 id="idle-gaps-scale-to-zero-and-poke"),
    pytest.param("idle-gaps.csv", {A + "target-burst-capacity": "100000", A + "window": "10s"}, 0,
                 id="idle-gaps-with-scrape-target-no-data"),
    pytest.param("spike.csv", {A + "target-burst-capacity": "100000",
                               A + "metric-aggregation-algorithm": "weighted-exponential",
                               A + "class": "kpa.autoscaling.knative.dev"}, 10,
                 id="spike-weighted-cc10"),
    pytest.param("step.csv", {A + "target-burst-capacity": "-1", A + "scale-down-delay": "30s",
                              A + "activation-scale": "3"}, 0,
                 id="step-scale-down-delay-activation-scale"),
]


def _pods(count: int) -> list[ReadyPod]:
    return [ReadyPod(PodAddress("127.0.0.1", 9000 + i), started_at=0.0) for i in range(count)]


def _live(result: ReplayResult, clock: FakeClock) -> dict[int, tuple[int, bool]]:
    """Play the replay's world into a Multiscaler; its decision at each replayed tick."""
    setup, start = result.setup, clock.now()
    ready = [0]
    ms = Multiscaler(clock=clock, on_decision=lambda key, decision: None)
    ms.watch(KEY, setup.spec, panic_window_s=setup.panic_window_s, algorithm=setup.algorithm,
             pods=lambda: _pods(ready[0]))
    has_scrape_target = setup.spec.target_burst_capacity != -1
    interval = result.options.tick_interval_s
    decided: dict[int, tuple[int, bool]] = {}
    for t, load in enumerate(result.load):
        clock.set(start + t)
        ready[0] = result.ready[t]
        pokes = ms.stats().pokes
        if load > 0 or (ready[0] > 0 and has_scrape_target):   # replay records then too
            ms.ingest(KEY, Stat(pod_name="activator", average_concurrent_requests=load), clock.now())
        if t > 0 and t % interval == 0:
            ms.tick()
        if ms.stats().pokes > pokes or (t > 0 and t % interval == 0):
            status = ms.decision(KEY)
            decided[t] = (status.desired_pods, status.panic)
    return decided


@pytest.mark.parametrize(("trace_file", "annotations", "cc"), CASES)
def test_live_multiscaler_decides_as_replay(trace_file, annotations, cc, clock):
    trace = parse_trace((TRACES / trace_file).read_text(), name=trace_file)
    setup = resolve_revision(AutoscalerConfig(), annotations, container_concurrency=cc)
    result = replay(trace, setup, ReplayOptions(pod_start_delay_s=3))
    assert {tick.mode for tick in result.ticks} == {SKSMode.PROXY.value}, "premise: activator always in path"
    assert len({tick.desired for tick in result.ticks}) > 2, "premise: the trace moves the scale"

    live = _live(result, clock)

    want = {tick.t: (tick.desired, tick.panic_mode) for tick in result.ticks}
    assert live == want
