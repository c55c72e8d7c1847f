"""The local platform on real processes: hello-world pods behind real queue-proxies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from dataplane.clock import MonotonicClock
from dataplane.types import RevisionKey
from serving.platform import LocalPlatform, PodInfo, PodPhase, PodTemplate, RestartBackoff
from serving.platform.probe import probe_queue_proxy

from support.procs import open_pidfds, wait_exits, wait_pidfds

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HELLO = "examples/helloworld/app.py"  # relative: pods run in the repository root
APP = str(Path(__file__).with_name("platform_app.py"))
PARENT = str(Path(__file__).with_name("platform_parent.py"))
KEY = RevisionKey("default", "hello-00001")
STEP_S = 30.0  # bound for each step that starts or stops processes


def _all_ready(n: int):
    return lambda pods: len(pods) == n and all(p.ready for p in pods)


def _gone(pods) -> bool:
    return not pods


@pytest.fixture
async def platform(tmp_path):
    """A local platform with a short drain and back-off; every pid it ever ran must be gone after."""
    pids: set[int] = set()
    local = LocalPlatform(tmp_path / "state", MonotonicClock(), working_dir=str(ROOT), drain_quiet_s=0.5,
                          restart_backoff=RestartBackoff(initial_s=0.1, cap_s=0.4), termination_grace_s=5.0)
    local.subscribe(lambda key, pods: pids.update(
        pid for pod in pods for pid in (pod.app_pid, pod.queue_proxy_pid) if pid is not None))
    try:
        yield local
        async with asyncio.timeout(STEP_S):
            await local.aclose()
    finally:
        local.kill_all()
    assert local.stats().pods == 0
    await wait_exits(pids, 10.0)


async def test_two_pods_become_ready_and_answer_hello_through_their_queue_proxy(platform):
    await platform.ensure(KEY, PodTemplate(command=(sys.executable, HELLO), env={"TARGET": "Surge"},
                                           service="hello", configuration="hello"))
    async with asyncio.timeout(STEP_S):
        await platform.scale(KEY, 2)
        pods = await platform.wait_pods(KEY, _all_ready(2))
        async with aiohttp.ClientSession() as session:
            for pod in pods:
                async with session.get(f"http://127.0.0.1:{pod.address.port}/") as response:
                    assert (response.status, await response.text()) == (200, "Hello Surge!\n")
    assert [p.phase for p in pods] == [PodPhase.RUNNING, PodPhase.RUNNING]
    ports = [port for p in pods for port in
             (p.address.port, p.address.stats_port, p.admin_port, p.metrics_port, p.user_port)]
    assert len(set(ports)) == 10
    assert len({p.app_pid for p in pods} | {p.queue_proxy_pid for p in pods}) == 4
    for pod in pods:
        log = Path(pod.log_path).read_text()
        assert "helloworld: GET / 200" in log and f"on port {pod.user_port}" in log
        assert "serving on 127.0.0.1:" in Path(pod.queue_proxy_log_path).read_text()
    assert platform.stats().ready == 2


async def test_scale_to_zero_lets_an_in_flight_request_finish(platform):
    await platform.ensure(KEY, PodTemplate(command=(sys.executable, APP)))
    async with asyncio.timeout(STEP_S):
        await platform.scale(KEY, 1)
        [pod] = await platform.wait_pods(KEY, _all_ready(1))
        async with aiohttp.ClientSession() as session:
            # 1.5 s outlasts the 0.5 s quiet period: the queue-proxy must wait for it.
            async with session.get(f"http://127.0.0.1:{pod.address.port}/slow?s=1.5") as response:
                await platform.scale(KEY, 0)  # the response head is in: the request is in flight
                [draining] = platform.pods(KEY)
                body = await response.read()
        assert (response.status, body) == (200, b"slow done")
        assert (draining.phase, draining.ready) == (PodPhase.TERMINATING, False)
        await platform.wait_pods(KEY, _gone)
    # The queue-proxy drained and exited cleanly before the app got its SIGTERM (which
    # kills this app at once, so an earlier SIGTERM would have failed the request).
    assert "stopped: app killed by SIGTERM, queue-proxy exited with code 0" in Path(pod.log_path).read_text()


async def test_removal_hook_runs_before_the_queue_proxy_gets_sigterm(platform):
    seen: list[tuple] = []

    async def hook(pod: PodInfo) -> None:
        # A queue-proxy that got SIGTERM answers health checks 503: 200 proves it did not.
        seen.append((pod.name, pod.phase, pod.ready, await probe_queue_proxy("127.0.0.1", pod.address.port, 5.0)))

    platform.set_pod_removal_hook(hook)
    await platform.ensure(KEY, PodTemplate(command=(sys.executable, APP)))
    async with asyncio.timeout(STEP_S):
        await platform.scale(KEY, 1)
        [pod] = await platform.wait_pods(KEY, _all_ready(1))
        await platform.scale(KEY, 0)
        await platform.wait_pods(KEY, _gone)
    assert seen == [(pod.name, PodPhase.TERMINATING, False, True)]


async def test_crashing_app_is_restarted_with_backoff_shown_in_podinfo(platform):
    failures: dict[int, PodInfo] = {}
    platform.subscribe(lambda key, pods: failures.update(
        (p.restarts, p) for p in pods if p.phase is PodPhase.FAILED))
    crash = (sys.executable, "-c", "import sys; print('crashing', flush=True); sys.exit(3)")
    await platform.ensure(KEY, PodTemplate(command=crash))
    async with asyncio.timeout(STEP_S):
        await platform.scale(KEY, 1)
        [pod] = await platform.wait_pods(KEY, lambda ps: len(ps) == 1 and ps[0].restarts >= 3
                                         and ps[0].restart_at is not None)
    assert [failures[n].backoff_s for n in range(4)] == [0.1, 0.2, 0.4, 0.4]
    assert {failures[n].last_exit for n in range(4)} == {"app exited with code 3"}
    assert all(not failures[n].ready and failures[n].restart_at is not None for n in range(4))
    assert Path(pod.log_path).read_text().count("crashing") >= 4
    assert platform.stats().crashes >= 4


async def test_queue_proxy_death_stops_the_app_and_restarts_the_pod(platform):
    await platform.ensure(KEY, PodTemplate(command=(sys.executable, APP)))
    async with asyncio.timeout(STEP_S):
        await platform.scale(KEY, 1)
        [before] = await platform.wait_pods(KEY, _all_ready(1))
        old_app = open_pidfds([before.app_pid])
        os.kill(before.queue_proxy_pid, signal.SIGKILL)
        [after] = await platform.wait_pods(KEY, lambda ps: len(ps) == 1 and ps[0].restarts == 1 and ps[0].ready)
        await wait_pidfds(old_app, 5.0)
    assert after.name == before.name and after.last_exit == "queue-proxy killed by SIGKILL"
    assert after.app_pid != before.app_pid and after.queue_proxy_pid != before.queue_proxy_pid


async def test_app_gets_port_knative_names_env_and_working_dir(platform, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    template = PodTemplate(command=(sys.executable, APP), args=("--greeting=$(GREETING)", "$(PORT)"),
                           env={"GREETING": "hi", "PORT": "1"}, working_dir=str(workdir),
                           service="svc", configuration="cfg")
    await platform.ensure(KEY, template)
    async with asyncio.timeout(STEP_S):
        await platform.scale(KEY, 1)
        [pod] = await platform.wait_pods(KEY, _all_ready(1))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{pod.address.port}/env") as response:
                echoed = json.loads(await response.read())
    env = echoed["env"]
    assert (env["PORT"], env["K_SERVICE"], env["K_CONFIGURATION"], env["K_REVISION"], env["GREETING"]) == \
        (str(pod.user_port), "svc", "cfg", "hello-00001", "hi")
    assert echoed["cwd"] == str(workdir)
    assert echoed["argv"][1:] == ["--greeting=hi", str(pod.user_port)]
    assert not any(name.startswith("QUEUE_") for name in env)


async def test_a_bare_python_command_runs_with_surges_interpreter(tmp_path):
    # No `python` on the pod's PATH at all, as on a fresh Debian: the pod still starts,
    # with the interpreter that runs Surge (the one with Surge's packages).
    local = LocalPlatform(tmp_path / "state", MonotonicClock(), working_dir=str(ROOT),
                          drain_quiet_s=0.2, base_env={"PATH": str(tmp_path / "empty")})
    try:
        await local.ensure(KEY, PodTemplate(command=("python",), args=(APP,),
                                            service="hello", configuration="hello"))
        async with asyncio.timeout(STEP_S):
            await local.scale(KEY, 1)
            [pod] = await local.wait_pods(KEY, _all_ready(1))
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{pod.address.port}/env") as response:
                    echoed = json.loads(await response.read())
            await local.aclose()
    finally:
        local.kill_all()
    assert echoed["executable"] == sys.executable
    assert echoed["argv"] == [APP]


async def test_sigkill_of_the_parent_takes_its_pods_down(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    parent = await asyncio.create_subprocess_exec(
        sys.executable, PARENT, str(tmp_path / "state"), str(ROOT), stdout=asyncio.subprocess.PIPE, env=env)
    pids: list[int] = []
    gone = False
    try:
        async with asyncio.timeout(STEP_S):
            line = await parent.stdout.readline()
        started = json.loads(line)
        pids = [started["app"], started["queue_proxy"]]
        fds = open_pidfds(pids)  # before the kill: these follow exactly those processes
        assert len(fds) == 2
        parent.kill()
        await parent.wait()
        await wait_pidfds(fds, 10.0)
        gone = True
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if not gone:  # the test failed: still leave nothing behind
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
