"""Calibration maths: entropy in bits, ECE, temperature fitting, CE summary, reliability plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from refusalscope.scoring.calibration import (
    ce_summary,
    ece,
    entropy_bits,
    fit_temperature,
    reliability_plot,
    sigmoid,
)


def test_entropy_bits_exact_values() -> None:
    h = entropy_bits([0.5, 0.0, 1.0, 0.25])
    assert h[0] == pytest.approx(1.0)
    assert h[1] == 0.0 and h[2] == 0.0
    assert h[3] == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))


def test_ece_hand_computed() -> None:
    # bin of 0.9 holds two responses, one refused: |0.9 - 0.5| * 2/3; bin of 0.1: |0.1 - 0| / 3
    assert ece([0.9, 0.9, 0.1], [1, 0, 0]) == pytest.approx(0.4 * 2 / 3 + 0.1 / 3)
    assert ece([1.0, 0.0], [1, 0]) == 0.0
    with pytest.raises(ValueError):
        ece([], [])


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    true_margin = rng.normal(0, 2, size=20_000)
    y = rng.random(20_000) < sigmoid(true_margin)
    # a model three times over-confident: margins scaled by 3
    t = fit_temperature(true_margin * 3, y)
    assert t == pytest.approx(3.0, rel=0.05)
    assert ece(sigmoid(true_margin * 3 / t), y) < ece(sigmoid(true_margin * 3), y)


def test_ce_summary_mean_and_band() -> None:
    s = ce_summary([0.5, 1.0, 0.3, 0.8], n_boot=200)
    hs = entropy_bits([0.5, 1.0, 0.3, 0.8])
    assert s["mean_bits"] == pytest.approx(float(hs.mean()))
    assert s["near_boundary"] == 2 and s["near_boundary_share"] == 0.5
    assert s["unit"] == "bits" and s["ci"][0] <= s["mean_bits"] <= s["ci"][1]


def test_reliability_plot_writes_png(tmp_path: Path) -> None:
    p = np.array([0.1, 0.2, 0.8, 0.9])
    out = reliability_plot({"x": (p, np.array([0, 0, 1, 1]))}, tmp_path / "r.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["r.png"]
