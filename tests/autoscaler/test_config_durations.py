"""Go syntaxes: time.ParseDuration, strconv.ParseBool/ParseFloat/ParseInt, Duration.String."""

from __future__ import annotations

import pytest

from autoscaler.durations import (
    format_duration,
    parse_bool,
    parse_duration,
    parse_duration_ns,
    parse_float,
    parse_int,
)

S = 1_000_000_000

DURATIONS = [
    pytest.param("60s", 60 * S, id="seconds"),
    pytest.param("1m30s", 90 * S, id="compound"),
    pytest.param("500ms", 500_000_000, id="milliseconds"),
    pytest.param("1h", 3600 * S, id="hour"),
    pytest.param("0", 0, id="bare-zero"),
    pytest.param("-0", 0, id="negative-bare-zero"),
    pytest.param("+0", 0, id="positive-bare-zero"),
    pytest.param("0s", 0, id="zero-seconds"),
    pytest.param("-5s", -5 * S, id="negative"),
    pytest.param("+5s", 5 * S, id="explicit-plus"),
    pytest.param("-1m23s", -83 * S, id="negative-compound"),
    pytest.param("1.5h", 5400 * S, id="fractional-hours"),
    pytest.param(".5s", S // 2, id="leading-dot"),
    pytest.param("1.s", S, id="trailing-dot"),
    pytest.param("61984ms", 61_984_000_000, id="ms-over-a-minute"),
    pytest.param("1h1s", 3601 * S, id="hour-and-second"),
    pytest.param("1m9s82ms", 69_082_000_000, id="three-units"),
    pytest.param("2m3s", 123 * S, id="knative-retention"),
    pytest.param("3ns", 3, id="nanoseconds"),
    pytest.param("3us", 3_000, id="us"),
    pytest.param("3\u00b5s", 3_000, id="micro-sign"),
    pytest.param("3\u03bcs", 3_000, id="greek-mu"),
    pytest.param("1s1s", 2 * S, id="repeated-unit-adds"),
    pytest.param("0.1s", 100_000_000, id="tenth"),
    pytest.param("9223372036854775807ns", (1 << 63) - 1, id="int64-max"),
    pytest.param("-9223372036854775808ns", -(1 << 63), id="int64-min"),
]


@pytest.mark.parametrize(("text", "ns"), DURATIONS)
def test_parse_duration(text, ns):
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == ns / S


BAD_DURATIONS = [
    pytest.param("", id="empty"),
    pytest.param("-", id="sign-only"),
    pytest.param("60", id="no-unit"),
    pytest.param("0.0", id="zero-with-fraction-needs-unit"),
    pytest.param("s", id="unit-only"),
    pytest.param(".s", id="dot-unit"),
    pytest.param("1 s", id="inner-space"),
    pytest.param(" 1s", id="leading-space"),
    pytest.param("1s ", id="trailing-space"),
    pytest.param("1d", id="days-unknown"),
    pytest.param("1S", id="unit-case-sensitive"),
    pytest.param("1e3s", id="no-exponent"),
    pytest.param("--1s", id="double-sign"),
    pytest.param("1s-1s", id="inner-sign"),
    pytest.param("9223372036854775808ns", id="int64-overflow"),
    pytest.param("3000000h", id="hours-overflow"),
    pytest.param("not a duration", id="words"),
]


@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_bad_duration_raises(text):
    with pytest.raises(ValueError):
        parse_duration_ns(text)


FORMATS = [
    pytest.param(0, "0s", id="zero"),
    pytest.param(6 * S, "6s", id="seconds"),
    pytest.param(3600 * S, "1h0m0s", id="hour"),
    pytest.param(90 * S, "1m30s", id="minute-and-half"),
    pytest.param(61_984_000_000, "1m1.984s", id="fractional-seconds"),
    pytest.param(500_000_000, "500ms", id="milliseconds"),
    pytest.param(1_500, "1.5\u00b5s", id="microseconds"),
    pytest.param(7, "7ns", id="nanoseconds"),
    pytest.param(-42 * S, "-42s", id="negative"),
    pytest.param(1_314_000 * S, "365h0m0s", id="many-hours"),
]


@pytest.mark.parametrize(("ns", "text"), FORMATS)
def test_format_duration_like_go(ns, text):
    assert format_duration(ns) == text
    assert parse_duration_ns(text) == ns


BOOLS = [pytest.param(t, True, id=f"true-{t}") for t in ("1", "t", "T", "TRUE", "true", "True")] + [
    pytest.param(t, False, id=f"false-{t}") for t in ("0", "f", "F", "FALSE", "false", "False")
]


@pytest.mark.parametrize(("text", "want"), BOOLS)
def test_parse_bool(text, want):
    assert parse_bool(text) is want


@pytest.mark.parametrize("text", ["", "yes", "no", "tRuE", "on", " true", "2", "truthy"])
def test_bad_bool_raises(text):
    with pytest.raises(ValueError):
        parse_bool(text)


FLOATS = [
    pytest.param("1", 1.0, id="integer"),
    pytest.param("-42", -42.0, id="negative"),
    pytest.param("+3.5", 3.5, id="plus"),
    pytest.param("0.71", 0.71, id="fraction"),
    pytest.param(".5", 0.5, id="leading-dot"),
    pytest.param("5.", 5.0, id="trailing-dot"),
    pytest.param("1e3", 1000.0, id="exponent"),
    pytest.param("1E-2", 0.01, id="negative-exponent"),
    pytest.param("1_000.5", 1000.5, id="underscore-between-digits"),
    pytest.param("0x1p-2", 0.25, id="hex-float"),
]


@pytest.mark.parametrize(("text", "want"), FLOATS)
def test_parse_float(text, want):
    assert parse_float(text) == want


BAD_FLOATS = ["", ".", "+", "e5", "1e", "1,5", " 1", "1 ", "abc", "_1", "1_", "1__0", "1e_5", "0x10",
              "NaN", "inf", "-Inf", "+infinity", "1e400", "\u0663"]


@pytest.mark.parametrize("text", BAD_FLOATS)
def test_bad_float_raises(text):
    with pytest.raises(ValueError):
        parse_float(text)


INTS = [
    pytest.param("1", 32, 1, id="one"),
    pytest.param("-1", 32, -1, id="negative"),
    pytest.param("+5", 32, 5, id="plus"),
    pytest.param("007", 32, 7, id="leading-zeros-decimal"),
    pytest.param("2147483647", 32, 2147483647, id="int32-max"),
    pytest.param("-2147483648", 32, -2147483648, id="int32-min"),
    pytest.param("2147483648", 64, 2147483648, id="int64"),
]


@pytest.mark.parametrize(("text", "bits", "want"), INTS)
def test_parse_int(text, bits, want):
    assert parse_int(text, bits) == want


@pytest.mark.parametrize("text", ["", "2147483648", "-2147483649", "1.0", "1e3", "1_0", " 1", "0x10", "\u0663"])
def test_bad_int32_raises(text):
    with pytest.raises(ValueError):
        parse_int(text)
