from __future__ import annotations

import random

import pytest

from receiver.api.stats import _percentile


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's definition: linear interpolation at position fraction * (n - 1)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@pytest.mark.parametrize("seed", range(50))
def test_percentiles_from_counts_equal_percentile_cont(seed: int) -> None:
    rng = random.Random(seed)
    values = [float(rng.randint(0, 30)) for _ in range(rng.randint(1, 200))]
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    for fraction in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert _percentile(counts, fraction) == pytest.approx(percentile_cont(values, fraction))
