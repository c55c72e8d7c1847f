"""The controller against an in-memory API server on 127.0.0.1, through kubernetes_asyncio:
the seeds' Service becomes Configuration, Route, Revision, Deployment and Services with
statuses; a restart writes nothing; an update stamps v2; a bad template says why; a
deletion takes everything with it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import signal
import sys

import pytest
from k8s_world import seed

from dataplane import MonotonicClock
from serving.kubernetes.client import KSERVICE, load_api
from serving.kubernetes.controller import Controller

KSVC = "serving.knative.dev/v1"


def ready(obj, kind_type="Ready"):
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == kind_type:
            return c["status"]
    return None



@contextlib.asynccontextmanager
async def running_controller(fake, tmp_path):
    api = await load_api(str(fake.kubeconfig(tmp_path)))
    controller = Controller(api, clock=MonotonicClock(), workers=2)
    task = asyncio.create_task(controller.run())
    try:
        yield controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


async def make_deployment_ready(fake, name):
    dep = await fake.wait_for(lambda: fake.find("deployments", "default", name))
    dep = copy.deepcopy(dep)
    dep["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    await fake.modify("apps/v1", "deployments", dep)


async def settled(controller):
    """Wait until the controller's queue is empty and stays so after a round trip."""
    async with asyncio.timeout(10):
        while True:
            while not controller.queue.is_idle():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # in-flight watch events land in the queue
            if controller.queue.is_idle():
                return


async def test_basic_service_reconciles_to_ready_and_restart_writes_nothing(fake, tmp_path):
    async with asyncio.timeout(30):
        async with running_controller(fake, tmp_path) as controller:
            await fake.put(KSVC, "services", seed("basic/service.yaml"))
            await make_deployment_ready(fake, "helloworld-python-00001-deployment")
            svc = await fake.wait_for(lambda: ready(s := fake.find("services", "default", "helloworld-python"))
                                      == "True" and s)
            await settled(controller)
        assert svc["status"]["url"] == "http://helloworld-python.default.example.com"
        assert svc["status"]["latestReadyRevisionName"] == "helloworld-python-00001"
        assert svc["status"]["traffic"][0]["revisionName"] == "helloworld-python-00001"
        assert svc["status"]["traffic"][0]["percent"] == 100
        dep = fake.find("deployments", "default", "helloworld-python-00001-deployment")
        names = [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]]
        assert names == ["user-container", "queue-proxy"]
        rev = fake.find("revisions", "default", "helloworld-python-00001")
        assert dep["metadata"]["ownerReferences"][0]["uid"] == rev["metadata"]["uid"]
        assert fake.find("services/v1", "default", "helloworld-python-00001-private")["spec"]["clusterIP"] == "None"
        route_svc = [s for s in fake.all("services") if s.get("spec", {}).get("type") == "ExternalName"]
        assert [s["metadata"]["name"] for s in route_svc] == ["helloworld-python"]
        assert fake.find("routes", "default", "helloworld-python")["status"]["address"]["url"] \
            == "http://helloworld-python.default.svc.cluster.local"
        # Knative's labeler: the Configuration names the Route that sends it traffic.
        cfg = fake.find("configurations", "default", "helloworld-python")
        assert cfg["metadata"]["annotations"]["serving.knative.dev/routes"] == "helloworld-python"

        before = len(fake.writes)
        async with running_controller(fake, tmp_path) as controller:
            await settled(controller)
            assert controller.reconciles >= 4
        assert fake.writes[before:] == []


async def test_update_stamps_v2_and_moves_traffic(fake, tmp_path):
    async with asyncio.timeout(30):
        async with running_controller(fake, tmp_path):
            svc = await fake.put(KSVC, "services", seed("basic/service.yaml"))
            await make_deployment_ready(fake, "helloworld-python-00001-deployment")
            await fake.wait_for(lambda: ready(fake.find("services", "default", "helloworld-python")) == "True")
            svc = copy.deepcopy(fake.find("services", "default", "helloworld-python"))
            env = svc["spec"]["template"]["spec"]["containers"][0].setdefault("env", [])
            env.append({"name": "TARGET", "value": "v2"})
            svc["metadata"]["generation"] += 1
            await fake.modify(KSVC, "services", svc)
            await make_deployment_ready(fake, "helloworld-python-00002-deployment")
            svc = await fake.wait_for(lambda: (s := fake.find("services", "default", "helloworld-python"))
                                      .get("status", {}).get("traffic", [{}])[0]
                                      .get("revisionName") == "helloworld-python-00002"
                                      and ready(s) == "True" and s)
        assert svc["status"]["latestReadyRevisionName"] == "helloworld-python-00002"
        assert svc["status"]["traffic"][0]["percent"] == 100
        assert fake.find("revisions", "default", "helloworld-python-00001") is not None  # kept


async def test_bad_template_gets_false_condition_naming_the_field_and_an_event(fake, tmp_path):
    bad = seed("basic/service.yaml")
    bad["spec"]["template"]["spec"]["containerConcurrency"] = -3
    async with asyncio.timeout(30):
        async with running_controller(fake, tmp_path):
            await fake.put(KSVC, "services", bad)
            svc = await fake.wait_for(lambda: ready(c := fake.find(
                "services", "default", "helloworld-python")) == "False" and c)
            event = await fake.wait_for(lambda: next(iter(fake.all("events")), None))
    message = next(c for c in svc["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert "containerConcurrency" in message
    assert event["involvedObject"]["name"] == "helloworld-python" and event["type"] == "Warning"
    assert fake.find("configurations", "default", "helloworld-python") is None


async def test_deleting_the_service_deletes_everything_it_made(fake, tmp_path):
    async with asyncio.timeout(30):
        async with running_controller(fake, tmp_path) as controller:
            await fake.put(KSVC, "services", seed("basic/service.yaml"))
            await fake.wait_for(lambda: fake.find("services/v1", "default", "helloworld-python-00001-private"))
            resp_svc = fake.objects[(KSVC, "services", "default", "helloworld-python")]
            api = controller._api
            await api.delete(KSERVICE, "default", "helloworld-python", uid=resp_svc["metadata"]["uid"])
            try:
                await fake.wait_for(lambda: not fake.objects, timeout_s=5)
            except TimeoutError:
                raise AssertionError(list(fake.objects)) from None
            await settled(controller)
        assert fake.objects == {}


@pytest.mark.integration
async def test_surge_controller_command_reconciles_and_stops_on_sigterm(fake, tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "serving.cli", "controller",
        "--kubeconfig", str(fake.kubeconfig(tmp_path)), stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            await fake.put(KSVC, "services", seed("basic/service.yaml"))
            await fake.wait_for(lambda: fake.find(
                "deployments", "default", "helloworld-python-00001-deployment"), timeout_s=25)
            proc.send_signal(signal.SIGTERM)
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        # Info lines, timestamped and named, say what the controller wrote.
        assert re.search(rb"INFO serving\.kubernetes\.controller: create Deployment "
                         rb"default/helloworld-python-00001-deployment", stderr), stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def pod(revision: str, container_status: dict) -> dict:
    """A revision's pod as the kubelet reports it (one user container)."""
    return {"metadata": {"name": f"{revision}-deployment-abc12", "namespace": "default",
                         "labels": {"serving.knative.dev/revision": revision}},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "user-container", "ready": False, **container_status}]}}


POD_CASES = [
    pytest.param({"state": {"waiting": {"reason": "ImagePullBackOff",
                                        "message": "Back-off pulling image \"nope\""}}},
                 ("ResourcesAvailable", "ImagePullBackOff", "Back-off pulling image \"nope\""),
                 id="image-pull-back-off"),
    pytest.param({"state": {"waiting": {"reason": "CrashLoopBackOff"}},
                  "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                               "message": "boom"}}},
                 ("ContainerHealthy", "ExitCode1", "Container failed with: boom"),
                 id="crash-loop"),
]


@pytest.mark.parametrize(("container_status", "want"), POD_CASES)
async def test_pod_problems_make_the_revision_not_ready_with_knatives_reason(
        fake, tmp_path, container_status, want):
    rev_name = "helloworld-python-00001"
    async with asyncio.timeout(30):
        async with running_controller(fake, tmp_path):
            await fake.put(KSVC, "services", seed("basic/service.yaml"))
            dep = copy.deepcopy(await fake.wait_for(lambda: fake.find(
                "deployments", "default", f"{rev_name}-deployment")))
            dep["status"] = {"replicas": 1, "unavailableReplicas": 1}
            await fake.modify("apps/v1", "deployments", dep)
            await fake.put("v1", "pods", pod(rev_name, container_status))
            rev = await fake.wait_for(lambda: ready(r := fake.find(
                "revisions", "default", rev_name)) == "False" and r)
            svc = await fake.wait_for(lambda: ready(s := fake.find(
                "services", "default", "helloworld-python"), "ConfigurationsReady")
                == "False" and s)
    conds = {c["type"]: c for c in rev["status"]["conditions"]}
    type_, reason, message = want
    assert (conds[type_]["status"], conds[type_]["reason"], conds[type_]["message"]) \
        == ("False", reason, message)
    assert (conds["Ready"]["reason"], conds["Ready"]["message"]) == (reason, message)
    # The Service says so too, through its Configuration.
    svc_cfg = next(c for c in svc["status"]["conditions"] if c["type"] == "ConfigurationsReady")
    assert message in svc_cfg["message"], svc_cfg
