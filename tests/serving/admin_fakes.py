"""A test double AdminController and a helper that serves the admin app on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from support.http import serving

from serving.admin import (
    LATEST,
    InvalidRequestError,
    NotFoundError,
    TagSpec,
    TrafficSpec,
    build_admin_app,
)

# A minimal Service manifest, as a user would apply it.
HELLO = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - command: ["python", "app.py"]
"""


@dataclass(frozen=True)
class Problem:
    """A validation problem shaped like serving's: a field path and a reason."""

    path: str
    reason: str
    object: str = ""


def service_object(ns: str, name: str, revisions: list[str], traffic: list[dict],
                   env: Mapping[str, str], ready: bool = True) -> dict[str, Any]:
    """A Knative-shaped Service as the stack would render it."""
    url = f"http://{name}.{ns}.example.com"
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "generation": len(revisions)},
        "spec": {"template": {"spec": {"containers": [
            {"command": ["python", "app.py"],
             "env": [{"name": k, "value": v} for k, v in env.items()]}]}},
            "traffic": traffic},
        "status": {
            "observedGeneration": len(revisions),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            **({} if ready else {"reason": "RevisionFailed",
                                                 "message": "the app exited"})}],
            "url": url, "address": {"url": url},
            "latestCreatedRevisionName": revisions[-1],
            "latestReadyRevisionName": revisions[-1] if ready else revisions[0],
            "traffic": traffic,
        },
    }


class FakeController:
    """An in-memory AdminController: Services only, each with numbered revisions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        # (ns, name) -> {"revisions": [...], "traffic": [...], "env": {...}}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], list[str]] = {}
        self.events: list[dict[str, Any]] = []

    def _get(self, ns: str, name: str) -> dict[str, Any]:
        if (ns, name) not in self.services:
            raise NotFoundError("service", ns, name)
        return self.services[(ns, name)]

    def _obj(self, ns: str, name: str) -> dict[str, Any]:
        svc = self._get(ns, name)
        return service_object(ns, name, svc["revisions"], svc["traffic"], svc["env"],
                              svc.get("ready", True))

    async def apply(self, documents: list[tuple[str, str]]) -> list[dict[str, Any]]:
        self.calls.append(("apply", documents))
        parsed, problems = [], []
        for filename, text in documents:
            for i, doc in enumerate(yaml.safe_load_all(text)):
                name = (doc.get("metadata") or {}).get("name")
                if not name:
                    problems.append(Problem(f"{filename}[{i}].metadata.name", "is required"))
                if doc.get("kind") != "Service":
                    problems.append(Problem(f"{filename}[{i}].kind",
                                            f"{doc.get('kind')!r} is not supported",
                                            f"{doc.get('kind')}/{name}"))
                parsed.append(doc)
        if problems:
            raise InvalidRequestError(f"{len(problems)} problem(s) in the manifests", problems)
        out = []
        for doc in parsed:
            ns = doc["metadata"].get("namespace", "default")
            name = doc["metadata"]["name"]
            existing = self.services.get((ns, name))
            if existing is None:
                rev = f"{name}-00001"
                self.services[(ns, name)] = {
                    "revisions": [rev], "env": {},
                    "traffic": [{"revisionName": rev, "latestRevision": True, "percent": 100}]}
                action = "created"
            else:
                n = len(existing["revisions"]) + 1
                existing["revisions"].append(f"{name}-{n:05d}")
                action = "configured"
            out.append({"kind": "Service", "namespace": ns, "name": name, "action": action})
        return out

    async def list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        self.calls.append(("list", (kind, namespace)))
        keys = [k for k in sorted(self.services) if namespace in (None, k[0])]
        if kind == "services":
            return [self._obj(*k) for k in keys]
        if kind == "routes":
            return [{"kind": "Route", "metadata": {"name": k[1], "namespace": k[0]},
                     "status": {"url": f"http://{k[1]}.{k[0]}.example.com",
                                "traffic": self.services[k]["traffic"],
                                "conditions": [{"type": "Ready", "status": "True"}]}}
                    for k in keys]
        if kind == "revisions":
            return [{"kind": "Revision",
                     "metadata": {"name": rev, "namespace": k[0], "labels": {
                         "serving.knative.dev/service": k[1],
                         "serving.knative.dev/configurationGeneration": str(i + 1)}},
                     "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
                    for k in keys for i, rev in enumerate(self.services[k]["revisions"])]
        if kind == "pods":
            return [{"name": f"{rev}-pod-1", "namespace": k[0], "revision": rev,
                     "service": k[1], "phase": "Running", "ready": True, "restarts": 0,
                     "ports": {"queue": 40001, "user": 40002}, "pids": {"queue-proxy": 11,
                                                                      "app": 12}}
                    for k in keys for rev in self.services[k]["revisions"][-1:]]
        return []

    async def describe_service(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("describe", (namespace, name)))
        return {"service": self._obj(namespace, name),
                "revisions": [r for r in await self.list("revisions", namespace)
                              if r["metadata"]["labels"]["serving.knative.dev/service"] == name],
                "pods": [p for p in await self.list("pods", namespace) if p["service"] == name],
                "events": self.events}

    async def update_service(self, namespace: str, name: str, *,
                             env: Mapping[str, str | None], traffic: Sequence[TrafficSpec],
                             tags: Sequence[TagSpec], untags: Sequence[str]) -> dict[str, Any]:
        self.calls.append(("update", (namespace, name, dict(env), list(traffic), list(tags),
                                      list(untags))))
        svc = self._get(namespace, name)
        known = set(svc["revisions"]) | {LATEST} | {t.tag for t in tags}
        bad = [Problem("traffic", f"unknown revision or tag {t.target!r}")
               for t in traffic if t.target not in known]
        if bad:
            raise InvalidRequestError("traffic names an unknown target", bad)
        for key, value in env.items():
            if value is None:
                svc["env"].pop(key, None)
            else:
                svc["env"][key] = value
        if env:
            svc["revisions"].append(f"{name}-{len(svc['revisions']) + 1:05d}")
        if traffic:
            svc["traffic"] = [{"revisionName": t.target, "percent": t.percent}
                              for t in traffic]
        return self._obj(namespace, name)

    async def delete_service(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("delete", (namespace, name)))
        self._get(namespace, name)
        del self.services[(namespace, name)]
        return {"kind": "Service", "namespace": namespace, "name": name}

    async def log_paths(self, namespace: str, name: str, revision: str | None = None,
                        container: str = "user-container") -> list[str]:
        self.calls.append(("logs", (namespace, name, revision, container)))
        self._get(namespace, name)
        paths = self.logs.get((namespace, name), [])
        wanted = {"user-container": (False,), "queue-proxy": (True,), "all": (False, True)}
        return [p for p in paths if (revision is None or revision in p)
                and (".queue-proxy." in p) in wanted[container]]


@contextlib.asynccontextmanager
async def serve_admin(controller: Any, token: str | None = None,
                      metrics: Any = None) -> AsyncIterator[int]:
    """Serve the admin app over `controller` on a free loopback port; yield the port."""
    async with serving(build_admin_app(controller, token=token, metrics=metrics)) as port:
        yield port
