"""Figures of a `FitResult` (matplotlib, no pyplot state; each saved as PNG and PDF).

- `plot_vs_size`: metric vs model parameters, one colour per attack strength: condition means
  with bootstrap CIs, and the fitted curve with its pointwise bootstrap band;
- `plot_vs_compute`: metric vs attack compute (FLOPs or examples), one panel per model, the
  baseline as a horizontal band (C = 0 has no place on a log axis), fitted curve and band;
- `plot_heatmap`: metric over LoRA data size × steps, one panel per model;
- `plot_panels`: several metrics (e.g. RRR, RD, CE) vs compute, one row per metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LABELS = {"rrr": "RRR (share of harmful prompts refused)", "rd": "RD (1 − cosine)",
          "ce": "CE (bits)"}
C_LABELS = {"flops": "attack compute (FLOPs)", "examples": "attack examples processed"}


def _figure(n_panels: int, rows: int = 1, width: float = 4.2, height: float = 3.4) -> Any:
    from matplotlib.figure import Figure

    cols = max(1, -(-n_panels // rows))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig: Any, folder: str | Path, stem: str) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{stem}.png", folder / f"{stem}.pdf"]
    fig.savefig(out[0], dpi=150)
    fig.savefig(out[1])
    return out


def _preferred(metric: str) -> str:
    return "logistic" if metric == "rrr" else "linear"


def _fit(result: Any, x: str, group: str | None = None, c_axis: str | None = None) -> Any:
    form = _preferred(result.config.metric)
    for f in result.fits:
        s = f.spec
        if (s.x == x and s.form == form and (group is None or s.group == group)
                and (c_axis is None or s.c_axis == c_axis)):
            return f
    return None


def _errorbar(ax: Any, xs: Sequence[float], cells: Sequence[dict[str, Any]], **kw: Any) -> None:
    mean = np.array([c["mean"] for c in cells], dtype=float)
    lo = np.array([c["ci"][0] if c["ci"][0] is not None else np.nan for c in cells], dtype=float)
    hi = np.array([c["ci"][1] if c["ci"][1] is not None else np.nan for c in cells], dtype=float)
    ax.errorbar(xs, mean, yerr=[np.clip(mean - lo, 0, None), np.clip(hi - mean, 0, None)],
                fmt="o", capsize=3, ms=4, **kw)


def _band(ax: Any, fit: Any, n: np.ndarray, c: np.ndarray, xs: np.ndarray, colour: Any,
          alpha: float, label: str | None = None) -> None:
    mid, lo, hi = fit.curve(n, c, alpha)
    ax.plot(xs, mid, color=colour, lw=1.5, label=label)
    ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, lw=0)


def _finish(ax: Any, metric: str, xlabel: str) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short log ranges
    ax.set_xlabel(xlabel)
    ax.set_ylabel(LABELS[metric])
    if metric == "rrr":
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3, lw=0.4)


def plot_vs_size(result: Any, folder: str | Path) -> list[Path]:
    """`{metric}_vs_size.png/.pdf`: metric vs parameters, one series per attack strength."""
    metric, alpha = result.config.metric, result.config.alpha
    fig, axes = _figure(1, width=6.0, height=4.2)
    ax = axes[0, 0]
    by: dict[str, list[dict[str, Any]]] = {}
    for c in result.cells:
        by.setdefault(c["strength"], []).append(c)
    colours = _colours(len(by))
    for k, ((strength, cells), colour) in enumerate(zip(sorted(by.items(), key=_order), colours,
                                                        strict=True)):
        cells = sorted(cells, key=lambda c: c["n_params"])
        ns = np.array([c["n_params"] for c in cells], dtype=float)
        dodge = 10 ** (0.012 * (k - (len(by) - 1) / 2))  # equal values stay visible side by side
        _errorbar(ax, ns * dodge, cells, color=colour, label=strength)
        grid = np.geomspace(ns.min() / 1.5, ns.max() * 1.5, 60)
        fit = _fit(result, "size", strength)
        if fit is not None:
            _band(ax, fit, grid, np.zeros_like(grid), grid, colour, alpha)
        elif all(_finite(c["flops"]) for c in cells):  # 0 for the baseline: its own intercept
            joint = _fit(result, "both", c_axis="flops")
            if joint is not None:
                _band(ax, joint, grid, _flops_along(ns, cells, grid), grid, colour, alpha)
    _finish(ax, metric, "model parameters N")
    ax.set_title(f"{metric.upper()} vs model size (bands: bootstrap {100 * (1 - alpha):g}%)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, folder, f"{metric}_vs_size")


def _flops_along(ns: np.ndarray, cells: Sequence[dict[str, Any]], grid: np.ndarray) -> np.ndarray:
    """Attack FLOPs along the size axis for one attack strength: the same steps and data cost
    ~N times more on a bigger model, so C follows the cells' (N, C) line in log-log space
    (a constant C would draw every model at the smallest model's compute)."""
    if any(c["flops"] <= 0 for c in cells):
        return np.zeros_like(grid)
    lc = np.log([c["flops"] for c in cells])
    if len(ns) < 2:
        return np.full_like(grid, float(np.exp(lc[0])))
    slope, icpt = np.polyfit(np.log(ns), lc, 1)
    return np.exp(icpt + slope * np.log(grid))


def compute_panel(ax: Any, result: Any, model: str, axis: str) -> None:
    """Draw one model's metric vs attack compute on `ax` (baseline band, cells, fitted curves)."""
    metric, alpha = result.config.metric, result.config.alpha
    cells = [c for c in result.cells if c["model"] == model]
    base = [c for c in cells if c["attack"] == "none"]
    att = [c for c in cells if _finite(c[axis]) and c[axis] > 0]
    series: dict[str, list[dict[str, Any]]] = {}
    for c in att:
        series.setdefault(f"{c['attack']} n={c['n_data']}", []).append(c)
    for k, ((name, cs), colour) in enumerate(zip(sorted(series.items()),
                                                 _colours(len(series)), strict=True)):
        cs = sorted(cs, key=lambda c: c[axis])
        dodge = 10 ** (0.025 * (k - (len(series) - 1) / 2))  # series at one x stay apart
        _errorbar(ax, [c[axis] * dodge for c in cs], cs, color=colour, label=name)
    if att:
        lo_c, hi_c = min(c[axis] for c in att), max(c[axis] for c in att)
        grid = np.geomspace(lo_c / 1.5, hi_c * 1.5, 60)
        for kind in sorted({c["attack"] for c in att}):
            fit = _fit(result, "compute", f"{model} {kind}", axis) or _fit(result, "both",
                                                                           c_axis=axis)
            if fit is not None:
                n = np.full_like(grid, cells[0]["n_params"], dtype=float)
                _band(ax, fit, n, grid, grid, "0.25", alpha, label=f"{fit.spec.form} fit")
    for c in base:
        ax.axhline(c["mean"], color="k", ls="--", lw=1, label="no attack")
        if c["ci"][0] is not None:
            ax.axhspan(c["ci"][0], c["ci"][1], color="k", alpha=0.08, lw=0)
    _finish(ax, metric, C_LABELS[axis])
    if not att:  # a baseline-only model: its x axis would be an arbitrary range
        ax.set_xticks([])
        ax.text(0.5, 0.04, "no attack runs: baseline only", transform=ax.transAxes,
                ha="center", fontsize=8, color="0.3")
    ax.set_title(model, fontsize=9)
    if att or base:
        ax.legend(fontsize=7, loc="best")


def _models(result: Any) -> list[str]:
    return sorted({c["model"] for c in result.cells},
                  key=lambda m: min(c["n_params"] for c in result.cells if c["model"] == m))


def plot_vs_compute(result: Any, folder: str | Path, axis: str = "flops") -> list[Path]:
    """`{metric}_vs_{axis}.png/.pdf`: metric vs attack compute, one panel per model."""
    models = _models(result)
    fig, axes = _figure(len(models))
    for ax, model in zip(axes.flat, models, strict=False):
        compute_panel(ax, result, model, axis)
    return _save(fig, folder, f"{result.config.metric}_vs_{axis}")


def plot_heatmap(result: Any, folder: str | Path, attack: str = "lora") -> list[Path]:
    """`{metric}_heatmap.png/.pdf`: metric over data size × steps per model ([] if no grid)."""
    metric = result.config.metric
    models = [m for m in _models(result) if any(c["model"] == m and c["attack"] == attack
                                               for c in result.cells)]
    if not models:
        return []
    fig, axes = _figure(len(models), width=4.4, height=3.2)
    vmax = 1.0 if metric == "rrr" else max(c["mean"] for c in result.cells)
    for ax, model in zip(axes.flat, models, strict=False):
        cells = [c for c in result.cells if c["model"] == model and c["attack"] == attack]
        nd = sorted({c["n_data"] for c in cells})
        st = sorted({c["steps"] for c in cells})
        grid = np.full((len(nd), len(st)), np.nan)
        ci = np.full((len(nd), len(st), 2), np.nan)
        for c in cells:
            grid[nd.index(c["n_data"]), st.index(c["steps"])] = c["mean"]
            ci[nd.index(c["n_data"]), st.index(c["steps"])] = [np.nan if v is None else v
                                                               for v in c["ci"]]
        im = ax.imshow(grid, vmin=0.0, vmax=vmax, cmap="viridis", origin="lower", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}\n[{ci[i, j, 0]:.2f}, {ci[i, j, 1]:.2f}]", ha="center",
                        va="center", fontsize=7, color="w" if v < 0.6 * vmax else "k")
        ax.set_xticks(range(len(st)), [str(s) for s in st])
        ax.set_yticks(range(len(nd)), [str(n) for n in nd])
        ax.set_xlabel("steps")
        ax.set_ylabel("training pairs (n_data)")
        ax.set_title(f"{metric.upper()}: {model} ({attack}), bootstrap "
                     f"{100 * (1 - result.config.alpha):g}% CIs", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.85)
    return _save(fig, folder, f"{metric}_heatmap")


def plot_panels(results: Sequence[Any], folder: str | Path, axis: str = "flops",
                stem: str = "panels") -> list[Path]:
    """One row per result (metric), one column per model: metric vs compute (e.g. RRR, RD, CE)."""
    models = sorted({m for r in results for m in _models(r)})
    fig, axes = _figure(len(models) * len(results), rows=len(results))
    for row, result in zip(axes, results, strict=True):
        for ax, model in zip(row, models, strict=True):
            if model in _models(result):
                compute_panel(ax, result, model, axis)
            else:
                ax.set_axis_off()
    return _save(fig, folder, stem)


def plot_all(result: Any, folder: str | Path) -> list[Path]:
    """Every figure that the result's data supports."""
    out: list[Path] = []
    if len({c["n_params"] for c in result.cells}) > 1:
        out += plot_vs_size(result, folder)
    if any(_finite(c["flops"]) and c["flops"] > 0 for c in result.cells):
        for axis in ("flops", "examples"):
            out += plot_vs_compute(result, folder, axis)
        out += plot_heatmap(result, folder)
    return out


def _finite(v: Any) -> bool:
    return v is not None and bool(np.isfinite(v))


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]  # ordered series (attack strength); yellow end left out
    return [cmap(0.8 * i / max(1, n - 1)) for i in range(n)]


def _order(item: tuple[str, list[dict[str, Any]]]) -> tuple[float, str]:
    c = item[1][0]
    return (float(c["flops"]) if _finite(c["flops"]) else -1.0, item[0])
