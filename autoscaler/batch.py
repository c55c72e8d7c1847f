"""Many revisions' aggregation windows in numpy arrays, recorded and read in one call each.

Theory of operation
-------------------
The per-revision windows in `windows.py` cost a few microseconds of Python per record
and per read; at 10,000 revisions that is most of a tick. `WindowBatch` keeps the same
state for every revision of one window role (say, every stable window) as arrays:

  * revisions whose windows have the same length in buckets and the same algorithm form
    a group; a group owns a ring `ring[row, slot]` of shape (capacity, n) stored column
    major, so one slot of every row (`ring[:, k % n]`) is a contiguous vector, plus
    int64 vectors `first` and `last` (bucket numbers; NONE means not set);
  * a revision is a global row (a stable handle returned by `add_revision`); it maps to
    (group, local row), and moves between groups when `resize_revision` changes its length.

`record(rows, now, values)` applies Knative's write rules (see windows.py) to all the
given rows at once: every row shares the bucket k of `now`, so a row needs only its own
distance d = k - last: d <= -W/g ignored; d >= W/g (or never written) clears the row;
0 < d < W/g clears the slots of ages 0..d-1 (one slot in the steady state); then the
values are added into column k % n with `np.add.at`, so repeated rows add up as
repeated `record` calls do.

`averages(now)` walks the ages a = 0..n-1 of the window ending at k, adding column
(k - a) % n to a running total, masked to 0 for rows whose last write is newer than that
age (z = k - last > a). That is the per-object sum in the same order, operation for
operation, so linear averages (after the division and the 6-decimal rounding) and
weighted sums are bit-identical to LinearWindow and WeightedWindow. Rows whose last write
is after `now` (a read in the past) are summed from their own last bucket.

Worked example, two revisions with 5 s linear windows at g = 1 s (n = 5): rows 0 and 1
get values [1, 10] each second at t = 0..4; at t = 7 only row 0 gets 3 (row 0 clears
the slots of seconds 5, 6, 7, which held seconds 0, 1, 2, then adds 3 into slot 7 % 5).
averages(7): row 0 (z = 0) sums seconds 7..3 = 3 + 0 + 0 + 1 + 1 = 5 over
min(7 - 0 + 1, 5) = 5 buckets: 1.0; row 1 (z = 3) counts only ages 3 and 4, seconds 4 and
3, 10 + 10 over min(5, 5 - 3) = 2 buckets: 10.0.

Cost: a tick over 10,000 revisions with 60 s + 6 s windows (record both, read both) is
about 66 vector additions of 10,000 floats plus a few dozen vector operations: about
1.5 ms on one core of the shared development machine, against about 150 ms for the
per-revision objects (bench/window_tick.py measures both side by side).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .windows import (
    LINEAR,
    PRECISION_DIGITS,
    WEIGHTED_EXPONENTIAL,
    bucket_index,
    decay_weights,
    leading_weight,
    normalize_algorithm,
    smoothing_coefficient,
    window_span,
)

__all__ = ["BatchStats", "WindowBatch"]

# "Not set" for first/last: far enough in the past that k - NONE is a gap longer than any
# window (so a never-written row restarts on its first write and reads empty), and far
# enough from the int64 limits that the subtraction cannot overflow.
NONE = np.iinfo(np.int64).min // 4
_SCALE = 10.0**PRECISION_DIGITS


@dataclass(frozen=True, slots=True)
class BatchStats:
    """A snapshot of a WindowBatch: revisions held, rows allocated, and its groups."""

    revisions: int
    capacity: int
    groups: tuple[tuple[float, str, int], ...]   # (window span in buckets, algorithm, rows)


def _round_half_away(values: np.ndarray) -> np.ndarray:
    # The vector form of windows.round_half_away, operation for operation.
    scaled = values * _SCALE
    whole = np.trunc(scaled)
    whole += np.where(np.abs(scaled - whole) >= 0.5, np.sign(scaled), 0.0)
    return whole / _SCALE


class _Group:
    """The rings of every revision whose windows share a bucket count and algorithm."""

    __slots__ = ("span", "n", "weighted", "alpha", "weights", "leading", "ring", "first", "last",
                 "owner", "free")

    def __init__(self, span: float, algorithm: str, capacity: int) -> None:
        self.span = span
        self.n = int(np.ceil(span))
        self.weighted = algorithm == WEIGHTED_EXPONENTIAL
        self.alpha = smoothing_coefficient(self.n)
        self.weights = decay_weights(self.alpha, self.n)
        # leading[z]: the newest bucket's weight after z silent buckets, Go's math.Pow way.
        self.leading = np.array([leading_weight(self.alpha, z) for z in range(self.n + 1)]
                                if self.weighted else [])
        self.ring = np.zeros((capacity, self.n), order="F")
        self.first = np.full(capacity, NONE, dtype=np.int64)
        self.last = np.full(capacity, NONE, dtype=np.int64)
        self.owner = np.full(capacity, -1, dtype=np.int64)   # global row, -1 when free
        self.free = list(range(capacity - 1, -1, -1))

    def allocate(self, global_row: int) -> int:
        if not self.free:
            self._grow()
        local = self.free.pop()
        self.ring[local] = 0.0
        self.first[local] = self.last[local] = NONE
        self.owner[local] = global_row
        return local

    def release(self, local: int) -> None:
        self.owner[local] = -1
        self.first[local] = self.last[local] = NONE
        self.free.append(local)

    def _grow(self) -> None:
        old = len(self.owner)
        ring = np.zeros((2 * old, self.n), order="F")
        ring[:old] = self.ring
        self.ring = ring
        self.first = np.concatenate([self.first, np.full(old, NONE, dtype=np.int64)])
        self.last = np.concatenate([self.last, np.full(old, NONE, dtype=np.int64)])
        self.owner = np.concatenate([self.owner, np.full(old, -1, dtype=np.int64)])
        self.free.extend(range(2 * old - 1, old - 1, -1))

    def record(self, rows: np.ndarray, k: int, values: np.ndarray) -> None:
        d = k - self.last[rows]
        accept = d > -self.span                 # older than a window: ignored
        if not accept.all():
            rows, values, d = rows[accept], values[accept], d[accept]
        first = self.first[rows]
        move_first = (d != 0) & ((first == NONE) | (first > k))
        self.first[rows[move_first]] = k
        ahead = d > 0
        restart = d >= self.span                # never written, or a window of silence
        if restart.any():
            r = rows[restart]
            self.ring[r] = 0.0
            self.first[r] = k
        gap = ahead & ~restart
        if gap.any():
            r, dg = rows[gap], d[gap]
            for age in range(int(dg.max())):   # ages 0..d-1 are one lap old
                self.ring[r[dg > age], (k - age) % self.n] = 0.0
        self.last[rows[ahead]] = k
        np.add.at(self.ring[:, k % self.n], rows, values)

    def sums(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the (weighted) sum of the buckets in the window at k, and z."""
        z = k - self.last
        zc = np.maximum(z, 0)
        total = np.zeros(len(z))
        # In the steady state every row was written in bucket k and nothing needs masking;
        # rows silent for longer than the window are zeroed by the caller either way.
        steady = not ((z > 0) & (z <= self.span) & (self.owner >= 0)).any()
        if self.weighted:
            self._weighted_sums(k, zc, steady, total)
        else:
            self._linear_sums(k, zc, steady, total)
        past = np.flatnonzero((z < 0) & (self.owner >= 0))
        if past.size:
            total[past] = self._sums_from_last(past)
        return total, z

    def _linear_sums(self, k: int, zc: np.ndarray, steady: bool, total: np.ndarray) -> None:
        for age in range(self.n):
            column = self.ring[:, (k - age) % self.n]
            if not steady:
                column = np.where(zc <= age, column, 0.0)
            total += column

    def _weighted_sums(self, k: int, zc: np.ndarray, steady: bool, total: np.ndarray) -> None:
        # Per row, as WeightedWindow.average: start at leading[z] on the newest bucket and
        # multiply by (1 - alpha) per older bucket; rows still inside their silence add 0.
        weight = self.leading[np.minimum(zc, self.n)]
        decay = 1.0 - self.alpha
        for age in range(self.n):
            column = self.ring[:, (k - age) % self.n]
            if steady:
                total += column * weight
                weight = weight * decay
            else:
                counted = zc <= age
                total += np.where(counted, column * weight, 0.0)
                weight = np.where(counted, weight * decay, weight)

    def _sums_from_last(self, rows: np.ndarray) -> np.ndarray:
        # A read before a row's last write counts the n buckets ending at that write.
        last = self.last[rows]
        total = np.zeros(len(rows))
        for age in range(self.n):
            column = self.ring[rows, (last - age) % self.n]
            total += column * self.weights[age] if self.weighted else column
        return total

    def averages(self, k: int) -> np.ndarray:
        total, z = self.sums(k)
        if self.weighted:
            return np.where(z <= self.span, total, 0.0)
        live = z < self.span
        held = np.where(self.first == NONE, self.n, self.last - self.first + 1)
        valid = np.minimum(held, self.n - np.maximum(z, 0))
        average = _round_half_away(total / np.where(live, valid, 1))
        return np.where(live, average, 0.0)


class WindowBatch:
    """One window role (say stable concurrency) for many revisions, held in numpy rings."""

    __slots__ = ("_granularity", "_groups", "_group_ids", "_keys", "_spec", "_group_of",
                 "_local_of", "_free_rows", "_capacity")

    def __init__(self, granularity: float = 1.0, capacity: int = 1024) -> None:
        if not granularity > 0:
            raise ValueError(f"granularity: {granularity!r} must be > 0 seconds")
        self._granularity = float(granularity)
        self._groups: list[_Group] = []
        self._group_ids: dict[tuple[float, str], int] = {}
        self._keys: dict[Hashable, int] = {}
        self._spec: dict[int, tuple[Hashable, float, str]] = {}   # row -> key, window, alg
        self._capacity = max(int(capacity), 1)
        self._group_of = np.full(self._capacity, -1, dtype=np.int64)
        self._local_of = np.zeros(self._capacity, dtype=np.int64)
        self._free_rows = list(range(self._capacity - 1, -1, -1))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    @property
    def capacity(self) -> int:
        """Rows allocated: averages() and is_empty() return arrays of this length."""
        return self._capacity

    def row_of(self, key: Hashable) -> int:
        """The row of a revision added earlier (KeyError if unknown)."""
        return self._keys[key]

    def add_revision(self, key: Hashable, window: float, algorithm: str = LINEAR) -> int:
        """Give a revision an empty window; returns its row (stable until removal)."""
        algorithm = normalize_algorithm(algorithm)
        if key in self._keys:
            row = self._keys[key]
            _, held_window, held_algorithm = self._spec[row]
            if (held_window, held_algorithm) != (float(window), algorithm):
                raise ValueError(f"revision {key!r} already has a {held_window}s "
                                 f"{held_algorithm} window: use resize_revision or remove it")
            return row
        if not self._free_rows:
            self._grow()
        row = self._free_rows.pop()
        self._attach(row, window, algorithm)
        self._keys[key] = row
        self._spec[row] = (key, float(window), algorithm)
        return row

    def remove_revision(self, key: Hashable) -> None:
        """Forget a revision and free its row (KeyError if unknown)."""
        row = self._keys.pop(key)
        del self._spec[row]
        self._groups[self._group_of[row]].release(int(self._local_of[row]))
        self._group_of[row] = -1
        self._free_rows.append(row)

    def resize_revision(self, key: Hashable, window: float, now: float) -> int:
        """Change a revision's window length keeping its recent buckets, as `resize` does."""
        row = self._keys[key]
        _, old_window, algorithm = self._spec[row]
        if float(window) == old_window:
            return row
        old = self._groups[self._group_of[row]]
        local = int(self._local_of[row])
        buckets, first, last = old.ring[local].copy(), int(old.first[local]), int(old.last[local])
        old.release(local)
        group = self._attach(row, window, algorithm)
        new_local = int(self._local_of[row])
        if last != NONE and bucket_index(now, self._granularity) - last <= old.span:
            for i in range(min(group.n, old.n)):
                group.ring[new_local, (last - i) % group.n] = buckets[(last - i) % old.n]
            oldest = last - (old.n - 1)      # the same rule as windows._BucketRing.resize
            group.first[new_local] = oldest if first == NONE else max(first, oldest)
        group.last[new_local] = last
        self._spec[row] = (key, float(window), algorithm)
        return row

    def _attach(self, row: int, window: float, algorithm: str) -> _Group:
        span = window_span(window, self._granularity)
        gid = self._group_ids.get((span, algorithm))
        if gid is None:
            gid = self._group_ids[(span, algorithm)] = len(self._groups)
            self._groups.append(_Group(span, algorithm, 64))
        group = self._groups[gid]
        self._group_of[row] = gid
        self._local_of[row] = group.allocate(row)
        return group

    def _grow(self) -> None:
        old = self._capacity
        self._capacity = 2 * old
        self._group_of = np.concatenate([self._group_of, np.full(old, -1, dtype=np.int64)])
        self._local_of = np.concatenate([self._local_of, np.zeros(old, dtype=np.int64)])
        self._free_rows.extend(range(2 * old - 1, old - 1, -1))

    def record(self, rows: Sequence[int] | np.ndarray, now: float,
               values: Sequence[float] | np.ndarray) -> None:
        """Add values[i] into the bucket for `now` of row rows[i], for every i at once."""
        rows = np.asarray(rows, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if rows.shape != values.shape or rows.ndim != 1:
            raise ValueError(f"rows {rows.shape} and values {values.shape} must be 1-D "
                             "and the same length")
        if rows.size == 0:
            return
        if rows.min() < 0 or rows.max() >= self._capacity:
            raise IndexError("row out of range")
        gids = self._group_of[rows]
        if (gids < 0).any():
            raise KeyError(f"rows not in use: {rows[gids < 0][:5].tolist()}")
        k = bucket_index(now, self._granularity)
        locals_ = self._local_of[rows]
        if len(self._groups) == 1:
            self._groups[0].record(locals_, k, values)
            return
        for gid in np.unique(gids):
            sel = gids == gid
            self._groups[gid].record(locals_[sel], k, values[sel])

    def averages(self, now: float) -> np.ndarray:
        """Every row's window average at `now`, indexed by row; NaN for unused rows."""
        k = bucket_index(now, self._granularity)
        out = np.full(self._capacity, np.nan)
        for group in self._groups:
            used = np.flatnonzero(group.owner >= 0)
            if used.size:
                out[group.owner[used]] = group.averages(k)[used]
        return out

    def averages_by_key(self, now: float) -> dict[Hashable, float]:
        """averages() as a {revision key: average} dict (slower; for callers keyed by name)."""
        values = self.averages(now)
        return {key: float(values[row]) for key, row in self._keys.items()}

    def is_empty(self, now: float) -> np.ndarray:
        """Per row, True if nothing was written for longer than its window (or unused)."""
        k = bucket_index(now, self._granularity)
        out = np.ones(self._capacity, dtype=bool)
        for group in self._groups:
            used = np.flatnonzero(group.owner >= 0)
            out[group.owner[used]] = (k - group.last[used]) > group.span
        return out

    def stats(self) -> BatchStats:
        """Revisions held, rows allocated, and (span, algorithm, rows) per group."""
        groups = tuple((g.span, "weighted-exponential" if g.weighted else LINEAR,
                        int((g.owner >= 0).sum())) for g in self._groups)
        return BatchStats(len(self._keys), self._capacity, groups)
