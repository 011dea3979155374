"""Confidence intervals for logistic fits on paired refusal labels, clustered by prompt.

The study evaluates the *same* prompts in every run, and prompts differ a lot in how easily
they are refused, so a prompt's labels across runs are correlated: the prompt, not the
(prompt, run) label, is the independent unit. Every method here treats it so:

- `percentile`: paired cluster bootstrap (prompts resampled once for all runs, seeds within
  a condition), the 2.5/97.5% quantiles of the refitted coefficients.
- `bca`: the same draws with Efron's bias correction and acceleration (the acceleration from
  a leave-one-prompt-out jackknife).
- `studentized`: percentile-t cluster bootstrap: each replicate's coefficient is divided by
  its own cluster-robust (sandwich) standard error, and the quantiles of that t are used.
- `wald` (the default in `FitConfig`): estimate ± t(P−1) × cluster-robust standard error
  (no bootstrap), P = prompts; with several seeds per condition the sandwich also holds a
  between-seed term. Measured, it is the only one of the four that held ≥ 0.93 coverage in
  every simulated setting (the bootstrap ones fall to ~0.91 with 32 prompts or a near-
  separated strong refuser); see `benchmarks/RESULTS.md`.

Within a run every prompt shares the design row, so a fit only needs weighted binomial
counts per run: a replicate is prompt weights W [B, P] and run weights R [B, m], and the
counts are R·(W @ Y). `benchmarks/fit_coverage.py` measures the coverage of each method.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from refusalscope.study.regress import logistic_batch

INTERVALS = ("wald", "studentized", "bca", "percentile")


@dataclass(frozen=True)
class Labels:
    """Binary labels of P prompts in m runs, and the runs' design rows.

    Y: [P, m] labels (0 where missing); M: [P, m] 1 where prompt p was scored in run j;
    X: [m, k] design with a constant first column.
    """

    Y: np.ndarray
    M: np.ndarray
    X: np.ndarray
    groups: tuple[tuple[int, ...], ...] = ()  # runs that are seeds of one condition (>= 2)

    @classmethod
    def from_rows(cls, row_run: np.ndarray, row_prompt: np.ndarray, row_y: np.ndarray,
                  n_prompts: int, X: np.ndarray, groups: tuple[tuple[int, ...], ...] = ()
                  ) -> Labels:
        """From per-label rows whose run indices are 0..m-1 (rows of `X`)."""
        Y = np.zeros((n_prompts, len(X)))
        M = np.zeros((n_prompts, len(X)))
        Y[row_prompt, row_run] = row_y
        M[row_prompt, row_run] = 1.0
        return cls(Y, M, X, tuple(g for g in groups if len(g) > 1))

    def counts(self, W: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted refusals and weighted labels per run: (s1, n), each [B, m]."""
        return R * (W @ (self.Y * self.M)), R * (W @ self.M)

    def fit(self, W: np.ndarray, R: np.ndarray, firth: bool) -> tuple[np.ndarray, list[str]]:
        """Coefficients [B, k] (NaN where a fit failed) and a reason per failed fit."""
        s1, n = self.counts(W, R)
        return logistic_batch(self.X, s1, n, firth=firth)

    def robust_se(self, beta: np.ndarray, W: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Cluster-robust (sandwich, clustered by prompt) standard errors [B, k] of `beta`.

        V = I⁻¹·(c·Σ_p W_p (s_p − s̄)(s_p − s̄)ᵀ)·I⁻¹ with s_p = Σ_j R_j M_pj (y_pj − p_j) x_j
        the prompt's score, s̄ their weighted mean (Firth's estimate does not zero the plain
        score), and c = P/(P−1) the small-sample factor (P = total prompt weight). Where a
        condition was run with several seeds, the between-seed part of the run totals is
        added (`_seed_meat`): the prompt clusters alone treat each retrained attack as fixed.
        """
        p = 0.5 * (1.0 + np.tanh(0.5 * (np.nan_to_num(beta) @ self.X.T)))  # [B, m]
        n = R * (W @ self.M)
        info = np.einsum("bm,mk,ml->bkl", n * p * (1 - p), self.X, self.X)
        resid = self.M[None] * (self.Y[None] - p[:, None, :]) * R[:, None, :]  # [B, P, m]
        S = resid @ self.X  # [B, P, k]
        tot = W.sum(1)
        S = S - (np.einsum("bp,bpk->bk", W, S) / tot[:, None])[:, None, :]
        meat = np.einsum("bp,bpk,bpl->bkl", W, S, S) * (tot / (tot - 1))[:, None, None]
        meat = meat + self._seed_meat(resid / np.where(R > 0, R, 1.0)[:, None, :], W, R)
        bread = np.linalg.pinv(info, hermitian=True)
        var = np.einsum("bkl,blj,bji->bki", bread, meat, bread)
        se = np.sqrt(np.clip(np.diagonal(var, axis1=1, axis2=2), 0.0, None))
        se[~np.isfinite(beta).all(1)] = np.nan
        return se


    def _seed_meat(self, e: np.ndarray, W: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Two-way (prompt × seed) term [B, k, k] from residuals e [B, P, m].

        For a condition c with seeds j (same design row x_c): d_pj = e_pj − mean over seeds,
        D_j = Σ_p W_p d_pj; the seed variance is k/(k−1)·Σ_j R_j (D_j² − Σ_p W_p² d_pj²),
        i.e. the covariance of a run's residuals across prompts (what a seed effect
        shares), with each prompt's own part — already in the prompt meat — taken out
        (Cameron, Gelbach & Miller 2011). Clipped at 0; k = distinct seeds drawn.
        """
        out = np.zeros((len(W), self.X.shape[1], self.X.shape[1]))
        for js in self.groups:
            r = R[:, js]
            k = (r > 0).sum(1)
            mean = np.einsum("bpj,bj->bp", e[:, :, js], r) / np.maximum(r.sum(1), 1)[:, None]
            d = (e[:, :, js] - mean[:, :, None]) * (r > 0)[:, None, :]
            D = np.einsum("bp,bpj->bj", W, d)
            own = np.einsum("bp,bpj->bj", W**2, d**2)
            var = np.sum(r * (D**2 - own), 1) * np.where(k > 1, k / np.maximum(k - 1, 1), 0.0)
            x = self.X[js[0]]
            out += np.clip(var, 0.0, None)[:, None, None] * np.outer(x, x)[None]
        return out


def bootstrap_weights(rng: np.random.Generator, n_prompts: int, groups: list[list[int]],
                      n_runs: int, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired cluster-bootstrap weights: W [B, P] prompt counts (the same draw for every run)
    and R [B, m] run counts (the seeds of a condition, `groups`, resampled among themselves)."""
    W = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=n_boot)
    R = np.ones((n_boot, n_runs))
    for js in groups:
        if len(js) > 1:
            R[:, js] = rng.multinomial(len(js), np.full(len(js), 1 / len(js)), size=n_boot)
    return W.astype(float), R


def intervals(labels: Labels, est: np.ndarray, boot: np.ndarray, W: np.ndarray, R: np.ndarray,
              *, firth: bool, alpha: float, methods: tuple[str, ...]) -> dict[str, np.ndarray]:
    """CIs [k, 2] by each method in `methods` from the estimate [k] and bootstrap draws
    `boot` [B, k] made with weights (W, R); failed draws (NaN rows) are left out."""
    ok = np.isfinite(boot).all(1)
    out: dict[str, np.ndarray] = {}
    lo_q, hi_q = alpha / 2, 1 - alpha / 2
    P = labels.Y.shape[0]
    ones_w, ones_r = np.ones((1, P)), np.ones((1, labels.X.shape[0]))
    se = labels.robust_se(est[None], ones_w, ones_r)[0] if {"wald", "studentized"} & set(
        methods) else None
    for m in methods:
        if m == "percentile":
            out[m] = np.quantile(boot[ok], [lo_q, hi_q], axis=0).T
        elif m == "wald":
            from scipy import stats  # installed with sentence-transformers; only this needs it

            assert se is not None
            t = float(stats.t.ppf(hi_q, P - 1))
            out[m] = np.c_[est - t * se, est + t * se]
        elif m == "studentized":
            assert se is not None
            se_b = labels.robust_se(boot[ok], W[ok], R[ok])
            se_b[~(se_b > 0)] = np.nan  # a replicate with no spread has no t: left out
            tb = (boot[ok] - est) / se_b
            q_lo, q_hi = np.nanquantile(tb, [lo_q, hi_q], axis=0)
            out[m] = np.c_[est - q_hi * se, est - q_lo * se]
        elif m == "bca":
            out[m] = _bca(labels, est, boot[ok], firth, alpha)
        else:
            raise ValueError(f"unknown interval {m!r}")
    return out


def _bca(labels: Labels, est: np.ndarray, boot: np.ndarray, firth: bool,
         alpha: float) -> np.ndarray:
    """Efron's BCa interval [k, 2]; acceleration from the leave-one-prompt-out jackknife."""
    P, m = labels.Y.shape
    jack, _ = labels.fit(1.0 - np.eye(P), np.ones((P, m)), firth)
    jack = jack[np.isfinite(jack).all(1)]
    d = jack.mean(0) - jack
    den = 6.0 * np.sum(d**2, 0) ** 1.5
    a = np.where(den > 0, np.sum(d**3, 0) / np.where(den > 0, den, 1.0), 0.0)
    frac = (np.sum(boot < est, 0) + 0.5 * np.sum(boot == est, 0)) / len(boot)
    nd = NormalDist()
    frac = np.clip(frac, 1 / (2 * len(boot)), 1 - 1 / (2 * len(boot)))
    z0 = np.array([nd.inv_cdf(float(f)) for f in frac])
    out = np.empty((len(est), 2))
    for i, q in enumerate((alpha / 2, 1 - alpha / 2)):
        z = z0 + nd.inv_cdf(q)
        adj = np.array([nd.cdf(float(v)) for v in z0 + z / (1 - a * z)])
        out[:, i] = [np.quantile(boot[:, c], adj[c]) for c in range(len(est))]
    return out
