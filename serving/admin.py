"""The admin API: the `surge` CLI's way into a running stack (aiohttp, loopback only).

JSON in, JSON out. Endpoints (`{ns}` a namespace, `{kind}` one of KINDS):

    GET    /healthz                                  {"status": "ok", "pid": <pid>}
    POST   /v1/apply                                 {"documents": [{"filename", "text"}]}
                                                     -> {"applied": [summary, ...]}
    GET    /v1/{kind}[?namespace=ns]                 -> {"items": [object, ...]}
    GET    /v1/namespaces/{ns}/services/{name}       -> describe_service's dict
    PATCH  /v1/namespaces/{ns}/services/{name}       {"env", "traffic", "tags", "untags"}
                                                     -> the updated Service object
    DELETE /v1/namespaces/{ns}/services/{name}       -> {"deleted": summary}
    GET    /v1/namespaces/{ns}/services/{name}/logs[?revision=r][&container=c]
                                                     -> {"paths": [...]}
           (c: user-container, the default; queue-proxy; or all)

Errors are `{"error": "<one line>", "problems": [{"object"?, "path", "reason"}, ...]}`
with 400 for a rejected request (any ValueError carrying `.problems`: serving's
ValidationError of FieldProblems, or `InvalidRequestError`), 404 for an unknown object (`NotFoundError`) or
endpoint, 401 without the bearer token, 500 (logged with its traceback) for a bug.

The work is done by an `AdminController`, the Protocol below: the running stack
(serving.stack) implements it; this module only speaks HTTP. The token (from
admin.json, readable only by the user) keeps other local users and web pages that
send requests to loopback from driving the stack.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from dataplane.metrics import render_exposition

from .client import LATEST, TagSpec, TrafficSpec

__all__ = [
    "LATEST",
    "AdminController",
    "InvalidRequestError",
    "KINDS",
    "LOG_CONTAINERS",
    "USER_CONTAINER",
    "NotFoundError",
    "TagSpec",
    "TrafficSpec",
    "build_admin_app",
    "problems_to_json",
]

log = logging.getLogger(__name__)

KINDS = ("services", "configurations", "revisions", "routes", "pods")
# A pod's two processes, named as Knative names the containers, and `all` for both.
USER_CONTAINER = "user-container"
LOG_CONTAINERS = (USER_CONTAINER, "queue-proxy", "all")
# Manifests are small; a few MiB allows hundreds of documents in one apply.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class NotFoundError(LookupError):
    """An object the request names does not exist (answered 404)."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        super().__init__(f'{kind} "{name}" not found in namespace "{namespace}"')


class InvalidRequestError(ValueError):
    """A request the controller refuses (answered 400); `.problems` say where and why."""

    def __init__(self, message: str, problems: Sequence[Any] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message)


class AdminController(Protocol):
    """What the admin API needs from the running stack (implemented by serving.stack).

    Objects are Knative-shaped dicts (`apiVersion`, `kind`, `metadata`, `spec`, `status`),
    pods are `{"name", "namespace", "revision", "service", "phase", "ready", "restarts",
    "ports": {role: port}, "pids": {role: pid}, ...}`. Raise NotFoundError for a missing
    object and a ValueError with `.problems` (each with `.path` and `.reason`) when the
    request is invalid; nothing may change state when either is raised.
    """

    async def apply(self, documents: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Apply (filename, YAML text) pairs atomically; return once stored and routed.

        Returns one summary per object: {"kind", "namespace", "name", "action"} with
        action "created", "configured" or "unchanged".
        """
        ...

    async def list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of `kind` (one of KINDS) in `namespace`, or in all if None."""
        ...

    async def describe_service(self, namespace: str, name: str) -> dict[str, Any]:
        """{"service": obj, "revisions": [obj], "pods": [pod], "events": [event]}."""
        ...

    async def update_service(self, namespace: str, name: str, *,
                             env: Mapping[str, str | None],
                             traffic: Sequence[TrafficSpec],
                             tags: Sequence[TagSpec],
                             untags: Sequence[str]) -> dict[str, Any]:
        """Change a service (env None = remove the variable; traffic empty = keep it).

        Untags apply before tags, tags before traffic (so a new tag can take a percent);
        returns the updated Service object once stored and routed.
        """
        ...

    async def delete_service(self, namespace: str, name: str) -> dict[str, Any]:
        """Delete a service with its revisions and route; return its summary."""
        ...

    async def log_paths(self, namespace: str, name: str, revision: str | None = None,
                        container: str = USER_CONTAINER) -> list[str]:
        """The log files of the service's pods (of one revision if given), oldest first:
        the app's (`user-container`), the queue-proxy's (`queue-proxy`) or both (`all`)."""
        ...


def problems_to_json(problems: Sequence[Any]) -> list[dict[str, str]]:
    """[{[object,] path, reason}] for problems (FieldProblem-like objects, mappings, strings)."""
    out = []
    for problem in problems:
        if isinstance(problem, Mapping):
            item = {k: str(problem.get(k, "")) for k in ("object", "path", "reason")}
        elif hasattr(problem, "reason"):
            item = {k: str(getattr(problem, k, "")) for k in ("object", "path", "reason")}
        else:
            item = {"object": "", "path": "", "reason": str(problem)}
        if not item["object"]:
            del item["object"]  # only serving.validation's FieldProblem names one
        out.append(item)
    return out


def _error(status: int, message: str, problems: Sequence[Any] = ()) -> web.Response:
    # One line: the CLI prints it after "surge: ".
    line = " ".join(message.split()) or "error"
    return web.json_response({"error": line, "problems": problems_to_json(problems)},
                             status=status)


def _rejected(request: web.Request) -> str:
    """The summary line of a 400 with problems: what was refused."""
    if request.method == "POST" and request.path == "/v1/apply":
        return "apply rejected, nothing was changed"
    if request.method == "PATCH" and "name" in request.match_info:
        ns, name = request.match_info["ns"], request.match_info["name"]
        return f"update of service {ns}/{name} rejected, nothing was changed"
    return f"{request.method} {request.path} rejected"


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map exceptions to JSON errors; the only broad except, at the request's edge."""
    try:
        return await handler(request)
    except NotFoundError as exc:
        return _error(404, str(exc))
    except ValueError as exc:
        if not hasattr(exc, "problems"):
            log.exception("admin %s %s failed", request.method, request.path)
            return _error(500, f"internal error: {type(exc).__name__}: {exc}")
        problems = exc.problems
        # With problems, they carry the detail (the exception's text is often all of them
        # joined); the line above them says what was refused.
        return _error(400, _rejected(request) if problems else str(exc), problems)
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error(404, f"no such endpoint: {request.method} {request.path}")
        if exc.status == 405:
            return _error(405, f"method {request.method} not allowed on {request.path}")
        return _error(exc.status, exc.text or exc.reason)
    except Exception as exc:  # noqa: BLE001 - answer 500 and log the bug
        log.exception("admin %s %s failed", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _auth(token: str | None) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if token and request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            # Constant-time compare: the token is a secret.
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error(401, "missing or wrong admin token (see admin.json)")
        return await handler(request)
    return check


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _bad_request(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad_request("request body must be a JSON object")
    return body


def _str_list(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad_request(f"{key} must be a list of strings")
    return value


def _parse_update(body: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of update_service from its JSON body."""
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in env.items()):
        raise _bad_request("env must map names to strings or null")
    try:
        traffic = [TrafficSpec(str(t["target"]), int(t["percent"]))
                   for t in body.get("traffic") or []]
        tags = [TagSpec(str(t["revision"]), str(t["tag"])) for t in body.get("tags") or []]
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad_request(f"bad traffic or tags entry: {exc!r}") from None
    return {"env": env, "traffic": traffic, "tags": tags, "untags": _str_list(body, "untags")}


class _Handlers:
    """The routes, bound to one controller."""

    def __init__(self, controller: AdminController) -> None:
        self.controller = controller

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pid": os.getpid()})

    async def apply(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        docs = body.get("documents")
        if not isinstance(docs, list) or not docs:
            raise _bad_request("documents must be a non-empty list of {filename, text}")
        pairs = []
        for doc in docs:
            if not (isinstance(doc, dict) and isinstance(doc.get("filename"), str)
                    and isinstance(doc.get("text"), str)):
                raise _bad_request("each document needs a string filename and text")
            pairs.append((doc["filename"], doc["text"]))
        return web.json_response({"applied": await self.controller.apply(pairs)})

    async def list(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            return _error(404, f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        namespace = request.query.get("namespace") or None
        return web.json_response({"items": await self.controller.list(kind, namespace)})

    async def describe(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        return web.json_response(await self.controller.describe_service(ns, name))

    async def update(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        kwargs = _parse_update(await _json_body(request))
        return web.json_response(await self.controller.update_service(ns, name, **kwargs))

    async def delete(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        return web.json_response({"deleted": await self.controller.delete_service(ns, name)})

    async def logs(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        revision = request.query.get("revision") or None
        container = request.query.get("container") or USER_CONTAINER
        if container not in LOG_CONTAINERS:
            raise _bad_request(f"container {container!r}: one of {', '.join(LOG_CONTAINERS)}")
        paths = await self.controller.log_paths(ns, name, revision, container)
        return web.json_response({"paths": [str(p) for p in paths]})


def build_admin_app(controller: AdminController, *, token: str | None = None,
                    metrics: CollectorRegistry | None = None,
                    legacy_counters: Sequence[str] = ()) -> web.Application:
    """The admin aiohttp app over `controller`; with `token`, requests need the bearer.

    With `metrics`, `GET /metrics` renders that registry in Prometheus' text format (the
    autoscaler's and the activator's series, Knative's names; `legacy_counters` keep
    their bare OpenCensus names in HELP and TYPE).
    """
    app = web.Application(middlewares=[_errors, _auth(token)],
                          client_max_size=MAX_REQUEST_BYTES)
    h = _Handlers(controller)
    service = "/v1/namespaces/{ns}/services/{name}"
    app.router.add_get("/healthz", h.healthz)
    if metrics is not None:
        async def render_metrics(_request: web.Request) -> web.Response:
            # On the loop: the collector reads the multiscaler's live state (cheap).
            body = render_exposition(metrics, legacy_counters)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        app.router.add_get("/metrics", render_metrics)
    app.router.add_post("/v1/apply", h.apply)
    app.router.add_get("/v1/{kind}", h.list)
    app.router.add_get(service, h.describe)
    app.router.add_patch(service, h.update)
    app.router.add_delete(service, h.delete)
    app.router.add_get(service + "/logs", h.logs)
    return app
