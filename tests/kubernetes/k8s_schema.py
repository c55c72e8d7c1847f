"""A small checker of Kubernetes structural schemas (CRD openAPIV3Schema), for tests.

It does what the API server does to a custom object with strict field validation
(kubectl apply's default): types, required fields, integer bounds, string maps, and
unknown fields refused unless the node preserves them (x-kubernetes-preserve-unknown-
fields). `structural_problems` checks the schema itself: every node has a type (or
preserves unknown fields, or is int-or-string), as apiextensions.k8s.io/v1 requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPES = {"object": Mapping, "array": list, "string": str, "boolean": bool}


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def validate(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Every problem of `value` against `schema`, as `path: reason`."""
    at = path or "<root>"
    if value is None:
        return [] if schema.get("nullable") else [f"{at}: null is not allowed"]
    if schema.get("x-kubernetes-int-or-string"):
        return [] if isinstance(value, (int, str)) and not isinstance(value, bool) \
            else [f"{at}: must be an integer or a string"]
    kind = schema.get("type")
    if kind is None:
        return []
    if not _is(kind, value):
        return [f"{at}: must be of type {kind}, got {type(value).__name__} {value!r}"]
    problems: list[str] = []
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{at}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{at}: {value} is above the maximum {schema['maximum']}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at}: {value!r} is not one of {schema['enum']}")
    if kind == "array":
        for i, item in enumerate(value):
            problems += validate(schema.get("items", {}), item, f"{path}[{i}]")
    if kind == "object":
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                problems.append(f"{path + '.' if path else ''}{name}: required")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if path == "" and key == "metadata":
                # ObjectMeta is the API server's, whatever the CRD says about it.
                if not isinstance(item, Mapping):
                    problems.append("metadata: must be of type object")
            elif key in props:
                problems += validate(props[key], item, where)
            elif "additionalProperties" in schema:
                problems += validate(schema["additionalProperties"], item, where)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(f"{where}: unknown field")
    return problems


def structural_problems(schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Why `schema` is not structural (a node without a type), as paths."""
    problems = []
    typed = "type" in schema or schema.get("x-kubernetes-int-or-string") \
        or schema.get("x-kubernetes-preserve-unknown-fields")
    if not typed:
        problems.append(f"{path or '<root>'}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if "items" in schema:
        problems += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        problems += structural_problems(schema["additionalProperties"], f"{path}.*")
    return problems
