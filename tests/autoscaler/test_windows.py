"""Knative's aggregation windows, table tests ported from bucketing_test.go and max/*_test.go."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.windows import (
    LINEAR,
    WEIGHTED_EXPONENTIAL,
    LinearWindow,
    MaxWindow,
    WeightedWindow,
    bucket_index,
    go_pow,
    leading_weight,
    make_window,
    normalize_algorithm,
    round_half_away,
    smoothing_coefficient,
    window_span,
)

# A start time that is a whole number of buckets for every granularity used here
# (1, 2, 3, 5 s), as Knative's tests truncate time.Now() to the granularity.
T0 = 1_200.0

# Steps run against one window: ("record", t, value) | ("average", t, want) |
# ("average3", t, want) (average rounded to 3 decimals) |
# ("sum", t, want) (sum of buckets(t)) | ("resize", t, window) | ("empty", t, want) |
# ("num_buckets", want). Times are seconds after T0.
LINEAR_CASES = [
    pytest.param(5, 1, [
        ("record", 0, 1), ("average", 0, 1.0),          # first write: partial window of 1
        *[("record", i, i + 1) for i in range(1, 5)],
        ("average", 4, 3.0),
        ("average", 3.6, 3.0),                           # now lags behind last write
        ("average", 6, (15 - 1 - 2) / 3),                # short hole: 2 trailing seconds out
        ("average", 10, 0.0),                            # a long hole reads 0
        ("record", 6, 91), ("average", 6, (15 - 1 - 2 + 91) / 5),
        ("record", 60, 1984), ("average", 60, 1984.0),   # a window of silence restarts
        ("record", 57, 4), ("average", 60, (4 + 1984) / 4),  # earlier write moves first
        ("record", 61, 5), ("average", 61, (4 + 1984 + 5) / 5),
        ("record", 58, 10), ("average", 61, (4 + 10 + 1984 + 5) / 5),
        ("record", 55, 10), ("average", 61, (4 + 10 + 1984 + 5) / 5),  # too early: ignored
        ("record", 56, 10), ("average", 61, (4 + 10 + 1984 + 5) / 5),  # exactly a window
        ("record", 66, 10), ("average", 66, 10.0),       # silence of exactly a window
    ], id="knative-window-average"),
    pytest.param(5, 1, [("record", t, 5) for t in range(8, -1, -1)]
                 + [("average", 5, 5.0)], id="knative-descending-record"),
    pytest.param(5, 1, [
        *[("record", i, i + 1) for i in range(5)],
        ("sum", 4, 15.0), ("average", 4, 3.0),
        ("record", 8, 2), ("sum", 8, 7.0),               # seconds 5, 6, 7 become 0
    ], id="knative-holes"),
    pytest.param(5, 1, [
        *[("record", i, i + 1) for i in range(6)],
        ("sum", 5, 20.0), ("average", 5, 4.0),
        ("resize", 5, 10), ("num_buckets", 10),
        ("sum", 5, 20.0), ("average", 5, 4.0),           # at most 5 buckets were kept
        ("record", 6, 7), ("sum", 6, 27.0), ("average", 6, round(27 / 6, 6)),
        ("resize", 6, 4), ("num_buckets", 4),
        ("sum", 6, 22.0), ("average", 6, 22 / 4),        # the 2 oldest are dropped
        ("resize", 6, 4), ("sum", 6, 22.0),              # same window: no change
    ], id="knative-resize"),
    pytest.param(5, 3, [
        ("num_buckets", 2),                              # ceil(5/3)
        ("record", 0, 10), ("record", 1, 2), ("record", 2, 3),
        ("record", 3, 4), ("record", 4, 5), ("record", 5, 6),
        ("record", 6, 7),                                # overwrites the first 15
        ("sum", 6, 4 + 5 + 6 + 7.0),
        ("resize", 6, 10), ("num_buckets", 4), ("sum", 6, 22.0),
        ("record", 9.3, 42), ("sum", 9, 64.0),
        ("resize", 9, 4), ("num_buckets", 2), ("sum", 9, 42 + 7.0),
    ], id="knative-3s-granularity-resize"),
    pytest.param(5, 1, [
        ("record", 0, 19.82), ("resize", 60, 10),        # stale data: nothing kept
        ("sum", 60, 0.0), ("empty", 60, True),
        ("record", 61, 3), ("average", 61, 3.0),
    ], id="knative-resize-after-silence-keeps-nothing"),
    pytest.param(60, 1, [
        ("record", 0, 6), ("record", 1, 6), ("record", 2, 6),
        ("resize", 2, 30), ("average", 2, 6.0),          # Knative would give 18/30 = 0.6
    ], id="resize-while-warming-up-keeps-partial-average"),
    pytest.param(6, 1, [
        ("empty", 0, True), ("average", 0, 0.0), ("sum", 0, 0.0),
        ("record", 0.9, 2), ("empty", 6, False), ("empty", 6.99, False),
        ("empty", 7, True), ("average", 5, round(2 / 1, 6)),
        ("average", 5.5, 2.0), ("average", 6, 0.0),      # silence of a whole window
    ], id="is-empty-and-truncation"),
    pytest.param(6, 1, [("record", t, 1 / 3) for t in range(3)]
                 + [("average", 2, 0.333333)], id="rounded-to-6-decimals"),
    pytest.param(1.2, 0.2, [
        ("num_buckets", 6), ("record", 0.0, 1), ("record", 1.2, 2),  # 1.2 s gap restarts
        ("average", 1.2, 2.0), ("record", 1.4, 4), ("average", 1.4, 3.0),
    ], id="sub-second-granularity-snaps-to-buckets"),
]

WEIGHTED_CASES = [
    pytest.param(5, 1, [
        # Knative's TestTimedFloat64BucketsWeightedAverage compares with ==, and so do we.
        ("record", 0, 2), ("exact", 0, lambda m: 2 * m),
        ("exact", 1, lambda m: 2 * m * (1 - m)),       # a silent second decays it
        ("record", 1, 2), ("exact", 1, lambda m: 2 * m * (1 - m) + 2 * m),
        *[("record", 2 + i, i + 2) for i in range(5)],
        ("exact", 6, lambda m: 6 * m + 5 * m * (1 - m) + 4 * m * (1 - m) * (1 - m)
         + 3 * m * (1 - m) * (1 - m) * (1 - m) + 2 * m * (1 - m) * (1 - m) * (1 - m) * (1 - m)),
        ("exact", 16, lambda m: 0.0),
    ], id="knative-weighted-average"),
    pytest.param(5, 1, [
        *[("record", i, i + 1) for i in range(6)],
        ("sum", 5, 20.0),
        ("average", 5, lambda m: sum(v * m * (1 - m) ** a for a, v in enumerate([6, 5, 4, 3, 2]))),
        ("average3", 5, 5.812),                          # Knative's figure, 3 decimals
        ("resize", 5, 10), ("num_buckets", 10), ("sum", 5, 20.0),
    ], id="knative-weighted-resize"),
    pytest.param(5, 1, [
        ("record", 0, 10), ("average", 4, lambda m: 10 * m * (1 - m) ** 4),
        ("empty", 5, False), ("average", 5, lambda m: 0.0),  # aged out of the ring
        ("empty", 6, True), ("average", 6, lambda m: 0.0),
    ], id="decays-to-zero-after-a-window"),
]


def _run(window, steps):
    for step in steps:
        op, *args = step
        if op == "record":
            window.record(T0 + args[0], args[1])
        elif op == "resize":
            window.resize(args[1], T0 + args[0])
        elif op == "num_buckets":
            assert window.num_buckets == args[0], step
        else:
            t, want = args
            if op == "exact":
                got, want = window.average(T0 + t), want(window.smoothing_coefficient)
            elif op == "average":
                got = window.average(T0 + t)
                if callable(want):
                    # Products of weights associate differently from Knative's test
                    # arithmetic: equal to the last bits, not bit for bit.
                    want = pytest.approx(want(window.smoothing_coefficient), rel=1e-12)
            elif op == "average3":
                got = round_half_away(window.average(T0 + t), 3)
            elif op == "sum":
                got = sum(v for _, v in window.buckets(T0 + t))
            else:
                got = window.is_empty(T0 + t)
            assert got == want, f"{step}: got {got}"


@pytest.mark.parametrize(("window_s", "granularity", "steps"), LINEAR_CASES)
def test_linear_window_follows_knative(window_s, granularity, steps):
    _run(LinearWindow(window_s, granularity), steps)


@pytest.mark.parametrize(("window_s", "granularity", "steps"), WEIGHTED_CASES)
def test_weighted_window_follows_knative(window_s, granularity, steps):
    _run(WeightedWindow(window_s, granularity), steps)


@pytest.mark.parametrize(("granularity", "writes", "want"), [
    pytest.param(1, [(0, 1.0), (0.1, 10.0), (1, 1.0), (3, 1.0)],
                 [(0.0, 11.0), (1.0, 1.0), (3.0, 1.0)], id="1s-buckets"),
    pytest.param(5, [(0, 1.0), (3, 11.0), (6, 1.0)], [(0.0, 12.0), (5.0, 1.0)], id="5s-buckets"),
    pytest.param(1, [], [], id="empty"),
    pytest.param(1, [(t, float(p + r)) for p, t in enumerate([0, 3, 2, 1, 4]) for r in range(5)],
                 [(0.0, 10.0), (1.0, 25.0), (2.0, 20.0), (3.0, 15.0), (4.0, 30.0)],
                 id="many-reps-out-of-order"),
])
def test_buckets_lists_sums_oldest_first(granularity, writes, want):
    w = LinearWindow(120, granularity)
    for t, v in writes:
        w.record(T0 + t, v)
    assert w.buckets(T0 + 60) == [(T0 + start, v) for start, v in want]


@pytest.mark.parametrize(("n_buckets", "want"), [
    pytest.param(100, 0.2, id="long-window-floor"),
    pytest.param(60, 0.2, id="stable-default"),
    pytest.param(40, 0.20567, id="just-above-floor"),
    pytest.param(30, 0.264, id="30-buckets"),
    pytest.param(10, 0.602, id="10-buckets"),
    pytest.param(6, 0.78456, id="panic-default"),
    pytest.param(3, 0.954, id="3-buckets"),
])
def test_smoothing_coefficient_matches_knative(n_buckets, want):
    assert smoothing_coefficient(n_buckets) == pytest.approx(want, abs=6e-4)
    assert WeightedWindow(n_buckets).smoothing_coefficient == smoothing_coefficient(n_buckets)


def _bits(value: float) -> str:
    return struct.pack(">d", value).hex()


# Bit patterns printed by Go (math.Float64bits) for Knative's computeSmoothingCoeff(n) and
# for the leading weight m * math.Pow(1-m, z) of WeightedFloat64Buckets.WindowAverage.
@pytest.mark.parametrize(("n_buckets", "go_bits"), [
    pytest.param(2, "3fefae147ae147ae", id="2"),
    pytest.param(3, "3fee83c2d3b29c00", id="3"),
    pytest.param(5, "3feaeda7cea25322", id="5"),
    pytest.param(6, "3fe91b164c4fd313", id="6-panic-default"),
    pytest.param(10, "3fe342b4c0456da6", id="10"),
    pytest.param(30, "3fd0eb3cbfe2917e", id="30"),
    pytest.param(40, "3fca5373d0c8ef30", id="40"),
    pytest.param(41, "3fc9c0dcfdbc3fbc", id="41-last-above-floor"),
    pytest.param(42, "3fc999999999999a", id="42-floor"),
])
def test_smoothing_coefficient_is_knatives_to_the_bit(n_buckets, go_bits):
    assert _bits(smoothing_coefficient(n_buckets)) == go_bits


@pytest.mark.parametrize(("n_buckets", "silent", "go_bits"), [
    pytest.param(6, 0, "3fe91b164c4fd313", id="6-z0"),
    pytest.param(6, 1, "3fc5a2b21d8b23b6", id="6-z1"),
    pytest.param(6, 2, "3fa2a51a72eabada", id="6-z2"),
    pytest.param(6, 3, "3f801155f36649ab", id="6-z3"),
    pytest.param(6, 6, "3f149111db64355c", id="6-z6"),
    pytest.param(5, 3, "3f6b71b2f3cb7dbf", id="5-z3"),
    pytest.param(60, 7, "3fa5798ee2308c3f", id="60-z7"),
    pytest.param(60, 30, "3f3039d66589688e", id="60-z30"),
    pytest.param(60, 59, "3e99b604aaaca654", id="60-z59"),
])
def test_leading_weight_is_knatives_to_the_bit(n_buckets, silent, go_bits):
    alpha = smoothing_coefficient(n_buckets)
    assert _bits(leading_weight(alpha, silent)) == go_bits
    # Multiplying alpha by (1 - alpha) z times is not the same number (z > 1 here):
    # the window must start from the leading weight, as Knative does.
    window = WeightedWindow(n_buckets)
    window.record(T0, 1.0)
    # A whole window of silence leaves no bucket to weigh (Knative reads 0 there too).
    want = leading_weight(alpha, silent) if silent < n_buckets else 0.0
    assert window.average(T0 + silent) == want


@pytest.mark.parametrize(("x", "y"), [
    pytest.param(0.8, 0, id="zero-power"), pytest.param(0.8, 1, id="first-power"),
    pytest.param(0.8, 3600, id="deep-underflow"), pytest.param(1e-4, 0.5, id="half"),
    pytest.param(1e-4, 0.75, id="fraction-above-half"), pytest.param(2.5, 7.25, id="mixed"),
])
def test_go_pow_agrees_with_pow_to_rounding(x, y):
    assert go_pow(x, y) == pytest.approx(x**y, rel=1e-14, abs=1e-300)


def test_resize_recomputes_smoothing_coefficient():
    w = WeightedWindow(5)
    w.resize(10, T0)
    assert w.smoothing_coefficient == smoothing_coefficient(10)


@pytest.mark.parametrize(("value", "digits", "want"), [
    pytest.param(3.6e-17, 6, 0.0, id="tiny-positive"),
    pytest.param(-3.6e-17, 3, 0.0, id="tiny-negative"),
    pytest.param(0.0004, 3, 0.0, id="below-half"),
    pytest.param(1.2345, 3, 1.235, id="half-rounds-up"),
    pytest.param(1.2345, 4, 1.2345, id="already-exact"),
    pytest.param(12345, 6, 12345.0, id="integer"),
    pytest.param(-2.5, 0, -3.0, id="negative-half-away-from-zero"),
    pytest.param(0.5, 0, 1.0, id="not-bankers-rounding"),
])
def test_round_half_away(value, digits, want):
    assert round_half_away(value, digits) == want


@pytest.mark.parametrize(("now", "granularity", "want"), [
    pytest.param(1200.0, 1.0, 1200, id="whole-second"),
    pytest.param(1200.999, 1.0, 1200, id="truncates"),
    pytest.param(1201.0, 2.0, 600, id="2s-buckets"),
    pytest.param(6.0, 0.2, 30, id="float-error-below-boundary-snaps"),
    pytest.param(-0.5, 1.0, -1, id="negative-floors"),
])
def test_bucket_index(now, granularity, want):
    assert bucket_index(now, granularity) == want


@pytest.mark.parametrize(("algorithm", "cls"), [
    pytest.param("linear", LinearWindow, id="linear"),
    pytest.param("weighted-exponential", WeightedWindow, id="weighted"),
    pytest.param("weightedExponential", WeightedWindow, id="legacy-camel-case"),
    pytest.param("", LinearWindow, id="unset-is-linear"),
    pytest.param("median", LinearWindow, id="unknown-is-linear-as-knative-runtime"),
])
def test_make_window_by_algorithm(algorithm, cls):
    w = make_window(algorithm, 60, 1)
    assert type(w) is cls and w.num_buckets == 60
    assert normalize_algorithm(algorithm) in (LINEAR, WEIGHTED_EXPONENTIAL)


@pytest.mark.parametrize(("window_s", "granularity"), [
    pytest.param(0, 1, id="zero-window"), pytest.param(6, 0, id="zero-granularity"),
    pytest.param(-1, 1, id="negative-window"), pytest.param(float("nan"), 1, id="nan"),
])
def test_bad_sizes_are_rejected(window_s, granularity):
    with pytest.raises(ValueError, match="must be > 0"):
        LinearWindow(window_s, granularity)


def test_window_span_keeps_fractional_windows():
    assert window_span(5, 2) == 2.5 and LinearWindow(5, 2).num_buckets == 3


# Knative's max/window_test.go: a 5-bucket window, value i recorded in bucket index(i).
MAX_CASES = [
    pytest.param([1], None, [1], id="single-value"),
    pytest.param([1, 2], None, [1, 2], id="ascending"),
    pytest.param([2, 1], None, [2, 2], id="descending"),
    pytest.param([1, 2, 1], None, [1, 2, 2], id="up-down-up"),
    pytest.param([5, 6, 5, 5, 5, 5, 5], None, [5, 6, 6, 6, 6, 6, 5], id="windowing-out"),
    pytest.param([6, 5, 2, 1], lambda i: i + 3 if i >= 3 else i, [6, 6, 6, 2],
                 id="windowing-out-with-gaps"),
    pytest.param([5, 6, 5, 7, 5, 5, 1], None, [5, 6, 6, 7, 7, 7, 7], id="windowing-out-2"),
    pytest.param([5, 8, 5, 7, 5, 5], None, [5, 8, 8, 8, 8, 8], id="windowing-out-3"),
    pytest.param([5, 8, 5, 7, 5, 5, 1], None, [5, 8, 8, 8, 8, 8, 7], id="windowing-out-4"),
    pytest.param([5, 8, 5, 7, 5, 5, 1, 4, 4, 4], None, [5, 8, 8, 8, 8, 8, 7, 7, 5, 5],
                 id="windowing-out-5"),
    pytest.param([5, 8, 5, 7, 5, 5, 1, 4, 4, 4, 4], None,
                 [5, 8, 8, 8, 8, 8, 7, 7, 5, 5, 4], id="windowing-out-6"),
    pytest.param([5, 8, 5, 7, 5, 5, 1, 4, 4, 4, 4, 9], None,
                 [5, 8, 8, 8, 8, 8, 7, 7, 5, 5, 4, 9], id="windowing-out-7"),
    pytest.param([5, 8, 5, 7, 5, 5, 1, 4, 4, 4, 4, 9, 3, 4, 2, 1, 0], None,
                 [5, 8, 8, 8, 8, 8, 7, 7, 5, 5, 4, 9, 9, 9, 9, 9, 4], id="windowing-out-8"),
    pytest.param([1, 2, 3, 4, 5, 6, 7], lambda i: 1, [1, 2, 3, 4, 5, 6, 7],
                 id="same-bucket-ascending"),
    pytest.param([7, 6, 5, 4, 3, 2, 1], lambda i: 1, [7] * 7, id="same-bucket-descending"),
    # Ours: a late bucket still inside the window counts, and expires on its own time.
    pytest.param([1, 9, 2, 2, 2, 2], lambda i: [4, 2, 5, 6, 7, 8][i], [1, 9, 9, 9, 2, 2],
                 id="late-bucket-expires-on-time"),
    pytest.param([3, 1, 2], lambda i: [10, 4, 10][i], [3, 3, 3], id="too-late-is-ignored"),
    pytest.param([3, 5, 1], lambda i: [10, 9, 9][i], [3, 5, 5], id="late-same-bucket-keeps-max"),
]


@pytest.mark.parametrize(("values", "index", "want"), MAX_CASES)
def test_max_window_follows_knative(values, index, want):
    granularity = 2.0
    w = MaxWindow(5 * granularity, granularity)
    got = []
    for i, v in enumerate(values):
        w.record(T0 + (index or (lambda j: j))(i) * granularity, v)
        got.append(w.current())
    assert got == want


@pytest.mark.parametrize(("writes", "want"), [
    pytest.param([(0, 5)], 5, id="single-value"),
    pytest.param([(0, 6), (0.5, 5)], 6, id="same-second-keeps-max"),
    pytest.param([(0, 5), (1, 8)], 8, id="two-seconds"),
    pytest.param([(0, 5), (6, 4)], 4, id="gap-longer-than-window"),
    pytest.param([], 0, id="nothing-recorded-reads-0"),
])
def test_max_window_over_time(writes, want):
    w = MaxWindow(5, 1)
    for t, v in writes:
        w.record(T0 + t, v)
    assert w.current() == want and w.num_buckets == 5


def test_scale_down_delay_window_uses_2s_buckets():
    w = MaxWindow(15, 2)                     # ceil(15/2) = 8 ticks
    for tick, desired in enumerate([10, 3, 3, 3, 3, 3, 3, 3, 3]):
        w.record(T0 + 2 * tick, desired)
    assert w.num_buckets == 8 and w.current() == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-5, 100)), max_size=40),
       st.sampled_from([(5, 1), (6, 1), (5, 2), (7, 3)]))
def test_ring_holds_sums_of_accepted_writes(writes, sizes):
    """The ring holds, for each bucket in (last - n, last], the sum of its writes."""
    window_s, granularity = sizes
    w = LinearWindow(window_s, granularity)
    n = math.ceil(window_s / granularity)
    sums: dict[int, float] = {}
    last = None
    for t, v in writes:
        w.record(T0 + t, v)
        k = bucket_index(T0 + t, granularity)
        if last is not None and k <= last - n:
            continue                         # older than the window: ignored
        last = k if last is None else max(last, k)
        sums[k] = sums.get(k, 0) + v
    if last is None:
        assert w.buckets(T0) == []
        return
    want = [(k * granularity, float(s)) for k, s in sorted(sums.items())
            if last - n < k and s != 0]
    assert w.buckets(last * granularity) == want
