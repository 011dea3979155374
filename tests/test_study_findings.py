"""The Findings section (`refusalscope.study.findings`): numbers from the fits for a 2-size
study, "cannot answer" with what to add for a 1-size / control-only / one-seed / undefended
study, warnings, failed bootstrap refits, and the section at the top of `study report`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from test_study_halflife import TRUE, model_runs
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.study.findings import findings, size_fit
from refusalscope.study.halflife import HalfLifeConfig, half_life, slope_text
from refusalscope.study.points import Point


def _findings(points: list[Point], n_boot: int = 100, include_controls: bool = False) -> str:
    size, why = size_fit(points, n_boot=n_boot, include_controls=include_controls)
    try:
        half, half_why = half_life(points, HalfLifeConfig(
            n_boot=n_boot, include_controls=include_controls)), ""
    except Exception as e:  # noqa: BLE001 - the text must say why
        half, half_why = None, str(e)
    return findings(points, size=size, size_why=why, half=half, half_why=half_why,
                    include_controls=include_controls)


def test_two_size_study_states_the_numbers_behind_each_answer() -> None:
    rng = np.random.default_rng(11)
    pts = (model_runs("small", 5e8, *TRUE, rng)
           + model_runs("big", 1.5e9, 3.5, 1.0, -0.9, rng)  # S½ 158 examples vs 117
           + model_runs("small", 5e8, 2.0, 3.4, -1.1, rng, defense="steer", baseline=False))
    size, _ = size_fit(pts, n_boot=100)
    half = half_life(pts, HalfLifeConfig(n_boot=100))
    text = findings(pts, size=size, size_why="", half=half, n_boot=300)
    i = size.spec.coef_names.index("b_N")
    b, (lo, hi) = size.estimate[i], size.ci[i]
    assert b > 0  # true baselines 0.88 and 0.97
    assert f"b_N = {b:.2f} [{lo:.2f}, {hi:.2f}] per unit ln N (from 2 sizes)" in text
    small, big = (float(np.mean([p.refused.mean() for p in pts if p.model == m
                                 and not p.attacked])) for m in ("small", "big"))
    assert f"Baseline RRR rises with size: small (500M) {small:.2f} [" in text
    assert f"larger minus smaller {big - small:+.2f} [+0.0" in text
    for r in half.rows:
        if r.defense == "none":
            assert f"{r.model} ({r.n / 1e6:.0f}M" in text or f"{r.model} (1.50B" in text
            assert r.axes["examples"].text(unit=True) in text
            assert r.axes["flops"].short() in text
    slope = next(s for s in half.slopes if s.axis == "flops" and s.defense == "none")
    assert f"S½ ∝ N^{slope_text(slope)} in FLOPs (slope from 2 sizes)" in text
    assert f"cost of one step ∝ N^{slope.cost_slope:.2f}" in text
    assert "in steps S½ ∝ N^" in text
    steer = next(r for r in half.rows if r.defense == "steer")
    undefended = next(r for r in half.rows if (r.model, r.defense) == ("small", "none"))
    ratio = np.exp(steer.axes["examples"].log - undefended.axes["examples"].log)
    assert f"Under the steer defense (lora, small) S½ is {steer.axes['examples'].text(True)}" \
        in text and f"undefended (×{ratio:.2g} [" in text
    assert "One attack seed only" in text and "seeds = [0, 1, 2]" in text
    assert text.index("1. **Size.**") < text.index("2. **Attack") < text.index("3. **Def")


def test_one_size_study_says_it_cannot_answer_the_size_question() -> None:
    rng = np.random.default_rng(1)
    pts = (model_runs("only", 5e8, *TRUE, rng, seeds=(0, 1, 2))
           + model_runs("ctl", 1.35e8, -4.0, 0.0, -0.1, rng, control=True, steps=()))
    text = _findings(pts)
    assert ("1. **Size.** Cannot say how baseline RRR changes with size: only one refusing "
            "model size has a baseline (only (500M)") in text
    assert "ctl is a control, left out" in text
    assert "Add a second refusing model size of the same family" in text
    assert "How S½ scales with N cannot be told: one refusing size was attacked" in text
    assert "One attack seed only" not in text  # three seeds
    assert "No defense in this study" in text and "[defenses.steer]" in text
    assert "- Controls, left out of the size and half-life fits" in text
    assert "ctl (135M) baseline RRR 0.0" in text


def test_a_control_only_attack_and_a_weak_refuser_are_called_out() -> None:
    rng = np.random.default_rng(2)
    pts = (model_runs("ctl", 1.35e8, -4.0, 0.0, -0.1, rng, control=True)
           + model_runs("weak", 5e8, -0.5, 0.0, -0.1, rng, steps=()))
    text = _findings(pts)
    assert "only control models (which do not refuse) were attacked" in text
    assert "- Warning: weak refuses" in text and "(RRR under 0.5)" in text
    kept = _findings(pts, include_controls=True)
    assert "kept in the fits (--include-controls)" in kept


def test_failed_bootstrap_refits_are_counted_with_their_reason() -> None:
    from refusalscope.study.fit import FitConfig, fit_metric

    # Plain MLE on two baselines, one refusing 63 of 64: every replicate that misses its one
    # non-refused prompt separates and fails.
    k = 64
    pts = [model_runs(m, n, 0.0, 0.0, 0.0, np.random.default_rng(0), k=k, steps=())[0]
           for m, n in (("a", 5e8), ("b", 1.5e9))]
    pts = [_with(pts[0], np.arange(k) < 60), _with(pts[1], np.arange(k) < 63)]
    res = fit_metric(pts, FitConfig("rrr", "size", n_boot=50, estimator="mle",
                                    interval="percentile"))
    fit = next(f for f in res.fits if f.spec.form == "logistic")
    assert 0 < fit.n_boot_failed < 50
    text = findings(pts, fits=[res])
    assert f"{fit.n_boot_failed} of 50 bootstrap refits failed (" in text


def _with(p: Point, refused: np.ndarray) -> Point:
    from dataclasses import replace

    return replace(p, refused=refused.astype(float))


def test_study_report_opens_with_findings_and_writes_the_half_life(tmp_path: Path) -> None:
    from study_fixtures import make_study

    spec = make_study(tmp_path / "s")
    res = CliRunner().invoke(app, ["study", "run", str(spec)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["study", "report", str(spec), "--out", str(tmp_path / "rep"),
                                   "--n-boot", "30", "--c-axis", "steps"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "rep" / "report.md").read_text()
    assert report.index("## Findings") < report.index("## Setup")
    assert "1. **Size.** Cannot say how baseline RRR changes with size" in report
    assert "2. **Attack compute.** Attack compute to halve RRR (lora): tiny-llama" in report
    assert "## Attack half-life S½" in report and "![half_life](half_life.png)" in report
    rows = (tmp_path / "rep" / "half_life.csv").read_text().splitlines()
    assert rows[0].startswith("model,n,attack,defense,control,axis,s_half,status")
    assert len(rows) == 1 + 3  # examples, steps, flops (no pretraining tokens for a tiny model)
    # The same runs through `fit --half-life`, and its option checks.
    gens = sorted(str(p.parent) for p in tmp_path.rglob("manifest.json")
                  if json.loads(p.read_text()).get("command") == "generate")
    out = tmp_path / "fit"
    res = CliRunner().invoke(app, ["fit", *gens, "--x", "compute", "--half-life", "--n-boot",
                                   "30", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "attack half-life S½" in res.output
    assert (out / "half_life.csv").read_text().splitlines()[1:] == rows[1:]
    res = CliRunner().invoke(app, ["fit", *gens, "--metric", "rd", "--half-life"])
    assert res.exit_code == 2 and "--half-life needs --metric rrr" in res.output
    res = CliRunner().invoke(app, ["study", "report", str(spec), "--c-axis", "tokens"])
    assert res.exit_code == 2 and "unknown --c-axis" in res.output
    # N as the released count: the fits say so (the default report says non-embedding).
    assert "N (column n) = non-embedding parameters" in report
    res = CliRunner().invoke(app, ["study", "report", str(spec), "--out", str(tmp_path / "rt"),
                                   "--n-boot", "30", "--n-kind", "total"])
    assert res.exit_code == 0, res.output
    total = (tmp_path / "rt" / "report.md").read_text()
    assert "N (column n) = released parameters" in total
    assert "N (column n) = non-embedding parameters" not in total
    res = CliRunner().invoke(app, ["study", "report", str(spec), "--n-kind", "embedding"])
    assert res.exit_code == 2 and "unknown --n-kind" in res.output
