"""Objects as the API server would hold them, built from the seeds, for the k8s tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from serving.kubernetes import make_configuration, make_revision, make_route

ROOT = Path(__file__).resolve().parents[2]


def seed(path: str, index: int = 0) -> dict[str, Any]:
    """The `index`-th Service document of examples/<path>."""
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / path).read_text())
            if d and d.get("kind") == "Service"]
    return docs[index]


def stored(obj: dict[str, Any], uid: str, generation: int = 1) -> dict[str, Any]:
    """`obj` as the API server returns it after a create: uid, generation, namespace."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    meta.update(uid=uid, generation=generation, resourceVersion="1")
    return out


def children_of(path: str, *, generation: int = 1) -> tuple[dict, dict, dict, dict]:
    """(service, configuration, route, revision) of a seed, as stored."""
    service = stored(seed(path), "svc-uid", generation)
    configuration = stored(make_configuration(service), "cfg-uid", generation)
    route = stored(make_route(service), "route-uid", generation)
    revision = stored(make_revision(configuration), "rev-uid")
    return service, configuration, route, revision
