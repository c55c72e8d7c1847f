"""Helpers for the end-to-end tests: a real `surge up` subprocess, the CLI, and load.

The stack itself (`Stack`: start, wait for an output line, run `surge`, poll the admin
API, stop by PID) is `support.stack`'s, shared with the Docker suite; this module adds
the e2e app's manifests, requests through the ingress, load and process checks.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from support.procs import wait_exits
from support.stack import CliResult, Stack, config_autoscaler, free_port

__all__ = [
    "APP", "CliResult", "LoadResult", "Stack", "config_autoscaler", "free_port", "get", "host",
    "pids_of", "run_load", "service_yaml", "url", "wait_gone",
]

APP = str(Path(__file__).with_name("e2e_app.py"))


def service_yaml(name: str, *, target: str = "v1", annotations: dict[str, str] | None = None,
                 container_concurrency: int | None = None, revision_name: str = "",
                 traffic: str = "", extra_container: str = "") -> str:
    """A Service running the e2e app (absolute interpreter path: no PATH lookup)."""
    meta = ""
    if annotations or revision_name:
        meta = "    metadata:\n"
        if revision_name:
            meta += f"      name: {revision_name}\n"
        if annotations:
            meta += "      annotations:\n" + "".join(
                f"        {k}: {json.dumps(v)}\n" for k, v in annotations.items())
    cc = "" if container_concurrency is None else \
        f"      containerConcurrency: {container_concurrency}\n"
    return (
        "apiVersion: serving.knative.dev/v1\nkind: Service\n"
        f"metadata:\n  name: {name}\n  namespace: default\n"
        "spec:\n  template:\n" + meta + "    spec:\n" + cc +
        "      containers:\n"
        f"        - command: [{json.dumps(sys.executable)}, {json.dumps(APP)}]\n"
        "          env:\n"
        f"            - name: TARGET\n              value: {json.dumps(target)}\n"
        + extra_container + (textwrap.indent(traffic, "  ") if traffic else "")
    )


def url(stack: Stack, path: str = "/") -> str:
    """The ingress URL for `path`."""
    return f"http://127.0.0.1:{stack.port}{path}"


def host(service: str, tag: str = "") -> str:
    """The Host header of a service (or one of its tags) in namespace default."""
    return f"{tag + '-' if tag else ''}{service}.default.example.com"


async def get(session: aiohttp.ClientSession, stack: Stack, service: str, path: str = "/",
              headers: dict[str, str] | None = None, tag: str = "") -> tuple[int, Any]:
    """One request through the ingress: (status, JSON body or text)."""
    async with session.get(url(stack, path),
                           headers={"Host": host(service, tag), **(headers or {})}) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


@dataclass
class LoadResult:
    """What a load run saw: statuses, answering revisions, and (start, status, revision)."""

    statuses: Counter
    revisions: Counter
    log: list[tuple[float, int, str]]


async def run_load(session: aiohttp.ClientSession, stack: Stack, service: str, *,
                   clients: int, requests: int | None = None, until: asyncio.Event | None = None,
                   path: str = "/", headers: dict[str, str] | None = None) -> LoadResult:
    """`clients` loops sending requests until `requests` are done in all or `until` is set."""
    result = LoadResult(Counter(), Counter(), [])
    remaining = [requests]

    async def client() -> None:
        while (until is None or not until.is_set()) and (remaining[0] is None or remaining[0] > 0):
            if remaining[0] is not None:
                remaining[0] -= 1
            started = time.monotonic()
            try:
                status, body = await get(session, stack, service, path, headers)
            except aiohttp.ClientError as exc:
                status, body = 0, repr(exc)
            revision = body.get("revision", "") if isinstance(body, dict) else str(body)
            result.statuses[status] += 1
            result.revisions[revision] += 1
            result.log.append((started, status, revision))

    await asyncio.gather(*(client() for _ in range(clients)))
    return result


def pids_of(pods: Iterable[dict]) -> list[int]:
    """Every process id of these pods."""
    return [pid for p in pods for pid in p["pids"].values() if pid]


async def wait_gone(pids: Iterable[int], timeout_s: float) -> None:
    """Until every process in `pids` has ended; TimeoutError if not."""
    await wait_exits(pids, timeout_s)
