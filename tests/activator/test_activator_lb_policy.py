"""Load-balancing policies, one table per policy (Knative lb_policy_test.go shapes)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from activator.lb_policy import (
    Pick,
    first_available,
    least_loaded,
    policy_for,
    power_of_two_choices,
    round_robin,
)


@dataclass
class Slot:
    in_flight: int
    capacity: int


def slots(in_flight, capacity):
    return [Slot(n, capacity) for n in in_flight]


@pytest.mark.parametrize("in_flight, cap, cursor, want", [
    pytest.param([], 1, 0, Pick(None, 0), id="no-pods"),
    pytest.param([0, 0, 0], 1, 0, Pick(0, 0), id="first-free"),
    pytest.param([1, 0, 0], 1, 0, Pick(1, 0), id="skips-full"),
    pytest.param([1, 1, 1], 1, 0, Pick(None, 0), id="all-full"),
    pytest.param([3, 2, 0], 3, 5, Pick(1, 5), id="cc3-room-left-cursor-untouched"),
])
def test_first_available(in_flight, cap, cursor, want):
    assert first_available(slots(in_flight, cap), cursor, random.Random(0)) == want


@pytest.mark.parametrize("in_flight, cap, cursor, want", [
    pytest.param([0, 0, 0], 4, 0, Pick(0, 1), id="starts-at-cursor"),
    pytest.param([0, 0, 0], 4, 1, Pick(1, 2), id="moves-on"),
    pytest.param([0, 0, 0], 4, 2, Pick(2, 3), id="last-pod"),
    pytest.param([0, 0, 0], 4, 3, Pick(0, 1), id="wraps"),
    pytest.param([4, 2, 0], 4, 0, Pick(1, 2), id="skips-full"),
    pytest.param([0, 4, 4], 4, 1, Pick(0, 1), id="skips-full-and-wraps"),
    pytest.param([4, 4], 4, 1, Pick(None, 1), id="all-full"),
    pytest.param([0], 4, 7, Pick(0, 1), id="list-shrank"),
    pytest.param([], 4, 0, Pick(None, 0), id="no-pods"),
])
def test_round_robin(in_flight, cap, cursor, want):
    assert round_robin(slots(in_flight, cap), cursor, random.Random(0)) == want


def test_round_robin_cycles_evenly():
    pods = slots([0, 0, 0], 10)
    cursor, seen = 0, []
    for _ in range(6):
        index, cursor = round_robin(pods, cursor, random.Random(0))
        seen.append(index)
    assert seen == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("in_flight, want", [
    pytest.param([], None, id="no-pods"),
    pytest.param([9], 0, id="one-pod-whatever-its-load"),
    pytest.param([5, 1], 1, id="two-pods-lighter"),
    pytest.param([0, 3], 0, id="two-pods-lighter-first"),
])
def test_power_of_two_choices_deterministic(in_flight, want):
    assert power_of_two_choices(slots(in_flight, 0), 3, random.Random(0)) == Pick(want, 3)


def test_power_of_two_choices_never_picks_the_most_loaded_of_three_or_more():
    rng = random.Random(1)
    pods = slots([0, 10, 5, 10], 0)
    picks = [power_of_two_choices(pods, 0, rng).index for _ in range(2_000)]
    # The busiest pods can win only against each other: never when drawn with 0 or 2.
    assert picks.count(0) > picks.count(2) > 0
    two_tens = sum(1 for i in picks if i in (1, 3))
    assert 0 < two_tens < len(picks) // 4  # about 1/6 of the draws are {1, 3}


def test_power_of_two_choices_breaks_ties_both_ways():
    rng = random.Random(2)
    picks = {power_of_two_choices(slots([1, 1], 0), 0, rng).index for _ in range(50)}
    assert picks == {0, 1}


@pytest.mark.parametrize("in_flight, want", [
    pytest.param([], None, id="none"),
    pytest.param([3, 1, 1], 1, id="first-of-the-least"),
    pytest.param([0, 9], 0, id="first"),
])
def test_least_loaded(in_flight, want):
    assert least_loaded(slots(in_flight, 1)) == want


@pytest.mark.parametrize("cc, policy", [
    pytest.param(0, power_of_two_choices, id="cc0"),
    pytest.param(1, first_available, id="cc1"),
    pytest.param(3, first_available, id="cc3"),
    pytest.param(4, round_robin, id="cc4"),
    pytest.param(1000, round_robin, id="cc1000"),
])
def test_policy_for(cc, policy):
    assert policy_for(cc) is policy


def test_policy_for_negative_is_an_error():
    with pytest.raises(ValueError, match="container_concurrency"):
        policy_for(-1)
