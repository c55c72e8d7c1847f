"""The per-revision collection: what is recorded from a Stat, and the no-data rule."""

from __future__ import annotations

import pytest

from autoscaler.collector import MetricCollection, is_poke, stat_record_time
from autoscaler.decider import Observation
from dataplane.stat import Stat

T0 = 1_000.0


def scraped(conc: float, proxied: float = 0.0, rps: float = 0.0, proxied_rps: float = 0.0) -> Stat:
    return Stat("service-scraper", conc, proxied, rps, proxied_rps)


def activator(conc: float, rps: float = 0.0) -> Stat:
    return Stat("activator-1", conc, 0.0, rps, 0.0)


# Each case: collection settings, then (seconds from T0, stat) records, then
# (seconds from T0, expected observation) reads.
CASES = [
    pytest.param(
        {}, [(0, scraped(10.0, proxied=4.0)), (0, activator(3.0)), (0, activator(2.0))],
        [(0, Observation(11.0, 11.0))],
        id="scraper-plus-activators-same-second-sum-without-double-count",
    ),
    pytest.param(
        {}, [(0, scraped(10.0)), (1, scraped(20.0)), (2, scraped(30.0))],
        [(2, Observation(20.0, 20.0)), (2.9, Observation(20.0, 20.0))],
        id="warming-window-averages-the-seconds-it-has",
    ),
    pytest.param(
        {"stable_window_s": 6.0, "panic_window_s": 2.0},
        [(t, scraped(v)) for t, v in enumerate([6.0, 6.0, 6.0, 6.0, 30.0, 30.0])],
        [(5, Observation(14.0, 30.0))],
        id="panic-window-sees-only-the-recent-surge",
    ),
    pytest.param(
        {"metric": "rps"}, [(0, scraped(99.0, rps=50.0, proxied_rps=20.0)), (0, activator(1.0, rps=5.0))],
        [(0, Observation(35.0, 35.0))],
        id="rps-metric-subtracts-proxied-requests",
    ),
    pytest.param(
        {}, [], [(0, None), (100, None)],
        id="no-write-yet-with-scrape-target-is-no-data",
    ),
    pytest.param(
        {"has_scrape_target": False}, [], [(0, Observation(0.0, 0.0))],
        id="no-scrape-target-empty-reads-zero",
    ),
    pytest.param(
        {"stable_window_s": 60.0, "panic_window_s": 6.0}, [(0, scraped(12.0))],
        [(59, Observation(12.0, 0.0)), (60, Observation(0.0, 0.0)), (61, None)],
        id="stale-for-longer-than-the-stable-window-is-no-data",
    ),
    pytest.param(
        {"has_scrape_target": False, "stable_window_s": 10.0, "panic_window_s": 2.0},
        [(0, activator(4.0))],
        [(1, Observation(4.0, 4.0)), (30, Observation(0.0, 0.0))],
        id="activator-only-revision-reads-zero-after-silence",
    ),
    pytest.param(
        {"algorithm": "weighted-exponential", "stable_window_s": 60.0, "panic_window_s": 6.0},
        [(0, scraped(10.0))],
        # alpha is 0.2 for 60 buckets and 1 - 0.0001^(1/6) for 6; the sum is not normalised.
        [(0, Observation(2.0, 7.8456))],
        id="weighted-exponential-per-revision",
    ),
]


def _build(settings: dict) -> MetricCollection:
    kwargs = {"stable_window_s": 60.0, "panic_window_s": 6.0} | settings
    return MetricCollection(**kwargs)


@pytest.mark.parametrize(("settings", "records", "reads"), CASES)
def test_collection_records_and_observes(settings, records, reads) -> None:
    collection = _build(settings)
    for t, stat in records:
        collection.record(T0 + t, stat)
    for t, want in reads:
        got = collection.observe(T0 + t)
        if want is None:
            assert got is None, f"at t={t}s"
        else:
            assert got is not None, f"at t={t}s"
            assert (got.stable, got.panic) == pytest.approx((want.stable, want.panic), abs=1e-4), f"at t={t}s"
    assert collection.stats().records == len(records)


def test_update_resizes_windows_and_keeps_recent_history() -> None:
    collection = _build({"stable_window_s": 60.0, "panic_window_s": 6.0})
    for t in range(10):
        collection.record(T0 + t, scraped(float(t)))
    collection.update(now=T0 + 9, stable_window_s=6.0, panic_window_s=2.0)
    # The 6 newest seconds (4..9) survive in the stable window, 8..9 in the panic window.
    assert collection.observe(T0 + 9) == Observation(6.5, 8.5)
    stats = collection.stats()
    assert (stats.stable_window_s, stats.panic_window_s) == (6.0, 2.0)


def test_update_to_another_algorithm_starts_over() -> None:
    collection = _build({})
    collection.record(T0, scraped(10.0))
    collection.update(now=T0, stable_window_s=60.0, panic_window_s=6.0,
                      algorithm="weighted-exponential")
    assert collection.observe(T0) is None
    assert collection.stats().algorithm == "weighted-exponential"


def test_update_can_switch_metric_and_drop_the_scrape_target() -> None:
    collection = _build({})
    collection.record(T0, scraped(10.0, rps=3.0))
    collection.update(now=T0, stable_window_s=60.0, panic_window_s=6.0, metric="rps",
                      has_scrape_target=False)
    assert collection.observe(T0) == Observation(3.0, 3.0)
    assert collection.observe(T0 + 120) == Observation(0.0, 0.0)


# (now, stat timestamp, wall clock now, expected record time)
RECORD_TIME_CASES = [
    pytest.param(T0, 0, 1_700_000_000.7, T0, id="unstamped-is-now"),
    pytest.param(T0, 1_700_000_000, 1_700_000_000.9, T0, id="same-wall-second-is-now"),
    pytest.param(T0, 1_699_999_998, 1_700_000_000.1, T0 - 2, id="two-seconds-old"),
    pytest.param(T0, 1_700_000_005, 1_700_000_000.0, T0, id="future-stamp-counts-as-now"),
]


@pytest.mark.parametrize(("now", "timestamp", "wall_now", "want"), RECORD_TIME_CASES)
def test_stat_record_time_carries_wall_age_to_the_clock(now, timestamp, wall_now, want) -> None:
    assert stat_record_time(now, timestamp, wall_now) == want


@pytest.mark.parametrize("bad", [
    pytest.param(Stat("a", float("nan")), id="nan-concurrency"),
    pytest.param(Stat("a", request_count=float("inf")), id="inf-rps"),
    pytest.param(Stat("a", 1.0, float("-inf")), id="inf-proxied"),
])
def test_non_finite_stat_is_refused_and_not_recorded(bad: Stat) -> None:
    collection = _build({})
    collection.record(T0, scraped(6.0))
    with pytest.raises(ValueError, match="not finite"):
        collection.record(T0, bad)
    assert collection.observe(T0) == Observation(6.0, 6.0)
    assert collection.stats().records == 1


@pytest.mark.parametrize(("desired", "concurrency", "pokes"), [
    pytest.param(0, 1.0, True, id="cold-start-at-zero"),
    pytest.param(-1, 1.0, True, id="before-the-first-decision"),
    pytest.param(0, 0.0, False, id="idle-second-at-zero"),
    pytest.param(1, 5.0, False, id="already-scaled"),
    pytest.param(0, 0.25, True, id="any-concurrency"),
])
def test_is_poke(desired, concurrency, pokes):
    assert is_poke(desired, concurrency) is pokes
