"""Weighted regressions for `fit`: logistic regression (Firth's penalised likelihood, or plain
maximum likelihood) by Newton steps, and least squares.

All take row weights (bootstrap resample counts: a prompt drawn twice has weight 2) and
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
        array([-1.362,  0.908])
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


def penalised_log_likelihood(X: np.ndarray, y: np.ndarray, w: np.ndarray,
                             beta: np.ndarray) -> float:
    """Firth's objective: log-likelihood + ½·log det I(beta), I = Xᵀ diag(w·p·(1−p)) X (nats).

    The penalty is the log of the Jeffreys prior; under an affine change of the columns
    (X -> X·A) det I changes by the constant det(A)², so the maximiser transforms like the
    coefficients themselves and internal standardisation does not change the answer.
    """
    p = 0.5 * (1.0 + np.tanh(0.5 * (X @ beta)))
    sign, logdet = np.linalg.slogdet((X * (w * p * (1 - p))[:, None]).T @ X)
    return log_likelihood(X, y, w, beta) + (0.5 * logdet if sign > 0 else -np.inf)


def logistic_firth(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *,
                   max_iter: int = 200, tol: float = 1e-9) -> np.ndarray:
    """Firth's bias-reduced `beta` of P(y=1) = sigmoid(X @ beta), rows weighted by `w`.

    Maximises log-likelihood + ½·log det I(beta) (Jeffreys prior; Firth 1993, R's `logistf`):
    the estimate is finite even when the outcomes are separable (a baseline that refuses
    every prompt, a sharp transition along log C), and its O(1/n) bias is removed. Same
    arguments as `logistic_mle`: X [n, k] with a constant first column, y [n] in [0, 1],
    w [n] >= 0 (resample counts or fractional weights; 0 drops the row, weight 2 equals the
    row twice). Raises `FitFailed` only when the design itself is rank-deficient on the rows
    with weight, or Newton does not settle within `max_iter`.

    Example:
        >>> X = np.c_[np.ones(6), [1.0, 2, 3, 4, 5, 6]]
        >>> logistic_firth(X, np.array([0.0, 0, 0, 1, 1, 1])).round(3)  # MLE: infinite
        array([-3.951,  1.129])
    """
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    beta, why = logistic_batch(np.asarray(X, dtype=np.float64), (w * y)[None], w[None],
                               firth=True, max_iter=max_iter, tol=tol)
    if why[0]:
        raise FitFailed(why[0])
    return beta[0]


def logistic_batch(X: np.ndarray, s1: np.ndarray, n: np.ndarray, *, firth: bool = True,
                   max_iter: int = 200, tol: float = 1e-9) -> tuple[np.ndarray, list[str]]:
    """Many logistic fits sharing one design: binomial rows, B weightings at once.

    X: [m, k] with a constant first column (one row per distinct design point, e.g. per run);
    s1, n: [B, m] weighted successes and weighted trials of row j in fit b (a per-prompt
    dataset is the case s1 = w·y, n = w). Returns `beta` [B, k] (NaN where a fit failed) and
    one reason per fit ("" when it succeeded). `firth=False` gives the plain MLE, which fails
    on separable fits ("did not converge" / "singular information matrix").
    """
    s1, n = np.atleast_2d(s1).astype(float), np.atleast_2d(n).astype(float)
    Z, mean, sd = _scale(X, n.sum(0))
    G, why = _newton(Z, s1, n, firth=firth, max_iter=max_iter, tol=tol)
    beta = np.array([_unscale(g, mean, sd) for g in G]) if len(G) else G
    beta[[bool(r) for r in why]] = np.nan
    return beta, why


def _objective(Z: np.ndarray, s1: np.ndarray, n: np.ndarray, G: np.ndarray, firth: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(objective [B], p [B, m], information [B, k, k]) at coefficient rows G [B, k]."""
    eta = G @ Z.T
    p = 0.5 * (1.0 + np.tanh(0.5 * eta))
    info = np.einsum("bm,mk,ml->bkl", n * p * (1 - p), Z, Z)
    obj = np.sum(s1 * eta - n * np.logaddexp(0.0, eta), axis=1)
    if firth:
        sign, logdet = np.linalg.slogdet(info)
        obj = obj + np.where(sign > 0, 0.5 * logdet, -np.inf)
    return obj, p, info


def _newton(Z: np.ndarray, s1: np.ndarray, n: np.ndarray, *, firth: bool, max_iter: int,
            tol: float) -> tuple[np.ndarray, list[str]]:
    """Batched (penalised) Fisher-scoring with step halving; steps capped at 5 logits."""
    B, k = s1.shape[0], Z.shape[1]
    why = [""] * B
    used = np.einsum("bm,mk,ml->bkl", (n > 0).astype(float), Z, Z)
    ev = np.linalg.eigvalsh(used)
    for b in np.flatnonzero(ev[:, 0] <= 1e-10 * np.maximum(ev[:, -1], 1e-300)):
        why[b] = "too few distinct points for the number of coefficients"
    G = np.zeros((B, k))
    tot = np.maximum(n.sum(1), 1e-300)
    ybar = np.clip(s1.sum(1) / tot, 1e-6, 1 - 1e-6)
    G[:, 0] = np.log(ybar / (1 - ybar))
    active = np.array([not r for r in why])
    for _ in range(max_iter):
        if not active.any():
            break
        obj, p, info = _objective(Z, s1, n, G, firth)
        lam, vec = np.linalg.eigh(info)
        bad = active & ~(lam[:, 0] > 1e-12 * np.maximum(lam[:, -1], 1e-300))
        for b in np.flatnonzero(bad):
            why[b] = "singular information matrix (the outcomes may be separable)"
        active &= ~bad
        lam[~active] = 1.0
        inv = np.einsum("bkj,bj,blj->bkl", vec, 1.0 / lam, vec)
        resid = s1 - n * p
        if firth:
            lev = np.einsum("mk,bkl,ml->bm", Z, inv, Z)
            resid = resid + n * p * (1 - p) * lev * (0.5 - p)
        step = np.einsum("bkl,bl->bk", inv, np.einsum("bm,mk->bk", resid, Z))
        step[~active] = 0.0
        big = np.abs(step).max(1, keepdims=True)
        step *= np.minimum(1.0, 5.0 / np.maximum(big, 1e-300))
        t = np.ones(B)
        for _ in range(40):
            new = _objective(Z, s1, n, G + t[:, None] * step, firth)[0]
            worse = active & ~(new >= obj - 1e-10 * (1 + np.abs(obj)))
            if not worse.any():
                break
            t[worse] /= 2
        G = G + t[:, None] * step
        done = np.abs(t[:, None] * step).max(1) < tol * (1 + np.abs(G).max(1))
        active &= ~done
    for b in np.flatnonzero(active):
        why[b] = "Newton did not converge (the outcomes may be separable)"
    return G, why


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
