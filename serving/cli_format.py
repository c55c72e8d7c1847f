"""What `surge` prints for people: tables, `describe service`, and log tailing.

Pure functions of the admin API's JSON (Knative-shaped objects; pods as the admin API
documents them), so the layouts are tested without a stack. Tables follow kn: upper-case
headers, columns padded to the widest cell and three spaces apart, `-` for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "LogTailer",
    "describe_text",
    "format_table",
    "pods_table",
    "revisions_table",
    "routes_table",
    "services_table",
]

SERVICE_LABEL = "serving.knative.dev/service"
GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
_GAP = "   "


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns; a None or empty cell prints as `-`."""
    cells = [list(headers)] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(_GAP.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def condition(obj: Mapping[str, Any], kind: str = "Ready") -> Mapping[str, Any]:
    """The status condition of type `kind`, or {} if absent."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def _ready(obj: Mapping[str, Any]) -> str:
    return condition(obj).get("status", "Unknown")


def _with_ns(all_namespaces: bool, headers: list[str], rows: list[list[Any]],
             namespaces: list[str]) -> str:
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [[ns, *row] for ns, row in zip(namespaces, rows)]
    return format_table(headers, rows)


def services_table(items: Sequence[Mapping[str, Any]], all_namespaces: bool = False) -> str:
    """NAME URL LATESTCREATED LATESTREADY READY, like `kn service list`."""
    rows = [[_meta(s).get("name"), s.get("status", {}).get("url"),
             s.get("status", {}).get("latestCreatedRevisionName"),
             s.get("status", {}).get("latestReadyRevisionName"), _ready(s)] for s in items]
    return _with_ns(all_namespaces, ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY"],
                    rows, [_meta(s).get("namespace", "") for s in items])


def _traffic_summary(traffic: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for t in traffic:
        target = t.get("revisionName") or ("@latest" if t.get("latestRevision") else "?")
        tag = f" #{t['tag']}" if t.get("tag") else ""
        parts.append(f"{t.get('percent', 0)}% {target}{tag}")
    return ", ".join(parts)


def routes_table(items: Sequence[Mapping[str, Any]], all_namespaces: bool = False) -> str:
    """NAME URL TRAFFIC READY, the traffic as resolved in the route's status."""
    rows = [[_meta(r).get("name"), r.get("status", {}).get("url"),
             _traffic_summary(r.get("status", {}).get("traffic") or []), _ready(r)]
            for r in items]
    return _with_ns(all_namespaces, ["NAME", "URL", "TRAFFIC", "READY"], rows,
                    [_meta(r).get("namespace", "") for r in items])


def revision_traffic(
        routes: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], tuple[int, list[str]]]:
    """(namespace, revision) -> (percent of its route's traffic, its tags)."""
    out: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for route in routes:
        ns = _meta(route).get("namespace", "")
        for t in (route.get("status") or {}).get("traffic") or []:
            if not t.get("revisionName"):
                continue
            pct, tags = out.get((ns, t["revisionName"]), (0, []))
            out[(ns, t["revisionName"])] = (pct + (t.get("percent") or 0),
                                            tags + ([t["tag"]] if t.get("tag") else []))
    return out


def revisions_table(items: Sequence[Mapping[str, Any]], routes: Sequence[Mapping[str, Any]],
                    all_namespaces: bool = False) -> str:
    """NAME SERVICE TRAFFIC TAGS GENERATION READY, like `kn revision list`."""
    traffic = revision_traffic(routes)
    rows = []
    for rev in items:
        meta = _meta(rev)
        pct, tags = traffic.get((meta.get("namespace", ""), meta.get("name", "")), (0, []))
        labels = meta.get("labels") or {}
        rows.append([meta.get("name"), labels.get(SERVICE_LABEL), f"{pct}%" if pct else "",
                     ",".join(tags), labels.get(GENERATION_LABEL), _ready(rev)])
    return _with_ns(all_namespaces, ["NAME", "SERVICE", "TRAFFIC", "TAGS", "GENERATION", "READY"],
                    rows, [_meta(r).get("namespace", "") for r in items])


def _pairs(mapping: Mapping[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (mapping or {}).items() if v is not None)


def pods_table(items: Sequence[Mapping[str, Any]], all_namespaces: bool = False) -> str:
    """NAME REVISION PHASE READY RESTARTS PORTS PIDS."""
    rows = [[p.get("name"), p.get("revision"), p.get("phase"), bool(p.get("ready")),
             p.get("restarts", 0), _pairs(p.get("ports")), _pairs(p.get("pids"))] for p in items]
    return _with_ns(all_namespaces,
                    ["NAME", "REVISION", "PHASE", "READY", "RESTARTS", "PORTS", "PIDS"],
                    rows, [p.get("namespace", "") for p in items])


def _event_time(value: Any) -> str:
    if isinstance(value, (int, float)):
        # Events carry wall-clock epoch seconds; people read local time.
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "")


def _target(t: Mapping[str, Any]) -> str:
    if not t.get("revisionName"):
        return "@latest"
    return t["revisionName"] + (" (@latest)" if t.get("latestRevision") else "")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def describe_text(desc: Mapping[str, Any]) -> str:
    """`surge describe service`: the service, its traffic, revisions, pods, conditions, events."""
    svc = desc["service"]
    meta, status = _meta(svc), svc.get("status") or {}
    ready = condition(svc)
    lines = [
        f"Name:          {meta.get('name', '')}",
        f"Namespace:     {meta.get('namespace', '')}",
        f"URL:           {status.get('url', '')}",
        f"Ready:         {ready.get('status', 'Unknown')}"
        + (f" ({ready['reason']}: {ready.get('message', '')})" if ready.get("reason") else ""),
        f"LatestCreated: {status.get('latestCreatedRevisionName', '')}",
        f"LatestReady:   {status.get('latestReadyRevisionName', '')}",
        "", "Traffic:",
    ]
    traffic = status.get("traffic") or []
    lines.append(_indent(format_table(
        ["PERCENT", "REVISION", "TAG", "URL"],
        [[f"{t.get('percent', 0)}%", _target(t), t.get("tag"), t.get("url")] for t in traffic]))
        if traffic else "  (none)")
    revisions = desc.get("revisions") or []
    lines += ["", "Revisions:", _indent(revisions_table(revisions, [{
        "metadata": meta, "status": status}])) if revisions else "  (none)"]
    pods = desc.get("pods") or []
    lines += ["", "Pods:", _indent(pods_table(pods)) if pods else "  (none)"]
    conds = status.get("conditions") or []
    lines += ["", "Conditions:", _indent(format_table(
        ["TYPE", "STATUS", "REASON", "MESSAGE"],
        [[c.get("type"), c.get("status"), c.get("reason"), c.get("message")] for c in conds]))
        if conds else "  (none)"]
    events = desc.get("events") or []
    lines += ["", "Events:", _indent(format_table(
        ["TIME", "KIND", "OBJECT", "MESSAGE"],
        [[_event_time(e.get("time")), e.get("kind"), e.get("object"), e.get("message")]
         for e in events])) if events else "  (none)"]
    return "\n".join(lines)


class LogTailer:
    """Reads log files from where it last stopped; returns whole lines, prefixed if many.

    One file prints bare lines; with several (pods, and each pod's app and queue-proxy
    logs), every line is prefixed `[<file stem>] ` so interleaved output stays readable.
    A line still being written (no newline yet) waits for the next read unless `final`.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def add(self, path: str) -> None:
        """Start following `path` from its beginning (once)."""
        if path not in self._offsets:
            self.paths.append(path)
            self._offsets[path] = 0
            self._partial[path] = b""

    def _read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self._offsets[path]:
                    self._offsets[path] = 0  # truncated or replaced: start over
                f.seek(self._offsets[path])
                data = f.read()
        except FileNotFoundError:
            return b""  # a stopped pod's log may already be cleaned up
        self._offsets[path] += len(data)
        return data

    def read_new(self, final: bool = False) -> list[str]:
        """New complete lines of every file, in file order (all pending text if `final`)."""
        out: list[str] = []
        prefixed = len(self.paths) > 1
        for path in self.paths:
            buf = self._partial[path] + self._read(path)
            *lines, rest = buf.split(b"\n")
            if final and rest:
                lines.append(rest)
                rest = b""
            self._partial[path] = rest
            prefix = f"[{Path(path).stem}] " if prefixed else ""
            out.extend(prefix + line.decode("utf-8", "replace") + "\n" for line in lines)
        return out
