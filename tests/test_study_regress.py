"""Regressions behind `fit` (`refusalscope.study.regress`): Firth's penalised logistic fit
against a direct optimiser, on separated data where the MLE has no finite value, with
bootstrap and fractional weights, and batched."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from refusalscope.study.regress import (FitFailed, logistic_batch, logistic_firth,
                                        logistic_mle, penalised_log_likelihood)


def _direct(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Maximise the penalised log-likelihood by BFGS then Nelder-Mead, from zero, on the raw
    (unstandardised) columns: an independent route to Firth's estimate."""
    f = lambda b: -penalised_log_likelihood(X, y, w, b)  # noqa: E731
    start = minimize(f, np.zeros(X.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    return minimize(f, start, method="Nelder-Mead", options={
        "xatol": 1e-11, "fatol": 1e-13, "maxiter": 60_000, "maxfev": 60_000}).x


def _runs(refused: list[tuple[float, float, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt rows from (log N, log C or 0, refused, of) per run: design [1, logN,
    attacked, logC] and labels."""
    X, y = [], []
    for ln, lc, k, m in refused:
        row = [1.0, ln, 1.0 if lc else 0.0, lc]
        X += [row] * m
        y += [1.0] * k + [0.0] * (m - k)
    return np.array(X), np.array(y)


# a 64/64-refused 1.5B baseline, a 40/64 0.5B baseline, mixed attacked cells on both
STRONG = [(np.log(1.54e9), 0.0, 64, 64), (np.log(4.94e8), 0.0, 40, 64),
          (np.log(1.54e9), np.log(3e12), 60, 64), (np.log(1.54e9), np.log(9e13), 19, 64),
          (np.log(4.94e8), np.log(1e12), 38, 64), (np.log(4.94e8), np.log(5e13), 6, 64)]


def test_strong_refuser_baseline_fits_finite_and_equals_direct_maximisation() -> None:
    X, y = _runs(STRONG)
    beta = logistic_firth(X, y)
    assert np.all(np.isfinite(beta)) and beta[1] > 0 and beta[3] < 0
    np.testing.assert_allclose(beta, _direct(X, y, np.ones(len(y))), rtol=1e-4, atol=1e-4)
    own = X[:, 1] == np.log(1.54e9)  # the 1.5B alone: its baseline's intercept separates
    with pytest.raises(FitFailed):
        logistic_mle(X[own][:, [0, 2, 3]], y[own])
    b15 = logistic_firth(X[own][:, [0, 2, 3]], y[own])
    np.testing.assert_allclose(b15, _direct(X[own][:, [0, 2, 3]], y[own], np.ones(own.sum())),
                               rtol=1e-4, atol=1e-4)
    w = np.ones(len(y))
    assert penalised_log_likelihood(X, y, w, beta) >= penalised_log_likelihood(
        X, y, w, beta + 1e-3 * np.array([1, -1, 1, -1]))


def test_perfectly_separated_transition_along_log_c() -> None:
    # all refused at the two smallest C, none at the two largest: the MLE slope is -infinity
    lc = np.log([1e11, 1e12, 1e13, 1e14])
    X = np.c_[np.ones(4 * 32), np.repeat(lc, 32)]
    y = np.repeat([1.0, 1.0, 0.0, 0.0], 32)
    with pytest.raises(FitFailed):
        logistic_mle(X, y)
    beta = logistic_firth(X, y)
    assert np.all(np.isfinite(beta)) and beta[1] < -1.0
    np.testing.assert_allclose(beta, _direct(X, y, np.ones(len(y))), rtol=1e-4, atol=1e-4)


def test_weights_fractional_zero_and_counts() -> None:
    rng = np.random.default_rng(0)
    X = np.c_[np.ones(300), rng.normal(20, 1.0, 300), rng.normal(30, 2.0, 300)]
    eta = -1 + 0.8 * (X[:, 1] - 20) - 0.5 * (X[:, 2] - 30)
    y = (rng.random(300) < 1 / (1 + np.exp(-eta))).astype(float)
    counts = rng.integers(0, 3, 300).astype(float)  # a bootstrap replicate: 0, 1 or 2 copies
    beta = logistic_firth(X, y, counts)
    rows = np.repeat(np.arange(300), counts.astype(int))
    np.testing.assert_allclose(logistic_firth(X[rows], y[rows]), beta, rtol=1e-8, atol=1e-9)
    frac = rng.uniform(0.0, 2.0, 300) * (counts > 0)  # fractional, with zero-weight rows
    bf = logistic_firth(X, y, frac)
    np.testing.assert_allclose(bf, _direct(X, y, frac), rtol=1e-4, atol=1e-4)
    # a zero-weight row may hold any label: it must not move the fit
    y2 = y.copy()
    y2[frac == 0] = 1 - y2[frac == 0]
    np.testing.assert_allclose(logistic_firth(X, y2, frac), bf, rtol=1e-10, atol=1e-10)


def test_firth_is_equivariant_to_affine_columns_and_shrinks_towards_zero() -> None:
    X, y = _runs(STRONG[1:])
    beta = logistic_firth(X, y)
    A = np.array([[1.0, 5.0, 0.0, -3.0], [0, 2.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 0.5]])
    np.testing.assert_allclose(A @ logistic_firth(X @ A, y), beta, rtol=1e-7, atol=1e-7)
    mle = logistic_mle(X, y)
    assert np.all(np.abs(beta[1:]) < np.abs(mle[1:]))  # bias reduction pulls slopes in


def test_batch_equals_single_fits_and_reports_failures() -> None:
    X, y = _runs(STRONG)
    design = np.unique(X, axis=0)
    row = [np.flatnonzero((X == d).all(1)) for d in design]
    rng = np.random.default_rng(1)
    W = rng.poisson(1.0, (5, len(y))).astype(float)
    s1 = np.array([[float((w[r] * y[r]).sum()) for r in row] for w in W])
    n = np.array([[float(w[r].sum()) for r in row] for w in W])
    beta, why = logistic_batch(design, s1, n)
    assert why == [""] * 5
    for b in range(5):
        np.testing.assert_allclose(beta[b], logistic_firth(X, y, W[b]), rtol=1e-7, atol=1e-7)
    # the 1.5B's own compute fit (a, d_attack, b_C): its 64/64 baseline has its own intercept,
    # which is +infinity for the MLE in every replicate, finite for Firth
    own = design[:, 1] == np.log(1.54e9)
    cols = [0, 2, 3]
    mle, why = logistic_batch(design[own][:, cols], s1[:, own], n[:, own], firth=False)
    assert all(why) and np.isnan(mle).all()
    firth, why = logistic_batch(design[own][:, cols], s1[:, own], n[:, own])
    assert why == [""] * 5 and np.isfinite(firth).all()
    n[0, 1:] = s1[0, 1:] = 0.0  # replicate 0 keeps one run: 4 coefficients, 1 point
    beta, why = logistic_batch(design, s1, n)
    assert why[0] == "too few distinct points for the number of coefficients"
    assert np.isnan(beta[0]).all() and why[1:] == [""] * 4 and np.isfinite(beta[1:]).all()
