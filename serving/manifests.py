"""YAML manifests (one document or many) to the control plane's objects.

`parse_manifests(text)` reads every document, checks its shape (types, required
fields, fields Surge cannot honour) and builds serving.model objects; it raises one
`ValidationError` listing every problem of every document, so a file is taken whole or
not at all. Knative's own rules (traffic sums, reserved ports, ...) are
serving.validation's job and run at apply time, against the configs then in force.

What is accepted:
- `serving.knative.dev/v1` and `v1beta1` (the same shape) Service, Configuration, Route;
- `serving.knative.dev/v1alpha1` in its v1-compatible shape, and the old `runLatest`
  Service, converted (`spec.runLatest.configuration.revisionTemplate` becomes
  `spec.template`, a singular `container` becomes `containers`) with a warning; the
  other v1alpha1 modes (`release`, `pinned`, `manual`) are refused with the v1 spelling
  of the same thing in the message;
- `v1` ConfigMaps config-autoscaler, config-defaults and config-domain in namespace
  knative-serving (their content is checked when applied).

Fields Kubernetes has but a local pod cannot use (livenessProbe, volumes, ...) are
dropped with a warning; `env[].valueFrom`, `envFrom` and `initContainers` are refused,
since a program run without them would misbehave; unknown fields are refused, as
`kubectl apply` (strict validation) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .configmaps import CONFIG_NAMES, SYSTEM_NAMESPACE
from .model import (
    ConfigMap, Configuration, Container, ContainerPort, EnvVar, ObjectMeta, RevisionSpec,
    RevisionTemplate, Route, Service, ServingObject, TrafficTarget,
)
from .validation import FieldProblem, ValidationError

GROUP = "serving.knative.dev"
_V1_VERSIONS = frozenset({f"{GROUP}/v1", f"{GROUP}/v1beta1"})
_V1ALPHA1 = f"{GROUP}/v1alpha1"
_CONTAINER_FIELDS = frozenset({"name", "image", "command", "args", "env", "workingDir", "ports",
                               "readinessProbe", "resources"})
# Kubernetes Container fields a local pod does without (warned about, then dropped).
_CONTAINER_IGNORED = frozenset({
    "livenessProbe", "startupProbe", "lifecycle", "volumeMounts", "volumeDevices",
    "securityContext", "imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy",
    "stdin", "stdinOnce", "tty", "resizePolicy", "restartPolicy"})
_SPEC_FIELDS = frozenset({"containers", "containerConcurrency", "timeoutSeconds",
                          "responseStartTimeoutSeconds", "idleTimeoutSeconds"})
_SPEC_IGNORED = frozenset({
    "volumes", "serviceAccountName", "imagePullSecrets", "enableServiceLinks",
    "automountServiceAccountToken", "nodeSelector", "tolerations", "affinity",
    "runtimeClassName", "priorityClassName", "schedulerName", "securityContext", "hostAliases",
    "dnsPolicy", "dnsConfig", "topologySpreadConstraints", "shareProcessNamespace",
    "hostIPC", "hostPID", "hostNetwork"})
_METADATA_IGNORED = frozenset({"uid", "resourceVersion", "creationTimestamp", "generation",
                               "managedFields", "ownerReferences", "selfLink", "finalizers"})


@dataclass(frozen=True, slots=True)
class ParsedManifests:
    """The objects of a manifest file, in document order, and warnings for the user."""

    objects: tuple[ServingObject, ...]
    warnings: tuple[str, ...] = ()


def parse_manifests(text: str | bytes) -> ParsedManifests:
    """Parse every YAML document of `text`; ValidationError lists all problems of all."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ValidationError([FieldProblem("", f"not valid YAML: {reason}")]) from None
    objects, warnings, problems = [], [], []
    for i, doc in enumerate(docs):
        try:
            obj, more = parse_object(doc, index=i)
        except ValidationError as exc:
            problems += exc.problems
            continue
        objects.append(obj)
        warnings += more
    if problems:
        raise ValidationError(problems)
    return ParsedManifests(tuple(objects), tuple(warnings))


def parse_object(doc: Any, *, index: int = 0) -> tuple[ServingObject, list[str]]:
    """One manifest document to an object and its warnings; ValidationError if malformed."""
    r = _Reader()
    if not isinstance(doc, Mapping):
        raise ValidationError([FieldProblem("", "a manifest must be a YAML mapping",
                                            f"document {index + 1}")])
    kind, api = doc.get("kind"), doc.get("apiVersion")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    label = f"{kind}/{meta.get('name')}" if meta.get("name") else f"document {index + 1}"
    obj: ServingObject | None = None
    if kind == "ConfigMap" and api == "v1":
        obj = _config_map(r, doc)
    elif api in _V1_VERSIONS or api == _V1ALPHA1:
        if api == _V1ALPHA1:
            r.warn("", f"{api} is deprecated; write {GROUP}/v1 (converted)")
        obj = _serving_object(r, doc, kind, api)
    else:
        r.fail("apiVersion", (f"{kind or 'object'} {api!r} is not supported: apply "
                              f"{GROUP}/v1 Service, Configuration or Route objects, or v1 "
                              f"ConfigMaps {', '.join(sorted(CONFIG_NAMES))}"))
    if r.problems:
        raise ValidationError(p.within(label) for p in r.problems)
    assert obj is not None
    return obj, [f"{label}: {w}" for w in r.warnings]


class _Reader:
    """Typed field access over plain YAML data, collecting problems and warnings."""

    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []
        self.warnings: list[str] = []

    def fail(self, path: str, reason: str) -> None:
        self.problems.append(FieldProblem(path, reason))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}" if path else message)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
            return {}
        return value

    def seq(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
            return []
        return value

    def string(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_kind(value)} {value!r} (quote it)")
            return ""
        return value

    def integer(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        if type(value) is not int:
            self.fail(path, f"expected an integer, got {_kind(value)} {value!r}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        self.fail(path, f"expected true or false, got {_kind(value)} {value!r}")
        return None

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(self.seq(value, path)))

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        return {str(k): self.string(v, f"{path}.{k}")
                for k, v in self.mapping(value, path).items()}

    def only(self, m: Mapping[str, Any], path: str, allowed: frozenset[str] | set[str],
             ignored: frozenset[str] = frozenset()) -> None:
        """Refuse unknown fields of `m`; warn that `ignored` ones are dropped."""
        at = f"{path}." if path else ""
        for key in m:
            if key in ignored:
                self.warn(f"{at}{key}", "ignored: Surge's local pods do not use it")
            elif key not in allowed:
                self.fail(f"{at}{key}", "unknown field")


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", type(None): "null"}.get(type(value), "a mapping")


def _metadata(r: _Reader, doc: Mapping[str, Any]) -> ObjectMeta:
    meta = r.mapping(doc.get("metadata"), "metadata")
    r.only(meta, "metadata", {"name", "namespace", "labels", "annotations", "generateName"}
           | _METADATA_IGNORED)
    if meta.get("generateName"):
        r.fail("metadata.generateName", "not supported: set metadata.name")
    return ObjectMeta(name=r.string(meta.get("name"), "metadata.name"),
                      namespace=r.string(meta.get("namespace"), "metadata.namespace") or "default",
                      labels=r.string_map(meta.get("labels"), "metadata.labels"),
                      annotations=r.string_map(meta.get("annotations"), "metadata.annotations"))


def _config_map(r: _Reader, doc: Mapping[str, Any]) -> ConfigMap | None:
    meta = _metadata(r, doc)
    r.only(doc, "", {"apiVersion", "kind", "metadata", "data"})
    if meta.name not in CONFIG_NAMES:
        r.fail("metadata.name", (f"ConfigMap {meta.name!r} is not read by Surge; apply one of "
                                 f"{', '.join(sorted(CONFIG_NAMES))}"))
    raw_ns = (doc.get("metadata") or {}).get("namespace")
    if raw_ns not in (None, SYSTEM_NAMESPACE):
        r.fail("metadata.namespace", (f"{raw_ns!r}: Surge reads its ConfigMaps from namespace "
                                      f"{SYSTEM_NAMESPACE}"))
    data = r.mapping(doc.get("data"), "data")
    for key, value in data.items():
        if not isinstance(value, str):
            r.fail(f"data.{key}", f"expected a string, got {_kind(value)} {value!r} (quote it)")
    return ConfigMap(meta.name, SYSTEM_NAMESPACE, dict(data))


def _serving_object(r: _Reader, doc: Mapping[str, Any], kind: Any,
                    api: str) -> ServingObject | None:
    r.only(doc, "", {"apiVersion", "kind", "metadata", "spec", "status"})
    meta = _metadata(r, doc)
    spec = r.mapping(doc.get("spec"), "spec")
    if kind == "Service":
        if api == _V1ALPHA1:
            spec = _convert_v1alpha1_service(r, spec, meta.name)
        r.only(spec, "spec", {"template", "traffic"})
        return Service(meta, _template(r, spec.get("template"), "spec.template"),
                       _traffic(r, spec.get("traffic")))
    if kind == "Configuration":
        if api == _V1ALPHA1 and "revisionTemplate" in spec:
            spec = {"template": spec["revisionTemplate"]}
        r.only(spec, "spec", {"template"})
        return Configuration(meta, _template(r, spec.get("template"), "spec.template"))
    if kind == "Route":
        r.only(spec, "spec", {"traffic"})
        return Route(meta, _traffic(r, spec.get("traffic")))
    hint = "; revisions are made from a Service's or Configuration's template" \
        if kind == "Revision" else ""
    r.fail("kind", f"{kind!r} cannot be applied: use Service, Configuration or Route{hint}")
    return None


def _convert_v1alpha1_service(r: _Reader, spec: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The v1 spec of a v1alpha1 Service: runLatest converts, other modes are refused."""
    if "runLatest" in spec:
        config = r.mapping(r.mapping(spec["runLatest"], "spec.runLatest").get("configuration"),
                           "spec.runLatest.configuration")
        r.warn("spec.runLatest", "converted to spec.template (100% to the latest revision)")
        return {"template": config.get("revisionTemplate")}
    for mode, example in (
            ("release", "traffic: [{tag: current, revisionName: %s-00001, percent: 90}, "
                        "{tag: candidate, revisionName: %s-00002, percent: 10}, "
                        "{tag: latest, latestRevision: true, percent: 0}]"),
            ("pinned", "traffic: [{revisionName: %s-00001, percent: 100}]"),
            ("manual", "a Configuration named %s (spec.template) and a Route named %s "
                       "(spec.traffic) applied on their own")):
        if mode in spec:
            shown = example.replace("%s", name or "NAME")
            v1 = shown if mode == "manual" else f"spec: {{template: {{...}}, {shown}}}"
            r.fail(f"spec.{mode}", (f"the v1alpha1 {mode} mode is not supported; in "
                                    f"{GROUP}/v1 write {v1}"))
            return {}
    return spec


def _template(r: _Reader, value: Any, path: str) -> RevisionTemplate:
    t = r.mapping(value, path)
    r.only(t, path, {"metadata", "spec"})
    meta = r.mapping(t.get("metadata"), f"{path}.metadata")
    r.only(meta, f"{path}.metadata", {"name", "labels", "annotations", "creationTimestamp",
                                      "generateName"})
    if meta.get("generateName"):
        r.fail(f"{path}.metadata.generateName", "not supported: set metadata.name or leave it out")
    spec = dict(r.mapping(t.get("spec"), f"{path}.spec"))
    sp = f"{path}.spec"
    if "container" in spec:  # v1alpha1's single container
        spec["containers"] = [spec.pop("container")]
    if "concurrencyModel" in spec:  # v1alpha1: Single meant one request at a time
        model = spec.pop("concurrencyModel")
        spec.setdefault("containerConcurrency", 1 if model == "Single" else 0)
        r.warn(f"{sp}.concurrencyModel", "converted to containerConcurrency")
    if spec.get("initContainers"):
        r.fail(f"{sp}.initContainers", "not supported: local pods run a single program")
    r.only(spec, sp, _SPEC_FIELDS | {"initContainers"}, _SPEC_IGNORED)
    containers = r.seq(spec.get("containers"), f"{sp}.containers")
    return RevisionTemplate(
        spec=RevisionSpec(
            containers=tuple(_container(r, c, f"{sp}.containers[{i}]")
                             for i, c in enumerate(containers)),
            container_concurrency=r.integer(spec.get("containerConcurrency"),
                                            f"{sp}.containerConcurrency"),
            timeout_seconds=r.integer(spec.get("timeoutSeconds"), f"{sp}.timeoutSeconds"),
            response_start_timeout_seconds=r.integer(spec.get("responseStartTimeoutSeconds"),
                                                     f"{sp}.responseStartTimeoutSeconds"),
            idle_timeout_seconds=r.integer(spec.get("idleTimeoutSeconds"),
                                           f"{sp}.idleTimeoutSeconds")),
        name=r.string(meta.get("name"), f"{path}.metadata.name"),
        labels=r.string_map(meta.get("labels"), f"{path}.metadata.labels"),
        annotations=r.string_map(meta.get("annotations"), f"{path}.metadata.annotations"))


def _container(r: _Reader, value: Any, path: str) -> Container:
    c = r.mapping(value, path)
    if c.get("envFrom"):
        r.fail(f"{path}.envFrom", ("not supported locally: Surge has no Secrets or ConfigMaps "
                                   "to read; list the variables under env with a value"))
    r.only(c, path, _CONTAINER_FIELDS | {"envFrom"}, _CONTAINER_IGNORED)
    env = []
    for i, item in enumerate(r.seq(c.get("env"), f"{path}.env")):
        at = f"{path}.env[{i}]"
        e = r.mapping(item, at)
        if "valueFrom" in e:
            r.fail(f"{at}.valueFrom", ("not supported locally: Surge cannot read Secrets, "
                                       "ConfigMaps or pod fields; set value instead"))
        r.only(e, at, {"name", "value", "valueFrom"})
        env.append(EnvVar(r.string(e.get("name"), f"{at}.name"),
                          r.string(e.get("value"), f"{at}.value")))
    ports = []
    for i, item in enumerate(r.seq(c.get("ports"), f"{path}.ports")):
        at = f"{path}.ports[{i}]"
        p = r.mapping(item, at)
        r.only(p, at, {"containerPort", "name", "protocol"})
        ports.append(ContainerPort(r.integer(p.get("containerPort"), f"{at}.containerPort") or 0,
                                   r.string(p.get("name"), f"{at}.name"),
                                   r.string(p.get("protocol"), f"{at}.protocol")))
    probe = c.get("readinessProbe")
    if probe is not None:
        probe = r.mapping(probe, f"{path}.readinessProbe")
    return Container(
        name=r.string(c.get("name"), f"{path}.name"),
        image=r.string(c.get("image"), f"{path}.image"),
        command=r.strings(c.get("command"), f"{path}.command"),
        args=r.strings(c.get("args"), f"{path}.args"),
        env=tuple(env),
        working_dir=r.string(c.get("workingDir"), f"{path}.workingDir"),
        ports=tuple(ports),
        readiness_probe=probe,
        resources=r.mapping(c.get("resources"), f"{path}.resources"))


def _traffic(r: _Reader, value: Any) -> tuple[TrafficTarget, ...]:
    targets = []
    for i, item in enumerate(r.seq(value, "spec.traffic")):
        at = f"spec.traffic[{i}]"
        t = r.mapping(item, at)
        r.only(t, at, {"tag", "revisionName", "configurationName", "latestRevision", "percent",
                       "url"})
        targets.append(TrafficTarget(
            tag=r.string(t.get("tag"), f"{at}.tag"),
            revision_name=r.string(t.get("revisionName"), f"{at}.revisionName"),
            configuration_name=r.string(t.get("configurationName"), f"{at}.configurationName"),
            latest_revision=r.boolean(t.get("latestRevision"), f"{at}.latestRevision"),
            percent=r.integer(t.get("percent"), f"{at}.percent"),
            url=r.string(t.get("url"), f"{at}.url")))
    return tuple(targets)


def parse_revision_spec(value: Any) -> RevisionSpec:
    """A RevisionSpec from its Knative dict form (as `RevisionSpec.to_knative` renders it)."""
    r = _Reader()
    spec = _template(r, {"spec": value}, "spec").spec
    if r.problems:
        raise ValidationError(r.problems)
    return spec
