"""Knative's aggregation windows: linear and weighted bucket rings, and the max window.

Theory of operation (knative/serving pkg/autoscaler/aggregation/bucketing.go)
-----------------------------------------------------------------------------
Time is cut into buckets of `granularity` seconds; bucket k covers [k*g, (k+1)*g).
A window of W seconds is a ring of n = ceil(W/g) bucket sums; bucket k lives in slot
k mod n. Besides the ring a window remembers `first` (the bucket where the current run
of data began) and `last` (the newest bucket written). Every time is truncated to its
bucket before anything else, so only whole buckets are compared.

Write rules for value v at bucket k:
  * k <= last - W/g: too old for the window, ignored.
  * nothing written yet, or k - last >= W/g (a whole window of silence): clear the
    ring and start a new run, first = last = k.
  * last < k: clear the slots of buckets last+1 .. k (they hold data one lap old),
    last = k.  An older k inside the window only moves `first` back if needed.
  * then slot k mod n += v.
Invariant: every slot holds either 0 or the sum for one bucket in (last - n, last].

Reading at bucket k_now with z = k_now - last silent buckets (z <= 0 reads from last):
  * linear: 0 if z >= W/g; else the sum of the n - z newest buckets up to `last`,
    divided by min(last - first + 1, n - z) so a window that is warming up, or has gone
    quiet at its end, is averaged over the buckets that can hold data; rounded to 6
    decimals (half away from zero, Go's math.Round).
  * weighted: 0 if z > W/g; else sum over i < n - z of bucket[last - i] * a*(1-a)^(z+i)
    with a = max(1 - 0.0001^(1/n), 0.2). Not normalised: quiet seconds decay it.
    The arithmetic is Knative's to the last bit: a and the leading weight a*(1-a)^z come
    from a port of Go's math.Pow (`go_pow`), then each older bucket's weight is the
    previous one times (1 - a), in Knative's order of operations.

Worked example, W = 5 s, g = 1 s (n = 5), writes 1, 2, 3, 4, 5 at t = 0..4:
  average(4) = 15/5 = 3.0; average(6): z = 2, buckets 4, 3, 2 remain, sum 12 over
  min(5, 5 - 2) = 3 buckets = 4.0; average(10) = 0 (z = 6 >= 5). A write of 91 at t = 6
  clears slots 5 and 6 (they held t = 0 and t = 1), so average(6) = (3+4+5+91)/5 = 20.6.
  Weighted with n = 5: a = 1 - 0.0001^(1/5) = 0.8415, and at t = 4 the reading is
  5a + 4a(1-a) + 3a(1-a)^2 + ... = 4.81.

The linear reading sums the ring when asked instead of keeping Knative's running total:
the result is exact to the last bit (no drift to round away) and identical to what the
numpy batch store (autoscaler/batch.py) computes, at a cost of n additions per read.

Deliberate differences from Knative: times are float seconds on any scale (Knative uses
Unix seconds); `resize` takes `now` instead of reading the wall clock, and after a
resize it keeps a warming-up window's true `first` when that is newer than the oldest
bucket the old ring could hold (Knative always moves it back to that oldest bucket, which
would average three seconds of data over a whole window).
"""

from __future__ import annotations

import collections
import math

__all__ = [
    "LINEAR",
    "WEIGHTED_EXPONENTIAL",
    "WEIGHTED_EXPONENTIAL_ALT",
    "LinearWindow",
    "MaxWindow",
    "WeightedWindow",
    "bucket_index",
    "decay_weights",
    "go_pow",
    "leading_weight",
    "make_window",
    "normalize_algorithm",
    "round_half_away",
    "smoothing_coefficient",
    "window_span",
]

# Annotation values of autoscaling.knative.dev/metric-aggregation-algorithm
# (pkg/apis/autoscaling/register.go); the camel-case one is Knative's legacy spelling.
LINEAR = "linear"
WEIGHTED_EXPONENTIAL = "weighted-exponential"
WEIGHTED_EXPONENTIAL_ALT = "weightedExponential"

# bucketing.go: the weights of a full window must add up to at least 0.9999, and the
# smoothing coefficient never drops below 0.2 (else long windows become plain averages).
WEIGHT_PRECISION = 0.9999
MIN_SMOOTHING = 0.2
# Knative's `1 - weightPrecision` is Go constant arithmetic, so exactly 0.0001; the float
# subtraction 1.0 - 0.9999 gives 9.999999999998899e-05 and moves alpha by a few ulps.
RESIDUAL_WEIGHT = 1e-4
PRECISION_DIGITS = 6

# How many float ulps below a bucket boundary still count as on it: Go keeps durations in
# integer nanoseconds, so 6.0 s / 0.2 s is exactly 30 there, but 29.999999999999996 here.
_SNAP_ULPS = 4


def bucket_index(now: float, granularity: float) -> int:
    """The bucket number k with k*granularity <= now < (k+1)*granularity."""
    q = now / granularity
    k = math.floor(q)
    if q - k >= 1.0 - _SNAP_ULPS * math.ulp(q):
        k += 1
    return k


def window_span(window: float, granularity: float) -> float:
    """The window's length in buckets (not rounded up), snapped to a whole number if close."""
    if not window > 0:
        raise ValueError(f"window: {window!r} must be > 0 seconds")
    if not granularity > 0:
        raise ValueError(f"granularity: {granularity!r} must be > 0 seconds")
    span = window / granularity
    whole = round(span)
    if abs(span - whole) <= _SNAP_ULPS * math.ulp(span):
        return float(whole)
    return span


def go_pow(x: float, y: float) -> float:
    """x**y computed the way Go's math.Pow does, for finite x > 0 and finite y >= 0.

    Go splits y into whole and fractional parts: x**frac is exp(frac * log(x)) (with the
    fraction moved into (-0.5, 0.5]) and x**whole comes from repeated squaring of x's
    mantissa, which is plain IEEE multiplication and so bit-identical here. The
    exp/log half matches Go wherever the platform's libm rounds as Go's does (Go's own
    result there depends on the CPU: its amd64 Exp takes an FMA path when it can).
    C's pow rounds once instead, and differs from Go in the last bits far more often.
    """
    if y == 0 or x == 1:
        return 1.0
    whole = math.floor(y)
    frac = y - whole
    if frac > 0.5:
        frac -= 1.0
        whole += 1
    a1 = math.exp(frac * math.log(x)) if frac != 0 else 1.0
    ae = 0
    x1, xe = math.frexp(x)
    i = int(whole)
    while i:
        if xe < -(1 << 12) or (1 << 12) < xe:
            ae += xe                              # overflow or underflow: ldexp decides
            break
        if i & 1:
            a1 *= x1
            ae += xe
        x1 *= x1
        xe <<= 1
        if x1 < 0.5:
            x1 += x1
            xe -= 1
        i >>= 1
    try:
        return math.ldexp(a1, ae)
    except OverflowError:
        return math.inf


def smoothing_coefficient(n_buckets: int) -> float:
    """The weighted window's alpha: max(1 - 0.0001^(1/n), 0.2), computed as Knative does."""
    return max(1.0 - go_pow(RESIDUAL_WEIGHT, 1.0 / n_buckets), MIN_SMOOTHING)


def leading_weight(alpha: float, silent_buckets: int) -> float:
    """The weight of the newest bucket after z silent ones: alpha * (1-alpha)^z, Go's way.

    Knative starts from alpha * math.Pow(1 - alpha, z) and then multiplies by (1 - alpha)
    bucket by bucket; building alpha*(1-alpha)^(z+i) by multiplication alone differs
    from it in the last bits once z > 1, so both windows and the batch start here.
    """
    if silent_buckets <= 0:
        return alpha
    return alpha * go_pow(1.0 - alpha, silent_buckets)


def decay_weights(alpha: float, n_buckets: int) -> list[float]:
    """Weights alpha*(1-alpha)^age for ages 0..n-1, built by repeated multiplication."""
    weights, w = [], alpha
    for _ in range(n_buckets):
        weights.append(w)
        w *= 1.0 - alpha
    return weights


def round_half_away(value: float, digits: int = PRECISION_DIGITS) -> float:
    """Round to `digits` decimals, halves away from zero (Go's math.Round(v*p)/p)."""
    p = 10.0**digits
    scaled = value * p
    whole = math.trunc(scaled)
    if abs(scaled - whole) >= 0.5:
        whole += 1 if scaled > 0 else -1
    return whole / p


def normalize_algorithm(algorithm: str) -> str:
    """Knative's spelling of an aggregation algorithm; unknown names mean linear.

    Knative's annotation validation rejects other values, but at runtime its collector
    builds a linear window for anything that is not weighted-exponential; we do the same.
    """
    if algorithm in (WEIGHTED_EXPONENTIAL, WEIGHTED_EXPONENTIAL_ALT):
        return WEIGHTED_EXPONENTIAL
    return LINEAR


class _BucketRing:
    """The ring and Knative's write rules shared by both averaging windows."""

    __slots__ = ("_granularity", "_window", "_span", "_buckets", "_first", "_last")

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        self._span = window_span(window, granularity)
        self._granularity = float(granularity)
        self._window = float(window)
        self._buckets = [0.0] * math.ceil(self._span)
        self._first: int | None = None   # None: no run of data (or unknown after resize)
        self._last: int | None = None    # None: never written

    @property
    def num_buckets(self) -> int:
        """Slots in the ring: ceil(window / granularity)."""
        return len(self._buckets)

    @property
    def window(self) -> float:
        """The window length in seconds."""
        return self._window

    @property
    def granularity(self) -> float:
        """The bucket width in seconds."""
        return self._granularity

    def record(self, now: float, value: float) -> None:
        """Add `value` into the bucket holding `now`, applying Knative's write rules."""
        k = bucket_index(now, self._granularity)
        last, n = self._last, len(self._buckets)
        if last is None:
            self._restart(k)
        elif k != last:
            if k - last <= -self._span:
                return                                   # a window older than last
            if self._first is None or self._first > k:
                self._first = k
            if k > last:
                if k - last >= self._span:
                    self._restart(k)
                else:
                    for j in range(last + 1, k + 1):     # one lap old: drop it
                        self._buckets[j % n] = 0.0
                    self._last = k
        self._buckets[k % n] += value

    def _restart(self, k: int) -> None:
        self._buckets = [0.0] * len(self._buckets)
        self._first = self._last = k

    def is_empty(self, now: float) -> bool:
        """True if nothing was written for longer than the window."""
        if self._last is None:
            return True
        return bucket_index(now, self._granularity) - self._last > self._span

    def _silence(self, now: float) -> int | None:
        """z = buckets from last write to now (0 if now is not after it); None if empty."""
        if self._last is None:
            return None
        z = bucket_index(now, self._granularity) - self._last
        return None if z > self._span else max(z, 0)

    def buckets(self, now: float) -> list[tuple[float, float]]:
        """Oldest first, (bucket start, sum) of the non-zero buckets inside the window."""
        z = self._silence(now)
        if z is None:
            return []
        last, n, g = self._last, len(self._buckets), self._granularity
        out = []
        for i in range(n - z - 1, -1, -1):
            v = self._buckets[(last - i) % n]
            if v != 0.0:
                out.append(((last - i) * g, v))
        return out

    def resize(self, window: float, now: float) -> None:
        """Change the window length, keeping the most recent buckets (O(n); rare)."""
        if window == self._window:
            return
        span = window_span(window, self._granularity)
        old, last = self._buckets, self._last
        new = [0.0] * math.ceil(span)
        fresh = last is not None and bucket_index(now, self._granularity) - last <= self._span
        if fresh:
            for i in range(min(len(new), len(old))):
                new[(last - i) % len(new)] = old[(last - i) % len(old)]
            # The old ring held at most len(old) buckets of the run; a run that began
            # later (still warming up) keeps its true start.
            oldest = last - (len(old) - 1)
            self._first = oldest if self._first is None else max(self._first, oldest)
        else:
            self._first = None
        self._buckets, self._span, self._window = new, span, float(window)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(window={self._window}, granularity="
                f"{self._granularity}, first={self._first}, last={self._last})")


class LinearWindow(_BucketRing):
    """Knative's default window: the plain average of the buckets that can hold data."""

    __slots__ = ()

    def average(self, now: float) -> float:
        """Average per bucket at `now`, over a partial window while warming up or quiet."""
        if self._last is None:
            return 0.0
        z = bucket_index(now, self._granularity) - self._last
        if z >= self._span:
            return 0.0
        z = max(z, 0)
        last, n = self._last, len(self._buckets)
        total = 0.0
        for i in range(n - z):                    # newest first, as the batch store adds
            total += self._buckets[(last - i) % n]
        held = n if self._first is None else last - self._first + 1
        return round_half_away(total / min(held, n - z))


class WeightedWindow(_BucketRing):
    """Knative's weighted-exponential window: recent buckets weigh exponentially more."""

    __slots__ = ("_alpha", "_weights")

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        super().__init__(window, granularity)
        self._set_weights()

    def _set_weights(self) -> None:
        self._alpha = smoothing_coefficient(len(self._buckets))
        self._weights = decay_weights(self._alpha, len(self._buckets))

    @property
    def smoothing_coefficient(self) -> float:
        """alpha = max(1 - 0.0001^(1/num_buckets), 0.2)."""
        return self._alpha

    def average(self, now: float) -> float:
        """The un-normalised exponentially weighted sum of the buckets at `now`."""
        z = self._silence(now)
        if z is None:
            return 0.0
        last, n, buckets = self._last, len(self._buckets), self._buckets
        total = 0.0
        if z == 0:
            for i, weight in enumerate(self._weights):  # alpha * (1-alpha)^i, precomputed
                total += buckets[(last - i) % n] * weight
            return total
        weight, decay = leading_weight(self._alpha, z), 1.0 - self._alpha
        for i in range(n - z):
            total += buckets[(last - i) % n] * weight
            weight *= decay
        return total

    def resize(self, window: float, now: float) -> None:
        """Change the window length and recompute alpha for the new bucket count."""
        super().resize(window, now)
        self._set_weights()


def make_window(algorithm: str, window: float,
                granularity: float = 1.0) -> LinearWindow | WeightedWindow:
    """A window for an aggregation algorithm name (unknown names give linear)."""
    if normalize_algorithm(algorithm) == WEIGHTED_EXPONENTIAL:
        return WeightedWindow(window, granularity)
    return LinearWindow(window, granularity)


class MaxWindow:
    """The maximum recorded over the last ceil(window/granularity) buckets.

    Knative's scale-down delay (pkg/autoscaler/aggregation/max): each tick records the
    desired pod count in its 2 s bucket and scales to the max over the delay window.
    It keeps an "ascending minima" deque: (bucket, value) pairs with buckets increasing
    and values strictly decreasing, so the front is the maximum. A new value first
    removes every value <= it from the back (it is both newer and at least as large, so
    they can never be the maximum again), buckets that fell out of the window leave from
    the front, and a value for the newest bucket merges with it (the bucket keeps the
    max). Example, 10 s window at 2 s (5 buckets), values 5, 8, 5, 7 at t = 2, 3, 4, 6
    land in buckets 1, 1, 2, 3: deque (1,5) -> (1,8) -> (1,8),(2,5) -> (1,8),(3,7);
    current() = 8 through bucket 5 (t = 10..11); a record at t = 12 (bucket 6) pushes
    bucket 1 out and current() = 7. Amortised O(1) per record.
    """

    __slots__ = ("_granularity", "_size", "_maxima", "_newest")

    def __init__(self, window: float, granularity: float) -> None:
        self._granularity = float(granularity)
        self._size = math.ceil(window_span(window, granularity))
        self._maxima: collections.deque[tuple[int, float]] = collections.deque()
        self._newest: int | None = None

    @property
    def num_buckets(self) -> int:
        """How many buckets the maximum is taken over."""
        return self._size

    def record(self, now: float, value: float) -> None:
        """Record `value` in the bucket for `now`; a bucket keeps the max of its values."""
        k = bucket_index(now, self._granularity)
        if self._newest is not None and k < self._newest:
            self._record_late(k, value)
            return
        self._newest = k
        maxima = self._maxima
        while maxima and maxima[-1][1] <= value:
            maxima.pop()
        while maxima and k - maxima[0][0] >= self._size:
            maxima.popleft()
        if maxima and maxima[-1][0] == k:        # same bucket, larger value: keep it
            value = max(value, maxima.pop()[1])
        maxima.append((k, value))

    def _record_late(self, k: int, value: float) -> None:
        # Knative assumes the tick's clock only moves forward; a late bucket still inside
        # the window is slotted in by bucket so that it expires on time.
        if self._newest - k >= self._size:
            return
        entries = list(self._maxima)
        for bucket, held in entries:
            if bucket == k:
                value = max(value, held)         # the bucket keeps its max
        newer = [e for e in entries if e[0] > k]
        if newer and newer[0][1] >= value:
            return                               # a newer bucket holds at least as much
        older = [e for e in entries if e[0] < k and e[1] > value]
        self._maxima = collections.deque(older + [(k, value)] + newer)

    def current(self) -> float:
        """The maximum over the window ending at the newest bucket; 0 if nothing recorded."""
        return self._maxima[0][1] if self._maxima else 0

    def __repr__(self) -> str:
        return f"MaxWindow(buckets={self._size}, maxima={list(self._maxima)})"
