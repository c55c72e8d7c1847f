"""Trace replay: the simulation on small synthetic traces, with hand-derived decisions.

Unless a case says otherwise: default config-autoscaler, containerConcurrency 10 (target
7 per pod, capacity 10), tick 2 s, pod start delay 2 s, no drain. Each expectation's
arithmetic is in the comment beside it (reference 2.1 for the decider, 2.2 for the gate).
"""

from __future__ import annotations

import pytest

from autoscaler.config import AutoscalerConfig
from autoscaler.replay import (ReplayError, ReplayOptions, ReplayTotals, TraceError, parse_trace, replay,
                               resolve_revision)

CONFIG = AutoscalerConfig()


def trace_text(rows: dict[int, float], length: int, metric: str = "concurrency") -> str:
    """CSV with `rows` ({second: value}) and a final 0 row so the trace lasts `length` s."""
    body = [f"{t},{v:g}" for t, v in sorted(rows.items())]
    if length - 1 not in rows:
        body.append(f"{length - 1},0")
    return f"t,{metric}\n" + "\n".join(body) + "\n"


def steady(value: float, start: int, end: int) -> dict[int, float]:
    """`value` for seconds [start, end)."""
    return {t: value for t in range(start, end)}


def run(rows: dict[int, float], length: int, *, annotations=None, cc: int = 10, metric="concurrency", **options):
    """Replay a synthetic trace with the default ConfigMap."""
    setup = resolve_revision(CONFIG, annotations or {}, container_concurrency=cc)
    return replay(parse_trace(trace_text(rows, length, metric)), setup, ReplayOptions(**options))


STEP = dict(rows=steady(70, 10, 40), length=120)
SPIKE = dict(rows=steady(5, 0, 60) | steady(50, 60, 64) | steady(5, 64, 200), length=200)
IDLE_AFTER_BURST = dict(rows=steady(5, 0, 10), length=120)

# (trace, extra arguments, [(tick second, {field: expected})])
TICK_CASES = [
    pytest.param(STEP, {}, [
        # t = 10: desired was 0 and the SKS is in Proxy (EBC 10 - 211 < 0): the load pokes.
        # Panic window 70/6 = 11.67 -> ceil(11.67/7) = 2 for 1 ready: 2/1 >= 2, panic.
        (10, dict(desired=2, ready=1, panic_mode=True, poke=True, mode="Proxy")),
        (12, dict(desired=5, ready=2, panic_mode=True)),     # 3 x 70 / 6 = 35 -> 5
        (14, dict(desired=9, ready=5, panic_mode=True)),     # 5 x 70 / 6 = 58.3 -> 9
        (16, dict(desired=10, ready=9, panic_mode=True)),    # 70 / 7 = 10
        (18, dict(desired=10, replicas=10, ready=10)),
    ], id="step-0-to-70-with-target-7-reaches-10-pods"),
    pytest.param(SPIKE, {}, [
        (0, dict(desired=1, ready=0, poke=True, panic_mode=False, pa="Activating")),  # 5/7 -> 1
        (2, dict(desired=1, ready=1, pa="Active")),
        # panic window (5 x 5 + 50) / 6 = 12.5 -> 2 pods for 1 ready: over the threshold.
        (60, dict(desired=2, ready=1, panic_mode=True, poke=False)),
        (62, dict(desired=4, ready=2, panic_mode=True)),     # (15 + 150) / 6 = 27.5 -> 4; 4/2 >= 2
        (64, dict(desired=5, ready=4, panic_mode=True)),     # 210 / 6 = 35 -> 5; 5/4 < 2 but in panic
        (66, dict(desired=5, panic_mode=True)),              # wants 4 now; panic never scales down
        (122, dict(desired=5, panic_mode=True)),             # last over tick 62: 122 is not > 62 + 60
        (124, dict(desired=2, panic_mode=False)),            # stable 5 -> 1, halving floor 5 // 2 = 2
    ], id="spike-panics-and-holds-for-a-stable-window"),
    pytest.param(IDLE_AFTER_BURST, {"annotations": {"autoscaling.knative.dev/target-burst-capacity": "0"}}, [
        # TBC 0: the activator leaves the path while a pod is up.
        (2, dict(desired=1, ready=1, mode="Serve", pa="Active")),
        (68, dict(desired=1, mode="Serve")),                 # bucket 9 (load) still in the 60 s window
        # Window empty of load; active 68 s >= 60 s: Inactive and Proxy, the pod stays.
        (70, dict(desired=0, replicas=1, ready=1, mode="Proxy", pa="Inactive")),
        (98, dict(replicas=1, ready=1)),                     # inactive 28 s < grace 30 s
        (100, dict(replicas=0, ready=1)),                    # grace over: scaled to zero
        (102, dict(replicas=0, ready=0)),
    ], id="scale-to-zero-after-stable-window-plus-grace"),
    pytest.param(IDLE_AFTER_BURST, {}, [
        # TBC 211: EBC is negative from the start, the activator has been in the path for
        # 70 s > grace, so the pod goes as soon as the PA is Inactive.
        (70, dict(desired=0, replicas=0, ready=1, mode="Proxy", pa="Inactive")),
        (72, dict(replicas=0, ready=0)),
    ], id="scale-to-zero-fast-path-when-activator-already-in-path"),
    pytest.param(dict(rows=steady(5, 0, 10) | steady(5, 200, 205), length=260), {}, [
        (200, dict(desired=1, replicas=1, ready=0, poke=True, pa="Activating")),  # cold start
        (202, dict(desired=1, ready=1, pa="Active")),
    ], id="load-after-zero-pokes-and-starts-a-pod"),
    pytest.param(dict(rows={}, length=100), {"annotations": {"min-scale": "2"}}, [
        (2, dict(replicas=2, ready=2)),                      # the initial scale lifted to min-scale
        # No load, but the decider may at most halve 2 ready pods: floor(2 / 2) = 1;
        # min-scale then holds the replicas at 2.
        (98, dict(desired=1, replicas=2, ready=2, pa="Active")),
    ], id="min-scale-keeps-pods-through-idle"),
    pytest.param(STEP, {"annotations": {"max-scale": "4"}}, [
        (16, dict(desired=10, replicas=4)),                  # max-scale applies after the decider
        (18, dict(replicas=4, ready=4)),
    ], id="max-scale-caps-replicas-not-desired"),
    pytest.param(dict(rows=steady(300, 0, 30), length=40), {"metric": "rps",
                                                            "annotations": {"metric": "rps"}}, [
        (0, dict(desired=3, poke=True)),                     # 300 rps / (200 x 0.7) = 2.14 -> 3
        (10, dict(desired=3, ready=3)),
    ], id="rps-trace-scales-on-rps-target"),
]


@pytest.mark.parametrize(("trace", "extra", "expected"), TICK_CASES)
def test_replay_ticks(trace, extra, expected):
    result = run(trace["rows"], trace["length"], **{k: v for k, v in extra.items() if k != "annotations"},
                 annotations=_annotations(extra.get("annotations")))
    by_t = {tick.t: tick for tick in result.ticks}
    for t, fields in expected:
        assert t in by_t, f"no decider run at t={t}"
        got = {name: getattr(by_t[t], name) for name in fields}
        assert got == fields, f"at t={t}"


def _annotations(anns):
    if anns is None:
        return None
    return {k if "/" in k else "autoscaling.knative.dev/" + k: v for k, v in anns.items()}


# (trace, annotations, options, expected totals)
TOTALS_CASES = [
    pytest.param(
        # t = 0 pokes: 20/7 -> 3 pods, ready from t = 2. Seconds 0 and 1 have 20 waiting on
        # 0 pods (2 s under, 40 request-seconds); t = 2..5 have 3 pods and no load.
        dict(rows={0: 20, 1: 20}, length=6), None, {},
        ReplayTotals(seconds=6, pod_seconds=12, under_provisioned_seconds=2, queued_requests=40.0,
                     cold_starts=1, panic_seconds=6, max_ready_pods=3),
        id="cold-start-burst"),
    pytest.param(
        # Step: 1 pod at 70 for t = 10, 11 (60 + 60), 2 for 12, 13 (50 + 50), 5 for 14, 15
        # (20 + 20). Ready pods: 1 x 10 s (t = 2..11), 2 x 2, 5 x 2, 9 x 2, 10 x 57 (18..74);
        # panic (entered at 10, last over at 12: 5/2) ends at 74, then the decider asks
        # 5, 4, 3, 2, 1, 0 at t = 74, 76, 82, 88, 94, 100, each serving from the next
        # second: 5 x 2, 4 x 6, 3 x 6, 2 x 6, 1 x 6.
        STEP, None, {},
        ReplayTotals(seconds=120, pod_seconds=10 + 4 + 10 + 18 + 570 + 10 + 24 + 18 + 12 + 6,
                     under_provisioned_seconds=6,
                     queued_requests=260.0, cold_starts=0, panic_seconds=64, max_ready_pods=10),
        id="step-queues-only-while-pods-start"),
    pytest.param(
        # Two bursts of 5, each from zero pods: t = 0, 1 and 200, 201 wait (5 each).
        dict(rows=steady(5, 0, 10) | steady(5, 200, 205), length=260), None, {},
        ReplayTotals(seconds=260, pod_seconds=(70 - 1) + (260 - 202), under_provisioned_seconds=4,
                     queued_requests=20.0, cold_starts=2, panic_seconds=0, max_ready_pods=1),
        id="two-cold-starts-across-an-idle-gap"),
    pytest.param(
        # rps: capacity is the rps total (200), 300 rps on 0 pods for 2 s = 600 requests.
        dict(rows=steady(300, 0, 30), length=40), {"metric": "rps"}, {},
        ReplayTotals(seconds=40, pod_seconds=3 * 38, under_provisioned_seconds=2, queued_requests=600.0,
                     cold_starts=1, panic_seconds=40, max_ready_pods=3),
        id="rps-queues-requests-over-capacity"),
]


@pytest.mark.parametrize(("trace", "annotations", "options", "expected"), TOTALS_CASES)
def test_replay_totals(trace, annotations, options, expected):
    metric = (annotations or {}).get("metric", "concurrency")
    result = run(trace["rows"], trace["length"], annotations=_annotations(annotations), metric=metric, **options)
    assert result.totals == expected


# (CSV text, expected metric, expected values)
GOOD_TRACES = [
    pytest.param("t,concurrency\n0,1\n1,2.5\n", "concurrency", (1.0, 2.5), id="every-second"),
    pytest.param("t,rps\n2,10\n5,1e2\n", "rps", (0, 0, 10, 0, 0, 100), id="gaps-are-zero"),
    pytest.param("\ufeffT , Concurrency\r\n 0 , 3 \r\n\r\n", "concurrency", (3.0,), id="bom-crlf-spaces-blank"),
    pytest.param("second,concurrency\n0,.5\n", "concurrency", (0.5,), id="second-header-alias"),
]


@pytest.mark.parametrize(("text", "metric", "values"), GOOD_TRACES)
def test_parse_trace_reads_rows(text, metric, values):
    assert parse_trace(text) == parse_trace(text)  # deterministic, comparable
    trace = parse_trace(text)
    assert (trace.metric, trace.values) == (metric, tuple(float(v) for v in values))


# (CSV text, line reported, words in the reason)
BAD_TRACES = [
    pytest.param("", 1, "header", id="empty-file"),
    pytest.param("t,latency\n0,1\n", 1, "'t,latency'", id="unknown-metric-header"),
    pytest.param("0,1\n1,2\n", 1, "header", id="no-header"),
    pytest.param("t,concurrency\n", 1, "no data rows", id="header-only"),
    pytest.param("t,concurrency\n0,1\n1,2,3\n", 3, "3 columns", id="three-columns"),
    pytest.param("t,concurrency\n0,1\n1.5,2\n", 3, "second '1.5' is not a whole number", id="fractional-second"),
    pytest.param("t,concurrency\n-1,2\n", 2, "second '-1'", id="negative-second"),
    pytest.param("t,concurrency\n0,1\n4,1\n4,2\n", 4, "second 4 is not after second 4", id="duplicate-second"),
    pytest.param("t,concurrency\n5,1\n3,1\n", 3, "second 3 is not after second 5", id="decreasing-second"),
    pytest.param("t,concurrency\n0,-2\n", 2, "value '-2' is not a number >= 0", id="negative-value"),
    pytest.param("t,concurrency\n0,nan\n", 2, "value 'nan'", id="nan-value"),
    pytest.param("t,concurrency\n0,inf\n", 2, "value 'inf'", id="infinite-value"),
    pytest.param("t,concurrency\n0,\n", 2, "value ''", id="missing-value"),
    pytest.param("t,concurrency\n604800,1\n", 2, "beyond", id="longer-than-a-week"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD_TRACES)
def test_parse_trace_names_line_and_reason(text, line, words):
    with pytest.raises(TraceError) as caught:
        parse_trace(text, name="load.csv")
    assert caught.value.line == line
    assert caught.value.key == f"load.csv line {line}"
    assert words in caught.value.reason


def test_pods_serve_after_start_delay_and_leave_after_drain():
    # Burst of 5 on 0 pods at t = 0: desired 1 (the initial pod) ready at t = delay. The
    # fast path removes it at t = 70; with drain 5 it serves through t = 75.
    slow = run(IDLE_AFTER_BURST["rows"], 120, pod_start_delay_s=7, drain_s=5)
    assert slow.ready[6] == 0 and slow.ready[7] == 1
    assert slow.replicas[70] == 0
    assert slow.ready[75] == 1 and slow.ready[76] == 0
    quick = run(IDLE_AFTER_BURST["rows"], 120)
    assert quick.ready[70] == 1 and quick.ready[71] == 0
    assert slow.totals.pod_seconds == quick.totals.pod_seconds == 69    # t = 7..75 and t = 2..70
    assert slow.totals.under_provisioned_seconds == 7                   # t = 0..6 wait for the pod


def test_scale_down_removes_starting_pods_before_ready_ones():
    # Start delay 100 s. A 2 s burst of 70 at t = 10 on 0 ready pods asks for 10 (nine
    # more than the initial pod, which is due at t = 100). At t = 100 that pod is ready,
    # the windows hold only its zero: desired 0, and the PA, Active now, keeps one pod.
    # The nine still starting are removed, not the ready one, so ready stays 1 after
    # t = 110, when they would have started.
    result = run(steady(70, 10, 12), 120, pod_start_delay_s=100)
    assert result.replicas[99] == 10 and result.replicas[100] == 1
    assert result.ready[99] == 0 and set(result.ready[100:]) == {1}


# (annotations, containerConcurrency, offending key, words in the reason)
BAD_SETUPS = [
    pytest.param({"autoscaling.knative.dev/targt": "5"}, 0, "autoscaling.knative.dev/targt",
                 "not an annotation the autoscaler reads", id="typo-in-annotation-key"),
    pytest.param({"autoscaling.knative.dev/target": "0"}, 0, "autoscaling.knative.dev/target",
                 "at least 0.01", id="target-below-minimum"),
    pytest.param({"autoscaling.knative.dev/window": "2s"}, 0, "autoscaling.knative.dev/window",
                 "6s <= 2s", id="window-too-short"),
    pytest.param({"autoscaling.knative.dev/minScale": "5", "autoscaling.knative.dev/max-scale": "2"}, 0,
                 "autoscaling.knative.dev/max-scale", "less than min-scale", id="max-below-min-legacy-spelling"),
    pytest.param({"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}, 0,
                 "autoscaling.knative.dev/class", "KPA", id="hpa-class-refused"),
    pytest.param({}, 1001, "containerConcurrency", "[0, 1000]", id="cc-over-limit"),
]


@pytest.mark.parametrize(("annotations", "cc", "key", "words"), BAD_SETUPS)
def test_bad_revision_setup_names_the_key(annotations, cc, key, words):
    with pytest.raises(ReplayError) as caught:
        resolve_revision(CONFIG, annotations, container_concurrency=cc)
    assert caught.value.key == key
    assert words in caught.value.reason


@pytest.mark.parametrize(("options", "flag"), [
    pytest.param({"tick_interval_s": 0}, "--tick-interval", id="zero-tick"),
    pytest.param({"pod_start_delay_s": 0}, "--pod-start-delay", id="zero-start-delay"),
    pytest.param({"drain_s": -1}, "--drain", id="negative-drain"),
    pytest.param({"tick_interval_s": 1.5}, "--tick-interval", id="fractional-tick"),
])
def test_bad_options_name_the_flag(options, flag):
    with pytest.raises(ReplayError) as caught:
        ReplayOptions(**options)
    assert caught.value.key == flag


def test_trace_metric_must_match_the_spec():
    setup = resolve_revision(CONFIG, {})
    with pytest.raises(ReplayError) as caught:
        replay(parse_trace("t,rps\n0,5\n"), setup)
    assert caught.value.key == "autoscaling.knative.dev/metric"
    assert "measures rps but the revision scales on concurrency" in caught.value.reason


def test_tick_interval_sets_when_the_decider_runs():
    result = run({}, 20, tick_interval_s=5)
    assert [tick.t for tick in result.ticks] == [5, 10, 15]


def test_json_lists_the_documented_fields():
    data = run(STEP["rows"], STEP["length"]).to_json()
    assert set(data) == {"spec", "options", "ticks", "totals"}
    assert set(data["ticks"][0]) == {"t", "stable", "panic", "desired", "replicas", "ready", "panic_mode",
                                     "mode", "pa", "poke"}
    assert set(data["totals"]) == {"seconds", "pod_seconds", "under_provisioned_seconds", "queued_requests",
                                   "queued_unit", "cold_starts", "panic_seconds", "max_ready_pods"}
    assert data["spec"]["target"] == 7.0 and data["options"]["capacity_per_pod"] == 10.0
