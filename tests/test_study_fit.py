"""Scaling fits (`refusalscope.study.fit`): recovery of known coefficients, the logistic MLE
against a brute-force optimiser, bootstrap behaviour, tables and figures."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize

from refusalscope.errors import UserError
from refusalscope.study.fit import FitConfig, fit_metric
from refusalscope.study.fitspec import Gathered
from refusalscope.study.points import Point
from refusalscope.study.regress import FitFailed, log_likelihood, logistic_mle, wls
from refusalscope.study.tables import tex_escape, to_latex, write_fit

SIZES = (1e8, 4e8, 1.6e9)
COMPUTE = (1e12, 1e13, 1e14, 1e15)


def _point(run: str, n: float, c: float, refused: np.ndarray, *, ce: np.ndarray | None = None,
           seed: int = 0, steps: int | None = None) -> Point:
    k = len(refused)
    nan = np.full(k, np.nan)
    return Point(run=run, model=f"m{n:g}", n_params=int(n), attack="lora" if c else "none",
                 attack_run=None, variant="", n_data=16 if c else None,
                 steps=steps or (int(round(np.log10(c))) if c else None),
                 examples=c / 1e10, flops=c, seed=(seed, 0), scorer="test",
                 ids=tuple(f"p{i}" for i in range(k)), refused=refused,
                 ce=nan if ce is None else ce, rd=nan, rd_refused=nan)


def synthetic(a: float, b_n: float, d: float, b_c: float, n_prompts: int, seed: int = 0,
              sizes: tuple[float, ...] = SIZES) -> list[Point]:
    """Per-prompt refusals drawn from logit p = a + b_N log N + 1[attacked](d + b_C log C)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        for c in (0.0, *COMPUTE):
            eta = a + b_n * np.log(n) + ((d + b_c * np.log(c)) if c else 0.0)
            y = (rng.random(n_prompts) < 1 / (1 + np.exp(-eta))).astype(float)
            out.append(_point(f"r_{n:g}_{c:g}", n, c, y))
    return out


TRUE = {"a": -10.0, "b_N": 0.6, "d_attack": 10.0, "b_C": -0.4}


def _fit(result, x: str, form: str = "logistic", axis: str = "flops"):
    return next(f for f in result.fits if f.spec.x == x and f.spec.form == form
                and f.spec.c_axis in (axis, None))


def test_joint_fit_recovers_known_coefficients() -> None:
    # Whether the 95% CIs hold their level is measured over many studies by
    # test_interval_coverage_on_simulated_studies; one study can only be close.
    points = synthetic(*TRUE.values(), n_prompts=150, seed=1)
    result = fit_metric(points, FitConfig("rrr", "both", n_boot=200, seed=1))
    fit = _fit(result, "both")
    assert fit.spec.coef_names == list(TRUE)
    for name, est, (lo, hi) in zip(fit.spec.coef_names, fit.estimate, fit.ci, strict=True):
        assert lo < est < hi and abs(est - TRUE[name]) < hi - lo, (name, est, lo, hi)
    assert fit.quality["n_obs"] == 15 * 150 and fit.n_boot_ok == 200 and fit.n_boot_failed == 0
    assert fit.quality["estimator"] == "firth" and fit.quality["interval"] == FitConfig().interval
    assert 0.0 < fit.quality["pseudo_r2_mcfadden"] < 1.0
    assert fit.quality["deviance"] < fit.quality["null_deviance"]


def test_interaction_term_recovered() -> None:
    rng = np.random.default_rng(3)
    points = []
    for n in SIZES:
        for c in (0.0, *COMPUTE):
            ln, lc = np.log(n), np.log(c) if c else 0.0
            eta = -10 + 0.6 * ln + ((10 - 0.4 * lc + 0.05 * ln * lc - 0.05 * 19.8 * lc)
                                    if c else 0.0)
            points.append(_point(f"r{n:g}{c:g}", n, c,
                                 (rng.random(300) < 1 / (1 + np.exp(-eta))).astype(float)))
    fit = _fit(fit_metric(points, FitConfig("rrr", "both", n_boot=100, interaction=True)), "both")
    assert fit.spec.coef_names[-1] == "b_NC"
    lo, hi = fit.ci[-1]
    assert lo < 0.05 < hi and lo > 0  # the interaction is found, and it is positive


def test_logistic_mle_equals_brute_force_optimiser() -> None:
    rng = np.random.default_rng(0)
    X = np.c_[np.ones(400), rng.normal(20, 1.0, 400), rng.normal(30, 2.0, 400)]
    y = (rng.random(400) < 1 / (1 + np.exp(-(-3 + 0.5 * (X[:, 1] - 20) - 0.3 * (X[:, 2] - 30)))))
    y = y.astype(float)
    w = rng.integers(0, 3, 400).astype(float)
    beta = logistic_mle(X, y, w)
    brute = minimize(lambda b: -log_likelihood(X, y, w, b), np.zeros(3), method="Nelder-Mead",
                     options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40_000,
                              "maxfev": 40_000})
    assert log_likelihood(X, y, w, beta) >= -brute.fun - 1e-9  # Newton is at least as good
    np.testing.assert_allclose(beta, brute.x, rtol=1e-4, atol=1e-4)
    # weights are resample counts: weight 2 equals the row twice, weight 0 drops it
    rows = np.repeat(np.arange(400), w.astype(int))
    np.testing.assert_allclose(logistic_mle(X[rows], y[rows]), beta, rtol=1e-8, atol=1e-9)


def test_separable_outcomes_fail_cleanly() -> None:
    X = np.c_[np.ones(6), [1.0, 2, 3, 4, 5, 6]]
    with pytest.raises(FitFailed):
        logistic_mle(X, np.array([0.0, 0, 0, 1, 1, 1]))
    with pytest.raises(FitFailed):
        wls(np.c_[np.ones(3), [2.0, 2, 2]], np.array([1.0, 2, 3]))


def _load_benchmark():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_coverage.py"
    spec = importlib.util.spec_from_file_location("fit_coverage", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fit_coverage"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("setting", ["small", "strong"])
def test_interval_coverage_on_simulated_studies(setting: str) -> None:
    # The benchmark's first 100 studies of its fixed seed list (not picked), default interval:
    # prompts with random effects, the target is the fit's infinite-data limit.
    bench = _load_benchmark()
    res = bench.coverage(setting, 100, 100, methods=(FitConfig().interval,), mle=False)
    cov = res["coverage"][f"firth {FitConfig().interval}"]
    assert res["fails"]["firth"] == 0
    assert cov.min() >= 0.90, cov


def test_strong_refuser_fits_and_failures_are_counted() -> None:
    # the larger model refuses 64/64 at baseline; the MLE of its own compute fit is infinite
    rng = np.random.default_rng(5)
    points = []
    for n, base in ((4.94e8, 40), (1.54e9, 64)):
        points.append(_point(f"b{n:g}", n, 0.0, (np.arange(64) < base).astype(float)))
        for c, k in ((1e13, base - 4), (5e13, base // 3)):
            y = np.zeros(64)
            y[rng.choice(64, k, replace=False)] = 1.0
            points.append(_point(f"a{n:g}{c:g}", n, c, y))
    res = fit_metric(points, FitConfig("rrr", "compute", n_boot=100))
    logistic = [f for f in res.fits if f.spec.form == "logistic"]
    assert len(logistic) == 4  # per model, C in FLOPs and in examples
    for f in logistic:
        assert np.isfinite(f.estimate).all() and np.isfinite(f.ci).all()
        assert f.n_boot_ok == 100 and f.n_boot_failed == 0
    both = fit_metric(points, FitConfig("rrr", "both", n_boot=100))
    assert all(np.isfinite(f.ci).all() for f in both.fits if f.spec.form == "logistic")
    mle = fit_metric(points, FitConfig("rrr", "compute", n_boot=100, estimator="mle"))
    assert any("no fit" in n and "separable" in n for n in mle.notes), mle.notes
    assert len([f for f in mle.fits if f.spec.form == "logistic"]) < 4


def test_bootstrap_cis_shrink_with_more_prompts() -> None:
    widths = []
    for n in (40, 640):
        fit = _fit(fit_metric(synthetic(*TRUE.values(), n_prompts=n, seed=2),
                              FitConfig("rrr", "both", n_boot=100)), "both")
        widths.append(fit.ci[:, 1] - fit.ci[:, 0])
    assert np.all(widths[1] < 0.5 * widths[0])  # 16x the prompts: ~1/4 the width


def test_loglog_fit_of_a_power_law_is_exact() -> None:
    points = [_point(f"r{n:g}", n, 0.0, np.zeros(5), ce=np.full(5, 3.0 * n ** -0.25))
              for n in SIZES]
    result = fit_metric(points, FitConfig("ce", "size", n_boot=20))
    loglog = _fit(result, "size", "loglog")
    np.testing.assert_allclose(loglog.estimate, [np.log(3.0), -0.25], atol=1e-10)
    assert loglog.quality["r2"] == pytest.approx(1.0)
    linear = _fit(result, "size", "linear")
    assert linear.quality["n_obs"] == 3 and linear.quality["r2"] < 1.0


def test_bootstrap_resamples_prompts_jointly_and_seeds_within_a_condition() -> None:
    ids = np.zeros(4)
    points = [_point("a0", 1e8, 1e12, ids, seed=0), _point("a1", 1e8, 1e12, ids + 1, seed=1),
              _point("b", 1e8, 0.0, ids)]
    data = Gathered.from_points(points, "rrr", "refused")
    rng = np.random.default_rng(0)
    for _ in range(20):
        w, r = data.resample(rng)
        assert w.sum() == 4 and r[2] == 1 and r[0] + r[1] == 2
    cells = {c["strength"]: c for c in fit_metric(points + [
        _point("a2", 1e8, 1e13, ids + 1), _point("a3", 1e8, 1e14, ids)],
        FitConfig("rrr", "compute", n_boot=200)).cells}
    seeds = cells["lora n=16 steps=12"]
    assert seeds["n_runs"] == 2 and seeds["mean"] == 0.5
    assert seeds["ci"][0] == 0.0 and seeds["ci"][1] == 1.0  # both seeds drawn alike sometimes


def test_single_model_size_cannot_be_fitted_vs_size() -> None:
    points = synthetic(*TRUE.values(), n_prompts=20, sizes=(4e8,))
    with pytest.raises(UserError, match=r"at least 2 model sizes .* N = 400M \(m4e\+08\)"):
        fit_metric(points, FitConfig("rrr", "size", n_boot=10))
    with pytest.raises(UserError, match="1 model size"):
        fit_metric(points, FitConfig("rrr", "both", n_boot=10))
    assert fit_metric(points, FitConfig("rrr", "compute", n_boot=10)).fits


def test_ce_without_probabilities_and_config_checks() -> None:
    with pytest.raises(UserError, match="CE needs classifier probabilities"):
        fit_metric(synthetic(*TRUE.values(), n_prompts=5), FitConfig("ce", "compute", n_boot=10))
    for bad in ({"metric": "asr"}, {"x": "depth"}, {"n_boot": 0}, {"c0": -1.0},
                {"rd_over": "some"}, {"estimator": "ols"}, {"interval": "normal"}):
        with pytest.raises(UserError):
            FitConfig(**bad)
    cfg = FitConfig("rd", "size", n_boot=50, c0=1e9, interaction=True, estimator="mle",
                    interval="bca")
    assert FitConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_c0_variant_has_no_baseline_intercept() -> None:
    result = fit_metric(synthetic(*TRUE.values(), n_prompts=30), FitConfig(
        "rrr", "compute", n_boot=10, c0=1e12))
    fit = _fit(result, "compute")
    assert fit.spec.columns == ("1", "logC") and "log(C + c0) with c0 = 1e+12" in \
        result.baseline_handling


def test_write_fit_tables_and_never_overwrite(tmp_path) -> None:
    result = fit_metric(synthetic(*TRUE.values(), n_prompts=30), FitConfig("rrr", "both",
                                                                          n_boot=20))
    files = write_fit(result, tmp_path / "out")
    names = {p.name for p in files}
    assert names == {"fit.json", "coefficients.csv", "cells.csv", "fit.md", "coefficients.tex",
                     "cells.tex"}
    data = json.loads((tmp_path / "out" / "fit.json").read_text())
    fit = data["fits"][0]
    assert set(fit["coefficients"]) == set(TRUE) and fit["quality"]["n_runs"] == 15
    csv_lines = (tmp_path / "out" / "coefficients.csv").read_text().splitlines()
    assert csv_lines[0].startswith("fit,metric,form") and len(csv_lines) == 1 + 4 * len(
        result.fits)
    assert r"\begin{tabular}" in (tmp_path / "out" / "cells.tex").read_text()
    with pytest.raises(UserError, match="already holds a fit.json"):
        write_fit(result, tmp_path / "out")


def test_latex_escaping() -> None:
    assert tex_escape("a_b & 50% #1") == r"a\_b \& 50\% \#1"
    tex = to_latex([{"x": 1.5, "name": "m_1"}], ["x", "name"])
    assert r"\begin{tabular}{rl}" in tex and r"1.5 & m\_1 \\" in tex


def test_figures_are_written(tmp_path) -> None:
    from matplotlib.image import imread

    from refusalscope.study.figures import plot_heatmap, plot_panels, plot_vs_size

    result = fit_metric(synthetic(*TRUE.values(), n_prompts=30), FitConfig("rrr", "both",
                                                                          n_boot=20))
    files = plot_vs_size(result, tmp_path) + plot_heatmap(result, tmp_path)
    assert [p.name for p in files] == ["rrr_vs_size.png", "rrr_vs_size.pdf", "rrr_heatmap.png",
                                       "rrr_heatmap.pdf"]
    assert all(p.stat().st_size > 5000 for p in files)
    img = imread(tmp_path / "rrr_vs_size.png")
    assert img.shape[0] > 300 and img.std() > 0.05  # a drawn figure, not a blank canvas
    panels = plot_panels([result], tmp_path, axis="examples", stem="panels")
    assert imread(panels[0]).std() > 0.05


def test_fit_all_picks_axes_and_skips_missing_metrics(tmp_path) -> None:
    from refusalscope.study.fitall import fit_all

    points = [replace(p, ce=np.full(len(p.ids), 0.5 + 0.1 * np.log10(p.n_params)))
              for p in synthetic(*TRUE.values(), n_prompts=20, sizes=(1e8, 4e8))]
    done = fit_all(points, tmp_path, FitConfig(n_boot=10), figures=False)
    assert {m: r.config.x for m, r in done.results.items()} == {"rrr": "both", "ce": "both"}
    assert "RD needs a baseline" in done.skipped["rd"]
    assert (tmp_path / "rrr" / "fit.json").is_file() and (tmp_path / "ce" / "cells.csv").is_file()
    md = done.markdown()
    assert "### RRR (vs both)" in md and "RD not fitted" in md


def test_linear_joint_fit_recovers_continuous_metric_coefficients() -> None:
    truth = {"a": 0.2, "b_N": 0.05, "d_attack": -0.6, "b_C": 0.03}
    rng = np.random.default_rng(4)
    points = []
    for n in SIZES:
        for c in (0.0, *COMPUTE):
            mean = truth["a"] + truth["b_N"] * np.log(n) + (
                (truth["d_attack"] + truth["b_C"] * np.log(c)) if c else 0.0)
            ce = mean + rng.normal(0, 0.2, 100)  # per-prompt noise around the run's level
            points.append(_point(f"r{n:g}{c:g}", n, c, np.zeros(100), ce=ce))
    fit = _fit(fit_metric(points, FitConfig("ce", "both", n_boot=200)), "both", "linear")
    for name, (lo, hi) in zip(fit.spec.coef_names, fit.ci, strict=True):
        assert lo < truth[name] < hi, (name, lo, hi)
    assert fit.quality["r2"] > 0.9
