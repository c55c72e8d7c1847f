"""Load-balancing policies: which pod of a revision takes the next request.

Every policy is a pure function of one signature (Knative `pkg/activator/net/lb_policy.go`):

    policy(pods, cursor, rng) -> Pick(index, cursor)

`pods` is the revision's healthy pods in `(host, port)` order, each a `PodSlot` (its
requests in flight and its capacity, 0 = unlimited); `cursor` is the policy's own memory
between calls (the round-robin position; others pass it through); `rng` is a
`random.Random` (seeded in tests). `Pick.index` is the chosen pod, or None when every pod
is full. The policy only chooses: the throttler reserves the slot, which is atomic here
because the event loop runs one callback at a time.

Which policy, by containerConcurrency (`policy_for`), as Knative picks it:

- CC 0, power of two choices: draw two distinct pods at random and take the one with
  fewer requests in flight, a coin toss on a tie. Example: in-flight [5, 0, 3], draws
  (0, 2) → pod 2 (3 < 5). Pods are never full, so it always picks.
- CC 1-3, first available: the first pod in `(host, port)` order with a free slot. With
  so few slots per pod, packing the lowest pods keeps the others free for bursts.
  Example CC 1, in-flight [1, 0, 0] → pod 1.
- CC > 3, round robin: start at the cursor, skip full pods, and leave the cursor just
  after the pod chosen. Example CC 4, in-flight [4, 2, 0], cursor 0 → pod 1, cursor 2.

Knative orders pods by the string `ip:port`; we order by `(host, port)` so that
`127.0.0.1:9000` sorts before `127.0.0.1:10000` on a machine where pods differ by port.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

__all__ = [
    "LBPolicy",
    "Pick",
    "PodSlot",
    "first_available",
    "least_loaded",
    "policy_for",
    "power_of_two_choices",
    "round_robin",
]


class PodSlot(Protocol):
    """What a policy sees of a pod: requests in flight and capacity (0 = unlimited)."""

    @property
    def in_flight(self) -> int: ...

    @property
    def capacity(self) -> int: ...


class Pick(NamedTuple):
    """A policy's answer: the pod's index (None if all are full) and the next cursor."""

    index: int | None
    cursor: int


LBPolicy = Callable[[Sequence[PodSlot], int, random.Random], Pick]


def _has_room(pod: PodSlot) -> bool:
    return pod.capacity == 0 or pod.in_flight < pod.capacity


def power_of_two_choices(pods: Sequence[PodSlot], cursor: int, rng: random.Random) -> Pick:
    """CC 0: the less loaded of two distinct random pods (ties by coin toss)."""
    n = len(pods)
    if n == 0:
        return Pick(None, cursor)
    if n == 1:
        return Pick(0, cursor)
    if n == 2:
        first, second = 0, 1  # both contestants are known: no draw needed
    else:
        first = rng.randrange(n)
        second = rng.randrange(n - 1)
        if second >= first:  # draw from the other n-1 pods
            second += 1
    a, b = pods[first].in_flight, pods[second].in_flight
    if a > b or (a == b and rng.random() < 0.5):
        first = second
    return Pick(first, cursor)


def first_available(pods: Sequence[PodSlot], cursor: int, rng: random.Random) -> Pick:
    """CC 1-3: the first pod in `(host, port)` order with a free slot."""
    for i, pod in enumerate(pods):
        if _has_room(pod):
            return Pick(i, cursor)
    return Pick(None, cursor)


def round_robin(pods: Sequence[PodSlot], cursor: int, rng: random.Random) -> Pick:
    """CC > 3: the next pod with a free slot, starting at `cursor`."""
    n = len(pods)
    if cursor >= n:  # the pod list shrank since the last pick
        cursor = 0
    for step in range(n):
        i = (cursor + step) % n
        if _has_room(pods[i]):
            return Pick(i, i + 1)
    return Pick(None, cursor)


def least_loaded(pods: Sequence[PodSlot]) -> int | None:
    """The pod with the fewest requests in flight (first in order on a tie), ignoring capacity."""
    best = None
    for i, pod in enumerate(pods):
        if best is None or pod.in_flight < pods[best].in_flight:
            best = i
    return best


def policy_for(container_concurrency: int) -> LBPolicy:
    """Knative's policy for a containerConcurrency (0 = unlimited)."""
    if container_concurrency < 0:
        raise ValueError(f"container_concurrency: {container_concurrency!r} must be >= 0")
    if container_concurrency == 0:
        return power_of_two_choices
    if container_concurrency <= 3:
        return first_available
    return round_robin
