"""An in-memory Kubernetes API server on 127.0.0.1 (aiohttp) speaking the real REST paths.

Enough of the API for kubernetes_asyncio and the controller: list (labelSelector),
watch (chunked JSON lines from a resourceVersion; 410 Gone when it is older than
`compacted_rv`), get, create (uid, generation, resourceVersion, generateName), replace
(optimistic concurrency: a stale resourceVersion gets 409; status kept; generation
bumped when spec changes), replace of the status subresource, merge patch (also of
`deployments/<name>/scale`), delete (uid precondition) with the garbage collector's
cascade over ownerReferences. `writes` records every mutating call.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from pathlib import Path
from typing import Any

from aiohttp import web

Key = tuple[str, str, str, str]  # (group/version, plural, namespace, name)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def _matches(obj: dict, selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        if "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v:
                return False
        elif term not in labels:
            return False
    return True


class FakeApiServer:
    """The store, its event log, and the aiohttp app serving them."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict] = {}
        self.log: list[tuple[int, str, str, str, dict]] = []  # (rv, type, gv, plural, obj)
        self.writes: list[tuple[str, str]] = []
        self.compacted_rv = 0
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on a free 127.0.0.1 port."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection, watches included."""
        async with self._changed:
            self._changed.notify_all()
        await self._runner.cleanup()

    def kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig file naming this server."""
        path = directory / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "fake", "user": {"token": "t"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        return path

    # ---------------------------------------------------------------- store

    def find(self, plural: str, namespace: str, name: str) -> dict | None:
        """The stored object of that plural, or None; "services" are Knative's, "services/v1"
        the core kind's."""
        plural, _, gv = plural.partition("/")
        gv = gv or {"services": "serving.knative.dev/v1"}.get(plural, "")
        return next((o for (g, p, ns, n), o in self.objects.items()
                     if (p, ns, n) == (plural, namespace, name) and (not gv or g == gv)), None)

    def all(self, plural: str) -> list[dict]:
        """Every stored object of that plural (any group)."""
        return [o for (_, p, _, _), o in self.objects.items() if p == plural]

    async def wait_for(self, predicate, timeout_s: float = 10.0):
        """Wait until `predicate()` is truthy (re-checked on every change); return it."""
        async with asyncio.timeout(timeout_s):
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

    async def _record(self, type_: str, key: Key, obj: dict) -> None:
        rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(rv)
        if type_ == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.log.append((rv, type_, key[0], key[1], copy.deepcopy(obj)))
        async with self._changed:
            self._changed.notify_all()

    async def put(self, gv: str, plural: str, obj: dict) -> dict:
        """Store as a create would (for tests seeding objects or changing status)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
        await self._record("ADDED", (gv, plural, meta["namespace"], meta["name"]), obj)
        return obj

    async def modify(self, gv: str, plural: str, obj: dict) -> None:
        """Store a changed object (a test playing the kubelet or the user)."""
        meta = obj["metadata"]
        await self._record("MODIFIED", (gv, plural, meta["namespace"], meta["name"]), obj)

    async def _collect_garbage(self) -> None:
        while True:
            uids = {o["metadata"]["uid"] for o in self.objects.values()}
            orphan = next((k for k, o in self.objects.items()
                           if any(r.get("uid") not in uids
                                  for r in o["metadata"].get("ownerReferences") or ())), None)
            if orphan is None:
                return
            await self._record("DELETED", orphan, copy.deepcopy(self.objects[orphan]))

    # ----------------------------------------------------------------- HTTP

    @staticmethod
    def _parse(path: str) -> tuple[str, str, str, str, str]:
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            gv, rest = parts[1], parts[2:]
        else:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        ns = ""
        if rest and rest[0] == "namespaces" and len(rest) > 2:
            ns, rest = rest[1], rest[2:]
        rest += ["", ""]
        return gv, rest[0], ns, rest[1], rest[2]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        gv, plural, ns, name, sub = self._parse(request.path)
        key = (gv, plural, ns, name)
        method = request.method
        if method != "GET":
            self.writes.append((method, request.path))
        if method == "GET" and not name:
            if request.query.get("watch") == "true":
                return await self._watch(request, gv, plural, ns)
            items = [o for (g, p, n, _), o in sorted(self.objects.items())
                     if (g, p) == (gv, plural) and (not ns or n == ns)
                     and _matches(o, request.query.get("labelSelector", ""))]
            return web.json_response({"kind": "List", "items": items, "metadata": {
                "resourceVersion": str(self.log[-1][0] if self.log else 0)}})
        current = self.objects.get(key)
        if method == "POST":
            body = await request.json()
            meta = body.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{next(self._uid):05d}"
            meta["namespace"] = ns
            if self.objects.get((gv, plural, ns, meta["name"])):
                return _status(409, "AlreadyExists", f"{plural} {meta['name']!r} exists")
            body.pop("status", None)
            created = await self.put(gv, plural, body)
            await self._collect_garbage()  # a child of an owner already gone goes at once
            return web.json_response(created, status=201)
        if current is None:
            return _status(404, "NotFound", f"{plural} {name!r} not found")
        if method == "GET":
            return web.json_response(current)
        if method == "DELETE":
            body = await request.json() if request.can_read_body else {}
            uid = ((body or {}).get("preconditions") or {}).get("uid")
            if uid and uid != current["metadata"]["uid"]:
                return _status(409, "Conflict", "uid precondition failed")
            await self._record("DELETED", key, copy.deepcopy(current))
            await self._collect_garbage()
            return web.json_response({"kind": "Status", "status": "Success"})
        body = await request.json()
        new = copy.deepcopy(current)
        if method == "PATCH" and sub == "scale":
            new["spec"]["replicas"] = body["spec"]["replicas"]
        elif method == "PATCH":
            new = _merge(new, body)
        else:  # PUT
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified")
            if sub == "status":
                new["status"] = body.get("status") or {}
            else:
                new = {**body, "status": current.get("status")}
                new["metadata"] = {**body["metadata"],
                                   **{k: current["metadata"][k] for k in
                                      ("uid", "generation", "creationTimestamp")}}
                if body.get("spec") != current.get("spec"):
                    new["metadata"]["generation"] += 1
        await self._record("MODIFIED", key, new)
        return web.json_response(new)

    async def _watch(self, request: web.Request, gv: str, plural: str, ns: str):
        since = int(request.query.get("resourceVersion") or 0)
        selector = request.query.get("labelSelector", "")
        resp = web.StreamResponse()
        await resp.prepare(request)
        if since < self.compacted_rv:
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                "reason": "Expired", "message": "too old"}}
            await resp.write(json.dumps(gone).encode() + b"\n")
            return resp
        sent = since
        try:
            async with asyncio.timeout(float(request.query.get("timeoutSeconds", 300))):
                while True:
                    for rv, type_, g, p, obj in list(self.log):
                        if rv > sent and (g, p) == (gv, plural) and (
                                not ns or obj["metadata"]["namespace"] == ns) \
                                and _matches(obj, selector):
                            await resp.write(json.dumps(
                                {"type": type_, "object": obj}).encode() + b"\n")
                    sent = self.log[-1][0] if self.log else sent
                    async with self._changed:
                        if (self.log[-1][0] if self.log else 0) == sent:
                            await self._changed.wait()
        except TimeoutError:
            pass
        return resp


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "status": "Failure", "code": code,
                              "reason": reason, "message": message}, status=code)
