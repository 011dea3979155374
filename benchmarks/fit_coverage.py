"""Coverage of the joint RRR fit's nominal 95% intervals for b_N and b_C, on simulated studies.

A simulated study has the study's shape: P prompts evaluated in every run (paired), runs =
models × (baseline + attacked cells × seeds), and prompts that differ in how refusable they
are. Prompt p in run j is refused with probability

    sigmoid(a + b_N·ln N_j + u_p + 1[attacked_j]·(v_p + e_j + b_C·max(0, ln C_j − ln C0)))

with a prompt intercept u_p ~ N(0, σ_u²) (prompt heterogeneity), a prompt susceptibility v_p ~
N(0, σ_v²), and a seed effect e_j ~ N(0, σ_e²) per attacked run (a retrained attack differs).
Nothing moves below C0, as in the lora-grid study. The fit is the shipped one: logit P = a +
b_N·ln N + 1[attacked]·(d_attack + b_C·ln C) on per-prompt labels (`refusalscope.study.clusterci`,
`regress.logistic_batch`), so it is deliberately not the simulated model.

**Estimand.** With random effects the conditional coefficients above are not what a
population-averaged logistic fit estimates. The target is the fit's own infinite-data limit:
the marginal refusal rate of run j, p_j = E_{u,v,e}[sigmoid(η_j + u + 1[att]·(v + e))], by
80-point Gauss–Hermite quadrature (u + v + e is normal), then the logistic MLE of the fitted
form on those p_j with one unit of weight per run (the limit of P → ∞ prompts and of ∞ seeds,
at the study's design). An interval covers when it contains that target. The targets and the
marginal baseline RRRs are printed per setting.

Settings span the study's sizes (32–256 prompts, 6–40 runs, 1–3 seeds), with conditional
values chosen so that the marginal rates look like the lora-grid results (0.5B baseline RRR
≈ 0.6, 1.5B ≈ 0.88, collapse to 0.1–0.3 at 5e13–9e13 FLOPs), and one strong refuser whose
baselines are ~0.97/0.995 (64/64 refused in most studies: near separation). Each setting uses
the study seeds 0..n−1 of one fixed list (`np.random.default_rng([setting index, study])`).

    .venv/bin/python benchmarks/fit_coverage.py                  # 400 studies/setting
    .venv/bin/python benchmarks/fit_coverage.py --studies 100 --boot 200 --settings small
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from refusalscope.study.clusterci import INTERVALS, Labels, bootstrap_weights, intervals
from refusalscope.study.fit import FitConfig
from refusalscope.study.regress import logistic_batch

B05, B15, B3, B7 = 4.94e8, 1.54e9, 3.09e9, 7.62e9
TARGETS = ("b_N", "b_C")  # columns 1 and 3 of [1, ln N, attacked, ln C]


@dataclass(frozen=True)
class Setting:
    """One simulated study design and its conditional (prompt-level) truth."""

    prompts: int
    models: tuple[tuple[float, tuple[float, ...]], ...]  # (N, attack FLOPs of its cells)
    seeds: int  # attacked runs per cell (the baseline is greedy: one run)
    a0: float  # conditional baseline logit of the 0.5B
    b_n: float
    b_c: float
    c0: float = 1e13
    sigma_u: float = 2.0
    sigma_v: float = 1.0
    sigma_e: float = 0.0

    def design(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X [m, 4] = [1, ln N, attacked, ln C], the conditional η [m], and condition groups."""
        rows, eta, cond = [], [], []
        for n, cs in self.models:
            base = self.a0 + self.b_n * np.log(n / B05)
            rows.append([1.0, np.log(n), 0.0, 0.0])
            eta.append(base)
            cond.append((n, 0.0))
            for i, c in enumerate(cs, 1):  # a cell is a condition even if its C repeats
                for _ in range(self.seeds):
                    rows.append([1.0, np.log(n), 1.0, np.log(c)])
                    eta.append(base + self.b_c * max(0.0, np.log(c / self.c0)))
                    cond.append((n, float(i)))
        groups: dict[tuple[float, float], list[int]] = {}
        for j, k in enumerate(cond):
            groups.setdefault(k, []).append(j)
        return np.array(rows), np.array(eta), np.array(list(groups.values()), dtype=object)

    def target(self) -> tuple[np.ndarray, np.ndarray]:
        """(the fit's infinite-data coefficients [4], the marginal refusal rate per run [m])."""
        X, eta, _ = self.design()
        z, wq = np.polynomial.hermite_e.hermegauss(80)
        wq = wq / wq.sum()
        sd = np.sqrt(self.sigma_u**2 + X[:, 2] * (self.sigma_v**2 + self.sigma_e**2))
        p = (wq * _sigmoid(eta[:, None] + sd[:, None] * z)).sum(1)
        beta, why = logistic_batch(X, p[None], np.ones((1, len(p))), firth=False, tol=1e-12)
        assert not why[0], why
        return beta[0], p


LORA_GRID = ((B05, (8.1e11, 3.3e12, 1.3e13, 5.3e13, 8.3e11, 3.4e12, 1.3e13, 5.4e13)),
             (B15, (2.7e12, 1.1e13, 4.5e13)))
SETTINGS = {
    # 2 models x (baseline + 2 cells), 32 prompts: the smallest study
    "small": Setting(32, ((B05, (1.3e13, 5.3e13)), (B15, (4.5e13, 9e13))), 1, 0.6, 2.2, -2.0),
    # the shipped lora-grid: 0.5B 8 cells, 1.5B 3 cells + its 32-step cell, 64 prompts
    "lora-grid": Setting(64, (LORA_GRID[0], (B15, (*LORA_GRID[1][1], 9e13))), 1, 0.6, 2.2,
                         -2.0),
    # 4 sizes x (baseline + 3 cells x 3 seeds) = 40 runs, 256 prompts, seed-to-seed spread
    "large": Setting(256, tuple((n, tuple(6 * n * t for t in (4e3, 16e3, 32e3)))
                                for n in (B05, B15, B3, B7)), 3, 0.6, 2.2, -2.0,
                     sigma_e=0.3),
    # baselines ~0.97 / ~0.995 (64/64 in most studies) and a sharp transition
    "strong": Setting(64, ((B05, (1.3e13, 2.6e13, 5.3e13, 1e14)),
                           (B15, (2.2e13, 4.5e13, 9e13, 1.8e14))), 1, 5.5, 2.2, -4.0),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def simulate(setting: Setting, study: int, index: int) -> Labels:
    """One study's labels [P, m], drawn with `default_rng([index, study])`."""
    X, eta, _ = setting.design()
    rng = np.random.default_rng([index, study])
    P, m = setting.prompts, len(X)
    u = rng.normal(0.0, setting.sigma_u, P)
    v = rng.normal(0.0, setting.sigma_v, P)
    e = rng.normal(0.0, setting.sigma_e, m) * X[:, 2]
    logit = eta[None] + u[:, None] + X[None, :, 2] * (v[:, None] + e[None])
    Y = (rng.random((P, m)) < _sigmoid(logit)).astype(float)
    groups = tuple(tuple(g) for g in setting.design()[2] if len(g) > 1)
    return Labels(Y, np.ones((P, m)), X, groups)


def coverage(name: str, studies: int, n_boot: int, alpha: float = 0.05,
             methods: tuple[str, ...] = INTERVALS, mle: bool = True) -> dict[str, Any]:
    """Coverage of b_N and b_C per (estimator, method) over `studies` simulated studies
    (also the plain MLE with percentile intervals, the former default, when `mle`)."""
    setting = SETTINGS[name]
    index = list(SETTINGS).index(name)
    truth, p = setting.target()
    groups = [list(g) for g in setting.design()[2]]
    hits: dict[str, np.ndarray] = {}
    width: dict[str, np.ndarray] = {}
    fails = {"firth": 0, "mle": 0}
    cols = [1, 3]
    for s in range(studies):
        labels = simulate(setting, s, index)
        rng = np.random.default_rng([index, s, 1])
        W, R = bootstrap_weights(rng, setting.prompts, groups, len(labels.X), n_boot)
        one = (np.ones((1, setting.prompts)), np.ones((1, len(labels.X))))
        for est_name, firth, ms in (("firth", True, methods), ("mle", False, ("percentile",)))[
                :2 if mle else 1]:
            est, why = labels.fit(*one, firth)
            if why[0]:
                fails[est_name] += n_boot + 1
                for m in ms:  # a study with no estimate counts as a miss
                    key = f"{est_name} {m}"
                    hits.setdefault(key, np.zeros((studies, 2)))
                    width.setdefault(key, np.full((studies, 2), np.nan))
                continue
            boot, bwhy = labels.fit(W, R, firth)
            fails[est_name] += sum(bool(r) for r in bwhy)
            cis = intervals(labels, est[0], boot, W, R, firth=firth, alpha=alpha, methods=ms)
            for m, ci in cis.items():
                key = f"{est_name} {m}"
                hits.setdefault(key, np.zeros((studies, 2)))
                width.setdefault(key, np.full((studies, 2), np.nan))
                hits[key][s] = (ci[cols, 0] <= truth[cols]) & (truth[cols] <= ci[cols, 1])
                width[key][s] = ci[cols, 1] - ci[cols, 0]
    return {"truth": truth, "p": p, "fails": fails, "runs": len(p),
            "coverage": {k: v.mean(0) for k, v in hits.items()},
            "width": {k: np.nanmedian(v, 0) for k, v in width.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=400, help="simulated studies per setting")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap replicates per study")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names")
    args = ap.parse_args()
    default = f"firth {FitConfig().interval}"
    t0 = time.perf_counter()
    worst = 1.0
    print(f"{args.studies} studies/setting, {args.boot} bootstrap replicates, nominal 95%; "
          f"default interval: {default}")
    for name in args.settings.split(","):
        t1 = time.perf_counter()
        res = coverage(name, args.studies, args.boot)
        st = SETTINGS[name]
        base = [f"{res['p'][j]:.3f}" for j in np.flatnonzero(st.design()[0][:, 2] == 0)]
        truth = res["truth"]
        print(f"\n## {name}: {st.prompts} prompts, {res['runs']} runs, {st.seeds} seed(s); "
              f"marginal baseline RRR {', '.join(base)}; target b_N {truth[1]:.3f}, "
              f"b_C {truth[3]:.3f}; failed fits firth {res['fails']['firth']}, "
              f"mle {res['fails']['mle']} ({time.perf_counter() - t1:.0f} s)")
        print(f"{'interval':24s} {'cov b_N':>8s} {'cov b_C':>8s} {'width b_N':>10s} "
              f"{'width b_C':>10s}")
        for key, cov in res["coverage"].items():
            wid = res["width"][key]
            print(f"{key:24s} {cov[0]:8.3f} {cov[1]:8.3f} {wid[0]:10.3f} {wid[1]:10.3f}")
        worst = min(worst, float(res["coverage"][default].min()))
    print(f"\nwall: {time.perf_counter() - t0:.0f} s")
    print(f"coverage: {worst:.3f}")


if __name__ == "__main__":
    main()
