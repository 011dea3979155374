"""Coverage of the attack half-life S½'s nominal 95% interval (`refusalscope.study.halflife`)
on simulated single-model studies of the study's shape.

Prompt p in run j (C_j = 0 for the baseline, else examples = 4 · steps) is refused with
probability sigmoid(a + u_p + 1[attacked_j]·(d + v_p + e_j + b·ln C_j)): a prompt intercept
u_p ~ N(0, σ_u²) (prompts differ in how refusable they are, the same in every run), a prompt
susceptibility v_p ~ N(0, σ_v²) and a seed effect e_j ~ N(0, σ_e²) per attacked run. The fit is
the shipped one (Firth, baseline as its own intercept, no random effects), so the target is
its infinite-data limit: the marginal refusal rate of each run (Gauss–Hermite over the normal
u + v + e) fitted by the same form with one unit of weight per run, and S½ solved from those
coefficients. An interval covers when it holds the target (a censored end, "> C_max" or
"< C_min", holds everything beyond it). Studies use the seeds 0..n−1 of one fixed list.

    .venv/bin/python benchmarks/halflife_coverage.py               # 200 studies per setting
    .venv/bin/python benchmarks/halflife_coverage.py --studies 50 --boot 200
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from refusalscope.study.halflife import HalfLifeConfig, half_life
from refusalscope.study.points import Point
from refusalscope.study.regress import logistic_batch

BATCH = 4
# name: prompts, steps, seeds, (a, d, b), (σ_u, σ_v, σ_e)
SETTINGS = {
    "64 prompts, 4 levels, 1 seed": (64, (1, 4, 16, 64), 1, (2.5, 1.5, -1.1), (1.5, 1.0, 0.0)),
    "32 prompts, 4 levels, 1 seed": (32, (1, 4, 16, 64), 1, (2.5, 1.5, -1.1), (1.5, 1.0, 0.0)),
    "128 prompts, 4 levels, 3 seeds": (128, (1, 4, 16, 32), 3, (2.5, 1.5, -1.2),
                                       (1.5, 1.0, 0.5)),
    "strong refuser, 64 prompts": (64, (1, 2, 4, 8, 16, 32, 64), 1, (6.0, 2.0, -2.2),
                                   (1.5, 1.0, 0.0)),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def target(steps: tuple[int, ...], coef: tuple[float, float, float],
           sd: tuple[float, float, float]) -> float:
    """ln S½ (examples) of the fitted form's infinite-data limit."""
    a, d, b = coef
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    lc = np.log(np.array(steps, float) * BATCH)
    s_att = math.sqrt(sd[0] ** 2 + sd[1] ** 2 + sd[2] ** 2)
    p = np.r_[(w * _sigmoid(a + sd[0] * x)).sum(),
              [(w * _sigmoid(a + d + b * c + s_att * x)).sum() for c in lc]]
    X = np.c_[np.ones(len(p)), np.r_[0.0, np.ones(len(lc))], np.r_[0.0, lc]]
    (a_, d_, b_), = logistic_batch(X, p[None], np.ones((1, len(p))), firth=False)[0]
    half = _sigmoid(np.array(a_)) / 2
    return float((np.log(half / (1 - half)) - a_ - d_) / b_)


def study(rng: np.random.Generator, prompts: int, steps: tuple[int, ...], seeds: int,
          coef: tuple[float, float, float], sd: tuple[float, float, float]) -> list[Point]:
    a, d, b = coef
    u, v = rng.normal(0, sd[0], prompts), rng.normal(0, sd[1], prompts)
    ids = tuple(f"p{i}" for i in range(prompts))
    nan = np.full(prompts, np.nan)

    def run(name: str, s: int, seed: int, eta: np.ndarray) -> Point:
        return Point(run=name, model="m", n_params=int(5e8), attack="lora" if s else "none",
                     attack_run=None, variant="", n_data=16 if s else None,
                     steps=s or None, examples=float(s * BATCH), flops=float(s * 1e12),
                     seed=(seed, 0), scorer="sim", ids=ids,
                     refused=(rng.random(prompts) < _sigmoid(eta)).astype(float), ce=nan,
                     rd=nan, rd_refused=nan)

    out = [run("base", 0, 0, a + u)]
    for s in steps:
        for seed in range(seeds):
            e = rng.normal(0, sd[2])
            out.append(run(f"s{s}-{seed}", s, seed, a + u + d + v + e + b * math.log(s * BATCH)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--boot", type=int, default=400)
    args = ap.parse_args()
    worst = 1.0
    for k, (name, (prompts, steps, seeds, coef, sd)) in enumerate(SETTINGS.items()):
        t0, truth, hits, censored = time.time(), target(steps, coef, sd), 0, 0
        for i in range(args.studies):
            rng = np.random.default_rng([k, i])
            pts = study(rng, prompts, steps, seeds, coef, sd)
            s = half_life(pts, HalfLifeConfig(n_boot=args.boot, seed=i)).rows[0].axes["examples"]
            hits += bool(s.ci[0] <= truth <= s.ci[1])
            censored += not np.isfinite(s.ci).all()
        cov = hits / args.studies
        worst = min(worst, cov)
        print(f"{name}: target S½ = {math.exp(truth):.1f} examples, coverage {cov:.3f} "
              f"({args.studies} studies x {args.boot} replicates, {censored} with a censored "
              f"CI end, {time.time() - t0:.0f} s)", flush=True)
    print(f"coverage: {worst:.3f}")


if __name__ == "__main__":
    main()
