"""Reconcile decisions: from desired and observed objects, the API calls to make (pure).

The controller is level-triggered: whatever event woke it, it builds the desired
children of one parent (a Service's Configuration and Route, a Configuration's
Revision, a Revision's Deployment and Services), lists what the cluster holds, and asks
`plan` what to do. `plan` returns actions, never performs them; the caller makes the
calls and, on any error, simply reconciles again later.

Theory of operation, per child key (apiVersion, kind, namespace, name):
  desired, not observed                       -> Create(desired)
  observed being deleted (deletionTimestamp)  -> nothing: wait for the garbage collector
  observed, controlled by another owner       -> Conflict: never take over someone
                                                 else's object (Knative's NotOwned)
  observed, ours, desired is a derivative     -> nothing
  observed, ours, differs                     -> Update(observed with desired laid over)
  observed, ours, not desired                 -> Delete (when the caller prunes)

"Derivative" is Knative's `equality.Semantic.DeepDerivative`: every field the builder
set must be in the observed object with the same value, while fields the API server
filled in (clusterIP, imagePullPolicy, resourceVersion) are ignored. A zero value in
the desired object (0, "", False, empty list or map) also matches an absent field,
because the API server drops such fields when it serialises them (Go's `omitempty`);
quantities compare by value ("0.5" == "500m"), since the server rewrites them.
Some fields belong to another component once the object exists (a Deployment's
`spec.replicas` is the autoscaler's): they are set on Create and ignored afterwards.

Idempotence: an Update is the observed object with the desired fields laid over it, so
after it the desired object is a derivative of the stored one and the next `plan` of
the same desired objects finds nothing to do. Worked example: desired Deployment
replicas 1, image v1; observed replicas 3 (the autoscaler's), image v0 -> Update with
replicas 3, image v1; the second pass -> [].
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

_SUFFIX = {"": 1, "m": Fraction(1, 1000), "u": Fraction(1, 10**6), "n": Fraction(1, 10**9),
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")

# Fields another component owns once the object exists: (apiVersion, kind) -> paths.
OWNED_ELSEWHERE: Mapping[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("apps/v1", "Deployment"): (("spec", "replicas"),),  # the autoscaler's (/scale)
}


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity ("25m", "1Gi", "1e3"); ValueError if not one."""
    m = _QUANTITY.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a quantity (like 25m, 0.5, 128Mi or 1G)")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Fraction(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name) of a manifest."""
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""),
            meta.get("name", ""))


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The UID of the object's controller owner reference, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _is_zero(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "" or value in ([], {})


def _quantity_equal(a: Any, b: Any) -> bool:
    try:
        return parse_quantity(str(a)) == parse_quantity(str(b))
    except ValueError:
        return False


def is_derivative(desired: Any, observed: Any, path: tuple[str, ...] = ()) -> bool:
    """Whether every field set in `desired` holds the same value in `observed`."""
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return not desired and observed is None
        return all(_is_zero(v) and k not in observed
                   or is_derivative(v, observed.get(k), (*path, str(k)))
                   for k, v in desired.items())
    if isinstance(desired, (list, tuple)):
        if observed is None:
            return not desired
        return (isinstance(observed, (list, tuple)) and len(desired) == len(observed)
                and all(is_derivative(d, o, path) for d, o in zip(desired, observed)))
    if observed is None:
        return _is_zero(desired)
    if len(path) >= 2 and path[-2] in ("requests", "limits"):
        return desired == observed or _quantity_equal(desired, observed)
    return desired == observed and type(desired) is type(observed) or (
        isinstance(desired, (int, float)) and not isinstance(desired, bool)
        and isinstance(observed, (int, float)) and desired == observed)


def overlay(observed: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """`observed` with `desired` laid over it: maps merge, everything else is replaced."""
    out = copy.deepcopy(dict(observed))
    for key, value in desired.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _without(obj: Mapping[str, Any], paths: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    for path in paths:
        node: Any = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


@dataclass(frozen=True, slots=True)
class Create:
    """Create `obj`."""

    obj: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """Replace the object with `obj` (it carries the observed resourceVersion)."""

    obj: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the object; `uid` is a precondition, so a same-named successor survives."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """The name is taken by an object the owner does not control; the owner says so."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def reason(self) -> str:
        """Knative's condition reason for it."""
        return "NotOwned"

    @property
    def message(self) -> str:
        """Knative's NotOwned wording."""
        return f"There is an existing {self.kind} {self.name!r} that we do not own."


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    """Write `obj` (the observed object with a new status) through the status subresource."""

    obj: Mapping[str, Any]


Action = Create | Update | Delete | UpdateStatus


@dataclass(frozen=True, slots=True)
class Plan:
    """The API calls for one parent's children (creates, updates, then deletes), and the
    names taken by objects it does not own (for the parent's status)."""

    actions: tuple[Action, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


def plan(desired: Iterable[Mapping[str, Any]], observed: Iterable[Mapping[str, Any]], *,
         owner_uid: str, prune: bool = True, immutable: bool = False) -> Plan:
    """The calls that make `observed` (the owner's children as listed) match `desired`.

    `prune=False` keeps observed children that are not desired (a Configuration keeps
    its older Revisions); `immutable=True` never updates an existing child (Revisions:
    whether an existing one still matches its template is `children.revision_problem`).
    Objects controlled by another owner are reported, not touched.
    """
    want = {object_key(d): d for d in desired}
    have = {object_key(o): o for o in observed}
    creates: list[Action] = []
    updates: list[Action] = []
    deletes: list[Action] = []
    conflicts: list[Conflict] = []
    for key in sorted(want):
        obj, current = want[key], have.get(key)
        if current is None:
            creates.append(Create(obj))
            continue
        if (current.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if controller_uid(current) != owner_uid:
            conflicts.append(Conflict(*key))
            continue
        if immutable:
            continue
        comparable = _without(obj, OWNED_ELSEWHERE.get(key[:2], ()))
        if not is_derivative(comparable, current):
            updates.append(Update(overlay(current, comparable)))
    if prune:
        for key in sorted(set(have) - set(want)):
            current = have[key]
            meta = current.get("metadata") or {}
            if controller_uid(current) == owner_uid and not meta.get("deletionTimestamp"):
                deletes.append(Delete(*key, uid=meta.get("uid", "")))
    return Plan((*creates, *updates, *deletes), tuple(conflicts))


def plan_status(observed: Mapping[str, Any], status: Mapping[str, Any]) -> UpdateStatus | None:
    """An UpdateStatus if `status` differs from the observed object's, else None.

    Status is wholly the controller's, so it is compared exactly (transition times of
    conditions whose state did not change are carried over by serving.kubernetes.status).
    """
    if dict(observed.get("status") or {}) == dict(status):
        return None
    out = copy.deepcopy(dict(observed))
    out["status"] = copy.deepcopy(dict(status))
    return UpdateStatus(out)
