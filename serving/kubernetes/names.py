"""Names and labels of the Kubernetes objects Surge makes, as Knative names them.

Every child object is named after its parent plus a suffix (`hello-00001-deployment`,
`hello-00001-private`). Kubernetes names of Services and labels stop at 63 characters,
so `child_name` shortens long ones the way Knative's `kmeta.ChildName` does, keeping
names unique by putting the md5 of the parent in place of the cut-off part:

- parent + suffix fits in 63: used as is.
- it does not, and the suffix is shorter than 31: the parent is cut to 31 - len(suffix)
  characters, then the 32 hex digits of md5(parent), then the suffix (63 in all).
  Worked example: 63 'f's + "-deployment" (11) -> the first 20 'f's, md5("f" * 63) =
  "105d7597f637e83cc711605ac3ea4957", "-deployment".
- the suffix alone is 31 or longer: md5(parent + suffix) after the parent's first 31
  characters at most, padded to 63 with the start of the suffix; trailing characters
  that are not letters or digits are then dropped, so the name ends like a DNS label.

The label keys are Knative's (pkg/apis/serving/register.go), so `kubectl get -l` and
dashboards written for Knative work unchanged.
"""

from __future__ import annotations

import hashlib

from serving.model import (
    CONFIGURATION_GENERATION_LABEL,
    CONFIGURATION_LABEL,
    ROUTE_LABEL,
    SERVICE_LABEL,
)

MAX_NAME = 63  # a DNS-1035 label, the longest Kubernetes Service name
_MD5_HEX = 32
_HEAD = MAX_NAME - _MD5_HEX  # 31: what is kept of the parent when hashing

GROUP = "serving.knative.dev"
REVISION_LABEL = f"{GROUP}/revision"
REVISION_UID_LABEL = f"{GROUP}/revisionUID"
CONFIGURATION_UID_LABEL = f"{GROUP}/configurationUID"
SERVICE_UID_LABEL = f"{GROUP}/serviceUID"
ROUTING_STATE_LABEL = f"{GROUP}/routingState"
ROUTES_ANNOTATION = f"{GROUP}/routes"
ROUTING_STATE_MODIFIED_ANNOTATION = f"{GROUP}/routingStateModified"
SERVICE_TYPE_LABEL = "networking.internal.knative.dev/serviceType"
APP_LABEL = "app"


def _md5(text: str) -> str:
    # Not a security use: a short, stable fingerprint, as Knative uses it.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def child_name(parent: str, suffix: str) -> str:
    """`parent + suffix`, shortened with an md5 of the parent when over 63 characters."""
    if len(parent) + len(suffix) <= MAX_NAME:
        return parent + suffix
    if _HEAD - len(suffix) > 0:
        return parent[:_HEAD - len(suffix)] + _md5(parent) + suffix
    name = parent[:_HEAD] + _md5(parent + suffix)
    name += suffix[:max(MAX_NAME - len(name), 0)]
    while name and not (name[-1].isascii() and name[-1].isalnum()):
        name = name[:-1]  # a name ends with a letter or digit, as a DNS label must
    return name


def revision_name(configuration: str, generation: int) -> str:
    """`<configuration>-<generation:05d>`: the revision a Configuration generation stamps."""
    return child_name(configuration, f"-{generation:05d}")


def deployment_name(revision: str) -> str:
    """`<revision>-deployment`: the Deployment that runs a revision's pods."""
    return child_name(revision, "-deployment")


def private_service_name(revision: str) -> str:
    """`<revision>-private`: the Service selecting a revision's pods (its EndpointSlices)."""
    return child_name(revision, "-private")


def tag_service_name(route: str, tag: str) -> str:
    """`<tag>-<route>`: the placeholder Service of a route's tag host (Knative's tag template)."""
    return child_name(f"{tag}-{route}", "")


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, object]:
    """A controller owner reference: deleting the owner deletes the child (Kubernetes GC).

    blockOwnerDeletion makes a foreground delete of the owner wait for the child, as
    Knative's kmeta.NewControllerRef does.
    """
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}
