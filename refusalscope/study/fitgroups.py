"""Which curves each `--x` axis asks for, and which runs each one uses.

- size: one group per attack strength (the baseline is one), fitted across model sizes;
- compute: one group per model, attack kind and defense (its baseline runs included: the
  defended model's own for TAR, the undefended ones otherwise), on each C axis;
- both: one joint group per attack kind and defense (all models, baselines included).
A chained attack ("lora+gcg") is a kind of its own. A group without enough distinct x values is
skipped with a note; an axis with no group at all is a `UserError` that says what is missing.
Controls (models that never refuse) are left out of size and joint fits, with a note, unless
`include_controls`; per-model compute fits keep them.
`compute_group` / `joint_group` name the groups, so figures find the fit of a kind and defense.
"""

from __future__ import annotations

import numpy as np

from refusalscope.errors import UserError
from refusalscope.study.fitspec import FORMS, FitSpec, Gathered

Specs = tuple[list[FitSpec], list[str]]


def compute_group(model: str, kind: str, defense: str) -> str:
    """The group name of one model's fit vs compute under an attack kind and defense."""
    return f"{model} {kind}{_tag(defense)}"


def joint_group(kind: str, defense: str) -> str:
    """The group name of the joint fit (all models) of an attack kind and defense."""
    return f"all models {kind}{_tag(defense)}"


def _fmt_n(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _sizes(data: Gathered, runs: list[int]) -> set[int]:
    return {data.points[j].n(data.n_kind) for j in runs}


def _sized(data: Gathered, include_controls: bool) -> tuple[list[int], list[str]]:
    """Runs that size fits may use, and a note naming the controls left out."""
    controls = sorted({p.model for p in data.points if p.control})
    if include_controls or not controls:
        return list(range(data.n_runs)), []
    return ([j for j, p in enumerate(data.points) if not p.control],
            [f"{', '.join(controls)}: a control (never refuses), left out of the fits vs size "
             "and reported beside them in the cells (--include-controls keeps it)"])


def size_specs(data: Gathered, *, interaction: bool, c0: float | None,
               include_controls: bool = False) -> Specs:
    metric = _metric(data)
    runs_ok, notes = _sized(data, include_controls)
    groups: dict[str, list[int]] = {}
    for j in runs_ok:
        groups.setdefault(data.points[j].strength, []).append(j)
    specs: list[FitSpec] = []
    for strength, runs in sorted(groups.items()):
        if len(_sizes(data, runs)) < 2:
            notes.append(f"{strength}: one model size only; no fit vs size")
            continue
        specs += [FitSpec(metric, form, "size", strength, ("1", "logN"), tuple(runs))
                  for form in FORMS[metric]]
    if not specs:
        sizes = ", ".join(f"{_fmt_n(n)} ({m})" for n, m in
                          sorted({(p.n(data.n_kind), p.model) for p in data.points}))
        raise UserError("a fit vs model size needs runs of at least 2 model sizes under one "
                        f"attack strength; these runs have N = {sizes}"
                        + "".join(f" ({n})" for n in notes))
    return specs, notes


def compute_specs(data: Gathered, *, interaction: bool, c0: float | None,
                  include_controls: bool = False) -> Specs:
    metric = _metric(data)
    specs, notes = [], []
    for model in sorted({p.model for p in data.points}):
        for kind, defense in sorted({(p.attack, p.defense) for p in data.points
                                     if p.attacked and p.model == model}):
            base = _base(data, defense, model)
            for axis in data.c_axes:
                att = _attacked(data, kind, axis, model, defense)
                group = compute_group(model, kind, defense)
                if len({data.c_values(axis)[j] for j in att}) < 2:
                    notes.append(f"{group}: fewer than 2 {axis} levels; no fit vs {axis}")
                    continue
                specs += _c_specs(metric, "compute", group, axis, att, base, (), c0)
    if not specs:
        raise UserError("a fit vs attack compute needs attacked runs at 2+ compute levels of "
                        "one model (generate --adapter ATTACK_RUN for several attack runs, "
                        "then score); " + "; ".join(notes[:2] or ["no attacked runs found"]))
    return specs, notes


def both_specs(data: Gathered, *, interaction: bool, c0: float | None,
               include_controls: bool = False) -> Specs:
    metric = _metric(data)
    runs_ok, notes = _sized(data, include_controls)
    ok = set(runs_ok)
    specs: list[FitSpec] = []
    for kind, defense in sorted({(data.points[j].attack, data.points[j].defense)
                                 for j in runs_ok if data.points[j].attacked}):
        base = [j for j in _base(data, defense) if j in ok]
        for axis in data.c_axes:
            att = [j for j in _attacked(data, kind, axis, defense=defense) if j in ok]
            n_c = len({data.c_values(axis)[j] for j in att})
            n_n = len(_sizes(data, att + base))
            if n_c < 2 or n_n < 2:
                sizes = ", ".join(sorted({data.points[j].model for j in att + base}))
                notes.append(f"{kind} ({axis}): {n_n} model size(s) [{sizes}] and {n_c} "
                             "compute level(s); a joint fit needs 2+ of each")
                continue
            extra = ("logN",) + (("logN*logC",) if interaction else ())
            specs += [s for s in _c_specs(metric, "both", joint_group(kind, defense),
                                          axis, att, base, extra, c0) if s.form != "loglog"]
    if not specs:
        raise UserError("a joint fit vs model size and compute is impossible: "
                        + "; ".join(notes[:2] or ["no attacked runs found"])
                        + " (--x compute or --x size fit one axis)"
                        + "".join(f" ({n})" for n in notes[:1] if "control" in n))
    return specs, notes


def _metric(data: Gathered) -> str:
    return data.metric


def _attacked(data: Gathered, kind: str, axis: str, model: str | None = None,
              defense: str = "none") -> list[int]:
    c = data.c_values(axis)
    return [j for j, p in enumerate(data.points)
            if p.attack == kind and p.defense == defense and (model is None or p.model == model)
            and np.isfinite(c[j]) and c[j] > 0]


def _base(data: Gathered, defense: str, model: str | None = None) -> list[int]:
    """Unattacked runs with this defense (a TAR model's own baseline), else undefended ones
    (steering is only added after an attack: its C = 0 level is the undefended model)."""
    def pick(d: str) -> list[int]:
        return [j for j, p in enumerate(data.points) if not p.attacked and p.defense == d
                and (model is None or p.model == model)]

    return pick(defense) or pick("none")


def _tag(defense: str) -> str:
    return "" if defense == "none" else f" [{defense}]"


def _c_specs(metric: str, x: str, group: str, axis: str, att: list[int], base: list[int],
             extra: tuple[str, ...], c0: float | None) -> list[FitSpec]:
    """Logistic/linear on attacked + baseline runs; log-log on attacked runs only (unless c0)."""
    out = []
    for form in FORMS[metric]:
        if form == "loglog" and c0 is None:
            runs, cols = att, ("1", *extra[:1], "logC")
        else:
            runs = att + base
            ind = ("attacked",) if base and c0 is None else ()
            cols = ("1", *extra[:1], *ind, "logC", *extra[1:])
        out.append(FitSpec(metric, form, x, group, cols, tuple(sorted(runs)), axis, c0))
    return out


def build_specs(data: Gathered, x: str, *, interaction: bool, c0: float | None,
                include_controls: bool = False) -> Specs:
    """Every fit the data allows for axis `x`; `UserError` (saying why) when there is none.
    Controls (models that never refuse) enter size and joint fits only with `include_controls`."""
    build = {"size": size_specs, "compute": compute_specs, "both": both_specs}[x]
    return build(data, interaction=interaction, c0=c0, include_controls=include_controls)
