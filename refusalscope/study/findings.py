"""The Findings section at the top of a study report: one sentence per question the study asks,
generated from the fits (never written by hand), with the numbers and CIs behind it.

1. Size: does baseline RRR rise or fall with model size? With two sizes, the difference of
   their baselines (paired bootstrap over prompts) beside b_N; with more, the slope b_N of the
   logistic size fit over non-control baselines; each model's baseline RRR with its CI.
2. Attack compute: how much attack compute halves RRR (S½, `halflife.py`) per model, in
   examples and FLOPs, how S½ scales with N, and whether it outgrows the attack's own cost per
   step (S½ in steps rising with N means a bigger model takes more steps to break).
3. Defenses: S½ under each defense beside the undefended model's, with the ratio's CI.

Where the study cannot answer a question (one refusing size, a control only, one seed, no
defense) the sentence says so and what to add to the spec. Control models are reported beside
the fits; a model whose baseline RRR is under 0.5 gets a warning; failed bootstrap refits are
counted with their reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.study.halflife import (
    UNITS,
    HalfLife,
    HalfLifeResult,
    Slope,
    short_name,
    slope_text,
)
from refusalscope.study.points import Point


def baseline_points(points: Sequence[Point], include_controls: bool = False) -> list[Point]:
    """Unattacked, undefended runs of the models a size fit uses (controls only if asked)."""
    return [p for p in points if not p.attacked and p.defense == "none"
            and (include_controls or not p.control)]


def size_fit(points: Sequence[Point], *, n_boot: int = 1000, seed: int = 0,
             include_controls: bool = False,
             n_kind: str = "non-embedding") -> tuple[Any, str]:
    """The logistic fit of baseline RRR on ln N: (its `Fit`, "") or (None, why not)."""
    from refusalscope.study.fit import FitConfig, fit_metric

    base = baseline_points(points, include_controls)
    try:
        res = fit_metric(base, FitConfig("rrr", "size", n_boot=n_boot, seed=seed,
                                         n_kind=n_kind))
    except UserError as e:
        return None, str(e)
    fit = next((f for f in res.fits if f.spec.form == "logistic"), None)
    return (fit, "") if fit is not None else (None, "no logistic size fit")


def _size(n: float) -> str:
    return (f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6
            else f"{n / 1e3:.0f}k")


def _models(points: Sequence[Point], n_kind: str) -> dict[str, dict[str, Any]]:
    """Per undefended model: N, control flag and its baseline (share refused, Wilson CI)."""
    from refusalscope.scoring.stats import wilson_interval

    out: dict[str, dict[str, Any]] = {}
    for p in points:
        if p.defense != "none":
            continue
        m = out.setdefault(p.model, {"n": float(p.n(n_kind)), "control": p.control,
                                     "k": 0, "total": 0, "attacked": False})
        m["attacked"] |= p.attacked
        if not p.attacked:
            m["k"] += int(np.nansum(p.refused))
            m["total"] += int(np.isfinite(p.refused).sum())
    for m in out.values():
        m["rate"] = m["k"] / m["total"] if m["total"] else float("nan")
        m["ci"] = wilson_interval(m["k"], m["total"]) if m["total"] else (np.nan, np.nan)
    return out


def _rate(m: dict[str, Any]) -> str:
    return f"{m['rate']:.2f} [{m['ci'][0]:.2f}, {m['ci'][1]:.2f}]"


def findings(points: Sequence[Point], *, size: Any = None, size_why: str = "",
             half: HalfLifeResult | None = None, half_why: str = "",
             fits: Sequence[Any] = (), include_controls: bool = False,
             n_kind: str = "non-embedding", n_boot: int = 1000, seed: int = 0) -> str:
    """The markdown Findings section (starts with '## Findings').

    `size`: the baseline size `Fit` (from `size_fit`) or None with `size_why`; `half`: the
    half-life result or None with `half_why`; `fits`: other `FitResult`s whose failed
    bootstrap refits should be counted; `n_boot`, `seed`: the paired bootstrap of the
    difference between two sizes' baselines.

    Example:
        fit, why = size_fit(points)
        print(findings(points, size=fit, size_why=why, half=half_life(points)))
    """
    models = _models(points, n_kind)
    lines = ["## Findings", "",
             ("Generated from the fits below. Brackets are 95% CIs: bootstrap over prompts "
             "(paired across runs) and seeds; Wilson's for a model's baseline RRR."), "",
             "1. **Size.** " + _q_size(points, models, size, size_why, include_controls,
                                       n_boot, seed),
             "2. **Attack compute.** " + _q_compute(points, models, half, half_why,
                                                   include_controls),
             "3. **Defenses.** " + _q_defense(half, half_why), ""]
    lines += _controls(models, include_controls) + _warnings(models, half, fits)
    return "\n".join(lines).rstrip() + "\n"


def _q_size(points: Sequence[Point], models: dict[str, dict[str, Any]], fit: Any, why: str,
            include_controls: bool, n_boot: int, seed: int) -> str:
    used = {k: m for k, m in models.items() if m["total"] and (include_controls
                                                               or not m["control"])}
    order = sorted(used, key=lambda k: used[k]["n"])
    listing = ", ".join(f"{short_name(k)} ({_size(used[k]['n'])}) {_rate(used[k])}"
                        for k in order)
    controls = [k for k, m in models.items() if m["control"] and not include_controls]
    sizes = sorted({m["n"] for m in used.values()})
    if len(sizes) < 2:
        what = (f"only one refusing model size has a baseline ({listing})" if listing
                else "no refusing model has a baseline run")
        if controls:
            what += f"; {', '.join(map(short_name, controls))} is a control, left out"
        return (f"Cannot say how baseline RRR changes with size: {what}. Add a second "
                "refusing model size of the same family to the spec's [[models]].")
    b_n = ""
    if fit is not None:
        i = fit.spec.coef_names.index("b_N")
        b, (lo, hi) = fit.estimate[i], fit.ci[i]
        b_n = f"b_N = {b:.2f} [{lo:.2f}, {hi:.2f}] per unit ln N"
    if len(sizes) == 2:  # two sizes: the paired difference says it without a model
        d, lo, hi = _difference(points, order[0], order[-1], n_boot, seed)
        trend = ("rises" if lo > 0 else "falls" if hi < 0 else
                 "shows no clear trend (the CI of the difference spans 0)")
        return (f"Baseline RRR {trend} with size: {listing}; larger minus smaller "
                f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}] (paired over prompts)"
                + (f"; {b_n} (from 2 sizes)." if b_n else "."))
    if fit is None:
        return f"Cannot fit baseline RRR vs size ({' '.join(why.split())}). Baselines: {listing}."
    trend = ("rises" if lo > 0 else "falls" if hi < 0 else
             "shows no clear trend (the CI of b_N spans 0)")
    return f"Baseline RRR {trend} with size: {b_n} ({len(sizes)} sizes). Baselines: {listing}."


def _difference(points: Sequence[Point], small: str, big: str, n_boot: int, seed: int
                ) -> tuple[float, float, float]:
    """Baseline RRR of `big` minus `small`, and its percentile CI from the paired bootstrap
    (prompt ids drawn once for both models, seeds within a model)."""
    from refusalscope.study.fitspec import Gathered

    base = [p for p in points if not p.attacked and p.defense == "none"
            and p.model in (small, big)]
    data = Gathered.from_points(base, "rrr", "refused")
    is_big = np.array([data.points[j].model == big for j in data.row_run])

    def diff(w: np.ndarray, r: np.ndarray) -> float:
        ww = w[data.row_prompt] * r[data.row_run]
        big_m = (ww * data.row_y)[is_big].sum() / ww[is_big].sum()
        small_m = (ww * data.row_y)[~is_big].sum() / ww[~is_big].sum()
        return float(big_m - small_m)

    rng = np.random.default_rng(seed)
    draws = np.array([diff(*data.resample(rng)) for _ in range(n_boot)])
    lo, hi = np.nanquantile(draws, [0.025, 0.975])
    return diff(np.ones(data.n_prompts), np.ones(data.n_runs)), float(lo), float(hi)


def _rows(half: HalfLifeResult, defense: str, include_controls: bool) -> list[HalfLife]:
    return sorted((r for r in half.rows if r.defense == defense
                   and (include_controls or not r.control)), key=lambda r: (r.attack, r.n))


def _q_compute(points: Sequence[Point], models: dict[str, dict[str, Any]],
               half: HalfLifeResult | None, why: str, include_controls: bool) -> str:
    if half is None:
        return (f"Cannot say how much attack compute breaks refusal: {' '.join(why.split())}. "
                "Attack each model at 2+ compute levels (steps or n_data) beside its baseline.")
    rows = _rows(half, "none", include_controls)
    if not rows:
        return ("Cannot say: only control models (which do not refuse) were attacked; attack "
                "a refusing model.")
    out = []
    for kind in sorted({r.attack for r in rows}):
        rs = [r for r in rows if r.attack == kind]
        each = ", ".join(f"{short_name(r.model)} ({_size(r.n)}) {_s_text(r)}" for r in rs)
        out.append(f"Attack compute to halve RRR ({kind}): {each}. "
                   + _scaling(half, kind, "none", rs))
    seeds = {p.seed[0] for p in points if p.attacked}
    if len(seeds) < 2:
        out.append("One attack seed only: the CIs cover prompt sampling, not seed-to-seed "
                   "variation of the attack; add seeds = [0, 1, 2] to the spec.")
    return " ".join(out)


def _s_text(r: HalfLife) -> str:
    """'24 examples [16, 40] (3.1e+13 FLOPs [..])' from the examples and FLOPs axes."""
    head = next((r.axes[a] for a in ("examples", "steps", "flops") if a in r.axes), None)
    if head is None:
        return "no compute recorded"
    flops = r.axes.get("flops")
    tail = f" ({flops.short()})" if flops is not None and flops is not head else ""
    return head.text(unit=True) + tail


def _slope(half: HalfLifeResult, kind: str, defense: str, axis: str) -> Slope | None:
    return next((s for s in half.slopes if (s.attack, s.defense, s.axis) ==
                 (kind, defense, axis)), None)


def _scaling(half: HalfLifeResult, kind: str, defense: str, rs: list[HalfLife]) -> str:
    if len({r.n for r in rs}) < 2:
        return (f"How S½ scales with N cannot be told: one refusing size was attacked with "
                f"{kind}; give a second refusing model size the same attack in the spec.")
    flops, steps = (_slope(half, kind, defense, a) for a in ("flops", "steps"))
    main = flops or steps or _slope(half, kind, defense, "examples")
    if main is None:
        return "No S½ slope vs N (no compute axis shared by the sizes)."
    n_pts = f" (slope from {len(main.models)} sizes)"
    text = f"S½ ∝ N^{slope_text(main)} in {UNITS[main.axis]}{n_pts}"
    if flops is not None and np.isfinite(flops.cost_slope):
        text += f"; the cost of one step ∝ N^{flops.cost_slope:.2f}"
    if steps is not None:
        lo, hi = steps.ci
        verdict = ("S½ outgrows the cost of breaking it: a bigger model takes more steps"
                   if lo > 0 else "S½ grows more slowly than the cost per step: a bigger "
                   "model takes fewer steps" if hi < 0 else "the CI cannot tell whether S½ "
                   "outgrows the cost per step")
        text += f"; in steps S½ ∝ N^{slope_text(steps)}: {verdict}"
    return text + "."


def _q_defense(half: HalfLifeResult | None, why: str) -> str:
    if half is None:
        return f"Cannot say: no attack half-life ({' '.join(why.split())})."
    defended = [r for r in half.rows if r.defense != "none"]
    if not defended:
        return ("No defense in this study, so whether defenses change the trend cannot be "
                "told; add [defenses.steer] and/or [defenses.tar] to the spec.")
    out = []
    for r in sorted(defended, key=lambda r: (r.defense, r.attack, r.n)):
        ref = next((u for u in half.rows if (u.model, u.attack, u.defense) ==
                    (r.base_model, r.attack, "none")), None)
        head = (f"Under the {r.defense} defense ({r.attack}, {short_name(r.base_model)}) S½ is "
                f"{_s_text(r)}")
        if ref is None:
            out.append(head + "; no undefended run of it under this attack to compare with.")
            continue
        out.append(f"{head} vs {_s_text(ref)} undefended{_ratio(r, ref)}.")
    for s in (s for s in half.slopes if s.defense != "none" and s.axis == "flops"):
        ref_s = _slope(half, s.attack, "none", "flops")
        out.append(f"With {s.defense}, S½ ∝ N^{slope_text(s)} in FLOPs"
                   + (f" vs N^{slope_text(ref_s)} undefended." if ref_s else "."))
    return " ".join(out)


def _ratio(r: HalfLife, ref: HalfLife) -> str:
    """' (×2.7 [1.5, 4.0] in examples)': defended / undefended S½ from paired replicates; a
    censored S½ gives a bound (' (×> 2.2 in examples)')."""
    axis = next((a for a in ("examples", "steps", "flops") if a in r.axes and a in ref.axes),
                None)
    if axis is None:
        return ""
    a, b = r.axes[axis], ref.axes[axis]
    lo, hi = a.bounds()[0] - b.bounds()[1], a.bounds()[1] - b.bounds()[0]
    if not (np.isfinite(lo) or np.isfinite(hi)):
        return ""
    if not np.isfinite(hi):
        return f" (×> {np.exp(lo):.2g} in {axis})"
    if not np.isfinite(lo):
        return f" (×< {np.exp(hi):.2g} in {axis})"
    with np.errstate(invalid="ignore"):
        d = a.draws - b.draws
    d = np.sort(d[~np.isnan(d)])
    k = len(d) - 1

    def end(v: float) -> str:
        return "∞" if v == np.inf else "0" if v == -np.inf else f"{np.exp(v):.2g}"

    ci = f" [{end(d[int(0.025 * k)])}, {end(d[int(np.ceil(0.975 * k))])}]" if len(d) else ""
    return f" (×{np.exp(lo):.2g}{ci} in {axis})"


def _controls(models: dict[str, dict[str, Any]], include_controls: bool) -> list[str]:
    ctl = {k: m for k, m in models.items() if m["control"] and m["total"]}
    if not ctl:
        return []
    how = ("kept in the fits (--include-controls)" if include_controls else
           "left out of the size and half-life fits (--include-controls keeps them)")
    return [f"- Controls, {how}: " + ", ".join(f"{short_name(k)} ({_size(m['n'])}) baseline "
                                               f"RRR {_rate(m)}"
                                               for k, m in sorted(ctl.items())) + "."]


def _warnings(models: dict[str, dict[str, Any]], half: HalfLifeResult | None,
              fits: Sequence[Any]) -> list[str]:
    out = [f"- Warning: {short_name(k)} refuses {m['rate']:.0%} of prompts at baseline "
           "(RRR under 0.5): "
           "there is little refusal to retain, so its attack results say little."
           for k, m in sorted(models.items()) if m["total"] and not m["control"]
           and m["rate"] < 0.5]
    for res in fits:
        for f in res.fits:
            failed = getattr(f, "n_boot_failed", res.config.n_boot - f.n_boot_ok)
            if failed:
                why = "; ".join(f"{n}x {r}" for r, n in
                                sorted(getattr(f, "boot_failures", {}).items())) or "no reason"
                out.append(f"- {f.spec.name}: {failed} of {res.config.n_boot} bootstrap refits "
                           f"failed ({why}); its CI uses the others.")
    for r in half.rows if half is not None else ():
        for why, k in r.failed.items():
            out.append(f"- S½ of {short_name(r.model)} ({r.attack}): {k} bootstrap refits "
                       f"failed ({why}).")
    return out


def without_controls(points: Sequence[Point], include_controls: bool) -> list[Point]:
    """The points a fit uses: controls left out unless `include_controls`."""
    return [p for p in points if include_controls or not p.control]

