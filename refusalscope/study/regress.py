"""Weighted regressions for `fit`: logistic maximum likelihood by Newton/IRLS, and least squares.

Both take row weights (bootstrap resample counts: a prompt drawn twice has weight 2) and
standardise the non-constant columns internally, so that `log N ≈ 20` and `log FLOPs ≈ 35`
(and their product) do not make the Newton system ill-conditioned; the coefficients returned
are for the columns as given.
"""

from __future__ import annotations

import numpy as np


class FitFailed(ValueError):
    """No unique finite estimate: too few distinct points, or a separable logistic problem."""


def _scale(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale columns 1.. (column 0 must be the constant); returns Z, mean, scale."""
    if X.shape[1] == 0 or not np.allclose(X[:, 0], 1.0):
        raise ValueError("the first column must be the constant 1")
    tot = w.sum()
    mean = np.zeros(X.shape[1])
    sd = np.ones(X.shape[1])
    if X.shape[1] > 1:
        mean[1:] = (w[:, None] * X[:, 1:]).sum(0) / tot
        var = (w[:, None] * (X[:, 1:] - mean[1:]) ** 2).sum(0) / tot
        if np.any(var <= 1e-12 * (1 + mean[1:] ** 2)):
            raise FitFailed("a predictor is constant over the data")
        sd[1:] = np.sqrt(var)
    Z = (X - mean) / sd
    Z[:, 0] = 1.0
    return Z, mean, sd


def _unscale(g: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    beta = g / sd
    beta[0] = g[0] - float(np.sum(g[1:] * mean[1:] / sd[1:]))
    return beta


def _rank_ok(Z: np.ndarray, w: np.ndarray) -> bool:
    used = Z[w > 0]
    return bool(used.shape[0] >= Z.shape[1] and np.linalg.matrix_rank(used) == Z.shape[1])


def log_likelihood(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray) -> float:
    """Weighted Bernoulli log-likelihood of `beta` (nats)."""
    eta = X @ beta
    return float(np.sum(w * (y * eta - np.logaddexp(0.0, eta))))


def logistic_mle(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *,
                 max_iter: int = 100, tol: float = 1e-9) -> np.ndarray:
    """Maximum-likelihood `beta` of P(y=1) = sigmoid(X @ beta), rows weighted by `w`.

    X: [n, k] with a constant first column; y: [n] in {0, 1}. Newton steps with step halving
    (the log-likelihood never decreases). Raises `FitFailed` when the design is rank-deficient
    or the steps do not settle within `max_iter` (separation: the MLE is infinite).

    Example:
        >>> X = np.c_[np.ones(4), [0.0, 1, 2, 3]]
        >>> logistic_mle(X, np.array([0.0, 1, 0, 1])).round(3)
        array([-0.709,  0.473])
    """
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    Z, mean, sd = _scale(np.asarray(X, dtype=np.float64), w)
    if not _rank_ok(Z, w):
        raise FitFailed("too few distinct points for the number of coefficients")
    g = np.zeros(Z.shape[1])
    ybar = float(np.clip((w * y).sum() / w.sum(), 1e-6, 1 - 1e-6))
    g[0] = np.log(ybar / (1 - ybar))
    ll = log_likelihood(Z, y, w, g)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (Z @ g)))  # sigmoid without overflow
        grad = Z.T @ (w * (y - p))
        hess = (Z * (w * p * (1 - p))[:, None]).T @ Z
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            raise FitFailed("singular information matrix") from None
        t = 1.0
        while t > 1e-10:
            new = log_likelihood(Z, y, w, g + t * step)
            if new >= ll - 1e-12:
                break
            t /= 2
        g = g + t * step
        ll = new
        if np.max(np.abs(t * step)) < tol * (1 + np.max(np.abs(g))):
            return _unscale(g, mean, sd)
    raise FitFailed("Newton did not converge (the outcomes may be separable)")


def wls(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Weighted least squares `beta` of y ≈ X @ beta (constant first column).

    Example:
        >>> wls(np.c_[np.ones(3), [1.0, 2, 3]], np.array([3.0, 5, 7])).round(6)
        array([1., 2.])
    """
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    Z, mean, sd = _scale(np.asarray(X, dtype=np.float64), w)
    if not _rank_ok(Z, w):
        raise FitFailed("too few distinct points for the number of coefficients")
    sw = np.sqrt(w)
    g = np.linalg.lstsq(Z * sw[:, None], y * sw, rcond=None)[0]
    return _unscale(g, mean, sd)


def r_squared(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray) -> float:
    """Weighted R^2 of a least-squares fit (NaN when y is constant)."""
    ybar = float((w * y).sum() / w.sum())
    tss = float((w * (y - ybar) ** 2).sum())
    rss = float((w * (y - X @ beta) ** 2).sum())
    return 1.0 - rss / tss if tss > 0 else float("nan")
