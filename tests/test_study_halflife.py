"""Attack half-life S½ (`refusalscope.study.halflife`): recovery of a known S½ from synthetic
per-prompt labels, the algebra against a direct root of the fitted curve, bounds when the grid
does not reach half, strong refusers, slopes vs N, defenses, controls and the files written."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy.optimize import brentq

from refusalscope.errors import UserError
from refusalscope.study.halflife import HalfLifeConfig, half_life
from refusalscope.study.halflife_files import write_half_life
from refusalscope.study.points import Point
from refusalscope.study.regress import logistic_firth

BATCH = 4  # examples per step
STEPS = (1, 2, 4, 8, 16, 32, 64)
TOKENS = 100  # tokens per example: FLOPs = 6 · N · tokens · examples


def point(run: str, model: str, n: float, steps: int, refused: np.ndarray, *, seed: int = 0,
          defense: str = "none", control: bool = False, attack: str = "lora") -> Point:
    """A scored run: `steps` = 0 is the baseline."""
    k = len(refused)
    nan = np.full(k, np.nan)
    att = steps > 0
    return Point(run=run, model=model, n_params=int(n * 1.3), attack=attack if att else "none",
                 attack_run=None, variant="", n_data=16 if att else None,
                 steps=steps if att else None, examples=float(steps * BATCH),
                 flops=float(6 * n * TOKENS * steps * BATCH), seed=(seed, 0), scorer="test",
                 ids=tuple(f"p{i}" for i in range(k)), refused=np.asarray(refused, float),
                 ce=nan, rd=nan, rd_refused=nan, defense=defense, n_non_embedding=int(n),
                 control=control, pretrain_flops=6 * n * 1e12)


def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    return 1 / (1 + np.exp(-x))


def model_runs(model: str, n: float, a: float, d: float, b: float, rng: np.random.Generator, *,
               k: int = 128, steps: tuple[int, ...] = STEPS, seeds: tuple[int, ...] = (0,),
               defense: str = "none", baseline: bool = True, control: bool = False
               ) -> list[Point]:
    """Labels drawn from logit P(refused) = a + 1[attacked](d + b ln examples)."""
    out = [point(f"{model}-base", model, n, 0, rng.random(k) < sigmoid(a), defense=defense,
                 control=control)] if baseline else []
    for s in steps:
        for sd in seeds:
            p = sigmoid(a + d + b * math.log(s * BATCH))
            out.append(point(f"{model}-{defense}-{s}-{sd}", model, n, s, rng.random(k) < p,
                             seed=sd, defense=defense, control=control))
    return out


def true_s_half(a: float, d: float, b: float) -> float:
    """Examples at which a + d + b ln C = logit(sigmoid(a) / 2)."""
    half = sigmoid(a) / 2
    return math.exp((math.log(half / (1 - half)) - a - d) / b)


TRUE = (2.0, 3.0, -1.1)  # baseline 0.88; S½ ≈ 117 examples, inside the grid 4..256


def test_recovers_a_known_s_half_within_its_ci_over_many_datasets() -> None:
    truth = true_s_half(*TRUE)
    assert 4 < truth < 256
    covered, errors = 0, []
    for data_seed in range(20):  # every dataset of a fixed list, none picked
        pts = model_runs("m", 5e8, *TRUE, np.random.default_rng(data_seed))
        row = half_life(pts, HalfLifeConfig(n_boot=300, seed=data_seed)).rows[0]
        s = row.axes["examples"]
        assert s.status == "inside"
        lo, hi = np.exp(s.ci)
        covered += lo <= truth <= hi
        errors.append(math.log(s.value / truth))
    assert covered >= 17, covered  # nominal 95%: 19 of 20 expected
    assert abs(np.mean(errors)) < 0.1  # unbiased on the log scale


def test_s_half_is_the_root_of_the_firth_curve_fitted_to_per_prompt_rows() -> None:
    pts = model_runs("m", 5e8, *TRUE, np.random.default_rng(3))
    res = half_life(pts, HalfLifeConfig(n_boot=20))
    row = res.rows[0]
    # The same model fitted directly on per-prompt rows (not the per-run counts halflife uses).
    X = np.array([[1.0, float(p.attacked), math.log(p.examples) if p.attacked else 0.0]
                  for p in pts for _ in p.refused])
    y = np.concatenate([p.refused for p in pts])
    a, d, b = logistic_firth(X, y)
    assert row.baseline == pytest.approx(sigmoid(a), abs=1e-6)
    root = brentq(lambda lc: sigmoid(a + d + b * lc) - sigmoid(a) / 2, math.log(4),
                  math.log(256))
    assert row.axes["examples"].value == pytest.approx(math.exp(root), rel=1e-5)
    # Proportional axes are one fit: steps = examples / 4, FLOPs = examples · 6 N tokens,
    # pretraining fraction = FLOPs / (6 N D).
    ex = row.axes["examples"]
    assert row.axes["steps"].value == pytest.approx(ex.value / BATCH, rel=1e-9)
    assert row.axes["flops"].value == pytest.approx(ex.value * 6 * 5e8 * TOKENS, rel=1e-9)
    assert row.axes["pretrain-fraction"].value == pytest.approx(
        row.axes["flops"].value / (6 * 5e8 * 1e12), rel=1e-9)
    assert row.axes["flops"].cost_per_step == pytest.approx(6 * 5e8 * TOKENS * BATCH)
    assert row.baseline_observed == pytest.approx(float(pts[0].refused.mean()))


def test_not_reached_within_the_grid_is_a_lower_bound_never_an_extrapolation() -> None:
    slow = (2.0, 0.5, -0.2)  # S½ ~ 1e5 examples, far beyond 256
    assert true_s_half(*slow) > 1e4
    row = half_life(model_runs("m", 5e8, *slow, np.random.default_rng(0)),
                    HalfLifeConfig(n_boot=200)).rows[0]
    s = row.axes["examples"]
    assert s.status == "not_reached" and s.log == np.inf
    assert s.value == pytest.approx(256) and s.grid == pytest.approx((4, 256))
    assert s.text() == "not reached within C ≤ 256 (S½ > 256)"
    assert s.ci[1] == np.inf and "> 256" in s.ci_text()
    rows = list(csv.DictReader(_csv(row_points=model_runs("m", 5e8, *slow,
                                                          np.random.default_rng(0)))))
    ex = next(r for r in rows if r["axis"] == "examples")
    assert ex["status"] == "not_reached" and float(ex["s_half"]) == pytest.approx(256)
    assert ex["ci_hi"] == "inf"


def _csv(row_points: list[Point]) -> list[str]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        write_half_life(half_life(row_points, HalfLifeConfig(n_boot=50)), d, figure=False)
        return Path(d, "half_life.csv").read_text().splitlines()


def test_reached_before_the_grid_is_an_upper_bound() -> None:
    fast = (2.0, -3.0, -0.5)  # RRR already ~0.1 at 4 examples
    row = half_life(model_runs("m", 5e8, *fast, np.random.default_rng(0)),
                    HalfLifeConfig(n_boot=100)).rows[0]
    s = row.axes["examples"]
    assert s.status == "before_grid" and s.value == pytest.approx(4)
    assert s.text().startswith("≤ 4 (reached by the smallest attack)")


def test_strong_refuser_64_of_64_with_mixed_attacked_cells_gives_finite_s_half_and_ci() -> None:
    k = 64
    counts = {1: 64, 2: 62, 4: 55, 8: 40, 16: 22, 32: 8, 64: 1}  # refused of 64 per cell
    pts = [point("base", "m", 5e8, 0, np.ones(k))]
    pts += [point(f"s{s}", "m", 5e8, s, np.arange(k) < c) for s, c in counts.items()]
    res = half_life(pts, HalfLifeConfig(n_boot=500))
    row = res.rows[0]
    assert row.baseline_observed == 1.0 and 0.97 < row.baseline < 1.0  # Firth: finite
    s = row.axes["steps"]
    assert s.status == "inside" and 8 < s.value < 16  # the fitted curve crosses 0.5 here
    assert np.isfinite(s.ci).all() and s.ci[0] < s.log < s.ci[1]
    assert not row.failed and "failed" not in " ".join(res.notes)


def test_slope_vs_n_recovers_a_known_exponent_from_three_sizes() -> None:
    rng = np.random.default_rng(7)
    sizes, exponent = (2e8, 8e8, 3.2e9), 0.5
    pts = []
    for n in sizes:  # S½ (examples) = 20 · (N / 2e8)^0.5: d solves the curve through it
        a, b = 2.0, -1.3
        s_half = 20 * (n / 2e8) ** exponent
        half = sigmoid(a) / 2
        d = math.log(half / (1 - half)) - a - b * math.log(s_half)
        pts += model_runs(f"m{n:g}", n, a, d, b, rng, k=256)
    res = half_life(pts, HalfLifeConfig(n_boot=300))
    slope = next(s for s in res.slopes if s.axis == "examples")
    assert slope.models == [f"m{n:g}" for n in sizes]
    assert slope.ci[0] < exponent < slope.ci[1]
    assert slope.estimate == pytest.approx(exponent, abs=0.2)
    flops = next(s for s in res.slopes if s.axis == "flops")
    assert flops.estimate == pytest.approx(slope.estimate + 1, abs=1e-9)  # FLOPs/step ∝ N
    assert flops.cost_slope == pytest.approx(1.0) and slope.cost_slope == pytest.approx(0.0)


def test_two_sizes_with_the_larger_not_reached_bound_the_slope_from_below() -> None:
    rng = np.random.default_rng(2)
    pts = model_runs("small", 5e8, *TRUE, rng) + model_runs("big", 1.5e9, 2.0, 0.5, -0.2, rng)
    res = half_life(pts, HalfLifeConfig(n_boot=200))
    slope = next(s for s in res.slopes if s.axis == "examples")
    small = next(r for r in res.rows if r.model == "small").axes["examples"]
    assert math.isnan(slope.estimate)
    lower = (math.log(256) - small.log) / (math.log(1.5e9) - math.log(5e8))
    assert slope.bounds[0] == pytest.approx(lower) and slope.bounds[1] == np.inf


def test_defenses_use_the_right_baseline_and_controls_stay_out_of_slopes() -> None:
    rng = np.random.default_rng(4)
    pts = model_runs("m", 5e8, *TRUE, rng)
    pts += model_runs("m", 5e8, 2.0, 4.0, -1.1, rng, defense="steer", baseline=False)
    pts += model_runs("m+tar", 5e8, -1.0, 4.0, -1.1, rng, defense="tar")
    pts += model_runs("ctl", 1.35e8, -4.0, 0.0, -0.1, rng, control=True)
    res = half_life(pts, HalfLifeConfig(n_boot=100))
    by = {(r.model, r.defense): r for r in res.rows}
    undefended, steer, tar = by["m", "none"], by["m", "steer"], by["m+tar", "tar"]
    assert steer.baseline == pytest.approx(undefended.baseline, abs=0.02)  # the model's own
    assert tar.baseline_observed < 0.4  # TAR's own baseline, not the undefended one
    assert steer.base_model == "m" and tar.base_model == "m"
    assert steer.axes["examples"].value > undefended.axes["examples"].value
    assert by["ctl", "none"].control
    assert all("ctl" not in s.models for s in res.slopes)
    assert any("ctl" in s.models for s in half_life(pts, HalfLifeConfig(
        n_boot=20, include_controls=True)).slopes)
    assert any("baseline RRR" in n and "under 0.5" in n for n in res.notes)


def test_files_and_figure_are_written(tmp_path) -> None:
    rng = np.random.default_rng(5)
    pts = model_runs("small", 5e8, *TRUE, rng) + model_runs("big", 1.5e9, 2.0, 2.5, -1.0, rng)
    res = half_life(pts, HalfLifeConfig(n_boot=100, c_axis="examples"))
    files = write_half_life(res, tmp_path)
    assert {f.name for f in files} == {"half_life.csv", "half_life.md", "half_life.png",
                                       "half_life.pdf"}
    rows = list(csv.DictReader((tmp_path / "half_life.csv").open()))
    assert len(rows) == 2 * 4  # models × axes
    small = next(r for r in rows if r["model"] == "small" and r["axis"] == "steps")
    row = next(r for r in res.rows if r.model == "small")
    assert float(small["s_half"]) == pytest.approx(row.axes["steps"].value)
    md = (tmp_path / "half_life.md").read_text()
    assert row.axes["examples"].text() in md and "(2 points)" in md
    assert (tmp_path / "half_life.png").stat().st_size > 10_000


def test_no_baseline_or_no_attack_is_a_user_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="baseline"):
        half_life(model_runs("m", 5e8, *TRUE, rng, baseline=False))
    with pytest.raises(UserError, match="--c-axis"):
        HalfLifeConfig(c_axis="tokens")


def test_c_axis_selects_the_compute_axis_of_the_fits() -> None:
    from refusalscope.study.fit import FitConfig, fit_metric

    rng = np.random.default_rng(6)
    pts = model_runs("small", 5e8, *TRUE, rng, k=32) + model_runs("big", 1.5e9, *TRUE, rng, k=32)
    default = fit_metric(pts, FitConfig("rrr", "both", n_boot=20))
    assert {f.spec.c_axis for f in default.fits} == {"flops", "examples"}
    for axis in ("steps", "pretrain-fraction"):
        res = fit_metric(pts, FitConfig("rrr", "both", n_boot=20, c_axis=axis))
        assert {f.spec.c_axis for f in res.fits} == {axis}
    steps = fit_metric(pts, FitConfig("rrr", "compute", n_boot=20, c_axis="steps"))
    examples = fit_metric(pts, FitConfig("rrr", "compute", n_boot=20, c_axis="examples"))
    # ln examples = ln steps + ln 4: the same fit, b_C equal, the intercept shifted.
    f_s, f_e = (next(f for f in r.fits if f.spec.form == "logistic" and f.spec.group.startswith(
        "small")) for r in (steps, examples))
    i = f_s.spec.coef_names.index("b_C")
    assert f_s.estimate[i] == pytest.approx(f_e.estimate[i], rel=1e-6)
    with pytest.raises(UserError, match="--c-axis"):
        FitConfig("rrr", "both", c_axis="tokens")


def test_attack_configs_are_curves_of_their_own_and_unknown_compute_is_skipped() -> None:
    from dataclasses import replace

    rng = np.random.default_rng(8)
    pts = model_runs("m", 5e8, *TRUE, rng)
    pts = [pts[0]] + [replace(p, variant="a0f3") for p in pts[1:]]
    pts += [replace(p, variant="b2c1", run=p.run + "-b")
            for p in model_runs("m", 5e8, 2.0, 1.0, -1.1, rng, baseline=False)]
    pts.append(replace(pts[1], run="adapter-run", attack="adapter", variant="", steps=None,
                       examples=float("nan"), flops=float("nan")))
    res = half_life(pts, HalfLifeConfig(n_boot=50))
    by = {r.attack: r for r in res.rows}
    assert set(by) == {"lora a0f3", "lora b2c1"}  # the lr-like variants are not pooled
    assert by["lora b2c1"].axes["examples"].value < by["lora a0f3"].axes["examples"].value
    assert any("adapter" in n and "compute is unknown" in n for n in res.notes)
