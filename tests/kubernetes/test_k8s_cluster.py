"""Against the real cluster in KUBECONFIG (skipped, saying why, without one): config/'s CRDs
installed, the seeds' Services applied in a fresh namespace with the controller running
in-process; objects, statuses, Deployments, a scale patch and clean deletion checked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

import pytest
import yaml
from k8s_world import seed

from dataplane import MonotonicClock
from serving.kubernetes.client import (
    CONFIGURATION,
    DEPLOYMENT,
    KSERVICE,
    REVISION,
    ROUTE,
    SERVICE,
    Api,
    ApiError,
    Kind,
    load_api,
)
from serving.kubernetes.controller import Controller

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
CRD = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions",
           namespaced=False)
NAMESPACE = Kind("v1", "Namespace", "namespaces", namespaced=False)


@pytest.fixture
async def api():
    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.skip("KUBECONFIG is not set: no Kubernetes API server to test against")
    try:
        client = await load_api(path)
    except Exception as exc:  # any config problem means: no cluster here
        pytest.skip(f"KUBECONFIG {path!r} cannot be loaded: {exc}")
    try:
        async with asyncio.timeout(5):
            await client.list(NAMESPACE)
    except (ApiError, OSError, TimeoutError) as exc:
        await client.close()
        pytest.skip(f"the API server in KUBECONFIG is unreachable: {exc}")
    yield client
    await client.close()


async def apply(api: Api, kind: Kind, obj: dict) -> None:
    """Create, or replace at the stored resourceVersion; a 409 (the running controller
    wrote a status in between) reads it again, as kubectl does."""
    meta = obj["metadata"]
    for _ in range(10):
        current = await api.get(kind, meta.get("namespace", ""), meta["name"])
        try:
            if current is None:
                await api.create(obj, kind)
            else:
                meta["resourceVersion"] = current["metadata"]["resourceVersion"]
                await api.replace(obj, kind)
            return
        except ApiError as exc:
            if exc.status != 409:
                raise
    raise AssertionError(f"{kind.kind} {meta['name']}: still conflicting after 10 tries")


async def wait_for(api: Api, kind: Kind, ns: str, name: str, predicate, timeout_s=60.0):
    """Watch until predicate(object or None) holds; return the object."""
    async with asyncio.timeout(timeout_s):
        while True:
            items, rv = await api.list(kind, ns)
            obj = next((o for o in items if o["metadata"]["name"] == name), None)
            if predicate(obj):
                return obj
            async for event in api.watch(kind, ns, rv, timeout_s=30):
                if event["type"] == "ERROR":
                    break
                got = event["object"]
                if got.get("metadata", {}).get("name") == name:
                    obj = None if event["type"] == "DELETED" else got
                    if predicate(obj):
                        return obj


@pytest.fixture
async def world(api):
    for path in sorted((ROOT / "config").glob("300-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                await apply(api, CRD, doc)
                # A new CRD serves its kind only once Established.
                await wait_for(api, CRD, "", doc["metadata"]["name"], lambda c: c and any(
                    x.get("type") == "Established" and x.get("status") == "True"
                    for x in (c.get("status") or {}).get("conditions") or ()), timeout_s=30)
    ns = f"surge-test-{uuid.uuid4().hex[:8]}"
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                     NAMESPACE)
    controller = Controller(api, clock=MonotonicClock(), namespace=ns)
    task = asyncio.create_task(controller.run())
    try:
        yield ns
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.delete(NAMESPACE, "", ns)


def in_ns(doc: dict, ns: str) -> dict:
    doc["metadata"]["namespace"] = ns
    return doc


async def test_basic_service_update_split_scale_and_delete(api, world):
    ns = world
    svc = in_ns(seed("canary/1-stable.yaml"), ns)
    name = svc["metadata"]["name"]
    await api.create(svc)
    dep = await wait_for(api, DEPLOYMENT, ns, f"{name}-00001-deployment", bool)
    containers = [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]]
    assert containers == ["user-container", "queue-proxy"]
    assert await wait_for(api, SERVICE, ns, f"{name}-00001-private", bool)
    rev = await wait_for(api, REVISION, ns, f"{name}-00001",
                         lambda r: r and (r.get("status") or {}).get("conditions"))
    assert rev["metadata"]["labels"]["serving.knative.dev/configuration"] == name

    # v1 -> v2 with the 80/20 split and tags.
    canary = in_ns(seed("canary/2-canary.yaml"), ns)
    await apply(api, KSERVICE, canary)
    await wait_for(api, DEPLOYMENT, ns, f"{name}-00002-deployment", bool)
    cfg = await wait_for(api, CONFIGURATION, ns, name, lambda c: c and (c.get("status") or {})
                         .get("latestCreatedRevisionName") == f"{name}-00002")
    assert cfg["metadata"]["generation"] == 2
    route = await wait_for(api, ROUTE, ns, name, lambda r: r and len(
        (r.get("spec") or {}).get("traffic") or ()) == 2)
    assert [t.get("percent") for t in route["spec"]["traffic"]] == [80, 20]
    for tag in ("current", "candidate"):
        assert await wait_for(api, SERVICE, ns, f"{tag}-{name}", bool)

    # The autoscaler's lever: the /scale subresource.
    await api.patch(DEPLOYMENT, ns, f"{name}-00001-deployment", {"spec": {"replicas": 0}},
                    subresource="scale")
    await wait_for(api, DEPLOYMENT, ns, f"{name}-00001-deployment",
                   lambda d: d and d["spec"]["replicas"] == 0)

    # Deleting the Service takes everything it made (owner references).
    await api.delete(KSERVICE, ns, name)
    for kind, child in [(CONFIGURATION, name), (ROUTE, name), (REVISION, f"{name}-00001"),
                        (DEPLOYMENT, f"{name}-00001-deployment")]:
        await wait_for(api, kind, ns, child, lambda o: o is None, timeout_s=120)


async def test_secrets_volumes_and_probes_reach_the_deployment(api, world):
    """What only a cluster honours is accepted and lands on the pod template as written."""
    ns = world
    await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "greeting", "namespace": ns},
                      "data": {"GREETING": "hi"}})
    svc = in_ns(seed("basic/service.yaml"), ns)
    spec = svc["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "cfg", "configMap": {"name": "greeting"}}]
    user = spec["containers"][0]
    user["envFrom"] = [{"configMapRef": {"name": "greeting"}}]
    user["env"] = [*user.get("env", []), {"name": "FROM_CM", "valueFrom": {
        "configMapKeyRef": {"name": "greeting", "key": "GREETING"}}}]
    user["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/greeting", "readOnly": True}]
    user["livenessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 5}
    await api.create(svc)
    name = svc["metadata"]["name"]
    dep = await wait_for(api, DEPLOYMENT, ns, f"{name}-00001-deployment", bool)
    pod = dep["spec"]["template"]["spec"]
    got = pod["containers"][0]
    assert pod["volumes"][0]["configMap"]["name"] == "greeting"
    assert got["envFrom"] == [{"configMapRef": {"name": "greeting"}}]
    assert {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {
        "name": "greeting", "key": "GREETING"}}} in got["env"]
    assert got["volumeMounts"][0]["mountPath"] == "/etc/greeting"
    assert got["livenessProbe"]["periodSeconds"] == 5
    ksvc = await api.get(KSERVICE, ns, name)
    ready = [c for c in (ksvc.get("status") or {}).get("conditions") or ()
             if c["type"] == "Ready"]
    assert not ready or ready[0].get("reason") != "InvalidSpec", ready


def condition_of(obj: dict | None, type_: str) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or ()
                 if c.get("type") == type_), {})


async def test_basic_seed_then_v1_to_v2_update(api, world):
    """The basic and update seeds: URL and names in status, a new immutable revision."""
    ns = world
    basic = in_ns(seed("basic/service.yaml"), ns)
    name = basic["metadata"]["name"]
    await api.create(basic)
    # The URL comes with the Route's status, the names with the Configuration's.
    ksvc = await wait_for(api, KSERVICE, ns, name, lambda s: s and (s.get("status") or {})
                          .get("latestCreatedRevisionName") == f"{name}-00001"
                          and "url" in s["status"])
    assert ksvc["status"]["url"] == f"http://{name}.{ns}.example.com"
    # Never "ConfigurationMissing" on the way (pods may still fail on a cluster that
    # cannot pull the images; that is a different reason).
    assert condition_of(ksvc, "Ready").get("reason") != "ConfigurationMissing", ksvc["status"]
    dep = await wait_for(api, DEPLOYMENT, ns, f"{name}-00001-deployment", bool)
    user = dep["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in user["env"]}["K_REVISION"] == f"{name}-00001"
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 300

    v1 = await api.get(KSERVICE, ns, name)
    for path in ("update/v1.yaml", "update/v2.yaml"):
        doc = in_ns(seed(path), ns)
        await apply(api, KSERVICE, doc)
    cfg = await wait_for(api, CONFIGURATION, ns, name, lambda c: c and (c.get("status") or {})
                         .get("latestCreatedRevisionName") == f"{name}-00002")
    assert cfg["metadata"]["generation"] >= 2
    v2 = await wait_for(api, REVISION, ns, f"{name}-00002", bool)
    env = {e["name"]: e.get("value") for e in v2["spec"]["containers"][0].get("env") or ()}
    assert env["TARGET"] == "Python Sample v2"
    first = await api.get(REVISION, ns, f"{name}-00001")
    assert first["metadata"]["uid"] and first["spec"] != v2["spec"]  # v1 kept as it was
    assert v1["metadata"]["uid"] == (await api.get(KSERVICE, ns, name))["metadata"]["uid"]

