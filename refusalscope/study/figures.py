"""Figures of a `FitResult` (matplotlib, no pyplot state; each saved as PNG and PDF).

- `plot_vs_size`: metric vs model size N (the fit's `n_kind`), one colour per attack strength:
  condition means with bootstrap CIs and, per series, the curve of its own fit: the size fit
  of that strength, else the joint fit of its attack kind and defense (a baseline series only
  where one joint fit of its defense exists; controls drawn hollow, never fitted);
- `plot_vs_compute`: metric vs attack compute (FLOPs or examples), one panel per model; one
  colour per attack kind and defense ("lora", "lora [steer]", "lora+gcg"), a marker per data
  size, each with its own fit (the model's compute fit, else the joint fit); the baseline as a
  horizontal band (C = 0 has no place on a log axis);
- `plot_heatmap`: metric over data size × steps, one panel per model and attack family (kind,
  variant, defense), one cell per condition (a repeated cell is an error, never overwritten);
- `plot_panels`: several metrics (e.g. RRR, RD, CE) vs compute, one row per metric.

Each returns `Figures`: the paths written (a list, as before) and `panels`, one `PanelFit` per
series saying which fit it drew; `plot_all` also writes them to `figures.json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

LABELS = {"rrr": "RRR (share of harmful prompts refused)", "rd": "RD (1 − cosine)",
          "ce": "CE (bits)"}
C_LABELS = {"flops": "attack compute (FLOPs)", "examples": "attack examples processed",
            "steps": "attack steps (summed over a chain)",
            "pretrain-fraction": "attack FLOPs / pretraining FLOPs (6·N·D)"}
N_LABELS = {"non-embedding": "non-embedding parameters N", "total": "parameters N (released)"}
FIGURES_JSON = "figures.json"


@dataclass(frozen=True)
class PanelFit:
    """Which fit one series of one panel drew: `fit` is its `FitSpec.name`, None when it drew
    none (`why` says why)."""

    figure: str  # file stem, e.g. "rrr_vs_flops"
    panel: str  # the panel's title: a model, "vs size", "<model> | <attack family>"
    series: str  # an attack kind and defense ("lora [steer]") or a strength
    fit: str | None
    why: str = ""


class Figures(list[Path]):
    """Paths written (PNG, PDF), with `panels`: the `PanelFit` of every series drawn."""

    def __init__(self, paths: Iterable[Path] = (), panels: Iterable[PanelFit] = ()) -> None:
        super().__init__(paths)
        self.panels = list(panels)

    def __iadd__(self, other: Iterable[Path]) -> Figures:  # type: ignore[override,misc]
        self.extend(other)
        self.panels += getattr(other, "panels", [])
        return self

    def __add__(self, other: Iterable[Path]) -> Figures:  # type: ignore[override]
        return Figures([*self, *other], [*self.panels, *getattr(other, "panels", [])])


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


def _find(result: Any, x: str, group: str, c_axis: str | None = None) -> Any:
    """The fit of the preferred form with exactly this axis, group and C axis, or None."""
    form = _preferred(result.config.metric)
    for f in result.fits:
        s = f.spec
        if (s.x == x and s.form == form and s.group == group
                and (c_axis is None or s.c_axis == c_axis)):
            return f
    return None


def fit_for(result: Any, kind: str, defense: str, axis: str, model: str | None = None) -> Any:
    """The fit that belongs to an attack kind and defense on C axis `axis`: the model's own
    compute fit when there is one, else the joint fit of that kind and defense, else None."""
    from refusalscope.study.fitgroups import compute_group, joint_group

    if model is not None:
        own = _find(result, "compute", compute_group(model, kind, defense), axis)
        if own is not None:
            return own
    return _find(result, "both", joint_group(kind, defense), axis)


def _cx(c: dict[str, Any], axis: str) -> float:
    """A cell's attack compute on C axis `axis` (NaN where unknown)."""
    if axis == "pretrain-fraction":
        v = c.get("flops"), c.get("pretrain_flops")
        return float(v[0]) / float(v[1]) if _finite(v[0]) and _finite(v[1]) else float("nan")
    v = c.get(axis)
    return float(v) if _finite(v) else float("nan")


def _c_axis(result: Any) -> str:
    """The C axis the size figure's joint fits use: the fitted one, else FLOPs."""
    return getattr(result.config, "c_axis", None) or "flops"


def _n(c: dict[str, Any]) -> float:
    """A cell's N as its fits used it (`n`; `n_params` in results made before `n_kind`)."""
    return float(c.get("n", c["n_params"]))


def _errorbar(ax: Any, xs: Sequence[float], cells: Sequence[dict[str, Any]], **kw: Any) -> None:
    mean = np.array([c["mean"] for c in cells], dtype=float)
    lo = np.array([c["ci"][0] if c["ci"][0] is not None else np.nan for c in cells], dtype=float)
    hi = np.array([c["ci"][1] if c["ci"][1] is not None else np.nan for c in cells], dtype=float)
    ax.errorbar(xs, mean, yerr=[np.clip(mean - lo, 0, None), np.clip(hi - mean, 0, None)],
                fmt=kw.pop("fmt", "o"), capsize=3, ms=4, **kw)


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


def plot_vs_size(result: Any, folder: str | Path) -> Figures:
    """`{metric}_vs_size.png/.pdf`: metric vs N, one series per attack strength, each with the
    fit of its own strength, or of its attack kind and defense."""
    metric, alpha = result.config.metric, result.config.alpha
    stem = f"{metric}_vs_size"
    fig, axes = _figure(1, width=6.0, height=4.2)
    ax = axes[0, 0]
    by: dict[str, list[dict[str, Any]]] = {}
    for c in result.cells:
        by.setdefault(c["strength"], []).append(c)
    record = []
    for k, ((strength, cells), colour) in enumerate(zip(sorted(by.items(), key=_order),
                                                        _colours(len(by)), strict=True)):
        cells = sorted(cells, key=_n)
        dodge = 10 ** (0.012 * (k - (len(by) - 1) / 2))  # equal values stay visible side by side
        fitted = [c for c in cells if not c.get("control")]
        for group, hollow in ((fitted, False), ([c for c in cells if c.get("control")], True)):
            if group:  # controls hollow: drawn beside the fit, never in it
                _errorbar(ax, [_n(c) * dodge for c in group], group, color=colour,
                          label=None if hollow else strength, **({"mfc": "none"} if hollow else {}))
        fit, why = _size_fit(result, strength, cells[0])
        record.append(PanelFit(stem, "vs size", strength, fit.spec.name if fit else None, why))
        if fit is None or not fitted:
            continue
        ns = np.array([_n(c) for c in fitted])
        grid = np.geomspace(ns.min() / 1.5, ns.max() * 1.5, 60)
        c_grid = (np.zeros_like(grid) if fit.spec.x == "size"
                  else _c_along(ns, [_cx(c, _c_axis(result)) for c in fitted], grid))
        _band(ax, fit, grid, c_grid, grid, colour, alpha)
    _finish(ax, metric, N_LABELS.get(getattr(result.config, "n_kind", ""), "parameters N"))
    hollow = "; hollow: control, not fitted" if any(c.get("control") for c in result.cells) else ""
    ax.set_title(f"{metric.upper()} vs model size (bands: bootstrap {100 * (1 - alpha):g}%"
                 f"{hollow})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return Figures(_save(fig, folder, stem), record)


def _size_fit(result: Any, strength: str, cell: dict[str, Any]) -> tuple[Any, str]:
    """(fit, why none) for a size-plot series: its strength's size fit, else the joint fit of
    its attack kind and defense; a baseline takes the joint fit of its defense if only one."""
    from refusalscope.study.fitgroups import joint_group

    own = _find(result, "size", strength)
    if own is not None:
        return own, ""
    defense = cell.get("defense", "none")
    if cell["attack"] != "none":
        if not _finite(_cx(cell, _c_axis(result))):
            return None, "compute unknown"
        joint = fit_for(result, cell["attack"], defense, _c_axis(result))
        return joint, "" if joint is not None else "no fit of this attack kind and defense"
    kinds = sorted({c["attack"] for c in result.cells
                    if c["attack"] != "none" and c.get("defense", "none") == defense})
    joints = [f for k in kinds
              if (f := _find(result, "both", joint_group(k, defense), _c_axis(result)))]
    if len(joints) == 1:
        return joints[0], ""
    return None, (f"{len(joints)} joint fits share this baseline" if joints else
                  "no size fit and no joint fit")


def _c_along(ns: np.ndarray, cs: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """Attack compute along the size axis for one attack strength: the same steps and data cost
    ~N times more FLOPs on a bigger model, so C follows the cells' (N, C) line in log-log space
    (a constant C would draw every model at the smallest model's compute)."""
    if any(not c > 0 for c in cs):
        return np.zeros_like(grid)
    lc = np.log(cs)
    if len(ns) < 2 or np.ptp(np.log(ns)) == 0:
        return np.full_like(grid, float(np.exp(lc.mean())))
    slope, icpt = np.polyfit(np.log(ns), lc, 1)
    return np.exp(icpt + slope * np.log(grid))


def compute_panel(ax: Any, result: Any, model: str, axis: str,
                  figure: str = "") -> list[PanelFit]:
    """Draw one model's metric vs attack compute on `ax`: the baseline band, and per attack
    kind and defense its cells (a marker per data size) and its own fit. Returns what each
    kind and defense drew."""
    metric, alpha = result.config.metric, result.config.alpha
    cells = [c for c in result.cells if c["model"] == model]
    base = [c for c in cells if c["attack"] == "none"]
    att = [c for c in cells if c["attack"] != "none" and _cx(c, axis) > 0]
    kinds: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in att:
        kinds.setdefault((c["attack"], c.get("defense", "none")), []).append(c)
    record = []
    for (kind, defense), colour in zip(sorted(kinds), _colours(len(kinds), "tab10"),
                                       strict=True):
        cs = kinds[(kind, defense)]
        series: dict[str, list[dict[str, Any]]] = {}
        for c in cs:
            series.setdefault(f"{c.get('family', kind)} n={c['n_data']}", []).append(c)
        for k, name in enumerate(sorted(series)):
            ss = sorted(series[name], key=lambda c: _cx(c, axis))
            _errorbar(ax, [_cx(c, axis) for c in ss], ss, color=colour, label=name,
                      fmt="osD^v"[k % 5])
        label = kind + ("" if defense == "none" else f" [{defense}]")
        fit = fit_for(result, kind, defense, axis, model)
        record.append(PanelFit(figure, model, label, fit.spec.name if fit else None,
                               "" if fit else "no fit of this attack kind and defense"))
        if fit is not None:
            xs = [_cx(c, axis) for c in cs]
            grid = np.geomspace(min(xs) / 1.5, max(xs) * 1.5, 60)
            _band(ax, fit, np.full_like(grid, _n(cs[0])), grid, grid, colour, alpha,
                  label=f"{label}: {fit.spec.x} fit")
    for c in base:
        ax.axhline(c["mean"], color="k", ls="--", lw=1, label="no attack")
        if c["ci"][0] is not None:
            ax.axhspan(c["ci"][0], c["ci"][1], color="k", alpha=0.08, lw=0)
    _finish(ax, metric, C_LABELS[axis])
    if not att:  # a baseline-only model: its x axis would be an arbitrary range
        ax.set_xticks([])
        ax.text(0.5, 0.04, "no attack runs: baseline only", transform=ax.transAxes,
                ha="center", fontsize=8, color="0.3")
    ax.set_title(Path(model).name + (" (control)" if any(c.get("control") for c in cells)
                                     else ""), fontsize=9)
    if att or base:
        ax.legend(fontsize=7, loc="best")
    return record


def _models(result: Any) -> list[str]:
    return sorted({c["model"] for c in result.cells},
                  key=lambda m: min(_n(c) for c in result.cells if c["model"] == m))


def plot_vs_compute(result: Any, folder: str | Path, axis: str = "flops") -> Figures:
    """`{metric}_vs_{axis}.png/.pdf`: metric vs attack compute, one panel per model."""
    stem = f"{result.config.metric}_vs_{axis}"
    models = _models(result)
    fig, axes = _figure(len(models))
    record = []
    for ax, model in zip(axes.flat, models, strict=False):
        record += compute_panel(ax, result, model, axis, stem)
    return Figures(_save(fig, folder, stem), record)


def _grid_families(result: Any) -> list[str]:
    """Attack families with a data size × steps grid (2+ cells): one heatmap row each."""
    keys: dict[str, set[tuple[Any, str]]] = {}
    for c in result.cells:
        if c["attack"] != "none" and c["n_data"] is not None and c.get("steps") is not None:
            keys.setdefault(c.get("family", c["attack"]), set()).add(
                (c["n_data"], c.get("steps_label") or str(c["steps"])))
    return sorted(f for f, k in keys.items() if len(k) > 1)


def plot_heatmap(result: Any, folder: str | Path) -> Figures:
    """`{metric}_heatmap.png/.pdf`: metric over data size × steps, a row per attack family
    (kind, variant, defense), a column per model; empty if no family has a grid."""
    metric = result.config.metric
    stem = f"{metric}_heatmap"
    families, models = _grid_families(result), _models(result)
    if not families:
        return Figures()
    models = [m for m in models if any(c["model"] == m and c.get("family", c["attack"])
                                       in families for c in result.cells)]
    fig, axes = _figure(len(families) * len(models), rows=len(families), width=4.4,
                        height=3.2)
    record = []
    for row, family in zip(axes, families, strict=True):
        for ax, model in zip(row, models, strict=True):
            cells = [c for c in result.cells
                     if c["model"] == model and c.get("family", c["attack"]) == family]
            if not cells:
                ax.set_axis_off()
                continue
            _heat(ax, fig, result, cells, f"{Path(model).name} | {family}")
            record.append(PanelFit(stem, f"{model} | {family}", family, None, "cells only"))
    return Figures(_save(fig, folder, stem), record)


def _heat(ax: Any, fig: Any, result: Any, cells: list[dict[str, Any]], title: str) -> None:
    """One heatmap panel; two cells at one (n_data, steps) would be a bug, never overwritten."""
    metric = result.config.metric
    vmax = 1.0 if metric == "rrr" else max(c["mean"] for c in result.cells)
    key = {id(c): (c["n_data"], c.get("steps_label") or str(c["steps"])) for c in cells}
    if len(set(key.values())) != len(cells):
        raise ValueError(f"heatmap {title}: two conditions share one (n_data, steps) cell")
    nd = sorted({k[0] for k in key.values()})
    st = sorted({k[1] for k in key.values()},
                key=lambda s: (sum(int(x) for x in s.split("+") if x.isdigit()), s))
    grid = np.full((len(nd), len(st)), np.nan)
    ci = np.full((len(nd), len(st), 2), np.nan)
    for c in cells:
        i, j = nd.index(key[id(c)][0]), st.index(key[id(c)][1])
        grid[i, j] = c["mean"]
        ci[i, j] = [np.nan if v is None else v for v in c["ci"]]
    im = ax.imshow(grid, vmin=0.0, vmax=vmax, cmap="viridis", origin="lower", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}\n[{ci[i, j, 0]:.2f}, {ci[i, j, 1]:.2f}]", ha="center",
                    va="center", fontsize=7, color="w" if v < 0.6 * vmax else "k")
    ax.set_xticks(range(len(st)), st)
    ax.set_yticks(range(len(nd)), [str(n) for n in nd])
    ax.set_xlabel("steps" + (" (per attack of the chain)" if any("+" in s for s in st) else ""))
    ax.set_ylabel("training pairs (n_data)")
    ax.set_title(f"{metric.upper()}: {title}, bootstrap "
                 f"{100 * (1 - result.config.alpha):g}% CIs", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.85)


def plot_panels(results: Sequence[Any], folder: str | Path, axis: str = "flops",
                stem: str = "panels") -> Figures:
    """One row per result (metric), one column per model: metric vs compute (e.g. RRR, RD, CE)."""
    models = sorted({m for r in results for m in _models(r)})
    fig, axes = _figure(len(models) * len(results), rows=len(results))
    record = []
    for row, result in zip(axes, results, strict=True):
        for ax, model in zip(row, models, strict=True):
            if model in _models(result):
                record += compute_panel(ax, result, model, axis, stem)
            else:
                ax.set_axis_off()
    return Figures(_save(fig, folder, stem), record)


def plot_all(result: Any, folder: str | Path) -> Figures:
    """Every figure that the result's data supports, and `figures.json` (which fit each series
    of each panel drew)."""
    from refusalscope.fileio import atomic_write_json

    out = Figures()
    if len({_n(c) for c in result.cells}) > 1:
        out += plot_vs_size(result, folder)
    fitted = getattr(result.config, "c_axis", None)  # `--c-axis` fits one; default two
    for axis in (fitted,) if fitted else ("flops", "examples"):
        if any(c["attack"] != "none" and _cx(c, axis) > 0 for c in result.cells):
            out += plot_vs_compute(result, folder, axis)
    if any(_finite(c["flops"]) and c["flops"] > 0 for c in result.cells):
        out += plot_heatmap(result, folder)
    if out:
        atomic_write_json(Path(folder) / FIGURES_JSON, [asdict(p) for p in out.panels])
    return out


def _finite(v: Any) -> bool:
    return v is not None and bool(np.isfinite(v))


def _colours(n: int, cmap_name: str = "viridis") -> list[Any]:
    from matplotlib import colormaps

    if cmap_name == "tab10":  # unordered series (attack kinds): distinct hues
        return [colormaps["tab10"](i % 10) for i in range(n)]
    cmap = colormaps[cmap_name]  # ordered series (attack strength); yellow end left out
    return [cmap(0.8 * i / max(1, n - 1)) for i in range(n)]


def _order(item: tuple[str, list[dict[str, Any]]]) -> tuple[float, str]:
    c = item[1][0]
    return (float(c["flops"]) if _finite(c["flops"]) else -1.0, item[0])
