"""serving.admin over a real loopback socket, with a test double controller."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from admin_fakes import HELLO, FakeController, Problem, serve_admin
from serving.admin import InvalidRequestError, TagSpec, TrafficSpec, problems_to_json
from serving.validation import FieldProblem, ValidationError



@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest_asyncio.fixture
async def api(controller) -> AsyncIterator:
    """A request helper against the admin app: (status, json)."""
    async with serve_admin(controller) as port, aiohttp.ClientSession() as http:
        async def call(method: str, path: str, json=None, headers=None):
            async with asyncio.timeout(10):
                async with http.request(method, f"http://127.0.0.1:{port}{path}", json=json,
                                        headers=headers) as resp:
                    return resp.status, await resp.json()
        yield call


async def test_healthz_reports_the_pid(api):
    assert await api("GET", "/healthz") == (200, {"status": "ok", "pid": os.getpid()})


async def test_apply_passes_documents_and_returns_summaries(api, controller):
    status, body = await api("POST", "/v1/apply",
                             {"documents": [{"filename": "hello.yaml", "text": HELLO}]})
    assert status == 200
    assert body == {"applied": [{"kind": "Service", "namespace": "default", "name": "hello",
                                 "action": "created"}]}
    assert controller.calls == [("apply", [("hello.yaml", HELLO)])]


async def test_invalid_manifest_is_400_with_every_problem(api, controller):
    status, body = await api("POST", "/v1/apply", {"documents": [
        {"filename": "a.yaml", "text": "kind: Service\nmetadata: {}\n"},
        {"filename": "b.yaml", "text": "kind: Route\nmetadata: {name: r}\n"}]})
    assert status == 400
    assert body == {"error": "apply rejected, nothing was changed", "problems": [
        {"path": "a.yaml[0].metadata.name", "reason": "is required"},
        {"object": "Route/r", "path": "b.yaml[0].kind", "reason": "'Route' is not supported"}]}
    assert controller.services == {}


BAD_REQUESTS = [
    pytest.param("POST", "/v1/apply", {"documents": []}, "documents must be a non-empty list",
                 id="no-documents"),
    pytest.param("POST", "/v1/apply", {"documents": [{"filename": 1, "text": ""}]},
                 "each document needs a string filename and text", id="bad-document"),
    pytest.param("POST", "/v1/apply", ["not", "an", "object"],
                 "request body must be a JSON object", id="not-an-object"),
    pytest.param("PATCH", "/v1/namespaces/default/services/hello", {"env": {"A": 1}},
                 "env must map names to strings or null", id="env-not-strings"),
    pytest.param("PATCH", "/v1/namespaces/default/services/hello",
                 {"traffic": [{"target": "x"}]}, "bad traffic or tags entry", id="traffic-no-pct"),
    pytest.param("PATCH", "/v1/namespaces/default/services/hello", {"untags": "a"},
                 "untags must be a list of strings", id="untags-not-list"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), BAD_REQUESTS)
async def test_malformed_requests_are_400(api, method, path, body, message):
    await api("POST", "/v1/apply", {"documents": [{"filename": "h", "text": HELLO}]})
    status, got = await api(method, path, body)
    assert status == 400
    assert got["error"].startswith(message)


async def test_body_that_is_not_json_is_400(api):
    status, body = await api("POST", "/v1/apply", headers={"Content-Type": "application/json"})
    assert status == 400
    assert body["error"].startswith("request body is not JSON")


@pytest.mark.parametrize("kind", ["services", "revisions", "routes", "pods", "configurations"])
async def test_list_every_kind(api, controller, kind):
    await api("POST", "/v1/apply", {"documents": [{"filename": "h", "text": HELLO}]})
    status, body = await api("GET", f"/v1/{kind}?namespace=default")
    assert status == 200
    assert body == {"items": await controller.list(kind, "default")}
    assert ("list", (kind, "default")) in controller.calls


async def test_list_without_namespace_means_all(api, controller):
    await api("GET", "/v1/services")
    assert controller.calls[-1] == ("list", ("services", None))


async def test_unknown_kind_is_404_naming_it(api):
    status, body = await api("GET", "/v1/widgets")
    assert status == 404
    assert body["error"].startswith("unknown kind 'widgets': one of services")


NOT_FOUND = [
    pytest.param("GET", "/v1/namespaces/default/services/nope", None, id="describe"),
    pytest.param("PATCH", "/v1/namespaces/default/services/nope", {}, id="update"),
    pytest.param("DELETE", "/v1/namespaces/default/services/nope", None, id="delete"),
    pytest.param("GET", "/v1/namespaces/default/services/nope/logs", None, id="logs"),
]


@pytest.mark.parametrize(("method", "path", "body"), NOT_FOUND)
async def test_unknown_service_is_404_naming_it(api, method, path, body):
    status, got = await api(method, path, body)
    assert (status, got) == (404, {"error": 'service "nope" not found in namespace "default"',
                                   "problems": []})


async def test_unknown_endpoint_and_method_are_json_errors(api):
    assert await api("GET", "/nope") == (404, {"error": "no such endpoint: GET /nope",
                                               "problems": []})
    status, body = await api("PUT", "/v1/apply", {})
    assert (status, body["error"]) == (405, "method PUT not allowed on /v1/apply")


async def test_describe_update_delete_logs_round_trip(api, controller):
    await api("POST", "/v1/apply", {"documents": [{"filename": "h", "text": HELLO}]})
    controller.logs[("default", "hello")] = ["/logs/hello-00001-a.log", "/logs/hello-00002-b.log"]

    status, desc = await api("GET", "/v1/namespaces/default/services/hello")
    assert status == 200
    assert desc["service"]["metadata"]["name"] == "hello"

    status, svc = await api("PATCH", "/v1/namespaces/default/services/hello", {
        "env": {"A": "1", "B": None}, "traffic": [{"target": "@latest", "percent": 100}],
        "tags": [{"revision": "hello-00001", "tag": "blue"}], "untags": ["old"]})
    assert status == 200
    assert svc["status"]["latestCreatedRevisionName"] == "hello-00002"
    assert controller.calls[-1] == ("update", (
        "default", "hello", {"A": "1", "B": None}, [TrafficSpec("@latest", 100)],
        [TagSpec("hello-00001", "blue")], ["old"]))

    status, logs = await api("GET", "/v1/namespaces/default/services/hello/logs?revision=00002")
    assert (status, logs) == (200, {"paths": ["/logs/hello-00002-b.log"]})
    status, logs = await api("GET", "/v1/namespaces/default/services/hello/logs?container=all")
    assert controller.calls[-1] == ("logs", ("default", "hello", None, "all"))
    status, answer = await api("GET", "/v1/namespaces/default/services/hello/logs?container=x")
    assert status == 400 and "container 'x': one of user-container" in answer["error"]

    status, deleted = await api("DELETE", "/v1/namespaces/default/services/hello")
    assert (status, deleted) == (200, {"deleted": {"kind": "Service", "namespace": "default",
                                                   "name": "hello"}})
    assert controller.services == {}


async def test_controller_validation_error_on_update_is_400(api):
    await api("POST", "/v1/apply", {"documents": [{"filename": "h", "text": HELLO}]})
    status, body = await api("PATCH", "/v1/namespaces/default/services/hello",
                             {"traffic": [{"target": "ghost", "percent": 100}]})
    assert (status, body) == (400, {
        "error": "update of service default/hello rejected, nothing was changed", "problems": [
        {"path": "traffic", "reason": "unknown revision or tag 'ghost'"}]})


class _Rejects(FakeController):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def apply(self, documents):
        raise self.exc


REJECTIONS = [
    pytest.param(ValidationError([FieldProblem("spec.template", "is required", "Service/a"),
                                  FieldProblem("", "no name")]),
                 {"error": "apply rejected, nothing was changed", "problems": [
                     {"object": "Service/a", "path": "spec.template", "reason": "is required"},
                     {"path": "", "reason": "no name"}]},
                 id="serving-validation-error"),
    pytest.param(InvalidRequestError("config-autoscaler:\n  stable-window too short"),
                 {"error": "config-autoscaler: stable-window too short", "problems": []},
                 id="no-problems-message-on-one-line"),
]


@pytest.mark.parametrize(("exc", "want"), REJECTIONS)
async def test_rejections_are_400_with_a_summary_line(exc, want):
    async with serve_admin(_Rejects(exc)) as port, aiohttp.ClientSession() as http:
        async with asyncio.timeout(10), http.post(
                f"http://127.0.0.1:{port}/v1/apply",
                json={"documents": [{"filename": "a", "text": ""}]}) as resp:
            assert (resp.status, await resp.json()) == (400, want)


class _Broken(FakeController):
    async def list(self, kind, namespace):
        raise ValueError("a bug, not a validation problem")


async def test_a_controller_bug_is_500_and_logged(caplog):
    caplog.set_level(logging.ERROR, logger="serving.admin")
    async with serve_admin(_Broken()) as port, aiohttp.ClientSession() as http:
        async with asyncio.timeout(10), http.get(f"http://127.0.0.1:{port}/v1/pods") as resp:
            assert resp.status == 500
            body = await resp.json()
    assert body["error"] == "internal error: ValueError: a bug, not a validation problem"
    assert "admin GET /v1/pods failed" in caplog.text


AUTH_CASES = [
    pytest.param(None, 401, id="no-header"),
    pytest.param("Bearer wrong", 401, id="wrong-token"),
    pytest.param("Bearer s3cret", 200, id="right-token"),
]


@pytest.mark.parametrize(("header", "want"), AUTH_CASES)
async def test_token_guards_everything_but_healthz(header, want):
    headers = {} if header is None else {"Authorization": header}
    async with serve_admin(FakeController(), token="s3cret") as port, \
            aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(10):
            async with http.get(base + "/v1/services", headers=headers) as resp:
                assert resp.status == want
                if want == 401:
                    assert (await resp.json())["error"].startswith("missing or wrong admin token")
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200


PROBLEM_SHAPES = [
    pytest.param([Problem("spec.x", "bad")], [{"path": "spec.x", "reason": "bad"}],
                 id="path-reason-object"),
    pytest.param([{"path": "a", "reason": "b"}], [{"path": "a", "reason": "b"}], id="mapping"),
    pytest.param(["stable-window: '2s' too short"],
                 [{"path": "", "reason": "stable-window: '2s' too short"}], id="plain-string"),
]


@pytest.mark.parametrize(("problems", "want"), PROBLEM_SHAPES)
def test_problems_to_json(problems, want):
    assert problems_to_json(problems) == want


async def test_metrics_route_renders_the_registry_it_is_given():
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge("autoscaler_desired_pods", "desired", ["revision_name"], registry=registry) \
        .labels("hello-00001").set(3)
    async with serve_admin(FakeController(), token="t", metrics=registry) as port, \
            aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{port}"
        async with session.get(f"{base}/metrics") as resp:
            assert resp.status == 401
        async with session.get(f"{base}/metrics",
                               headers={"Authorization": "Bearer t"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    assert 'autoscaler_desired_pods{revision_name="hello-00001"} 3.0' in text
