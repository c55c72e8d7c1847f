"""The numpy batch store gives the per-revision windows' numbers for many revisions at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.batch import WindowBatch
from autoscaler.windows import LinearWindow, WeightedWindow, make_window

T0 = 1_200.0

# Steps against one store whose revisions are named by the spec list:
# ("record", t, {name: value}) | ("averages", t, {name: want}) | ("resize", t, name, window)
# | ("empty", t, {name: want}) | ("remove", name) | ("add", name, window, algorithm).
BATCH_CASES = [
    pytest.param([("a", 5, "linear"), ("b", 5, "linear")], [
        *[("record", t, {"a": 1, "b": 10}) for t in range(5)],
        ("record", 7, {"a": 3}),
        ("averages", 7, {"a": 1.0, "b": 10.0}),        # b: 2 silent trailing seconds
        ("empty", 10, {"a": False, "b": True}),
    ], id="module-worked-example"),
    pytest.param([("stable", 60, "linear"), ("panic", 6, "linear")], [
        *[("record", t, {"stable": 2, "panic": 2}) for t in range(10)],
        *[("record", t, {"stable": 8, "panic": 8}) for t in range(10, 13)],
        ("averages", 12, {"stable": round((20 + 24) / 13, 6), "panic": (6 + 24) / 6}),
    ], id="stable-and-panic-groups-warming-up"),
    pytest.param([("w", 5, "weighted-exponential"), ("l", 5, "linear")], [
        ("record", 0, {"w": 2, "l": 2}),
        # alpha = 1 - 0.0001^(1/5) as Go's math.Pow gives it (bits 3feaeda7cea25322).
        ("averages", 0, {"w": 2 * 0.8415106807538886, "l": 2.0}),
        ("averages", 1, {"w": 2 * 0.8415106807538886 * (1 - 0.8415106807538886), "l": 2.0}),
    ], id="weighted-and-linear-side-by-side"),
    pytest.param([("a", 5, "linear")], [
        *[("record", t, {"a": t + 1}) for t in range(6)],
        ("resize", 5, "a", 10), ("averages", 5, {"a": 4.0}),
        ("record", 6, {"a": 7}), ("averages", 6, {"a": round(27 / 6, 6)}),
        ("resize", 6, "a", 4), ("averages", 6, {"a": 22 / 4}),
    ], id="knative-resize-moves-between-groups"),
    pytest.param([("a", 5, "linear"), ("b", 5, "linear")], [
        ("record", 0, {"a": 4, "b": 4}), ("remove", "a"), ("add", "c", 5, "linear"),
        ("averages", 0, {"b": 4.0, "c": 0.0}), ("empty", 0, {"c": True}),
    ], id="a-reused-row-starts-empty"),
    pytest.param([("a", 5, "linear")], [
        ("record", 10, {"a": 5}), ("record", 4, {"a": 100}),   # a window older: ignored
        ("record", 8, {"a": 1}), ("averages", 10, {"a": 2.0}),  # first moves back to 8
        ("averages", 9, {"a": 2.0}),                           # read before last write
    ], id="late-writes-follow-knative"),
]


def _apply(store, rows, step):
    op, *args = step
    if op == "record":
        t, values = args
        store.record([rows[n] for n in values], T0 + t, list(values.values()))
    elif op == "resize":
        store.resize_revision(args[1], args[2], T0 + args[0])
    elif op == "remove":
        store.remove_revision(args[0])
        del rows[args[0]]
    elif op == "add":
        rows[args[0]] = store.add_revision(*args)
    else:
        t, want = args
        got = store.averages(T0 + t) if op == "averages" else store.is_empty(T0 + t)
        assert {n: got[rows[n]] for n in want} == want, step


@pytest.mark.parametrize(("specs", "steps"), BATCH_CASES)
def test_batch_store_steps(specs, steps):
    store = WindowBatch(capacity=1)                        # forces growth as rows are added
    rows = {name: store.add_revision(name, w, alg) for name, w, alg in specs}
    for step in steps:
        _apply(store, rows, step)


def test_repeated_rows_in_one_record_add_up():
    store = WindowBatch()
    row = store.add_revision("r", 6)
    store.record([row, row, row], T0, [1.0, 2.0, 3.0])
    assert store.averages(T0)[row] == 6.0


def test_unused_rows_read_nan_and_empty():
    store = WindowBatch(capacity=4)
    row = store.add_revision("r", 6)
    store.record([row], T0, [3.0])
    averages, empty = store.averages(T0), store.is_empty(T0)
    assert averages.shape == (4,) and averages[row] == 3.0
    assert np.isnan(np.delete(averages, row)).all() and np.delete(empty, row).all()
    assert store.averages_by_key(T0) == {"r": 3.0}


def test_adding_a_key_twice():
    store = WindowBatch()
    row = store.add_revision("r", 60, "weightedExponential")
    assert store.add_revision("r", 60, "weighted-exponential") == row and len(store) == 1
    with pytest.raises(ValueError, match="already has a 60.0s weighted-exponential window"):
        store.add_revision("r", 30, "weighted-exponential")


@pytest.mark.parametrize(("rows", "values", "error"), [
    pytest.param([5], [1.0], KeyError, id="row-never-added"),
    pytest.param([99], [1.0], IndexError, id="row-out-of-range"),
    pytest.param([0, 0], [1.0], ValueError, id="lengths-differ"),
])
def test_bad_record_calls_are_rejected(rows, values, error):
    store = WindowBatch(capacity=8)
    store.add_revision("r", 6)
    with pytest.raises(error):
        store.record(rows, T0, values)


@pytest.mark.parametrize(("granularity", "window_s"), [
    pytest.param(0.0, 6, id="zero-granularity"), pytest.param(1.0, 0, id="zero-window"),
])
def test_bad_sizes_are_rejected(granularity, window_s):
    with pytest.raises(ValueError, match="must be > 0"):
        WindowBatch(granularity).add_revision("r", window_s)


def test_stats_counts_groups():
    store = WindowBatch(capacity=2)
    for i in range(3):
        store.add_revision(i, 60)
    store.add_revision("p", 6, "weighted-exponential")
    store.remove_revision(0)
    stats = store.stats()
    assert (stats.revisions, stats.capacity) == (3, 4)
    assert stats.groups == ((60.0, "linear", 2), (6.0, "weighted-exponential", 1))


WINDOWS = st.sampled_from([(2.5, "linear"), (5, "linear"), (6, "linear"), (60, "linear"),
                           (3, "weighted-exponential"), (6, "weighted-exponential"),
                           (10, "weighted-exponential")])
VALUES = st.one_of(st.integers(-50, 500).map(float),
                   st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))
STEPS = st.sampled_from([0.0, 0.25, 1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 7.0, 61.0, -1.0, -4.0])
OPS = st.one_of(
    st.tuples(st.just("record"), STEPS, st.lists(st.tuples(st.integers(0, 5), VALUES),
                                                 max_size=8)),
    st.tuples(st.just("resize"), st.integers(0, 5), st.sampled_from([2.5, 4, 6, 10, 60])),
    st.tuples(st.just("read"), st.sampled_from([0.0, 1.0, 2.0, 4.0, 6.0, -1.0, -3.0])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(WINDOWS, min_size=1, max_size=6), st.lists(OPS, max_size=40))
def test_batch_matches_per_revision_windows(specs, ops):
    """Any write sequence gives the same averages as LinearWindow/WeightedWindow (1e-9)."""
    store = WindowBatch(capacity=2)
    windows: list[LinearWindow | WeightedWindow] = []
    rows = []
    for i, (window_s, algorithm) in enumerate(specs):
        rows.append(store.add_revision(i, window_s, algorithm))
        windows.append(make_window(algorithm, window_s))
    now = T0
    for op in ops:
        if op[0] == "record":
            now += op[1]
            writes = [(i % len(windows), v) for i, v in op[2]]
            for i, v in writes:
                windows[i].record(now, v)
            store.record([rows[i] for i, _ in writes], now, [v for _, v in writes])
            read_at = now
        elif op[0] == "resize":
            i = op[1] % len(windows)
            windows[i].resize(op[2], now)
            store.resize_revision(i, op[2], now)
            read_at = now
        else:
            read_at = now + op[1]
        averages, empty = store.averages(read_at), store.is_empty(read_at)
        for i, window in enumerate(windows):
            want = window.average(read_at)
            assert math.isclose(averages[rows[i]], want, rel_tol=0, abs_tol=1e-9), (i, want)
            assert empty[rows[i]] == window.is_empty(read_at)
