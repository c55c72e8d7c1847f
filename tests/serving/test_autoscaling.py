"""serving.autoscaling: decisions drive the platform and the activator's mode (fake clock)."""

from __future__ import annotations

import asyncio
import json

import pytest

from dataplane import Mode, PodAddress, RevisionEndpoints, RevisionKey, Stat
from serving.autoscaling import Autoscaling, _bounds_note
from serving.manifests import parse_manifests
from serving.platform import PodInfo, PodPhase, PodTemplate
from serving.reconciler import plan
from serving.state import ServingState, apply

KEY = RevisionKey("default", "hello-00001")
ANN = "autoscaling.knative.dev/"


def revision_plan(annotations: dict[str, str], config: dict[str, str] | None = None):
    """The plan of hello-00001 for these template annotations and config-autoscaler data."""
    text = ("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello}\n"
            "spec:\n  template:\n    metadata:\n"
            f"      annotations: {json.dumps(annotations or {'x': 'y'})}\n"
            "    spec:\n      containers:\n        - command: [python, app.py]\n")
    if config:
        text = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, "
                f"namespace: knative-serving}}\ndata: {json.dumps(config)}\n---\n") + text
    state = apply(ServingState(), parse_manifests(text).objects, now=1.0).state
    return plan(state).revisions[KEY]


class FakePlatform:
    """Records scale calls with the Clock time; pods are whatever the test sets."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.scales: list[tuple[float, int]] = []
        self.templates: dict[RevisionKey, PodTemplate] = {}
        self._pods: tuple[PodInfo, ...] = ()

    async def ensure(self, key, template) -> None:
        self.templates[key] = template

    async def scale(self, key, n) -> None:
        self.scales.append((self.clock.now(), n))

    async def delete(self, key) -> None:
        self.templates.pop(key, None)

    def pods(self, key):
        return self._pods

    def set_ready_pods(self, n: int) -> tuple[PodInfo, ...]:
        self._pods = tuple(PodInfo(f"p{i}", KEY, PodPhase.RUNNING, True,
                                   PodAddress("127.0.0.1", 2000 + i, 3000 + i), 0, 0, 0, 1, 2,
                                   self.clock.now(), 0, None, "l", "q") for i in range(n))
        return self._pods


class FakeActivator:
    """Keeps every RevisionEndpoints it was given."""

    def __init__(self) -> None:
        self.endpoints: list[RevisionEndpoints] = []
        self.removed: list[RevisionKey] = []

    def set_revision(self, endpoints: RevisionEndpoints) -> None:
        self.endpoints.append(endpoints)

    def remove_revision(self, key: RevisionKey) -> None:
        self.removed.append(key)


@pytest.fixture
async def glue(clock):
    platform, activator = FakePlatform(clock), FakeActivator()
    autoscaling = Autoscaling(clock=clock, platform=platform, endpoints=activator, scraper=None)
    task = asyncio.ensure_future(autoscaling.run())
    yield autoscaling, platform, activator
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def advance_to(clock, t: float) -> None:
    while clock.now() < t:
        await clock.advance(min(0.25, t - clock.now()))
        await settle()


async def test_a_new_revision_starts_at_initial_scale_in_proxy_mode(clock, glue):
    autoscaling, platform, activator = glue
    await autoscaling.watch(revision_plan({ANN + "initial-scale": "2"}))
    await settle()
    assert platform.scales == [(1000.0, 2)]
    assert activator.endpoints[-1] == RevisionEndpoints(KEY, (), Mode.PROXY, 0, 300.0)


async def test_scale_to_zero_waits_for_the_stable_window(clock, glue):
    # TBC -1: no scrape target, so no data reads as no load; window 6 s, grace 2 s. The
    # activator has been in the path since the start (TBC -1 never serves directly), so
    # once the PA goes Inactive the grace period is already over: Knative's fast path.
    autoscaling, platform, activator = glue
    await autoscaling.watch(revision_plan({ANN + "target-burst-capacity": "-1",
                                           ANN + "window": "6s"},
                                          {"scale-to-zero-grace-period": "2s"}))
    autoscaling.pods_changed(KEY, platform.set_ready_pods(1))  # ready: PA Active at 1000
    await advance_to(clock, 1005.75)
    assert platform.scales == [(1000.0, 1)]  # desired 0 since 1002, but Active < window
    await advance_to(clock, 1010.0)
    [(t, n)] = platform.scales[1:]
    assert n == 0 and 1006.0 <= t <= 1006.25  # the first step at or after 1006
    assert activator.endpoints[-1].mode is Mode.PROXY


async def test_an_activator_stat_at_zero_pods_scales_up_at_once(clock, glue):
    autoscaling, platform, activator = glue
    await autoscaling.watch(revision_plan({ANN + "initial-scale": "0"},
                                          {"allow-zero-initial-scale": "true"}))
    await settle()
    assert platform.scales == []
    autoscaling.stat_sink.send(KEY, Stat(pod_name="activator", average_concurrent_requests=1.0,
                                         request_count=1.0))
    await settle()
    assert platform.scales == [(1000.0, 1)]


async def test_a_new_plan_applies_new_bounds(clock, glue):
    autoscaling, platform, activator = glue
    await autoscaling.watch(revision_plan({}))
    autoscaling.pods_changed(KEY, platform.set_ready_pods(1))
    await settle()
    autoscaling.update(revision_plan({}, {"min-scale": "3"}))  # config-autoscaler reload
    await settle()
    assert platform.scales == [(1000.0, 1), (1000.0, 3)]


async def test_nonnegative_excess_burst_capacity_takes_the_activator_out_of_the_path(clock, glue):
    autoscaling, platform, activator = glue
    await autoscaling.watch(revision_plan({ANN + "target-burst-capacity": "0"}))
    autoscaling.pods_changed(KEY, platform.set_ready_pods(1))
    await settle()
    assert activator.endpoints[-1].mode is Mode.PROXY  # no decision yet (desired -1)
    autoscaling.stat_sink.send(KEY, Stat(pod_name="activator", average_concurrent_requests=1.0))
    await settle()
    last = activator.endpoints[-1]
    assert (last.mode, last.pods) == (Mode.SERVE, (PodAddress("127.0.0.1", 2000, 3000),))


async def test_forget_removes_the_revision_from_the_activator_and_the_platform(clock, glue):
    autoscaling, platform, activator = glue
    await autoscaling.watch(revision_plan({}))
    await autoscaling.forget(KEY)
    assert activator.removed == [KEY] and platform.templates == {}
    assert autoscaling.scale_of(KEY) is None


BOUNDS_NOTES = [
    pytest.param({ANN + "min-scale": "2"}, 1, " (min-scale keeps 2)", id="below-min-scale"),
    pytest.param({ANN + "max-scale": "3"}, 5, " (max-scale caps it at 3)", id="above-max-scale"),
    pytest.param({}, 0, " (to zero once the scale-to-zero grace period allows)", id="to-zero"),
    pytest.param({ANN + "max-scale": "3"}, 2, "", id="within-bounds"),
]


@pytest.mark.parametrize(("annotations", "desired", "note"), BOUNDS_NOTES)
def test_decision_line_says_why_the_pods_will_differ(annotations, desired, note):
    assert _bounds_note(desired, revision_plan(annotations)) == note
