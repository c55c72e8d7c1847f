"""Informers (list + watch into a local cache) and the de-duplicating work queue.

Theory of operation, as client-go's reflector and workqueue:

Informer: list the kind (the cache becomes exactly the list, and every difference is
reported: added, changed, gone), then watch from the list's resourceVersion, applying
each event to the cache and reporting it. The watch ends normally when the server's
timeout passes: watch again from the last resourceVersion seen (BOOKMARK events move
it without an object). An ERROR event with code 410 (Gone), or a 410 answer, means the
server no longer holds history that old: list again at once. Any other failure: wait
`backoff_s(failures)` (0.5 s doubling to 30 s; reset by the first good event) and
list again, so a restarted API server is not hammered. Every `resync_s` the handler
is called again for every cached object, so a reconcile that failed silently is
retried even when nothing changes (level-triggered, not edge-triggered).
Worked example: list at rv 10 [a, b]; watch: MODIFIED a rv 12, ERROR 410 -> list at
rv 20 [a, c] -> handler(c), handler(b deleted); watch from 20.

WorkQueue: a key is queued at most once however many events name it; a key being
processed is not handed to a second worker, and if it is added meanwhile it is queued
again when `done` is called, so the last event is never lost and one object is never
reconciled twice at once. Worked example: add(k), add(k) -> one k; get() -> k;
add(k) while processing -> not queued; done(k) -> k queued again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from dataplane import Clock

from .client import ApiError

_log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
RESYNC_S = 600.0  # Knative's controllers resync every 10 hours; 10 min costs little here

Handler = Callable[[str, dict[str, Any]], None]  # (event type, object)


def backoff_s(failures: int, base_s: float = BACKOFF_BASE_S, max_s: float = BACKOFF_MAX_S) -> float:
    """The wait after `failures` consecutive failures: base * 2^(n-1), at most max."""
    if failures <= 0:
        return 0.0
    return min(max_s, base_s * 2 ** min(failures - 1, 30))


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class ListWatch(Protocol):
    """What an informer needs from the API for one kind."""

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        """(items, resourceVersion)."""

    def watch(self, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Events from `resource_version` until the server ends the stream."""


class WorkQueue:
    """A FIFO of keys: de-duplicated, one worker per key, re-queued if added while busy."""

    def __init__(self) -> None:
        self._queue: OrderedDict[Hashable, None] = OrderedDict()
        self._processing: set[Hashable] = set()
        self._dirty_while_processing: set[Hashable] = set()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        """Queue `key` unless it is queued already (or mark it if being processed)."""
        if key in self._processing:
            self._dirty_while_processing.add(key)
            return
        self._queue[key] = None
        self._ready.set()

    async def get(self) -> Hashable:
        """The next key; it is being processed until `done(key)`."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key, _ = self._queue.popitem(last=False)
        self._processing.add(key)
        return key

    def done(self, key: Hashable) -> None:
        """`key` is processed; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty_while_processing:
            self._dirty_while_processing.discard(key)
            self.add(key)

    def is_idle(self) -> bool:
        """Nothing queued and nothing being processed."""
        return not self._queue and not self._processing


class Informer:
    """One kind's cache, kept by list + watch, reporting every change to `handler`."""

    def __init__(self, source: ListWatch, handler: Handler, *, clock: Clock,
                 resync_s: float = RESYNC_S, name: str = "") -> None:
        self._source = source
        self._handler = handler
        self._clock = clock
        self._resync_s = resync_s
        self._name = name
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._rv = ""
        self.synced = asyncio.Event()
        self.lists = 0  # how many times it listed: 1 + relists after 410 or errors

    def items(self) -> Iterator[dict[str, Any]]:
        """The cached objects."""
        return iter(list(self._cache.values()))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached object, or None."""
        return self._cache.get((namespace, name))

    async def run(self) -> None:
        """List and watch until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._resync_loop())
            await self._list_and_watch()

    async def _list_and_watch(self) -> None:
        failures = 0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self._source.watch(self._rv):
                    failures = 0
                    if self._apply(event):
                        need_list = True
                        break
            except ApiError as exc:
                need_list = True
                if exc.status != 410:
                    failures += 1
                    _log.warning("%s: watch failed (%s); retrying in %.1fs", self._name, exc,
                                 backoff_s(failures))
                    await self._clock.sleep(backoff_s(failures))
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                need_list = True
                failures += 1
                _log.warning("%s: watch failed (%r); retrying in %.1fs", self._name, exc,
                             backoff_s(failures))
                await self._clock.sleep(backoff_s(failures))

    async def _relist(self) -> None:
        items, rv = await self._source.list()
        self.lists += 1
        fresh = {object_key(o): o for o in items}
        gone = [o for k, o in self._cache.items() if k not in fresh]
        old = self._cache
        self._cache = fresh
        self._rv = rv
        for obj in gone:
            self._handler("DELETED", obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._handler("ADDED", obj)
            elif _rv(before) != _rv(obj):
                self._handler("MODIFIED", obj)
        self.synced.set()

    def _apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one watch event; True when the informer must list again (410)."""
        type_, obj = event.get("type"), event.get("object") or {}
        if type_ == "ERROR":
            if obj.get("code") == 410:
                return True
            raise ApiError(int(obj.get("code") or 0), obj.get("reason", "error"),
                           obj.get("message", ""))
        if _rv(obj):
            self._rv = _rv(obj)
        if type_ == "BOOKMARK":
            return False
        key = object_key(obj)
        if type_ == "DELETED":
            self._cache.pop(key, None)
        else:
            self._cache[key] = obj
        self._handler(str(type_), obj)
        return False

    async def _resync_loop(self) -> None:
        await self.synced.wait()
        while True:
            await self._clock.sleep(self._resync_s)
            for obj in self.items():
                self._handler("SYNC", obj)


async def start_synced(tg: asyncio.TaskGroup, informers: Iterable[Informer]) -> None:
    """Run the informers in `tg` and return once each has its first full list."""
    informers = tuple(informers)
    for informer in informers:
        tg.create_task(informer.run())
    for informer in informers:
        await informer.synced.wait()


def _rv(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion", "")
