"""SQLite persistence for the control plane: the desired-state snapshot and an event log.

The control plane owns its desired state in memory (serving.state); this module only keeps
a copy on disk so a restarted `surge up` comes back with every service, revision, route
and ConfigMap. What is stored is the JSON-safe snapshot `state_to_dict` makes: the store
never looks inside it, so the state's shape can change without a schema migration here.

Layout (schema version 1):

    schema_version(version)                  one row; which migrations have run
    snapshot(id=1, saved_at, generation)     when the latest snapshot was saved, and how many
    snapshot_parts(key, body)                one row per top-level key of the snapshot, JSON
    events(id, time, kind, object, message)  append-only log shown by `surge describe`

A snapshot is split by top-level key (services, revisions, routes, ...) so a layout that
stores objects row by row later is one migration away, and so `save` is several writes
whose all-or-nothing is the transaction's job, which the tests check.

Durability. The database runs in WAL mode with `synchronous=FULL`: every commit fsyncs the
WAL before `save` returns. NORMAL would be enough against a crash of this process (WAL
never corrupts), but it may lose the last commits on power loss or an OS crash, and
`surge apply` tells the user the objects are stored once `save` returns. Writes happen at
human pace (applies, pod starts and stops, scale changes), so an fsync each is cheap.
`save` replaces the snapshot in one transaction: after a crash or an exception mid-save
(a value that is not JSON-safe, a full disk) the previous snapshot is what `load` returns.

Threads. Methods block on disk I/O; an asyncio caller runs them with asyncio.to_thread.
One connection is shared under a lock, so calls from any thread are serialized.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from serving.statedir import DB_FILE

__all__ = ["Event", "SCHEMA_VERSION", "Store", "StoreError"]

# Migration i takes the schema from version i to i+1. Append, never edit: a database
# written by an older Surge runs the missing ones in order when it is opened.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE snapshot ("
        " id INTEGER PRIMARY KEY CHECK (id = 1),"
        " saved_at REAL NOT NULL,"
        " generation INTEGER NOT NULL)",
        "CREATE TABLE snapshot_parts (key TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE events ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " time REAL NOT NULL,"
        " kind TEXT NOT NULL,"
        " object TEXT NOT NULL,"
        " message TEXT NOT NULL)",
        "CREATE INDEX events_object ON events(object, id)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Enough for days of pod and scaling events at human pace, small enough to scan.
DEFAULT_MAX_EVENTS = 10_000
# Trim the event log once per this many inserts, not on every insert.
_TRIM_EVERY = 100


class StoreError(Exception):
    """The database cannot be opened, read or written."""


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event log; `time` is wall-clock Unix seconds."""

    time: float
    kind: str
    object: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the admin API returns."""
        return {"time": self.time, "kind": self.kind, "object": self.object,
                "message": self.message}


class Store:
    """The state directory's database (`<state-dir>/surge.db`)."""

    def __init__(self, path: str | Path, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._inserts = 0
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the extent of each
            # transaction is visible in the code rather than left to the driver.
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=5.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn_close_quietly()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except StoreError:
            self._conn_close_quietly()
            raise

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, **kwargs: Any) -> Store:
        """The store at `<state_dir>/surge.db`."""
        return cls(Path(state_dir) / DB_FILE, **kwargs)

    def _conn_close_quietly(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    def _migrate(self) -> None:
        with self._transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = cur.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else row[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}, newer than this "
                                 f"Surge's {SCHEMA_VERSION}: upgrade Surge to use it")
            for statements in _MIGRATIONS[version:]:
                for sql in statements:
                    cur.execute(sql)
            if row is None:
                cur.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the body raises anything."""
        with self._lock:
            cur = self._conn.cursor()
            # IMMEDIATE takes the write lock up front, so a second writer waits at BEGIN
            # instead of failing at its first write.
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._lock:
            return self._conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def load(self) -> dict[str, Any] | None:
        """The last saved snapshot, or None if nothing was ever saved."""
        try:
            with self._lock:
                # One read transaction, so the parts all belong to the same save.
                self._conn.execute("BEGIN")
                try:
                    meta = self._conn.execute("SELECT 1 FROM snapshot WHERE id = 1").fetchone()
                    parts = self._conn.execute(
                        "SELECT key, body FROM snapshot_parts ORDER BY key").fetchall()
                finally:
                    self._conn.rollback()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        if meta is None:
            return None
        try:
            return {key: json.loads(body) for key, body in parts}
        except ValueError as exc:
            raise StoreError(f"the snapshot in {self.path} is not valid JSON: {exc}") from exc

    @property
    def generation(self) -> int:
        """How many snapshots were saved over the database's life (0 before the first)."""
        with self._lock:
            row = self._conn.execute("SELECT generation FROM snapshot WHERE id = 1").fetchone()
        return 0 if row is None else row[0]

    def save(self, snapshot: dict[str, Any], *, now: float | None = None) -> int:
        """Replace the stored snapshot in one transaction; return its generation."""
        if not isinstance(snapshot, dict) or not all(isinstance(k, str) for k in snapshot):
            raise StoreError("a snapshot is a dict with string keys")
        saved_at = time.time() if now is None else now
        try:
            with self._transaction() as cur:
                row = cur.execute("SELECT generation FROM snapshot WHERE id = 1").fetchone()
                generation = 1 if row is None else row[0] + 1
                cur.execute("DELETE FROM snapshot_parts")
                for key, value in snapshot.items():
                    # allow_nan=False: NaN is not JSON, and a reader in another language
                    # would choke on it.
                    body = json.dumps(value, sort_keys=True, allow_nan=False)
                    cur.execute("INSERT INTO snapshot_parts (key, body) VALUES (?, ?)",
                                (key, body))
                cur.execute(
                    "INSERT INTO snapshot (id, saved_at, generation) VALUES (1, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET saved_at = excluded.saved_at,"
                    " generation = excluded.generation",
                    (saved_at, generation))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"the snapshot is not JSON-safe, nothing saved: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save to {self.path}, nothing saved: {exc}") from exc
        return generation

    def add_event(self, kind: str, obj: str, message: str, *, now: float | None = None) -> None:
        """Append one event; `obj` names the object, e.g. `service/default/hello`."""
        at = time.time() if now is None else now
        try:
            with self._transaction() as cur:
                cur.execute("INSERT INTO events (time, kind, object, message) VALUES (?, ?, ?, ?)",
                            (at, kind, obj, message))
                self._inserts += 1
                if self._inserts % _TRIM_EVERY == 0:
                    cur.execute("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
                                (self.max_events,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot add an event to {self.path}: {exc}") from exc

    def events(self, limit: int = 100, objects: Iterable[str] | None = None) -> list[Event]:
        """The newest `limit` events, oldest first; only those about `objects` if given."""
        sql = "SELECT time, kind, object, message FROM events"
        params: list[Any] = []
        if objects is not None:
            names = list(objects)
            if not names:
                return []
            sql += f" WHERE object IN ({','.join('?' * len(names))})"
            params.extend(names)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        try:
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read events from {self.path}: {exc}") from exc
        return [Event(*row) for row in reversed(rows)]

    def close(self) -> None:
        """Close the database; the WAL is checkpointed into the main file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
