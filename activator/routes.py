"""The route table: which revision a request goes to, by Host, tag header and percent.

Theory of operation. The control plane hands over one `HostRoute` per external host:
the service host `<route>.<ns>.<domain>` with its percent splits and its tags, and one
per tag host `<tag>-<route>.<ns>.<domain>` with a single 100% split (reference 6). The
table is immutable; `Activator.set_routes` builds a new one and swaps it in one step, so
a request sees either the old table or the new one, never half of each.

A lookup is three steps, all pure:

1. Normalise the Host header: lower-case, drop the port (`host:8080`, `[::1]:8080`), drop
   one trailing dot (`hello.default.example.com.` is the same name, RFC 1034 3.1).
2. Tag header: if the request carries `Knative-Serving-Tag: <tag>` and the host's route
   has that tag, the tagged revision wins. An unknown tag falls back to the percent
   split, as Knative does: its ingress adds one header-matched path per known tag and
   the plain default path catches everything else. Tag hosts carry no tag map, so the
   header does not move a request sent to a tag host (Knative's tag-host rules have no
   header paths either). Tag routing is always on here (Knative gates it behind
   `config-features` `tag-header-based-routing`): every tag is reachable by its own host
   anyway, so the header reveals nothing new.
3. Percent split: the caller passes a uniform random number `r` in [0, 1); the split
   whose cumulative percent band holds `r * 100` is chosen. Worked example: splits
   `[(a, 80), (b, 20)]` give the bands [0, 80) and [80, 100): r = 0.79 picks a, r = 0.80
   picks b. Splits at 0% are dropped, as Knative's ingress drops them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dataplane import RevisionKey

__all__ = ["HostRoute", "RouteTable", "normalize_host"]


def normalize_host(host: bytes) -> bytes:
    """Lower-case, port-less, trailing-dot-less form of a Host header value."""
    host = host.strip().lower()
    if host.startswith(b"["):  # IPv6 literal: the port, if any, follows the bracket
        end = host.find(b"]")
        if end > 0:
            host = host[: end + 1]
    else:
        colon = host.rfind(b":")
        if colon >= 0:
            host = host[:colon]
    if host.endswith(b"."):
        host = host[:-1]
    return host


@dataclass(frozen=True, slots=True)
class HostRoute:
    """Traffic for one external host: percent splits over revisions and tagged revisions.

    `splits` are `(RevisionKey, percent)` pairs whose percents (integers 0-100) sum to
    exactly 100; `tags` maps a tag name to its revision for `Knative-Serving-Tag` routing
    (empty for a tag host). Checked on construction; a bad route raises `ValueError`.
    """

    host: str
    splits: tuple[tuple[RevisionKey, int], ...]
    tags: Mapping[str, RevisionKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        splits = tuple((key, percent) for key, percent in self.splits)
        problems = []
        if not isinstance(self.host, str) or not self.host.isascii() or not normalize_host(
            self.host.encode()
        ):
            problems.append(f"host: {self.host!r} must be a non-empty ASCII host name")
        for i, (key, percent) in enumerate(splits):
            if not isinstance(key, RevisionKey):
                problems.append(f"splits[{i}]: {key!r} must be a RevisionKey")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                problems.append(f"splits[{i}]: percent {percent!r} must be an integer in [0, 100]")
        if not problems and sum(p for _, p in splits) != 100:
            problems.append(f"splits: percents sum to {sum(p for _, p in splits)}, must be 100")
        for tag, key in self.tags.items():
            if not isinstance(tag, str) or not tag or not isinstance(key, RevisionKey):
                problems.append(f"tags[{tag!r}]: must map a non-empty tag to a RevisionKey")
        if problems:
            raise ValueError(f"route for host {self.host!r}: " + "; ".join(problems))
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))


class _CompiledRoute:
    """A HostRoute ready for lookups: cumulative bands and byte-keyed tags."""

    __slots__ = ("route", "bounds", "keys", "tags")

    def __init__(self, route: HostRoute) -> None:
        self.route = route
        self.bounds: list[int] = []  # upper edge of each band, in percent
        self.keys: list[RevisionKey] = []
        edge = 0
        for key, percent in route.splits:
            if percent == 0:
                continue
            edge += percent
            self.bounds.append(edge)
            self.keys.append(key)
        self.tags = {tag.encode("ascii", "replace").lower(): key for tag, key in route.tags.items()}

    def pick(self, tag: bytes | None, r: float) -> RevisionKey:
        if tag is not None and self.tags:
            key = self.tags.get(tag.strip().lower())
            if key is not None:
                return key
        if len(self.keys) == 1:
            return self.keys[0]
        # bisect_right: r*100 == 80 belongs to the band [80, 100), not [0, 80).
        i = bisect.bisect_right(self.bounds, r * 100.0)
        return self.keys[min(i, len(self.keys) - 1)]


class RouteTable:
    """An immutable host → route table; build a new one to change routing."""

    __slots__ = ("_routes",)

    def __init__(self, routes: Iterable[HostRoute] = ()) -> None:
        table: dict[bytes, _CompiledRoute] = {}
        for route in routes:
            host = normalize_host(route.host.encode())
            if host in table:
                raise ValueError(f"route for host {route.host!r}: host listed twice")
            table[host] = _CompiledRoute(route)
        self._routes = table

    def lookup(self, host: bytes, tag: bytes | None, r: float) -> RevisionKey | None:
        """The revision for a request to `host` (raw Host header), or None if the host is unknown.

        `tag` is the `Knative-Serving-Tag` header value (None if absent); `r` is a uniform
        random number in [0, 1) choosing the percent split.
        """
        route = self._routes.get(host)  # fast path: the header is already normal
        if route is None:
            route = self._routes.get(normalize_host(host))
            if route is None:
                return None
        return route.pick(tag, r)

    def has_tag(self, host: bytes, tag: bytes) -> bool:
        """Whether `tag` is a known tag of the route for `host` (raw Host header)."""
        route = self._routes.get(host) or self._routes.get(normalize_host(host))
        return route is not None and tag.strip().lower() in route.tags

    def hosts(self) -> list[str]:
        """The normalised hosts in the table, sorted."""
        return sorted(h.decode() for h in self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"RouteTable({self.hosts()})"
