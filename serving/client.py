"""The client side of the admin API: its request values, `surge` flag parsing, the client.

Kept apart from `serving.admin` (the aiohttp server) and from the rest of the control
plane so that a `surge` command other than `up` imports only the standard library: a
command is one or two requests and then exit, and its start-up is most of its time.
The admin API speaks these values as JSON (`to_json`); the server rebuilds them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .statedir import StateDirError, find_running_stack

__all__ = [
    "LATEST",
    "READ_TIMEOUT_S",
    "AdminClient",
    "CliError",
    "TagSpec",
    "TrafficSpec",
    "parse_env",
    "parse_tags",
    "parse_traffic",
    "parse_untags",
]

LATEST = "@latest"
READ_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """`--traffic TARGET=PERCENT`: TARGET is a revision name, a tag, or `@latest`."""

    target: str
    percent: int

    def to_json(self) -> dict[str, Any]:
        """The form sent over the admin API."""
        return {"target": self.target, "percent": self.percent}


@dataclass(frozen=True, slots=True)
class TagSpec:
    """`--tag REVISION=TAG`: REVISION is a revision name or `@latest`."""

    revision: str
    tag: str

    def to_json(self) -> dict[str, Any]:
        """The form sent over the admin API."""
        return {"revision": self.revision, "tag": self.tag}


class CliError(Exception):
    """A failed command: `str()` is the one-line message, `.problems` the details."""

    def __init__(self, message: str, problems: Sequence[dict[str, str]] = (),
                 status: int | None = None) -> None:
        self.problems = list(problems)
        self.status = status  # the admin API's HTTP status, when it answered
        super().__init__(message)


# --- pure flag parsing -----------------------------------------------------------------

def _split_pair(flag: str, value: str, form: str) -> tuple[str, str]:
    left, sep, right = value.partition("=")
    if not sep or not left or not right:
        raise CliError(f"{flag} {value!r}: want {form}")
    return left, right


def parse_traffic(values: Sequence[str]) -> list[TrafficSpec]:
    """`--traffic` values (REV=PCT, @latest=PCT, TAG=PCT) -> specs whose percents sum to 100."""
    specs: list[TrafficSpec] = []
    for value in values:
        target, pct = _split_pair("--traffic", value, "REV=PERCENT, @latest=PERCENT or TAG=PERCENT")
        if not pct.isdigit():
            raise CliError(f"--traffic {value!r}: percent {pct!r} is not a whole number")
        if int(pct) > 100:
            raise CliError(f"--traffic {value!r}: percent {pct} must be between 0 and 100")
        if any(s.target == target for s in specs):
            raise CliError(f"--traffic {value!r}: {target!r} is given more than once")
        specs.append(TrafficSpec(target, int(pct)))
    total = sum(s.percent for s in specs)
    if specs and total != 100:
        raise CliError(f"--traffic: percents sum to {total}, they must sum to 100")
    return specs


def parse_tags(values: Sequence[str]) -> list[TagSpec]:
    """`--tag REV=TAG` values (REV may be @latest) -> specs; a tag may appear once."""
    specs: list[TagSpec] = []
    for value in values:
        revision, tag = _split_pair("--tag", value, f"REVISION=TAG (REVISION may be {LATEST})")
        if any(s.tag == tag for s in specs):
            raise CliError(f"--tag {value!r}: tag {tag!r} is given more than once")
        specs.append(TagSpec(revision, tag))
    return specs


def parse_untags(values: Sequence[str]) -> list[str]:
    """`--untag TAG` values -> tag names, each once."""
    for i, value in enumerate(values):
        if not value or "=" in value:
            raise CliError(f"--untag {value!r}: want a tag name")
        if value in values[:i]:
            raise CliError(f"--untag {value!r}: given more than once")
    return list(values)


def parse_env(values: Sequence[str]) -> dict[str, str | None]:
    """`--env K=V` sets, `--env K-` removes (as kn does) -> {name: value or None}."""
    env: dict[str, str | None] = {}
    for value in values:
        name, sep, val = value.partition("=")
        if not sep and value.endswith("-") and len(value) > 1:
            name, val_or_none = value[:-1], None
        elif sep and name:
            val_or_none = val
        else:
            raise CliError(f"--env {value!r}: want NAME=VALUE, or NAME- to remove it")
        if name in env:
            raise CliError(f"--env {value!r}: {name} is given more than once")
        env[name] = val_or_none
    return env


# --- the admin API client --------------------------------------------------------------

class AdminClient:
    """Calls one running stack's admin API."""

    def __init__(self, state_dir: Path) -> None:
        try:
            self.stack = find_running_stack(state_dir)
        except StateDirError as exc:
            raise CliError(str(exc)) from None

    def call(self, method: str, path: str, body: Any = None,
             timeout_s: float = READ_TIMEOUT_S) -> Any:
        """The decoded JSON answer, or CliError with the stack's message and problems."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.stack.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.stack.token:
            req.add_header("Authorization", f"Bearer {self.stack.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
            try:
                err = json.loads(raw)
                raise CliError(err["error"], err.get("problems") or [], exc.code) from None
            except (ValueError, KeyError, TypeError):
                raise CliError(f"the stack answered {exc.code}: {raw[:200]!r}",
                               status=exc.code) from None
        except TimeoutError:
            raise CliError(f"the stack at {self.stack.url} did not answer within "
                           f"{timeout_s:.0f} s") from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach the stack at {self.stack.url}: {exc.reason}") from None
        except OSError as exc:
            raise CliError(f"cannot reach the stack at {self.stack.url}: {exc}") from None
