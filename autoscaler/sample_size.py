"""How many pods to scrape: Knative's sample-size rule (pkg/autoscaler/metrics/sample_size.go).

Theory of operation. Scraping every pod of a large revision every second costs N requests
a second; the autoscaler only needs the *mean* load per pod, so it estimates the mean from
a sample and extrapolates. The sample size comes from the textbook formula for estimating
a population mean with a finite-population correction:

    X = z² · σ² / e² = 1.96² × 100 / 5² = 15.3664
        (95% confidence, assumed per-pod variance 100, margin of error 5)
    n = N                                  when N <= 3 (a sample would save nothing)
    n = ceil(N · X / (N + X − 1))          otherwise

Worked example: N = 10 gives 10 × 15.3664 / 24.3664 = 6.306…, so n = 7; as N grows, n
approaches ceil(X) = 16 and never exceeds it, so a 1000-pod revision costs 16 scrapes a
second, not 1000.
"""

from __future__ import annotations

import math

__all__ = ["SAMPLE_SIZE_LIMIT", "sample_size"]

# Knative's constants: 95% two-sided critical value, assumed variance, margin of error.
_CRITICAL_VALUE_SQUARED = 1.96 * 1.96
_POPULATION_VARIANCE = 100.0
_MARGIN_OF_ERROR_SQUARED = 5.0 * 5.0

SAMPLE_SIZE_LIMIT = _CRITICAL_VALUE_SQUARED * _POPULATION_VARIANCE / _MARGIN_OF_ERROR_SQUARED
"""The infinite-population sample size X (15.3664); `sample_size` tends to ceil(X)."""


def sample_size(population: int) -> int:
    """How many of `population` ready pods to scrape (0 for an empty or negative count)."""
    if population <= 3:
        return max(population, 0)
    return math.ceil(population * SAMPLE_SIZE_LIMIT / (population + SAMPLE_SIZE_LIMIT - 1))
