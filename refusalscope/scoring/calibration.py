"""Calibration of a refusal classifier, and Calibration Entropy (CE) per run.

- `entropy_bits(p)`: entropy of the two-class distribution (p, 1-p), in **bits** (0 = certain,
  1 = a coin flip). CE of a run is its mean over responses.
- `ece(p, y)`: expected calibration error with 15 equal-width bins on P(refused) (the
  "positive-class" ECE): sum over bins of |mean p - share refused| weighted by bin size.
- `fit_temperature(margins, y)`: one scalar T > 0 that minimises the log loss of
  sigmoid(margin / T), found by a deterministic grid + golden-section search on log T.
- `ce_summary(p, spec)`: a run's CE with its percentile-bootstrap CI, and the share of
  near-boundary responses (P(refused) in `BAND` = [0.25, 0.75]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.scoring.stats import bootstrap_ci

N_BINS = 15
BAND = (0.25, 0.75)
_EPS = 1e-12


def entropy_bits(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Binary entropy H(p) in bits, elementwise; H(0) = H(1) = 0, H(0.5) = 1.

    Example:
        entropy_bits([0.5, 1.0])  # array([1., 0.])
    """
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.where(h < 1e-9, 0.0, h)


def ece(p: Sequence[float] | np.ndarray, y: Sequence[bool] | np.ndarray,
        n_bins: int = N_BINS) -> float:
    """Expected calibration error of P(refused) against 0/1 truth, `n_bins` equal bins on [0, 1].

    Example:
        ece([0.9, 0.9, 0.1], [1, 0, 0])  # |0.9-0.5|*2/3 + |0.1-0|*1/3 = 0.3
    """
    pv, yv = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if pv.size == 0 or pv.shape != yv.shape:
        raise ValueError("ece needs equal-length, non-empty p and y")
    bins = np.minimum((pv * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(pv[mask].mean() - yv[mask].mean())
    return float(total)


def _nll(margins: np.ndarray, y: np.ndarray, t: float) -> float:
    z = margins / t
    # log(1 + e^-z) for y=1, log(1 + e^z) for y=0, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(y > 0.5, -z, z))))


def fit_temperature(margins: Sequence[float] | np.ndarray,
                    y: Sequence[bool] | np.ndarray) -> float:
    """Temperature T minimising the log loss of sigmoid(margin / T); margin = logit difference.

    A grid over log T in [-3, 3] locates the basin, a golden-section search refines it; the
    result is deterministic. T > 1 softens an over-confident model.
    """
    m, yv = np.asarray(margins, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if m.size == 0:
        raise ValueError("fit_temperature needs at least one example")
    return minimise_temperature(lambda t: _nll(m, yv, t))


def minimise_temperature(loss: Callable[[float], float]) -> float:
    """The T > 0 minimising `loss(T)`: a grid over log T in [-3, 3], then a golden-section
    search around the best grid point (deterministic; shared by the binary and multi-class fits)."""
    grid = np.linspace(-3.0, 3.0, 61)
    best = int(np.argmin([loss(math.exp(g)) for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if loss(math.exp(a)) < loss(math.exp(b)):
            hi = b
        else:
            lo = a
    return float(math.exp((lo + hi) / 2))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def ce_summary(p: Sequence[float] | np.ndarray, *, n_boot: int = 10_000, alpha: float = 0.05,
               seed: int = 0) -> dict[str, Any]:
    """Calibration Entropy of one run: mean entropy (bits) with bootstrap CI, near-boundary share.

    Example:
        ce_summary([0.5, 0.99])["mean_bits"]  # (1 + 0.0808) / 2
    """
    pv = np.asarray(p, dtype=np.float64)
    h = entropy_bits(pv)
    mean, lo, hi = bootstrap_ci(h, n_boot=n_boot, alpha=alpha, seed=seed)
    near = (pv >= BAND[0]) & (pv <= BAND[1])
    return {"unit": "bits", "n": int(pv.size), "mean_bits": mean, "ci": [lo, hi],
            "band": list(BAND), "near_boundary": int(near.sum()),
            "near_boundary_share": float(near.mean())}


def reliability_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                     n_bins: int = N_BINS) -> Path:
    """Save a reliability diagram (share refused vs mean P(refused) per bin) for each curve.

    `curves` maps a legend name (e.g. "before T", "after T") to (p, y). PNG, Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for name, (p, y) in curves.items():
        pv, yv = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
        bins = np.minimum((pv * n_bins).astype(int), n_bins - 1)
        xs, ys = [], []
        for b in range(n_bins):
            mask = bins == b
            if mask.any():
                xs.append(pv[mask].mean())
                ys.append(yv[mask].mean())
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece(pv, yv, n_bins):.3f})")
    ax.set_xlabel("mean predicted P(refused)")
    ax.set_ylabel("share refused (held-out labels)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
