"""Bootstrap and Wilson intervals: exact values against plain reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refusalscope.scoring import stats
from refusalscope.scoring.stats import bootstrap_ci, wilson_interval


def _reference_bootstrap(values, n_boot, alpha, seed):
    """The textbook loop: one resample of n prompts per iteration."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), size=len(x))
        means.append(x[idx].mean())
    lo, hi = np.quantile(np.array(means), [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


@pytest.mark.parametrize("values", [[1, 1, 1, 1], [0, 0, 0]])
def test_constant_values(values):
    v = float(values[0])
    assert bootstrap_ci(values) == (v, v, v)


def test_single_value():
    assert bootstrap_ci([1.0], n_boot=5) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(("values", "n_boot", "alpha", "seed"), [
    ([1, 0, 1, 1, 0, 1, 0, 0, 1, 1], 2000, 0.05, 0),
    ([1, 0, 0, 0, 0, 0, 0], 999, 0.10, 7),
    ([0.9, 0.1, 0.35, 0.7, 0.2], 500, 0.05, 3),
])
def test_matches_reference_loop(values, n_boot, alpha, seed):
    assert bootstrap_ci(values, n_boot=n_boot, alpha=alpha, seed=seed) == \
        _reference_bootstrap(values, n_boot, alpha, seed)


def test_chunking_does_not_change_draws(monkeypatch):
    values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1]
    whole = bootstrap_ci(values, n_boot=1000, seed=5)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 3 * len(values) + 1)  # 3 resamples per chunk
    assert bootstrap_ci(values, n_boot=1000, seed=5) == whole


def test_seeded_and_sensible():
    values = [1] * 30 + [0] * 10
    a = bootstrap_ci(values, seed=1)
    assert a == bootstrap_ci(values, seed=1)
    spread = [0.9, 0.1, 0.35, 0.7, 0.2, 0.55, 0.05]
    assert bootstrap_ci(spread, n_boot=300, seed=1) != bootstrap_ci(spread, n_boot=300, seed=2)
    mean, lo, hi = a
    assert mean == 0.75 and lo < mean < hi and lo > 0.55 and hi < 0.9


@pytest.mark.parametrize("bad", [[], [[1, 0]]])
def test_bad_values(bad):
    with pytest.raises(ValueError):
        bootstrap_ci(bad)


def test_wilson_known_values():
    z = stats.Z95
    lo, hi = wilson_interval(5, 10)
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-15)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    assert wilson_interval(0, 8)[0] == 0.0 and wilson_interval(8, 8)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
