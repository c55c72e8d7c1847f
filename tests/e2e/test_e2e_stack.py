"""The local stack end to end: `surge up` as a real process, driven by `surge` and HTTP.

Each test runs its own stack on a free port with its own state directory, shortens the
autoscaler's windows through a config-autoscaler ConfigMap where time matters, and stops
everything by PID at the end (the fixture also kills what a failing test left behind).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time

import aiohttp
import pytest
import pytest_asyncio

from e2e_stack import (
    APP, Stack, config_autoscaler, get, pids_of, run_load, service_yaml, wait_gone,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ANN = "autoscaling.knative.dev/"


@pytest_asyncio.fixture
async def stack(tmp_path):
    s = Stack(tmp_path / "state")
    await s.start()
    try:
        yield s
    finally:
        if s.proc is not None:
            pid = s.proc.pid
            assert await s.stop() == 0, "\n".join(s.lines)
            assert not (s.state_dir / "admin.json").exists()
            # Nothing of the stack may outlive it.
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def _wait_pods(stack: Stack, session: aiohttp.ClientSession, predicate, timeout_s: float,
                     revision: str | None = None) -> list[dict]:
    """Poll the pods (every 0.25 s: the stack has no push API) until `predicate` holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate(pods := await stack.pods(session, revision)):
            await asyncio.sleep(0.25)
    return pods


async def test_first_request_to_a_service_at_zero_pods_gets_200(stack, session):
    await stack.apply(config_autoscaler(allow_zero_initial_scale="true") + "---\n" +
                      service_yaml("cold", annotations={ANN + "initial-scale": "0"}))
    assert await stack.pods(session) == []

    async with asyncio.timeout(30):
        status, body = await get(session, stack, "cold")

    assert (status, body["revision"]) == (200, "cold-00001")
    pods = await stack.pods(session)
    assert [p["revision"] for p in pods] == ["cold-00001"]
    # The admin API's /metrics has the activator's count of it, under Knative's name.
    admin = json.loads((stack.state_dir / "admin.json").read_text())
    async with session.get(f"http://127.0.0.1:{admin['port']}/metrics",
                           headers={"Authorization": f"Bearer {admin['token']}"}) as resp:
        metrics = await resp.text()
    assert re.search(r'^activator_request_count\{[^}]*response_code="200"[^}]*'
                     r'revision_name="cold-00001",service_name="cold"\} 1\.0$',
                     metrics, re.M), metrics
    assert "# TYPE activator_request_count counter" in metrics.splitlines()


CANARY_TRAFFIC = """\
traffic:
  - revisionName: canary-v1
    percent: 80
    tag: v1
  - revisionName: canary-v2
    percent: 20
    tag: v2
"""


async def test_canary_80_20_split_and_tags_reach_their_revision(stack, session):
    await stack.apply(service_yaml("canary", revision_name="canary-v1"))
    # v2 is routed only once ready: apply returns when the split is in force.
    await stack.apply(service_yaml("canary", target="v2", revision_name="canary-v2",
                                   traffic=CANARY_TRAFFIC))

    load = await run_load(session, stack, "canary", clients=20, requests=2000)

    assert load.statuses == {200: 2000}
    share = load.revisions["canary-v1"] / 2000
    assert 0.76 <= share <= 0.84, load.revisions
    assert set(load.revisions) == {"canary-v1", "canary-v2"}
    for tag, revision in (("v1", "canary-v1"), ("v2", "canary-v2")):
        by_host = [await get(session, stack, "canary", tag=tag) for _ in range(20)]
        assert {(s, b["revision"]) for s, b in by_host} == {(200, revision)}, tag
        by_header = [await get(session, stack, "canary", headers={"Knative-Serving-Tag": tag})
                     for _ in range(20)]
        assert {(s, b["revision"]) for s, b in by_header} == {(200, revision)}, tag


async def test_container_concurrency_1_never_gives_the_app_two_requests(stack, session):
    await stack.apply(service_yaml("one", container_concurrency=1,
                                   annotations={ANN + "max-scale": "1"}))

    load = await run_load(session, stack, "one", clients=20, requests=100,
                          path="/?sleep=0.02")

    assert load.statuses == {200: 100}
    status, body = await get(session, stack, "one", "/max")
    assert (status, body["max_in_flight"]) == (200, 1)


async def test_steady_load_scales_to_the_kpa_count_then_to_zero_when_idle(stack, session):
    # target 3 per pod at 100% utilization; 9 clients always in flight -> ceil(9 / 3) = 3.
    await stack.apply(config_autoscaler(stable_window="6s", scale_to_zero_grace_period="2s"))
    await stack.apply(service_yaml("auto", annotations={
        ANN + "target": "3", ANN + "target-utilization-percentage": "100"}))
    stop = asyncio.Event()
    load = asyncio.ensure_future(run_load(session, stack, "auto", clients=9, until=stop,
                                          path="/?sleep=0.2"))
    try:
        await _wait_pods(stack, session, lambda pods: sum(p["ready"] for p in pods) >= 3, 30)
        counts = []
        for _ in range(8):  # steady state: sampled over 4 s of unchanged load
            await asyncio.sleep(0.5)
            counts.append(len([p for p in await stack.pods(session)
                               if p["phase"] != "Terminating"]))
    finally:
        stop.set()
        result = await load
    stopped_at = time.monotonic()

    assert all(2 <= c <= 4 for c in counts), counts
    assert set(result.statuses) == {200}, result.statuses
    await _wait_pods(stack, session, lambda pods: pods == [], 45)
    # Not before the stable window (6 s) has forgotten the load.
    assert time.monotonic() - stopped_at >= 6


async def test_update_under_load_moves_traffic_without_errors_and_delete_stops_pods(stack,
                                                                                     session):
    await stack.apply(service_yaml("upd"))
    stop = asyncio.Event()
    load = asyncio.ensure_future(run_load(session, stack, "upd", clients=4, until=stop,
                                          path="/?sleep=0.05"))
    try:
        await _wait_first_answers(load, stack, session)
        update = await stack.surge("service", "update", "upd", "--env", "TARGET=v2")
        routed_at = time.monotonic()
        assert update.rc == 0, update.err
        assert "upd-00002" in update.out
        await asyncio.sleep(1.0)  # keep the load on the new revision for a while
    finally:
        stop.set()
        result = await load

    assert set(result.statuses) == {200}, result.statuses
    after = {rev for started, _, rev in result.log if started > routed_at + 0.1}
    assert after == {"upd-00002"}
    assert result.revisions["upd-00001"] > 0
    pids = pids_of(await stack.pods(session))
    assert pids

    deleted = await stack.surge("delete", "service", "upd")

    assert deleted.rc == 0, deleted.err
    assert await stack.pods(session) == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    status, body = await get(session, stack, "upd")
    assert status == 404 and "upd.default.example.com" in body


async def _wait_first_answers(load: asyncio.Future, stack: Stack,
                              session: aiohttp.ClientSession) -> None:
    """Until the revision has a ready pod, so the load is flowing before the update."""
    await _wait_pods(stack, session, lambda pods: any(p["ready"] for p in pods), 20)
    assert not load.done()


REJECTED = [
    pytest.param(service_yaml("keep", target="v2", container_concurrency=-5),
                 ["spec.template.spec.containerConcurrency"], id="bad-container-concurrency"),
    pytest.param(service_yaml("keep", target="v2", annotations={ANN + "min-scale": "-1"}),
                 [ANN + "min-scale"], id="bad-annotation"),
    pytest.param(service_yaml("keep", target="v2", annotations={
        "serving.knative.dev/progress-deadline": "0s"}),
                 ["serving.knative.dev/progress-deadline", "positive duration"],
                 id="bad-progress-deadline"),
    pytest.param(config_autoscaler(stable_window="2s"), ["stable-window", "6s"],
                 id="bad-config-autoscaler"),
    pytest.param(config_autoscaler(stable_window="10s") + "---\n"
                 + service_yaml("keep", target="v2", container_concurrency=-5),
                 ["containerConcurrency"], id="good-config-with-bad-service"),
    pytest.param(re.sub(r"- command: .*", "- image: registry.example/app",
                        service_yaml("keep", target="v2")),
                 ["spec.template.spec.containers[0]", "cannot run locally", "add `command`"],
                 id="image-only"),
]


async def test_rejected_manifests_and_configmaps_change_nothing(stack, session):
    await stack.apply(service_yaml("keep"))
    await _wait_service_ready(stack, session, "keep")
    before = await _objects(stack, session)

    for case in REJECTED:
        text, expected = case.values
        lines = len(stack.lines)
        result = await stack.apply(text, ok=False)

        assert result.rc == 1, case.id
        assert "rejected, nothing was changed" in result.err, case.id
        for words in expected:
            assert words in result.err, (case.id, result.err)
        assert await _objects(stack, session) == before, case.id
        assert not [line for line in stack.lines[lines:] if "config-autoscaler" in line]
    assert (await get(session, stack, "keep"))[1]["target"] == "v1"


async def _wait_service_ready(stack: Stack, session: aiohttp.ClientSession, name: str) -> None:
    """Poll the service (every 0.1 s) until its Ready condition is True."""
    async with asyncio.timeout(20):
        while True:
            desc = await stack.admin(session, f"/v1/namespaces/default/services/{name}")
            if {"type": "Ready", "status": "True"} in desc["service"]["status"]["conditions"]:
                return
            await asyncio.sleep(0.1)


async def _objects(stack: Stack, session: aiohttp.ClientSession) -> list:
    """Every service, revision and route the stack holds (the state a reject must keep),
    without what only reports the running pods (replicas, the activator's view)."""
    objects = [(await stack.admin(session, f"/v1/{kind}"))["items"]
               for kind in ("services", "revisions", "routes")]
    for rev in objects[1]:
        for runtime in ("actualReplicas", "desiredReplicas", "activator"):
            rev["status"].pop(runtime, None)
    return objects


async def test_restart_brings_services_back_with_revisions_and_traffic(stack, session):
    await stack.apply(service_yaml("back", revision_name="back-one"))
    await stack.apply(service_yaml("back", target="v2", revision_name="back-two", traffic="""\
traffic:
  - revisionName: back-one
    percent: 100
  - revisionName: back-two
    percent: 0
    tag: next
"""))
    # The 0% revision is routed before it is ready: wait until the stack holds it ready
    # (it stores a state before it serves it), which a restart must then bring back.
    async with asyncio.timeout(20):
        while (await stack.admin(session, "/v1/namespaces/default/services/back"))[
                "service"]["status"].get("latestReadyRevisionName") != "back-two":
            await asyncio.sleep(0.1)
    before = (await stack.surge("describe", "service", "back", "-o", "json")).json()
    pids = pids_of(await stack.pods(session))

    # Killed outright: no drain, no goodbye; its pods must die with it.
    assert await stack.stop(signal.SIGKILL) == -signal.SIGKILL
    await wait_gone(pids, 10)
    await stack.start()

    after = (await stack.surge("describe", "service", "back", "-o", "json")).json()
    assert after["status"]["traffic"] == before["status"]["traffic"]
    assert after["status"]["latestReadyRevisionName"] == "back-two"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert (await get(session, stack, "back"))[1]["revision"] == "back-one"
    assert (await get(session, stack, "back", tag="next"))[1]["revision"] == "back-two"


async def _wait_mode(stack: Stack, session: aiohttp.ClientSession, revision: str, mode: str,
                     timeout_s: float) -> dict:
    """Poll the revision until the activator reports `mode` for it (and, in serve mode,
    a pod its probe passed, which it requires before sending anything straight to it)."""
    async with asyncio.timeout(timeout_s):
        while True:
            revs = (await stack.admin(session, "/v1/revisions"))["items"]
            status = next(r["status"] for r in revs if r["metadata"]["name"] == revision)
            activator = status.get("activator", {})
            if activator.get("mode") == mode and (mode == "Proxy" or activator["pods"]):
                return status
            await asyncio.sleep(0.25)


async def test_activator_flips_to_serve_and_back_on_config_reload_without_failing(stack,
                                                                                  session):
    # target-burst-capacity 0: the activator leaves the path as soon as a pod is ready
    # (EBC >= 0), so requests go straight to the pod (serve mode). A config-autoscaler
    # with -1 (always in the path) then hot-reloads it back to proxy mode, and 0 again
    # to serve; 8 clients run through every flip and none may fail.
    await stack.apply(config_autoscaler(target_burst_capacity="0"))
    await stack.apply(service_yaml("flip", annotations={ANN + "min-scale": "1"}))
    stop = asyncio.Event()
    load = asyncio.ensure_future(run_load(session, stack, "flip", clients=8, until=stop,
                                          path="/?sleep=0.01"))
    try:
        serving = await _wait_mode(stack, session, "flip-00001", "Serve", 20)
        await stack.apply(config_autoscaler(target_burst_capacity="-1"))
        await _wait_mode(stack, session, "flip-00001", "Proxy", 20)
        await stack.apply(config_autoscaler(target_burst_capacity="0"))
        await _wait_mode(stack, session, "flip-00001", "Serve", 20)
    finally:
        stop.set()
        result = await load

    assert serving["actualReplicas"] >= 1 and serving["activator"]["pods"] >= 1
    assert result.statuses[200] > 0 and set(result.statuses) == {200}, result.statuses
    assert set(result.revisions) == {"flip-00001"}
    flips = [line for line in stack.lines if "revision/default/flip-00001: activator" in line]
    assert [("serve" in line) for line in flips] == [True, False, True], flips


async def test_a_revision_never_ready_fails_at_its_progress_deadline_and_keeps_traffic(
        stack, session):
    await stack.apply(service_yaml("stuck"))
    await _wait_service_ready(stack, session, "stuck")
    # v2's program never listens: its pod stays unready until the deadline fails it.
    never = service_yaml("stuck", target="v2", annotations={
        "serving.knative.dev/progress-deadline": "2s"}).replace(
        json.dumps(APP), json.dumps("-c") + ", " + json.dumps("import time; time.sleep(60)"))
    started = time.monotonic()
    await stack.apply(never)

    # apply returned once v2 failed (well before its own 60 s bound).
    assert time.monotonic() - started < 30
    svc = (await stack.surge("describe", "service", "stuck", "-o", "json")).json()
    revs = {r["metadata"]["name"]: r for r in
            (await stack.surge("get", "revisions", "-o", "json")).json()["items"]}
    assert {c["type"]: c.get("reason") for c in revs["stuck-00002"]["status"]["conditions"]} \
        == {"Ready": "ProgressDeadlineExceeded"}
    assert svc["status"]["latestCreatedRevisionName"] == "stuck-00002"
    assert svc["status"]["latestReadyRevisionName"] == "stuck-00001"
    assert [t["revisionName"] for t in svc["status"]["traffic"]] == ["stuck-00001"]
    assert (await get(session, stack, "stuck"))[1]["revision"] == "stuck-00001"
