"""serving.store: snapshot round trips, all-or-nothing saves, migrations, the event log."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serving.store import SCHEMA_VERSION, Event, Store, StoreError

SNAPSHOT_A = {
    "services": [{"metadata": {"name": "hello", "namespace": "default"}, "spec": {"x": 1}}],
    "revisions": [{"name": "hello-00001", "generation": 1}],
    "configmaps": {"config-domain": {"example.com": ""}},
}
SNAPSHOT_B = {
    "services": [{"metadata": {"name": "hello", "namespace": "default"}, "spec": {"x": 2}}],
    "revisions": [{"name": "hello-00001"}, {"name": "hello-00002"}],
    "routes": [],
}


@pytest.fixture
def store(tmp_path: Path):
    with Store.in_state_dir(tmp_path) as s:
        yield s


def test_empty_store_loads_none(store):
    assert store.load() is None
    assert store.generation == 0


@pytest.mark.parametrize("snapshot", [
    pytest.param(SNAPSHOT_A, id="nested-objects"),
    pytest.param({}, id="empty-state-is-not-none"),
    pytest.param({"unicode": "héllo ✓", "numbers": [0, -1, 2.5, 10**15], "null": None},
                 id="json-scalars"),
])
def test_save_then_load_round_trips(store, snapshot):
    store.save(snapshot)
    assert store.load() == snapshot


def test_save_replaces_the_whole_snapshot(store):
    assert store.save(SNAPSHOT_A) == 1
    assert store.save(SNAPSHOT_B) == 2
    # "configmaps" was only in A: a save replaces, it does not merge.
    assert store.load() == SNAPSHOT_B
    assert store.generation == 2


def test_snapshot_survives_reopening(tmp_path):
    with Store.in_state_dir(tmp_path) as first:
        first.save(SNAPSHOT_A)
    assert (tmp_path / "surge.db").exists()
    with Store.in_state_dir(tmp_path) as second:
        assert second.load() == SNAPSHOT_A
        assert second.generation == 1


class _Explodes:
    """A value json cannot encode: fails after earlier parts of the save were written."""


@pytest.mark.parametrize("bad", [
    pytest.param({"services": [], "revisions": _Explodes()}, id="unencodable-after-first-part"),
    pytest.param({"services": [], "revisions": [float("nan")]}, id="nan-is-not-json"),
])
def test_failed_save_keeps_the_previous_snapshot(store, bad):
    store.save(SNAPSHOT_A)
    with pytest.raises(StoreError, match="nothing saved"):
        store.save(bad)
    assert store.load() == SNAPSHOT_A
    assert store.generation == 1
    # The connection is usable afterwards: no transaction was left open.
    store.save(SNAPSHOT_B)
    assert store.load() == SNAPSHOT_B


def test_exception_inside_the_transaction_rolls_back(store):
    class Interrupt(BaseException):
        """Stands for a KeyboardInterrupt or a cancellation arriving mid-save."""

    class Boom(dict):
        def items(self):
            raise Interrupt

    store.save(SNAPSHOT_A)
    with pytest.raises(Interrupt):
        store.save({"services": [1, 2], "routes": Boom(a=1)})
    assert store.load() == SNAPSHOT_A


@pytest.mark.integration
def test_process_killed_mid_save_leaves_the_previous_snapshot(tmp_path):
    # The child saves A, then dies with os._exit inside the transaction of the second
    # save, after the old parts were deleted and a new one inserted: the hard crash case.
    script = textwrap.dedent("""
        import os, sys
        from serving.store import Store
        class Crash(dict):
            def items(self):
                os._exit(17)
        store = Store(sys.argv[1])
        store.save({"services": ["a"], "revisions": ["a-00001"]})
        store.save({"services": ["b"], "zz": Crash(x=1)})
    """)
    db = tmp_path / "surge.db"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", script, str(db)], cwd=root, timeout=30,
                          capture_output=True)
    assert proc.returncode == 17, proc.stderr
    with Store(db) as store:
        assert store.load() == {"services": ["a"], "revisions": ["a-00001"]}


@pytest.mark.parametrize("bad", [
    pytest.param(["a list"], id="not-a-dict"),
    pytest.param({1: "int key"}, id="non-string-key"),
])
def test_save_rejects_non_dict_snapshots(store, bad):
    with pytest.raises(StoreError, match="dict with string keys"):
        store.save(bad)


def test_pragmas_wal_and_full_sync(store):
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # 2 = FULL
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_new_database_is_at_the_current_schema_version(store):
    assert store.schema_version == SCHEMA_VERSION


def test_database_from_a_newer_surge_is_refused(tmp_path):
    db = tmp_path / "surge.db"
    with Store(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        Store(db)


def test_unopenable_path_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        Store(tmp_path / "missing-dir" / "surge.db")


def test_events_come_back_oldest_first_and_limited(store):
    for i in range(5):
        store.add_event("Created", f"revision/default/hello-0000{i}", f"made {i}", now=100.0 + i)
    got = store.events(limit=3)
    assert [e.message for e in got] == ["made 2", "made 3", "made 4"]
    assert got[-1] == Event(104.0, "Created", "revision/default/hello-00004", "made 4")
    assert got[-1].to_dict() == {"time": 104.0, "kind": "Created",
                                 "object": "revision/default/hello-00004", "message": "made 4"}


@pytest.mark.parametrize(("objects", "want"), [
    pytest.param(None, ["s1", "r1", "other", "s2"], id="all"),
    pytest.param(["service/default/hello"], ["s1", "s2"], id="one-object"),
    pytest.param(["service/default/hello", "revision/default/hello-00001"],
                 ["s1", "r1", "s2"], id="service-and-its-revision"),
    pytest.param([], [], id="no-objects"),
])
def test_events_filter_by_object(store, objects, want):
    store.add_event("Ready", "service/default/hello", "s1")
    store.add_event("Started", "revision/default/hello-00001", "r1")
    store.add_event("Ready", "service/default/hello2", "other")
    store.add_event("Ready", "service/default/hello", "s2")
    assert [e.message for e in store.events(objects=objects)] == want


def test_event_log_is_trimmed_to_max_events(tmp_path):
    with Store.in_state_dir(tmp_path, max_events=10) as store:
        for i in range(250):
            store.add_event("Scaled", "revision/default/r", str(i))
        count = store._conn.execute("SELECT count(*) FROM events").fetchone()[0]
        # Trimming runs every 100 inserts; never more than max_events + 100 remain.
        assert 10 <= count <= 110
        assert store.events(limit=1)[0].message == "249"


def test_events_survive_reopening(tmp_path):
    with Store.in_state_dir(tmp_path) as store:
        store.add_event("Created", "service/default/hello", "created", now=5.0)
    with Store.in_state_dir(tmp_path) as store:
        assert store.events() == [Event(5.0, "Created", "service/default/hello", "created")]
