"""What `fit` fits: the gathered data as arrays, one `FitSpec` per curve, and predictions.

`Gathered` flattens points into per-prompt rows (run index, prompt index, value) with the
prompt ids pooled over runs, so a bootstrap replicate is just a weight per prompt id and per
run. A `FitSpec` names its form, its design columns and the runs it uses:

| column      | value per run                                     | coefficient |
|-------------|---------------------------------------------------|-------------|
| `1`         | 1                                                 | `a`         |
| `logN`      | ln N (`n_kind`: non-embedding or total parameters) | `b_N`       |
| `attacked`  | 1 for an attacked run, 0 for the baseline         | `d_attack`  |
| `logC`      | 1[attacked]·ln C, or ln(C + c0) when c0 is given  | `b_C`       |
| `logN*logC` | the product of the two                            | `b_NC`      |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.study.points import Point
from refusalscope.study.sizes import N_KINDS

COEF = {"1": "a", "logN": "b_N", "attacked": "d_attack", "logC": "b_C", "logN*logC": "b_NC"}
C_AXES = ("flops", "examples")
FORMS = {"rrr": ("logistic", "linear", "loglog"), "rd": ("linear", "loglog"),
         "ce": ("linear", "loglog")}


@dataclass(frozen=True)
class FitSpec:
    """One curve to fit: form, predictors, and which runs (indices into `Gathered`)."""

    metric: str
    form: str  # logistic | linear | loglog
    x: str  # size | compute | both
    group: str  # the runs' common ground, e.g. "lora n=16 steps=4" or "qwen2.5-coder-0.5b lora"
    columns: tuple[str, ...]
    runs: tuple[int, ...] = field(repr=False)
    c_axis: str | None = None  # flops | examples (compute and joint fits)
    c0: float | None = None

    @property
    def coef_names(self) -> list[str]:
        return [COEF[c] for c in self.columns]

    @property
    def name(self) -> str:
        vs = {"size": "log N", "compute": f"log C[{self.c_axis}]",
              "both": f"log N + log C[{self.c_axis}]"}[self.x]
        return f"{self.metric} {self.form} ~ {vs} | {self.group}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "form": self.form, "x": self.x,
                "group": self.group, "c_axis": self.c_axis, "c0": self.c0,
                "columns": list(self.columns), "coef_names": self.coef_names}


@dataclass
class Gathered:
    """Points as arrays. Rows are sorted by run; rows whose value is undefined are dropped."""

    metric: str
    points: list[Point]
    prompt_ids: list[str]
    row_run: np.ndarray
    row_prompt: np.ndarray
    row_y: np.ndarray
    bounds: np.ndarray  # [n_runs + 1]: run j's rows are bounds[j]:bounds[j+1]
    notes: list[str]
    n_kind: str = "non-embedding"  # which N the design's logN uses (`sizes.N_KINDS`)
    c_axes: tuple[str, ...] = C_AXES  # the C axes of compute and joint fits (`--c-axis`)

    @classmethod
    def from_points(cls, points: Sequence[Point], metric: str, rd_over: str,
                    n_kind: str = "non-embedding") -> Gathered:
        if n_kind not in N_KINDS:
            raise UserError(f"unknown --n-kind {n_kind!r}: one of {', '.join(N_KINDS)}")
        notes: list[str] = []
        kept, vals = [], []
        for p in points:
            v = p.values(metric, rd_over)
            if np.isfinite(v).any():
                kept.append(p)
                vals.append(v)
            elif metric == "rd" and not p.attacked:
                notes.append(f"{p.run}: a baseline has no drift (it is the reference); left out")
            elif metric == "rd" and np.isfinite(p.rd).any():
                notes.append(f"{p.run}: its baseline refused none of its prompts, so RD over "
                             "refused prompts is empty (--rd-over all uses every prompt); left out")
            else:
                notes.append(f"{p.run}: no {metric} values ({_why(metric)}); left out")
        if not kept:
            raise UserError(f"none of the runs has {metric} values: {_why(metric)}")
        ids = sorted({i for p in kept for i in p.ids})
        index = {i: k for k, i in enumerate(ids)}
        rr, rp, ry, bounds = [], [], [], [0]
        for j, (p, v) in enumerate(zip(kept, vals, strict=True)):
            ok = np.isfinite(v)
            rr.append(np.full(int(ok.sum()), j))
            rp.append(np.array([index[i] for i, o in zip(p.ids, ok, strict=True) if o], dtype=int))
            ry.append(v[ok])
            bounds.append(bounds[-1] + int(ok.sum()))
        if len({p.ids for p in kept}) > 1:
            notes.append("runs cover different prompt ids: the bootstrap pairs the shared ones")
        if len({p.scorer for p in kept}) > 1:
            notes.append("runs were scored by different scorers: "
                         + ", ".join(sorted({p.scorer for p in kept})))
        return cls(metric, kept, ids, np.concatenate(rr), np.concatenate(rp), np.concatenate(ry),
                   np.array(bounds), notes, n_kind)

    @property
    def n_runs(self) -> int:
        return len(self.points)

    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def condition(self) -> list[tuple[str, str]]:
        return [p.condition for p in self.points]

    def resample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One bootstrap replicate: counts per prompt id, and per run (seeds within a condition)."""
        w = rng.multinomial(self.n_prompts, np.full(self.n_prompts, 1 / self.n_prompts))
        r = np.ones(self.n_runs)
        groups: dict[tuple[str, str], list[int]] = {}
        for j, c in enumerate(self.condition):
            groups.setdefault(c, []).append(j)
        for js in groups.values():
            if len(js) > 1:
                r[js] = rng.multinomial(len(js), np.full(len(js), 1 / len(js)))
        return w.astype(float), r

    def run_mean(self, j: int, w: np.ndarray) -> float:
        s = slice(self.bounds[j], self.bounds[j + 1])
        ww = w[self.row_prompt[s]]
        tot = ww.sum()
        return float((ww * self.row_y[s]).sum() / tot) if tot > 0 else float("nan")

    def cell_mean(self, cond: tuple[str, str], w: np.ndarray, r: np.ndarray) -> float:
        num = den = 0.0
        for j, c in enumerate(self.condition):
            if c == cond and r[j] > 0:
                s = slice(self.bounds[j], self.bounds[j + 1])
                ww = w[self.row_prompt[s]] * r[j]
                num += float((ww * self.row_y[s]).sum())
                den += float(ww.sum())
        return num / den if den > 0 else float("nan")

    def c_values(self, axis: str) -> np.ndarray:
        """Every run's attack compute in `axis` (`points.C_UNITS`; 0 = no attack)."""
        return np.array([p.compute(axis) for p in self.points])

    def n_values(self) -> np.ndarray:
        """Every run's model size N of this fit's `n_kind`."""
        return np.array([p.n(self.n_kind) for p in self.points], dtype=float)

    def features(self, spec: FitSpec) -> np.ndarray:
        """Design matrix [n_runs, k] of `spec`'s columns for every run."""
        n = self.n_values()
        c = self.c_values(spec.c_axis) if spec.c_axis else np.zeros(self.n_runs)
        return design(spec, n, c)


def design(spec: FitSpec, n_params: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Design matrix of `spec` at parameter counts `n_params` and compute `c` (0 = no attack)."""
    attacked = (c > 0).astype(float)
    if spec.c0 is not None:
        log_c = np.log(c + spec.c0)
    else:
        log_c = np.where(c > 0, np.log(np.where(c > 0, c, 1.0)), 0.0)
    log_n = np.log(n_params)
    cols = {"1": np.ones_like(log_n), "logN": log_n, "attacked": attacked, "logC": log_c,
            "logN*logC": log_n * log_c}
    return np.stack([cols[k] for k in spec.columns], axis=1)


def predict(spec: FitSpec, betas: np.ndarray, n_params: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The metric predicted by coefficient rows `betas` [B, k] at the points: [B, m]."""
    eta = design(spec, np.asarray(n_params, float), np.asarray(c, float)) @ betas.T
    eta = eta.T
    if spec.form == "logistic":
        return 0.5 * (1.0 + np.tanh(0.5 * eta))  # sigmoid without overflow
    return np.exp(eta) if spec.form == "loglog" else eta


def _why(metric: str) -> str:
    return {"rrr": "no refusal labels",
            "ce": "CE needs classifier probabilities: score with --scorer classifier or ensemble",
            "rd": "RD needs a baseline: generate with --baseline RUN, then score"}[metric]


def cells_of(data: Gathered, keys: Sequence[tuple[str, str]], boot: np.ndarray,
             alpha: float) -> list[dict[str, Any]]:
    """Per-condition summary: the pooled mean over its runs and prompts, and its bootstrap CI."""
    out = []
    ones_w, ones_r = np.ones(data.n_prompts), np.ones(data.n_runs)
    for key, draws in zip(keys, boot, strict=True):
        js = [j for j, c in enumerate(data.condition) if c == key]
        p = data.points[js[0]]
        ok = draws[np.isfinite(draws)]
        lo, hi = (np.quantile(ok, [alpha / 2, 1 - alpha / 2]) if len(ok)
                  else (float("nan"), float("nan")))
        out.append({"model": p.model, "n_params": p.n_params, "n": p.n(data.n_kind),
                    "n_released": p.n_released, "n_non_embedding": p.n_non_embedding,
                    "control": p.control, "attack": p.attack, "defense": p.defense,
                    "family": p.family, "strength": p.strength, "n_data": p.n_data,
                    "steps": p.steps, "steps_label": p.steps_label, "examples": p.examples,
                    "flops": p.flops, "pretrain_flops": p.pretrain_flops,
                    "parts": [part.to_dict() for part in p.parts], "n_runs": len(js),
                    "n_obs": int(sum(data.bounds[j + 1] - data.bounds[j] for j in js)),
                    "mean": data.cell_mean(key, ones_w, ones_r),
                    "ci": [float(lo), float(hi)], "runs": [data.points[j].run for j in js]})
    return out
