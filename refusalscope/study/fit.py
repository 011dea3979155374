"""Scaling fits of RRR, RD and CE against model size N and attack compute C, with bootstrap CIs.

Forms (natural logs; N = parameters, C = attack FLOPs or examples processed):
- `logistic` (RRR only): logit P(refused) = a + b_N·log N + b_C·log C (+ b_NC·log N·log C),
  on per-prompt refusal labels by Firth's penalised likelihood (`regress.logistic_firth`:
  finite when a baseline refuses every prompt or a transition is sharp), or plain maximum
  likelihood (`estimator="mle"`, which has no finite estimate on separable data).
- `linear` ("log-linear"): run mean of the metric = a + b·log x, least squares on run means.
- `loglog`: log(run mean) = a + b·log x, least squares on runs with a mean above 0.

How the baseline (no attack, C = 0) enters: by default through its own intercept,
    η = a + b_N·log N + 1[attacked]·(d_attack + b_C·log C),
so `a` (+ b_N·log N) is the unattacked level and no constant has to be added to C. With
`c0` set, every run uses log(C + c0) instead (no `d_attack`). Log-log fits vs compute use the
attacked runs only (log 0 is undefined).

Confidence intervals: a paired cluster bootstrap. Each replicate resamples prompt ids with
replacement, once for all runs (paired: a prompt drawn twice counts twice in every run), and,
for every condition (model × attack strength) run with several seeds, resamples those seeds;
then every fit is refitted. Logistic fits get their interval by `interval` (default
`wald`: estimate ± t(P−1)·SE with a prompt-clustered sandwich SE plus a between-seed term,
the one method that held ≥ 0.93 in every setting of `benchmarks/fit_coverage.py`; the
bootstrap-based `studentized`, `bca` and `percentile` are options, see `clusterci`);
run-mean fits use bootstrap percentiles. The draws also give the curves' bands. A replicate whose fit has no finite estimate is never
dropped silently: `Fit.n_boot_failed` and `Fit.boot_failures` (reason -> count) record it
and a note says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.study.clusterci import INTERVALS, Labels, intervals
from refusalscope.study.fitgroups import build_specs
from refusalscope.study.fitspec import FitSpec, Gathered, cells_of, predict
from refusalscope.study.points import C_UNITS, METRICS, RD_OVER, Point
from refusalscope.study.sizes import N_KINDS
from refusalscope.study.regress import (FitFailed, log_likelihood, logistic_firth, logistic_mle,
                                        r_squared, wls)

X_AXES = ("size", "compute", "both")
ESTIMATORS = ("firth", "mle")


@dataclass(frozen=True)
class FitConfig:
    """What to fit and how to bootstrap it. Saved in `fit.json`."""

    metric: str = "rrr"
    x: str = "both"  # size | compute | both
    n_boot: int = 1000
    seed: int = 0
    alpha: float = 0.05
    interaction: bool = False  # add b_NC·log N·log C to the joint fit
    c0: float | None = None  # None: baseline as its own intercept; else log(C + c0)
    rd_over: str = "refused"  # RD over prompts refused at baseline, or all prompts
    c_axis: str | None = None  # compute/joint fits on this C only (C_UNITS); None: FLOPs, examples
    n_kind: str = "non-embedding"  # N in fits: non-embedding | total (released) parameters
    include_controls: bool = False  # keep never-refusing control models in fits vs size
    estimator: str = "firth"  # logistic fits: firth (finite on separation) | mle
    interval: str = "wald"  # logistic fits' CIs: see clusterci.INTERVALS

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UserError(f"unknown metric {self.metric!r}: one of {', '.join(METRICS)}")
        if self.x not in X_AXES:
            raise UserError(f"unknown --x {self.x!r}: one of {', '.join(X_AXES)}")
        if self.n_boot < 10:
            raise UserError(f"--n-boot must be at least 10 (got {self.n_boot})")
        if not 0 < self.alpha < 0.5:
            raise UserError(f"alpha must be in (0, 0.5) (got {self.alpha})")
        if self.c0 is not None and not self.c0 > 0:
            raise UserError(f"--c0 must be > 0 (got {self.c0})")
        if self.estimator not in ESTIMATORS:
            raise UserError(f"unknown --estimator {self.estimator!r}: one of "
                            + ", ".join(ESTIMATORS))
        if self.interval not in INTERVALS:
            raise UserError(f"unknown --interval {self.interval!r}: one of {', '.join(INTERVALS)}")
        if self.rd_over not in RD_OVER:
            raise UserError(f"unknown --rd-over {self.rd_over!r}: one of {', '.join(RD_OVER)}")
        if self.c_axis is not None and self.c_axis not in C_UNITS:
            raise UserError(f"unknown --c-axis {self.c_axis!r}: one of {', '.join(C_UNITS)}")
        if self.n_kind not in N_KINDS:
            raise UserError(f"unknown --n-kind {self.n_kind!r}: one of {', '.join(N_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Fit:
    """One fitted curve: coefficients with CIs, fit quality, and the bootstrap draws."""

    spec: FitSpec
    estimate: np.ndarray  # [k], names in spec.coef_names
    ci: np.ndarray  # [k, 2]
    quality: dict[str, Any]
    n_boot_ok: int
    boot: np.ndarray = field(repr=False)  # [n_boot_ok, k]
    n_boot_failed: int = 0  # replicates with no finite estimate (left out of the CI)
    boot_failures: dict[str, int] = field(default_factory=dict)  # reason -> replicates

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "quality": self.quality, "n_boot_ok": self.n_boot_ok,
                "n_boot_failed": self.n_boot_failed, "boot_failures": self.boot_failures,
                "coefficients": {n: {"estimate": float(e), "ci": [float(lo), float(hi)]}
                                 for n, e, (lo, hi) in zip(self.spec.coef_names, self.estimate,
                                                           self.ci, strict=True)}}

    def curve(self, n_params: np.ndarray, c: np.ndarray, alpha: float = 0.05
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fitted metric at (N, C) points and its pointwise bootstrap band: (mid, lo, hi)."""
        mid = predict(self.spec, self.estimate[None], n_params, c)[0]
        draws = predict(self.spec, self.boot, n_params, c)
        lo, hi = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
        return mid, lo, hi


@dataclass
class FitResult:
    """Everything `fit` found: the fits, per-condition summaries and notes on what was left out."""

    config: FitConfig
    fits: list[Fit]
    cells: list[dict[str, Any]]
    runs: list[str]
    notes: list[str]
    baseline_handling: str

    def to_dict(self) -> dict[str, Any]:
        return _finite({"schema_version": 1, "config": self.config.to_dict(), "runs": self.runs,
                        "baseline_handling": self.baseline_handling, "notes": self.notes,
                        "fits": [f.to_dict() for f in self.fits], "cells": self.cells})


def _finite(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python: `fit.json` stays strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def fit_metric(points: Sequence[Point], cfg: FitConfig) -> FitResult:
    """Fit `cfg.metric` against `cfg.x` over `points`, with bootstrap CIs.

    Example:
        res = fit_metric(gather_points(find_runs("artifacts/runs")), FitConfig("rrr", "compute"))
        [(f.spec.name, f.estimate, f.ci) for f in res.fits]
    """
    data = Gathered.from_points(points, cfg.metric, cfg.rd_over, n_kind=cfg.n_kind)
    if cfg.c_axis is not None:
        data.c_axes = (cfg.c_axis,)
    specs, notes = build_specs(data, cfg.x, interaction=cfg.interaction, c0=cfg.c0,
                               include_controls=cfg.include_controls)
    notes = data.notes + notes
    ones_w, ones_r = np.ones(data.n_prompts), np.ones(data.n_runs)
    kept: list[tuple[FitSpec, np.ndarray]] = []
    for s in specs:
        try:
            kept.append((s, estimate(data, s, ones_w, ones_r, cfg.estimator)))
        except FitFailed as e:
            notes.append(f"{s.name}: no fit ({e})")
    if not kept:
        raise UserError(f"no {cfg.metric} fit vs {cfg.x} is possible on these runs: "
                        + "; ".join(notes[-3:]))
    rng = np.random.default_rng(cfg.seed)
    draws = [data.resample(rng) for _ in range(cfg.n_boot)]
    W, R = np.array([d[0] for d in draws]), np.array([d[1] for d in draws])
    cell_keys = sorted(set(data.condition))
    cell_boot = np.array([[data.cell_mean(c, w, r) for w, r in draws] for c in cell_keys])
    fits = [_bootstrap(data, s, est, W, R, cfg) for s, est in kept]
    for f in fits:
        if f.n_boot_failed:
            why = "; ".join(f"{n}x {r}" for r, n in sorted(f.boot_failures.items()))
            notes.append(f"{f.spec.name}: {f.n_boot_failed}/{cfg.n_boot} bootstrap refits had "
                         f"no finite estimate ({why}); its CI uses the other {f.n_boot_ok}")
    cells = cells_of(data, cell_keys, cell_boot, cfg.alpha)
    handling = ("baseline runs (C = 0) enter through their own intercept: "
                "eta = a + b_N*log N + 1[attacked]*(d_attack + b_C*log C)" if cfg.c0 is None else
                f"every run uses log(C + c0) with c0 = {cfg.c0:g} (in the units of each C axis)")
    return FitResult(cfg, fits, cells, sorted({p.run for p in points}), notes, handling)


def _bootstrap(data: Gathered, spec: FitSpec, est: np.ndarray, W: np.ndarray, R: np.ndarray,
               cfg: FitConfig) -> Fit:
    """Refit `spec` on every replicate (prompt weights W [B, P], run weights R [B, n_runs]) and
    build its CI: logistic fits by `cfg.interval`, run-mean fits by percentile."""
    if spec.form == "logistic":
        labels = labels_of(data, spec)
        runs = list(spec.runs)
        firth = cfg.estimator == "firth"
        boot, why = labels.fit(W, R[:, runs], firth)
        interval = cfg.interval
    else:
        boot = np.full((len(W), len(est)), np.nan)
        why = [""] * len(W)
        for b, (w, r) in enumerate(zip(W, R, strict=True)):
            try:
                boot[b] = estimate(data, spec, w, r)
            except FitFailed as e:
                why[b] = str(e)
        interval = "percentile"
    ok = np.isfinite(boot).all(1)
    failures = Counter(r or "non-finite estimate" for r, o in zip(why, ok, strict=True) if not o)
    if not ok.any():
        ci = np.full((len(est), 2), np.nan)
    elif spec.form == "logistic":
        ci = intervals(labels, est, boot, W, R[:, runs], firth=firth, alpha=cfg.alpha,
                       methods=(interval,))[interval]
    else:
        ci = np.quantile(boot[ok], [cfg.alpha / 2, 1 - cfg.alpha / 2], axis=0).T
    q = {**quality(data, spec, est), "interval": interval}
    if spec.form == "logistic":
        q["estimator"] = cfg.estimator
    return Fit(spec, est, ci, q, int(ok.sum()), boot[ok], int((~ok).sum()), dict(failures))


def labels_of(data: Gathered, spec: FitSpec) -> Labels:
    """`spec`'s per-prompt labels as a [prompts, runs of spec] matrix with its design rows."""
    runs = np.asarray(spec.runs)
    rows = np.isin(data.row_run, runs)
    pos = np.full(data.n_runs, -1)
    pos[runs] = np.arange(len(runs))
    seeds: dict[tuple[str, str], list[int]] = {}
    for i, j in enumerate(runs):
        seeds.setdefault(data.condition[j], []).append(i)
    return Labels.from_rows(pos[data.row_run[rows]], data.row_prompt[rows], data.row_y[rows],
                            data.n_prompts, data.features(spec)[runs],
                            tuple(tuple(g) for g in seeds.values()))


def estimate(data: Gathered, spec: FitSpec, w: np.ndarray, r: np.ndarray,
             estimator: str = "firth") -> np.ndarray:
    """Coefficients of `spec` with prompt weights `w` [n_prompts] and run weights `r` [n_runs];
    logistic fits by Firth's penalised likelihood (or `estimator="mle"`)."""
    runs = np.asarray(spec.runs)
    if spec.form == "logistic":
        rows = np.isin(data.row_run, runs)
        rw = w[data.row_prompt[rows]] * r[data.row_run[rows]]
        X = data.features(spec)[data.row_run[rows]]
        fit = logistic_firth if estimator == "firth" else logistic_mle
        return fit(X, data.row_y[rows], rw)
    X, y, rw = run_level(data, spec, w, r)
    return wls(X, y, rw)


def run_level(data: Gathered, spec: FitSpec, w: np.ndarray, r: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design, response and weights of a run-mean fit (runs without weight dropped)."""
    runs = np.asarray(spec.runs)
    means = np.array([data.run_mean(j, w) for j in runs])
    keep = (r[runs] > 0) & np.isfinite(means)
    if spec.form == "loglog":
        keep &= means > 0
    y = np.log(means[keep]) if spec.form == "loglog" else means[keep]
    X = data.features(spec)[runs[keep]]
    if len(y) == 0:
        raise FitFailed("no run has a usable mean")
    return X, y, r[runs[keep]].astype(float)


def quality(data: Gathered, spec: FitSpec, est: np.ndarray) -> dict[str, Any]:
    """Fit quality on the data as observed: deviance and McFadden R^2, or R^2; sizes."""
    ones_w, ones_r = np.ones(data.n_prompts), np.ones(data.n_runs)
    out: dict[str, Any] = {"n_runs": len(spec.runs)}
    if spec.form == "logistic":
        rows = np.isin(data.row_run, np.asarray(spec.runs))
        X, y = data.features(spec)[data.row_run[rows]], data.row_y[rows]
        w = np.ones(len(y))
        ll = log_likelihood(X, y, w, est)
        p = float(y.mean())
        ll0 = float(np.sum(y * np.log(max(p, 1e-300)) + (1 - y) * np.log(max(1 - p, 1e-300))))
        out.update({"n_obs": int(len(y)), "deviance": -2 * ll, "null_deviance": -2 * ll0,
                    "pseudo_r2_mcfadden": 1 - ll / ll0 if ll0 < 0 else float("nan")})
    else:
        X, y, rw = run_level(data, spec, ones_w, ones_r)
        out.update({"n_obs": int(len(y)), "r2": r_squared(X, y, rw, est)})
        if spec.form == "loglog" and len(y) < len(spec.runs):
            out["n_runs_mean_zero"] = len(spec.runs) - len(y)  # log 0: left out of this fit
    return out
