"""Knative's sample-size rule against the reference table (section 3.3)."""

from __future__ import annotations

import pytest

from autoscaler.sample_size import SAMPLE_SIZE_LIMIT, sample_size

# (ready pods N, pods to scrape n): the reference's table, plus the edges around it.
CASES = [
    pytest.param(-1, 0, id="negative-is-none"),
    pytest.param(0, 0, id="no-pods"),
    pytest.param(1, 1, id="one"),
    pytest.param(2, 2, id="two"),
    pytest.param(3, 3, id="three-all"),
    pytest.param(4, 4, id="four-all-by-formula"),
    pytest.param(5, 4, id="five"),
    pytest.param(6, 5, id="six"),
    pytest.param(8, 6, id="eight"),
    pytest.param(10, 7, id="ten"),
    pytest.param(15, 8, id="fifteen"),
    pytest.param(20, 9, id="twenty"),
    pytest.param(30, 11, id="thirty"),
    pytest.param(50, 12, id="fifty"),
    pytest.param(100, 14, id="hundred"),
    pytest.param(200, 15, id="two-hundred"),
    pytest.param(500, 15, id="five-hundred"),
    pytest.param(1000, 16, id="thousand"),
    pytest.param(100_000, 16, id="huge-capped"),
]


@pytest.mark.parametrize(("population", "want"), CASES)
def test_sample_size_matches_knative_table(population: int, want: int) -> None:
    assert sample_size(population) == want


def test_sample_never_exceeds_population_nor_the_limit() -> None:
    for population in range(0, 3000):
        n = sample_size(population)
        assert 0 <= n <= population
        assert n <= 16
    assert SAMPLE_SIZE_LIMIT == pytest.approx(15.3664)
