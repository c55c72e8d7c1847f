"""The control plane's object model: Knative's Service, Configuration, Route and Revision.

Every type is a frozen dataclass: a manifest parses into these once (serving.manifests),
the desired-state logic (serving.state) derives new ones instead of editing old ones,
and `to_knative()` renders each back as the Knative-shaped dict users see with
`-o json`. Mappings are read-only views (`types.MappingProxyType`) and sequences are
tuples, so nothing reachable from a state can change under it.

Field names are Knative's, snake_cased (`container_concurrency` for
`containerConcurrency`). "Not set" is None or "" as in Knative's pointer fields;
defaults from config-defaults are filled in by `serving.configmaps.default_revision_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from dataplane.types import RevisionKey

API_VERSION = "serving.knative.dev/v1"
SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
CONFIGURATION_GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
ROUTE_LABEL = "serving.knative.dev/route"
DEFAULT_USER_PORT = 8080  # Knative's default user port when the container names none


def freeze(value: Any) -> Any:
    """A read-only deep copy of plain YAML data: dicts become mapping proxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-safe plain copy of `freeze`d data (dicts and lists again)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _frozen_fields(obj: Any, *names: str) -> None:
    """Freeze the mapping fields `names` of a just-built frozen dataclass."""
    for name in names:
        object.__setattr__(obj, name, freeze(getattr(obj, name) or {}))


def rfc3339(epoch_s: float) -> str:
    """Kubernetes' timestamp format (whole seconds, UTC) for wall-clock epoch seconds."""
    return datetime.fromtimestamp(int(epoch_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """A namespaced object by namespace and name (Kubernetes' NamespacedName)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """The metadata Surge keeps; `generation` counts spec changes, as Kubernetes does."""

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int = 0
    # Wall-clock epoch seconds, given to the pure logic as `now`; None until stored.
    creation_timestamp: float | None = None

    def __post_init__(self) -> None:
        _frozen_fields(self, "labels", "annotations")

    @property
    def key(self) -> ObjectKey:
        """This object's (namespace, name)."""
        return ObjectKey(self.namespace, self.name)

    def to_knative(self) -> dict[str, Any]:
        """`metadata` as Kubernetes renders it."""
        out: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            out["labels"] = thaw(self.labels)
        if self.annotations:
            out["annotations"] = thaw(self.annotations)
        if self.generation:
            out["generation"] = self.generation
        if self.creation_timestamp is not None:
            out["creationTimestamp"] = rfc3339(self.creation_timestamp)
        return out


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One literal environment variable (valueFrom cannot be resolved locally)."""

    name: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """The port the user container listens on; Knative allows one, named '', h2c or http1."""

    container_port: int = 0
    name: str = ""
    protocol: str = ""


@dataclass(frozen=True, slots=True)
class Container:
    """The user container: what to run and how to reach it."""

    name: str = ""
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    working_dir: str = ""
    ports: tuple[ContainerPort, ...] = ()
    # Kept raw (the Kubernetes Probe object): the queue-proxy takes it as
    # SERVING_READINESS_PROBE JSON and applies Knative's defaults itself.
    readiness_probe: Mapping[str, Any] | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _frozen_fields(self, "resources")
        if self.readiness_probe is not None:
            object.__setattr__(self, "readiness_probe", freeze(self.readiness_probe))

    @property
    def user_port(self) -> int:
        """The port the program must listen on (PORT): ports[0], else Knative's 8080."""
        if self.ports and self.ports[0].container_port:
            return self.ports[0].container_port
        return DEFAULT_USER_PORT

    def env_dict(self) -> dict[str, str]:
        """The container's env as a dict (a later duplicate wins, as in Kubernetes)."""
        return {e.name: e.value for e in self.env}

    def to_knative(self) -> dict[str, Any]:
        """The container as a Kubernetes Container object."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.image:
            out["image"] = self.image
        if self.command:
            out["command"] = list(self.command)
        if self.args:
            out["args"] = list(self.args)
        if self.env:
            out["env"] = [{"name": e.name, "value": e.value} for e in self.env]
        if self.working_dir:
            out["workingDir"] = self.working_dir
        if self.ports:
            out["ports"] = [_port_to_knative(p) for p in self.ports]
        if self.readiness_probe is not None:
            out["readinessProbe"] = thaw(self.readiness_probe)
        if self.resources:
            out["resources"] = thaw(self.resources)
        return out


def _port_to_knative(port: ContainerPort) -> dict[str, Any]:
    out: dict[str, Any] = {"containerPort": port.container_port}
    if port.name:
        out["name"] = port.name
    if port.protocol:
        out["protocol"] = port.protocol
    return out


@dataclass(frozen=True, slots=True)
class RevisionSpec:
    """What a revision runs; immutable once the revision exists."""

    containers: tuple[Container, ...] = ()
    container_concurrency: int | None = None
    timeout_seconds: int | None = None
    response_start_timeout_seconds: int | None = None
    idle_timeout_seconds: int | None = None

    @property
    def container(self) -> Container:
        """The user container (Surge runs exactly one)."""
        return self.containers[0]

    def to_knative(self) -> dict[str, Any]:
        """The spec as Knative renders a RevisionSpec."""
        out: dict[str, Any] = {"containers": [c.to_knative() for c in self.containers]}
        for key, value in (("containerConcurrency", self.container_concurrency),
                           ("timeoutSeconds", self.timeout_seconds),
                           ("responseStartTimeoutSeconds", self.response_start_timeout_seconds),
                           ("idleTimeoutSeconds", self.idle_timeout_seconds)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class RevisionTemplate:
    """`spec.template` of a Service or Configuration: revision metadata plus spec."""

    spec: RevisionSpec = RevisionSpec()
    name: str = ""  # bring-your-own revision name; "" means `<config>-<generation:05d>`
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _frozen_fields(self, "labels", "annotations")

    def to_knative(self) -> dict[str, Any]:
        """The template as Knative renders a RevisionTemplateSpec."""
        meta: dict[str, Any] = {}
        if self.name:
            meta["name"] = self.name
        if self.labels:
            meta["labels"] = thaw(self.labels)
        if self.annotations:
            meta["annotations"] = thaw(self.annotations)
        out: dict[str, Any] = {"spec": self.spec.to_knative()}
        if meta:
            out = {"metadata": meta, **out}
        return out


@dataclass(frozen=True, slots=True)
class TrafficTarget:
    """One traffic entry; in a status, `revision_name` is resolved and `url` set per tag."""

    tag: str = ""
    revision_name: str = ""
    configuration_name: str = ""
    latest_revision: bool | None = None
    percent: int | None = None
    url: str = ""  # status only; validation rejects it in a spec

    def to_knative(self) -> dict[str, Any]:
        """The target as Knative renders a TrafficTarget."""
        out: dict[str, Any] = {}
        if self.tag:
            out["tag"] = self.tag
        if self.revision_name:
            out["revisionName"] = self.revision_name
        if self.configuration_name:
            out["configurationName"] = self.configuration_name
        if self.latest_revision is not None:
            out["latestRevision"] = self.latest_revision
        if self.percent is not None:
            out["percent"] = self.percent
        if self.url:
            out["url"] = self.url
        return out


@dataclass(frozen=True, slots=True)
class Condition:
    """A Knative status condition; `status` is "True", "False" or "Unknown"."""

    type: str
    status: str
    reason: str = ""
    message: str = ""

    def to_knative(self) -> dict[str, Any]:
        """The condition as Knative renders it."""
        out = {"type": self.type, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        return out


def _conditions(conditions: tuple[Condition, ...]) -> list[dict[str, Any]]:
    return [c.to_knative() for c in conditions]


@dataclass(frozen=True, slots=True)
class ConfigurationStatus:
    """The revisions a Configuration last created and last saw become ready."""

    latest_created_revision_name: str = ""
    latest_ready_revision_name: str = ""


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """A route's resolved traffic, URLs and readiness (computed, never stored)."""

    url: str
    address_url: str
    traffic: tuple[TrafficTarget, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def to_knative(self) -> dict[str, Any]:
        """`status` of a Route."""
        return {"conditions": _conditions(self.conditions), "url": self.url,
                "address": {"url": self.address_url},
                "traffic": [t.to_knative() for t in self.traffic]}


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A Service's status: its Configuration's and Route's, combined (computed)."""

    observed_generation: int
    conditions: tuple[Condition, ...]
    url: str
    address_url: str
    traffic: tuple[TrafficTarget, ...] = ()
    latest_created_revision_name: str = ""
    latest_ready_revision_name: str = ""

    def to_knative(self) -> dict[str, Any]:
        """`status` of a Service."""
        out: dict[str, Any] = {"observedGeneration": self.observed_generation,
                               "conditions": _conditions(self.conditions), "url": self.url,
                               "address": {"url": self.address_url}}
        if self.latest_created_revision_name:
            out["latestCreatedRevisionName"] = self.latest_created_revision_name
        if self.latest_ready_revision_name:
            out["latestReadyRevisionName"] = self.latest_ready_revision_name
        out["traffic"] = [t.to_knative() for t in self.traffic]
        return out


def _object(kind: str, metadata: ObjectMeta, spec: dict[str, Any],
            status: dict[str, Any] | None) -> dict[str, Any]:
    out = {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata.to_knative(),
           "spec": spec}
    if status is not None:
        out["status"] = status
    return out


@dataclass(frozen=True, slots=True)
class Service:
    """A Knative Service: a Configuration and a Route of the same name, managed together."""

    metadata: ObjectMeta
    template: RevisionTemplate = RevisionTemplate()
    traffic: tuple[TrafficTarget, ...] = ()

    @property
    def key(self) -> ObjectKey:
        """(namespace, name)."""
        return self.metadata.key

    def to_knative(self, status: ServiceStatus | None = None) -> dict[str, Any]:
        """The Service as Knative renders it; `status` included when given."""
        spec = {"template": self.template.to_knative(),
                "traffic": [t.to_knative() for t in self.traffic]}
        return _object("Service", self.metadata, spec,
                       None if status is None else status.to_knative())


@dataclass(frozen=True, slots=True)
class Configuration:
    """A Knative Configuration: the template each new revision is stamped from."""

    metadata: ObjectMeta
    template: RevisionTemplate = RevisionTemplate()
    owner_service: str = ""  # the Service that manages it, "" if applied on its own
    status: ConfigurationStatus = ConfigurationStatus()

    @property
    def key(self) -> ObjectKey:
        """(namespace, name)."""
        return self.metadata.key

    def to_knative(self, conditions: tuple[Condition, ...] | None = None) -> dict[str, Any]:
        """The Configuration as Knative renders it; status included when conditions given."""
        status = None
        if conditions is not None:
            status = {"observedGeneration": self.metadata.generation,
                      "conditions": _conditions(conditions)}
            if self.status.latest_created_revision_name:
                status["latestCreatedRevisionName"] = self.status.latest_created_revision_name
            if self.status.latest_ready_revision_name:
                status["latestReadyRevisionName"] = self.status.latest_ready_revision_name
        return _object("Configuration", self.metadata,
                       {"template": self.template.to_knative()}, status)


@dataclass(frozen=True, slots=True)
class Route:
    """A Knative Route: traffic targets over revisions and configurations."""

    metadata: ObjectMeta
    traffic: tuple[TrafficTarget, ...] = ()
    owner_service: str = ""

    @property
    def key(self) -> ObjectKey:
        """(namespace, name)."""
        return self.metadata.key

    def to_knative(self, status: RouteStatus | None = None) -> dict[str, Any]:
        """The Route as Knative renders it; `status` included when given."""
        return _object("Route", self.metadata, {"traffic": [t.to_knative() for t in self.traffic]},
                       None if status is None else status.to_knative())


@dataclass(frozen=True, slots=True)
class RevisionStatus:
    """Readiness as the platform last reported it; None while it is still unknown."""

    ready: bool | None = None
    reason: str = ""
    message: str = ""

    def condition(self) -> Condition:
        """The revision's Ready condition."""
        status = {True: "True", False: "False", None: "Unknown"}[self.ready]
        return Condition("Ready", status, self.reason, self.message)


@dataclass(frozen=True, slots=True)
class Revision:
    """An immutable snapshot of a Configuration's template, named and numbered."""

    name: str
    namespace: str
    configuration: str
    spec: RevisionSpec
    generation: int  # the Configuration generation it was stamped from
    service: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None  # wall-clock epoch seconds
    status: RevisionStatus = field(default_factory=RevisionStatus)

    def __post_init__(self) -> None:
        _frozen_fields(self, "labels", "annotations")

    @property
    def key(self) -> RevisionKey:
        """The key the dataplane and the autoscaler use for this revision."""
        return RevisionKey(self.namespace, self.name)

    def to_knative(self) -> dict[str, Any]:
        """The Revision as Knative renders it, with its Ready condition."""
        labels = dict(self.labels)
        labels[CONFIGURATION_LABEL] = self.configuration
        labels[CONFIGURATION_GENERATION_LABEL] = str(self.generation)
        if self.service:
            labels[SERVICE_LABEL] = self.service
        meta = ObjectMeta(self.name, self.namespace, labels, self.annotations, 1,
                          self.created_at)
        status = {"observedGeneration": 1, "conditions": [self.status.condition().to_knative()]}
        return _object("Revision", meta, self.spec.to_knative(), status)


@dataclass(frozen=True, slots=True)
class ConfigMap:
    """One of the ConfigMaps Surge reads (config-autoscaler, -defaults, -domain)."""

    name: str
    namespace: str = "knative-serving"
    data: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _frozen_fields(self, "data")

    def to_knative(self) -> dict[str, Any]:
        """The ConfigMap manifest."""
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "data": thaw(self.data)}


ServingObject = Service | Configuration | Route | ConfigMap
