"""What `halflife.half_life` writes: `half_life.csv` (one row per model × attack × defense ×
axis), `half_life.md` (the S½ table and the slopes vs N) and `half_life.png/.pdf`.

The figure: attack half-life S½ vs model size N on log-log axes, with the attack's
own cost per step on the same axes, so "does robustness grow faster than the cost of breaking
it?" is one picture: where S½ rises more steeply with N than the cost of one step, a bigger
model takes more steps to break.

Per attack kind × defense (one colour): S½ with its bootstrap CI (a CI end beyond the grid is
drawn to the plot's edge with an arrow), a triangle where S½ is only a bound (▲ not reached
within the grid: S½ above it; ▼ reached by the smallest attack: S½ at or below it), the fitted
line ln S½ = c + s·ln N with s and its CI in the legend, and the cost per step (dashed).
Kept apart from `halflife.py` so the computation never imports matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.study.halflife import (
    AXES,
    UNITS,
    HalfLife,
    HalfLifeResult,
    Slope,
    fmt3,
    short_name,
    slope_text,
)


def plot_half_life(res: HalfLifeResult, folder: str | Path) -> list[Path]:
    """Draw the figure for `res.config.c_axis`; returns the PNG and PDF paths."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    axis = res.config.c_axis
    rows = [r for r in res.rows if axis in r.axes
            and (res.config.include_controls or not r.control)]
    series = sorted({(r.attack, r.defense) for r in rows})
    fig = Figure(figsize=(9.5, 5.0), layout="constrained")
    ax = fig.subplots()
    lo, hi = _limits(rows, axis)
    cmap = colormaps["tab10"]
    for k, key in enumerate(series):
        rs = sorted((r for r in rows if (r.attack, r.defense) == key), key=lambda r: r.n)
        slope = next((s for s in res.slopes if (s.attack, s.defense, s.axis) == (*key, axis)),
                     None)
        _series(ax, rs, axis, slope, cmap(k % 10), (lo, hi))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ax.xaxis.set_minor_formatter(NullFormatter())
    sizes = sorted({r.n for r in rows})
    if sizes:  # label the models' own sizes: a short log range has few decade ticks
        ax.set_xticks(sizes, [_size(n) for n in sizes])
        ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
    ax.set_xlabel(f"model size N ({res.n_label})")
    ax.set_ylabel(f"attack compute ({UNITS[axis]})")
    ax.grid(alpha=0.3, lw=0.4, which="both")
    ax.set_title(_title(res, axis, rows), fontsize=9)
    if series:
        fig.legend(fontsize=7, loc="outside right upper")
    else:
        ax.text(0.5, 0.5, f"no S½ on the {axis} axis", transform=ax.transAxes, ha="center")
    fig.supxlabel("● S½ with CI; ▲ not reached within the grid (S½ above it); ▼ reached by "
                  "the smallest attack (S½ at or below it);\ndashed: the cost of one attack "
                  "step. Robustness outgrows the cost of breaking it where S½'s slope is the "
                  "steeper.", fontsize=6.5)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / "half_life.png", folder / "half_life.pdf"]
    fig.savefig(out[0], dpi=150)
    fig.savefig(out[1])
    return out


def _title(res: HalfLifeResult, axis: str, rows: list[HalfLife]) -> str:
    level = f"{100 * (1 - res.config.alpha):g}%"
    sizes = len({r.n for r in rows})
    tail = ("one refusing size: no slope" if sizes < 2 else
            "slope from 2 points" if sizes == 2 else f"slope from {sizes} sizes")
    return f"Attack half-life S½ (RRR at half its baseline) vs N, {level} bootstrap CIs; {tail}"


def _size(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _limits(rows: list[HalfLife], axis: str) -> tuple[float, float]:
    vals = []
    for r in rows:
        s = r.axes[axis]
        vals += [s.grid[0], s.grid[1], s.value, s.cost_per_step,
                 *np.exp([c for c in s.ci if np.isfinite(c)])]
    v = np.array([x for x in vals if np.isfinite(x) and x > 0] or [1.0])
    return float(v.min() / 4), float(v.max() * 4)


def _series(ax: Any, rs: list[HalfLife], axis: str, slope: Slope | None, colour: Any,
            ylim: tuple[float, float]) -> None:
    name = rs[0].attack + ("" if rs[0].defense == "none" else f" [{rs[0].defense}]")
    ns = np.array([r.n for r in rs])
    for r in rs:
        s = r.axes[axis]
        marker = {"inside": "o", "not_reached": "^", "before_grid": "v"}[s.status]
        ax.plot([r.n], [s.value], marker=marker, color=colour, ms=7,
                mfc=colour if s.status == "inside" else "none", ls="none")
        if np.isnan(s.ci).any():
            continue
        lo = np.exp(s.ci[0]) if np.isfinite(s.ci[0]) else ylim[0]
        hi = np.exp(s.ci[1]) if np.isfinite(s.ci[1]) else ylim[1]
        ax.vlines(r.n, lo, hi, color=colour, lw=1.2)
        for end, censored, m in ((hi, s.ci[1] == np.inf, "^"), (lo, s.ci[0] == -np.inf, "v")):
            if censored:
                ax.plot([r.n], [end], marker=m, color=colour, ms=5, ls="none")
    label = f"{name}: S½"
    if slope is not None:
        label += f" ∝ N^{slope_text(slope)}"
        if np.isfinite(slope.estimate):
            grid = np.geomspace(ns.min() / 1.3, ns.max() * 1.3, 20)
            logs = np.log([r.axes[axis].value for r in rs])
            icpt = float(np.mean(logs - slope.estimate * np.log(ns)))
            ax.plot(grid, np.exp(icpt + slope.estimate * np.log(grid)), color=colour, lw=1.3)
    ax.plot([], [], marker="o", color=colour, label=label)
    cost = np.array([r.axes[axis].cost_per_step for r in rs])
    if np.isfinite(cost).any():
        tail = (f" ∝ N^{slope.cost_slope:.2f}" if slope is not None
                and np.isfinite(slope.cost_slope) else "")
        ax.plot(ns, cost, ls="--", marker="s", ms=4, color=colour, lw=1,
                label=f"{name}: cost per step{tail}")


CSV_COLUMNS = ("model", "n", "attack", "defense", "control", "axis", "s_half", "status", "ci_lo",
               "ci_hi", "grid_min", "grid_max", "baseline_rrr", "baseline_lo", "baseline_hi",
               "baseline_observed", "cost_per_step", "n_runs", "seeds", "n_boot_failed")


def table_rows(res: HalfLifeResult) -> list[dict[str, Any]]:
    """One row per model × attack × defense × axis. `s_half` is the bound when `status` is
    not_reached (S½ > s_half) or before_grid (S½ ≤ s_half); a censored CI end is inf / 0."""
    return [{"model": r.model, "n": r.n, "attack": r.attack, "defense": r.defense,
             "control": r.control, "axis": ax, "s_half": s.value, "status": s.status,
             "ci_lo": float(np.exp(s.ci[0])), "ci_hi": float(np.exp(s.ci[1])),
             "grid_min": s.grid[0], "grid_max": s.grid[1], "baseline_rrr": r.baseline,
             "baseline_lo": r.baseline_ci[0], "baseline_hi": r.baseline_ci[1],
             "baseline_observed": r.baseline_observed, "cost_per_step": s.cost_per_step,
             "n_runs": r.n_runs, "seeds": r.seeds, "n_boot_failed": sum(r.failed.values())}
            for r in res.rows for ax, s in r.axes.items()]


def markdown(res: HalfLifeResult) -> str:
    """`half_life.md`: the S½ table (every axis), the slopes vs N, and the notes."""
    from refusalscope.study.tables import to_markdown

    level = f"{100 * (1 - res.config.alpha):g}%"
    cols = ["model", "N", "attack", "baseline RRR (fit)", *[f"S½ {UNITS[a]}" for a in AXES],
            "FLOPs / step"]
    rows = [{"model": short_name(r.model) + (" (control)" if r.control else ""), "N": fmt3(r.n),
             "attack": r.attack + ("" if r.defense == "none" else f" [{r.defense}]"),
             "baseline RRR (fit)": f"{r.baseline:.2f} [{r.baseline_ci[0]:.2f}, "
                                   f"{r.baseline_ci[1]:.2f}]",
             **{f"S½ {UNITS[a]}": r.axes[a].text() if a in r.axes else "–" for a in AXES},
             "FLOPs / step": fmt3(r.axes["flops"].cost_per_step) if "flops" in r.axes else "–"}
            for r in res.rows]
    out = [f"# Attack half-life S½ (RRR falls to half its baseline; {level} bootstrap CIs)", "",
           (f"N = {res.n_label}. Per model × attack: Firth logistic fit of refusal on "
           "1[attacked]·(d + b·ln C) with the baseline as its own intercept; S½ read inside "
           "the attacked grid only (a bound when the curve does not cross there)."), "",
           to_markdown(rows, cols), ""]
    if res.slopes:
        srows = [{"attack": s.attack + ("" if s.defense == "none" else f" [{s.defense}]"),
                  "axis": s.axis, "models": ", ".join(s.models),
                  "S½ ∝ N^": slope_text(s) + (" (2 points)" if len(s.models) == 2 else ""),
                  "cost per step ∝ N^": f"{s.cost_slope:.2f}",
                  "replicates": s.n_ok} for s in res.slopes]
        out += ["## S½ vs N", "", to_markdown(srows, list(srows[0])), ""]
    out += [f"- note: {n}" for n in res.notes]
    return "\n".join(out).rstrip() + "\n"


def write_half_life(res: HalfLifeResult, folder: str | Path, figure: bool = True) -> list[Path]:
    """Write `half_life.csv`, `half_life.md` and (with `figure`) `half_life.png/.pdf`."""
    from refusalscope.fileio import atomic_write_text
    from refusalscope.study.tables import to_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "half_life.csv", to_csv(table_rows(res), CSV_COLUMNS))
    atomic_write_text(folder / "half_life.md", markdown(res))
    out = [folder / "half_life.csv", folder / "half_life.md"]
    if figure:
        out += plot_half_life(res, folder)
    return out
