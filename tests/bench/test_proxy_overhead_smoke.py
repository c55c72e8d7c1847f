"""The pure parts of bench/proxy_overhead.py: hey's summary, HAProxy's config, medians and ratios."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "proxy_overhead.py"
_SPEC = importlib.util.spec_from_file_location("bench_proxy_overhead", _PATH)
po = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = po  # dataclasses look their module up while the class is built
_SPEC.loader.exec_module(po)

# Trimmed from real hey 0.1.4 runs: a saturated run, a run where every dial failed, and
# a run with so few responses that hey printed "0% in" for the percentiles it could not fill.
HEY_OK = """
Summary:
  Total:\t5.0007 secs
  Slowest:\t0.0128 secs
  Fastest:\t0.0000 secs
  Average:\t0.0010 secs
  Requests/sec:\t48547.4426

  Total data:\t3156010 bytes
  Size/request:\t13 bytes

Response time histogram:
  0.000 [1]\t|
  0.001 [166631]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■

Latency distribution:
  10% in 0.0002 secs
  25% in 0.0005 secs
  50% in 0.0010 secs
  75% in 0.0014 secs
  90% in 0.0018 secs
  95% in 0.0022 secs
  99% in 0.0031 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0000 secs, 0.0000 secs, 0.0128 secs
  resp wait:\t0.0010 secs, 0.0000 secs, 0.0107 secs

Status code distribution:
  [200]\t242760 responses
  [503]\t17 responses
"""
HEY_REFUSED = """
Summary:
  Total:\t0.0006 secs
  Slowest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t9401.4121


Response time histogram:


Latency distribution:

Details (average, fastest, slowest):
  DNS+dialup:\t NaN secs, 0.0000 secs, 0.0000 secs

Status code distribution:

Error distribution:
  [6]\tGet "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused
  [2]\tGet "http://127.0.0.1:1/": EOF
"""
HEY_FEW = """
Summary:
  Total:\t15.0298 secs
  Requests/sec:\t0.6653

Latency distribution:
  10% in 3.0054 secs
  50% in 3.0060 secs
  90% in 3.0070 secs
  0% in 0.0000 secs
  0% in 0.0000 secs

Status code distribution:
  [503]\t10 responses
"""

HEY_CASES = [
    pytest.param(HEY_OK, (48547.4426, 5.0007, 0.0010, 0.0018, 0.0031, {200: 242760, 503: 17}, {},
                          242777, 17), id="saturated-run-with-some-503"),
    pytest.param(HEY_REFUSED, (9401.4121, 0.0006, None, None, None, {},
                               {'Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: '
                                'connection refused': 6, 'Get "http://127.0.0.1:1/": EOF': 2},
                               0, 0), id="every-dial-refused"),
    pytest.param(HEY_FEW, (0.6653, 15.0298, 3.0060, 3.0070, None, {503: 10}, {}, 10, 10),
                 id="too-few-responses-for-p99"),
]


@pytest.mark.parametrize(("text", "want"), HEY_CASES)
def test_parse_hey_reads_rate_percentiles_statuses_and_errors(text, want):
    res = po.parse_hey(text)
    got = (res.requests_per_s, res.total_s, res.p50_s, res.p90_s, res.p99_s, res.status_counts,
           res.errors, res.responses, res.non_200)
    assert got == want


def test_parse_hey_rejects_text_that_is_not_a_summary():
    with pytest.raises(ValueError, match="not a hey summary"):
        po.parse_hey("dial tcp: connection refused\n")


@pytest.mark.parametrize(("cc", "server_line"), [
    pytest.param(0, "    server app 127.0.0.1:9001", id="cc0-no-limit"),
    pytest.param(10, "    server app 127.0.0.1:9001 maxconn 10", id="cc10-maxconn-10"),
])
def test_haproxy_config_limits_concurrency_like_the_queue_proxy(cc, server_line):
    lines = po.render_haproxy_config(8012, 9001, cc).splitlines()
    assert server_line in lines
    assert "    nbthread 1" in lines
    assert "    bind 127.0.0.1:8012" in lines


@pytest.mark.parametrize(("mode", "cpus", "want"), [
    pytest.param("full", 1, ["hey", "-z", "10s", "-c", "50", "-cpus", "1", "U"], id="full-pinned"),
    pytest.param("1000rps", None, ["hey", "-z", "10s", "-c", "10", "-q", "100", "U"],
                 id="1000rps-is-10-workers-at-100"),
    pytest.param("250rps", None, ["hey", "-z", "10s", "-c", "10", "-q", "25", "U"], id="250rps"),
])
def test_hey_argv_per_mode(mode, cpus, want):
    rate = int(mode[:-3]) if mode.endswith("rps") else 0
    assert po.hey_argv("U", mode, 10.0, 50, rate, cpus) == want


def _run(target, rnd, rps, p50, p99, cpu=None, rss=None, non_200=0, errors=None):
    return {"cc": 10, "mode": "full", "round": rnd, "target": target, "requests_per_s": rps,
            "p50_s": p50, "p90_s": p50, "p99_s": p99, "cpu_s_per_10k": cpu,
            "sys_share": cpu and cpu / 2, "peak_rss_kib": rss, "non_200": non_200,
            "errors": errors or {}}


def test_summarize_takes_medians_then_compares_with_direct_and_haproxy():
    runs = [
        _run("direct", 1, 30000, 0.0010, 0.0030), _run("surge", 1, 9000, 0.0050, 0.0100, 0.6, 40000),
        _run("haproxy", 1, 20000, 0.0020, 0.0060, 0.2, 15000),
        _run("direct", 2, 32000, 0.0012, 0.0032), _run("surge", 2, 8000, 0.0060, 0.0300, 0.8, 42000,
                                                       non_200=3, errors={"EOF": 1}),
        _run("haproxy", 2, 22000, 0.0020, 0.0080, 0.3, 15000),
        _run("direct", 3, 31000, 0.0011, 0.0031), _run("surge", 3, 10000, 0.0040, 0.0110, 0.7, 41000),
        _run("haproxy", 3, 21000, 0.0020, 0.0070, 0.4, 15000),
    ]
    rows = {r["target"]: r for r in po.summarize(runs)}
    assert [r["target"] for r in po.summarize(runs)] == ["direct", "surge", "haproxy"]
    surge = rows["surge"]
    assert surge["requests_per_s"] == 9000 and surge["p50_s"] == 0.0050 and surge["p99_s"] == 0.0110
    assert surge["added_p50_s"] == pytest.approx(0.0050 - 0.0011)
    assert surge["added_p99_s"] == pytest.approx(0.0110 - 0.0031)
    assert surge["throughput_vs_haproxy"] == pytest.approx(9000 / 21000)
    assert surge["p50_vs_haproxy"] == pytest.approx(2.5)
    assert surge["p99_vs_haproxy"] == pytest.approx(0.0110 / 0.0070)
    assert surge["cpu_s_per_10k"] == 0.7 and surge["peak_rss_kib"] == 42000
    assert surge["sys_share"] == 0.35
    assert (surge["non_200"], surge["errors"], surge["rounds"]) == (3, 1, 3)
    assert rows["direct"]["cpu_s_per_10k"] is None and rows["direct"]["peak_rss_kib"] is None
    assert rows["haproxy"]["throughput_vs_haproxy"] == 1.0


def test_summarize_without_haproxy_leaves_the_ratios_empty():
    rows = po.summarize([_run("direct", 1, 30000, 0.001, 0.003), _run("surge", 1, 9000, 0.005, 0.01)])
    assert rows[1]["throughput_vs_haproxy"] is None and rows[1]["added_p50_s"] == pytest.approx(0.004)


@pytest.mark.parametrize(("cpu_s", "requests", "want"), [
    pytest.param(2.5, 250_000, 0.1, id="per-10k"),
    pytest.param(1.0, 0, None, id="nothing-served"),
])
def test_per_10k(cpu_s, requests, want):
    assert po.per_10k(cpu_s, requests) == want


def test_collapsed_stacks_rank_functions_by_own_samples_whatever_the_line():
    text = ("main (a.py:1);loop (b.py:2);parse (c.py:3) 40\n"
            "main (a.py:1);loop (b.py:2);parse (c.py:9) 20\n"
            "main (a.py:1);loop (b.py:2);write (d.py:4) 30\n"
            "main (a.py:1);loop (b.py:5) 10\n")
    assert po.summarize_collapsed(text, top=3) == [
        ("parse (c.py)", 60.0, 60.0), ("write (d.py)", 30.0, 30.0), ("loop (b.py)", 10.0, 100.0)]
    assert po.summarize_collapsed("", top=2) == []
