"""A thin REST client over kubernetes_asyncio's ApiClient, speaking plain dicts.

The controller, autoscaler and activator handle objects as the API holds them (the
pure builders take and return dicts), so this module skips kubernetes_asyncio's typed
models and calls the REST paths directly through its `ApiClient`, which still does
what matters: kubeconfig or in-cluster configuration, TLS, bearer-token refresh and
the aiohttp session. One `Kind` describes a resource (group/version, plural,
namespaced); one `Api` serves every kind.

Watches are read as the API server streams them: one JSON event per line
(`{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": ...}`); an ERROR
event carries a Status whose `code` 410 means the resourceVersion is too old (the
informer then lists again).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

_AUTH = ["BearerToken"]
_JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server; `status` is the HTTP code (410 Gone, 409...)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".rstrip(": "))
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Kind:
    """A resource type: `api_version` as in manifests, its kind and REST plural."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The REST path of the collection, or of one object and its subresource."""
        base = f"/api/{self.api_version}" if "/" not in self.api_version \
            else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


KSERVICE = Kind("serving.knative.dev/v1", "Service", "services")
CONFIGURATION = Kind("serving.knative.dev/v1", "Configuration", "configurations")
REVISION = Kind("serving.knative.dev/v1", "Revision", "revisions")
ROUTE = Kind("serving.knative.dev/v1", "Route", "routes")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
SERVICE = Kind("v1", "Service", "services")
CONFIGMAP = Kind("v1", "ConfigMap", "configmaps")
EVENT = Kind("v1", "Event", "events")
POD = Kind("v1", "Pod", "pods")
ENDPOINTSLICE = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
KINDS = {(k.api_version, k.kind): k for k in (
    KSERVICE, CONFIGURATION, REVISION, ROUTE, DEPLOYMENT, SERVICE, CONFIGMAP, EVENT, POD,
    ENDPOINTSLICE)}


def kind_of(obj: Mapping[str, Any]) -> Kind:
    """The Kind of a manifest (KeyError for kinds Surge does not handle)."""
    return KINDS[(obj["apiVersion"], obj["kind"])]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


class Api:
    """Plain-dict CRUD, list and watch on any Kind, over one kubernetes_asyncio ApiClient."""

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        self._client = api_client

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()

    async def _call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                    body: Any = None, content_type: str = _JSON,
                    timeout_s: float | None = None) -> Any:
        headers = {"Accept": _JSON, "Content-Type": content_type}
        try:
            resp = await self._client.call_api(
                path, method, query_params=list((query or {}).items()), header_params=headers,
                body=body, auth_settings=_AUTH, _preload_content=False,
                _request_timeout=timeout_s)
        except ApiException as exc:  # raised for transport-level failures
            raise ApiError(exc.status or 0, exc.reason or "error", str(exc.body or "")) from exc
        async with resp:
            data = await resp.read()
            if not 200 <= resp.status < 300:
                raise _error(resp.status, resp.reason or "", data)
            return json.loads(data) if data else None

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call("GET", kind.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: str | None = None, *,
                   label_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """(items, resourceVersion of the list); items carry apiVersion and kind."""
        query = {"labelSelector": label_selector} if label_selector else {}
        out = await self._call("GET", kind.path(namespace), query=query)
        items = [{"apiVersion": kind.api_version, "kind": kind.kind, **i}
                 for i in out.get("items") or ()]
        return items, _meta(out).get("resourceVersion", "")

    async def watch(self, kind: Kind, namespace: str | None, resource_version: str, *,
                    label_selector: str | None = None,
                    timeout_s: int = 300) -> AsyncIterator[dict[str, Any]]:
        """The watch events from `resource_version` until the server ends the stream.

        The server closes it after `timeout_s` (it picks its own when it likes); the
        client waits a little longer so the server's end is the normal one.
        """
        query: dict[str, Any] = {"watch": "true", "resourceVersion": resource_version,
                                 "allowWatchBookmarks": "true", "timeoutSeconds": timeout_s}
        if label_selector:
            query["labelSelector"] = label_selector
        headers = {"Accept": _JSON, "Content-Type": _JSON}
        resp = await self._client.call_api(
            kind.path(namespace), "GET", query_params=list(query.items()),
            header_params=headers, auth_settings=_AUTH, _preload_content=False,
            _request_timeout=timeout_s + 30)
        async with resp:
            if not 200 <= resp.status < 300:
                raise _error(resp.status, resp.reason or "", await resp.read())
            async for line in resp.content:
                if line.strip():
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") != "ERROR":
                        obj.setdefault("apiVersion", kind.api_version)
                        obj.setdefault("kind", kind.kind)
                    yield event

    async def create(self, obj: Mapping[str, Any], kind: Kind | None = None) -> dict[str, Any]:
        """Create the object; the stored object is returned.

        `kind` is needed only for kinds outside KINDS (a CRD, a Namespace).
        """
        kind = kind or kind_of(obj)
        return await self._call("POST", kind.path(_meta(obj).get("namespace")), body=obj)

    async def replace(self, obj: Mapping[str, Any], kind: Kind | None = None) -> dict[str, Any]:
        """Replace (PUT) the object; its resourceVersion makes it conditional (409)."""
        meta = _meta(obj)
        kind = kind or kind_of(obj)
        return await self._call("PUT", kind.path(meta.get("namespace"), meta["name"]), body=obj)

    async def replace_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Write the object's status through the status subresource."""
        meta = _meta(obj)
        return await self._call(
            "PUT", kind_of(obj).path(meta.get("namespace"), meta["name"], "status"), body=obj)

    async def patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *,
                    subresource: str | None = None) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of the object or its subresource (`scale`)."""
        return await self._call("PATCH", kind.path(namespace, name, subresource), body=patch,
                                content_type=MERGE_PATCH)

    async def delete(self, kind: Kind, namespace: str, name: str, *,
                     uid: str | None = None) -> None:
        """Delete in the background (the garbage collector removes what it owned).

        With `uid`, only that incarnation: a same-named successor is left alone.
        """
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._call("DELETE", kind.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone already, or a successor now
                raise


def _error(status: int, reason: str, data: bytes) -> ApiError:
    try:
        body = json.loads(data)
        return ApiError(status, body.get("reason") or reason, body.get("message", ""))
    except (ValueError, AttributeError):
        return ApiError(status, reason, data.decode(errors="replace")[:200])


async def load_api(kubeconfig: str | None = None) -> Api:
    """An Api from `kubeconfig`, else from $KUBECONFIG/~/.kube/config, else in-cluster."""
    configuration = k8s_client.Configuration()
    if kubeconfig:
        await k8s_config.load_kube_config(config_file=kubeconfig,
                                          client_configuration=configuration)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(client_configuration=configuration)
    return Api(k8s_client.ApiClient(configuration))
