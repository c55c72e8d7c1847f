"""Go's string syntaxes for durations, booleans and numbers, as Knative reads them.

Knative parses `config-autoscaler` values and autoscaling annotations with Go's
`time.ParseDuration` and `strconv.ParseBool/ParseFloat/ParseInt`. Python's own
parsers accept more (`float(" 1 ")`, `int("1_0")`, Unicode digits) and less (`"1m30s"`),
so a value Knative rejects could slip through or the other way round. These functions
accept exactly Go's syntax and raise `ValueError` otherwise.

Durations are returned as integer nanoseconds, Go's `time.Duration`, so that the
"whole seconds" rules are exact: "61984ms" is 61_984_000_000 ns, not 61.984 s
compared with float rounding. `format_duration` prints them back the way Go does
("1h0m0s", "6s", "500ms"), for error messages that read like Knative's.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "NANOS_PER_SECOND",
    "format_duration",
    "parse_bool",
    "parse_duration",
    "parse_duration_ns",
    "parse_float",
    "parse_int",
]

NANOS_PER_SECOND = 1_000_000_000
_MAX_DURATION = (1 << 63) - 1  # time.Duration is an int64 of nanoseconds

# time.ParseDuration's units; both micro signs (U+00B5, U+03BC) are accepted.
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": NANOS_PER_SECOND,
    "m": 60 * NANOS_PER_SECOND,
    "h": 3600 * NANOS_PER_SECOND,
}
# One "[0-9]*(.[0-9]*)?unit" element of a Go duration; the unit is whatever runs up to
# the next digit or dot, so "1 s" has the unknown unit " s", as in Go.
_ELEMENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# strconv.ParseFloat: decimal with optional exponent, or hex with a mandatory p exponent;
# underscores only between digits (checked separately, like Go's underscoreOK).
_DECIMAL = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?", re.ASCII)
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+")
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def parse_duration_ns(text: str) -> int:
    """Parse Go duration syntax ("1m30s", "500ms", "-5s", "0") into nanoseconds."""
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _ELEMENT.match(s, pos)
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}")
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += _fraction_ns(frac, scale)
        total += value
        if total > (1 << 63):
            raise ValueError(f"invalid duration {text!r}: out of range")
        pos = m.end()
    if negative:
        return -total
    if total > _MAX_DURATION:
        raise ValueError(f"invalid duration {text!r}: out of range")
    return total


def _fraction_ns(digits: str, scale: int) -> int:
    """The nanoseconds of ".digits" of a unit, computed as Go's ParseDuration does."""
    # Go keeps the digits in an int64 (dropping those past its precision) and scales
    # with float64 arithmetic, truncating; copying that keeps odd inputs bit-equal.
    fraction, divisor, overflow = 0, 1.0, False
    for ch in digits:
        if overflow or fraction > _MAX_DURATION // 10:
            overflow = True
            continue
        fraction, divisor = fraction * 10 + int(ch), divisor * 10
    return int(float(fraction) * (float(scale) / divisor))


def parse_duration(text: str) -> float:
    """Parse Go duration syntax into float seconds."""
    return parse_duration_ns(text) / NANOS_PER_SECOND


def format_duration(ns: int) -> str:
    """Print nanoseconds the way Go's Duration.String does: "1h0m0s", "6s", "1.5ms"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < NANOS_PER_SECOND:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    seconds = _decimal(ns % (60 * NANOS_PER_SECOND), NANOS_PER_SECOND) + "s"
    minutes, hours = (ns // (60 * NANOS_PER_SECOND)) % 60, ns // (3600 * NANOS_PER_SECOND)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _decimal(value: int, size: int) -> str:
    """`value / size` written without trailing zeros ("1.5", "6", "0.25")."""
    whole, rest = divmod(value, size)
    if not rest:
        return str(whole)
    width = len(str(size)) - 1
    return f"{whole}.{rest:0{width}d}".rstrip("0")


def parse_bool(text: str) -> bool:
    """Parse strconv.ParseBool syntax: 1, t, T, TRUE, true, True and their false twins."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}")


def parse_float(text: str) -> float:
    """Parse strconv.ParseFloat syntax; NaN and infinities are refused (no rule can hold them)."""
    if _SPECIAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a finite number")
    hexadecimal = _HEX.fullmatch(text)
    if not (hexadecimal or _DECIMAL.fullmatch(text)):
        raise ValueError(f"invalid number {text!r}")
    if "_" in text and not _underscores_ok(text, hexadecimal=bool(hexadecimal)):
        raise ValueError(f"invalid number {text!r}")
    plain = text.replace("_", "")
    value = float.fromhex(plain) if hexadecimal else float(plain)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is out of the float64 range")
    return value


def _underscores_ok(text: str, *, hexadecimal: bool) -> bool:
    """Go's rule for "_" in number literals: only between two digits (a 0x prefix counts)."""
    body = text.lstrip("+-")
    digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
    previous = "^"  # ^ start, 0 digit or base prefix, _ underscore, ! anything else
    if hexadecimal:
        body, previous = body[2:], "0"
    for ch in body:
        if ch in digits:
            previous = "0"
        elif ch == "_":
            if previous != "0":
                return False
            previous = "_"
        elif previous == "_":
            return False
        else:
            previous = "!"
    return previous != "_"


def parse_int(text: str, bits: int = 32) -> int:
    """Parse strconv.ParseInt(text, 10, bits) syntax: optional sign, ASCII digits, in range."""
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"invalid integer {text!r}")
    value = int(text)
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise ValueError(f"{text!r} is out of the int{bits} range")
    return value
