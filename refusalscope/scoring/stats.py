"""Confidence intervals for refusal rates: percentile bootstrap over prompts, and Wilson.

The bootstrap resamples prompts (rows) with replacement, so it also works for per-prompt
values that are not 0/1 (e.g. a later classifier's probabilities). Wilson's score interval is
the closed form for a binomial proportion, reported beside it for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # standard normal quantile at 0.975
_CHUNK_CELLS = 1 << 22  # draws per chunk: bounds memory at ~32 MB of int64 indices


def bootstrap_ci(values: Sequence[float] | np.ndarray, n_boot: int = 10_000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean of `values` and its percentile-bootstrap `1 - alpha` interval: (mean, lo, hi).

    Draws `n_boot` resamples of size n with `numpy.random.default_rng(seed)`, row by row, and
    takes the `alpha/2` and `1 - alpha/2` quantiles (numpy's default linear interpolation) of
    the resample means. Resamples are drawn in chunks of rows; the draws are the same stream
    as one resample per loop iteration, so the result equals the plain loop exactly and is
    identical for a given seed on any machine.

    Example:
        bootstrap_ci([1, 0, 1, 1], n_boot=1000, seed=0)  # (0.75, lo, hi)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D sequence of values")
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1 (got {n_boot}, {alpha})")
    n = x.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), _clip(float(lo), x), _clip(float(hi), x)


def _clip(v: float, x: np.ndarray) -> float:
    # Float summation can land a hair outside [min, max] (e.g. 0.30000000000000004 for a
    # resample of all-0.3); a mean of resampled values never can.
    return min(max(v, float(x.min())), float(x.max()))


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (default 95%)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0 (got k={k}, n={n})")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
