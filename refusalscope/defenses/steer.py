"""`defend steer`: after an attack, add the refusal direction back while generating, with an
addition coefficient chosen on the `direction` split only.

Procedure (deterministic, greedy decoding):

1. Prompts: harmful and harmless prompts number `skip` .. `skip + n - 1` of the `direction`
   split (`skip` can step past the prompts the direction was computed from). Never `eval`.
2. For each alpha of the grid (0 is the attacked model unsteered), the attacked model (base +
   `adapter`) generates both sets with `add:DIRS:alpha=A` hooks (the file's selected layer
   unless `layers`; `interp.steering`), and the scorer labels refusals: RRR on the harmful
   set, over-refusal on the harmless one, each with a Wilson 95% CI (`steer_eval`).
3. Choice (`select_alpha`): rule ``margin`` (default) takes the alpha with the largest
   RRR - over-refusal; rule ``target`` the smallest alpha whose RRR reaches `target`, or the
   margin choice if none does (the run says which). Ties go to the smallest alpha.
4. Only then, if `eval_n` > 0: `generate` runs over the first `eval_n` harmful and harmless
   `eval` prompts at alpha 0 and at the chosen alpha (the steer spec, pinned by sha256, is in
   their config, so `score` and `fit` read them like any run), scored: RRR and over-refusal
   with bootstrap CIs in `eval.json`. Nothing from `eval` reaches the choice.

Run files: `search.json`/`.csv` (per alpha), `search_generations.jsonl`, `steer.txt` (the
chosen spec for `generate --steer`), `eval.json`, `defense.png`/`.pdf` (RRR and over-refusal vs
alpha, eval points marked), `compute.json` (the alpha search's generations by the shared ledger,
`refusalscope.compute`; adding the direction is d FLOPs per position, left out; the eval
generate runs record their own).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError

log = logging.getLogger(__name__)

COMMAND = "defend-steer"
RULES = ("margin", "target")


@dataclass(frozen=True)
class SteerDefenseConfig:
    """The attacked model, the direction, the alpha grid and the selection rule. Saved."""

    model: str
    directions: str | None
    adapter: str | None = None  # the attack: a peft adapter folder or an attack-lora run
    # sub-1 values matter: on the attacked 1.5B, alpha 1 already made 94% of harmless prompts refused
    # and 0.5 was the best trade-off; 8 was noise on both ladder models
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    layers: tuple[int, ...] | None = None  # None: the file's selected layer
    n: int = 16  # direction-split prompts per class for the search
    skip: int = 0
    max_new_tokens: int = 48
    rule: str = "margin"
    target: float = 0.9
    eval_n: int = 0  # > 0: evaluate alpha 0 and the chosen alpha on this many eval prompts
    eval_max_new_tokens: int = 64
    scorer: str = "heuristic"
    directions_sha256: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.directions:
            raise UserError("a steering defense needs a directions file: --directions "
                            "RUN/directions.h5 (from `refusalscope probe sweep`)")
        if self.n < 1 or self.skip < 0 or self.eval_n < 0:
            raise UserError(f"--n must be >= 1, --skip and --eval-n >= 0 "
                            f"(got {self.n}, {self.skip}, {self.eval_n})")
        if not self.alphas:
            raise UserError("--alpha needs at least one coefficient")
        if self.rule not in RULES:
            raise UserError(f"--rule {self.rule!r}: one of {', '.join(RULES)}")
        if not 0 < self.target <= 1:
            raise UserError(f"--target must be in (0, 1] (got {self.target})")
        if self.scorer not in ("heuristic", "ensemble"):
            raise UserError(f"--scorer {self.scorer!r}: heuristic or ensemble")
        object.__setattr__(self, "alphas", tuple(sorted(set(float(a) for a in self.alphas))))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alphas"] = list(self.alphas)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SteerDefenseConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("alphas", "layers"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def select_alpha(table: Sequence[dict[str, Any]], rule: str = "margin",
                 target: float = 0.9) -> tuple[float, str]:
    """(alpha, why) from per-alpha rows with `alpha`, `rrr`, `over_refusal` (direction split).

    Example:
        >>> select_alpha([{"alpha": 0, "rrr": .2, "over_refusal": 0},
        ...               {"alpha": 2, "rrr": .9, "over_refusal": .1},
        ...               {"alpha": 4, "rrr": 1, "over_refusal": .5}])
        (2.0, 'margin: largest RRR - over-refusal (0.80)')
    """
    rows = sorted(table, key=lambda r: r["alpha"])
    if rule == "target":
        hit = [r for r in rows if r["rrr"] >= target]
        if hit:
            return float(hit[0]["alpha"]), f"target: smallest alpha with RRR >= {target:g}"
    best = max(rows, key=lambda r: (r["rrr"] - r["over_refusal"], -r["alpha"]))
    why = f"margin: largest RRR - over-refusal ({best['rrr'] - best['over_refusal']:.2f})"
    if rule == "target":
        why = f"no alpha reached RRR {target:g}; " + why
    return float(best["alpha"]), why


def sweep_prompts_used(directions: str | Path) -> tuple[int, str] | None:
    """(how many leading `direction`-split prompts per class the sweep that wrote `directions`
    used, that sweep's run folder), read from the run's manifest; None when the file is not
    inside a `probe sweep` run (nothing to check against).

    Example:
        sweep_prompts_used("runs/sweep/directions.h5")  # (96, "runs/sweep") for --n 64 --n-val 32
    """
    import json

    manifest = Path(directions).resolve().parent / "manifest.json"
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    c = m.get("config") or {}
    if m.get("command") != "probe-sweep" or c.get("split", "direction") != "direction":
        return None
    return int(c.get("n", 0)) + int(c.get("n_val", 0)), str(manifest.parent)


def check_held_out(cfg: SteerDefenseConfig) -> None:
    """A `UserError` when the search would reuse prompts the direction was selected on: the
    sweep's first n + n_val direction-split prompts must be skipped (`--skip`)."""
    used = sweep_prompts_used(cfg.directions) if cfg.directions else None
    if used is not None and cfg.skip < used[0]:
        raise UserError(f"--skip {cfg.skip}: the direction was selected on the first {used[0]} "
                        f"direction-split prompts of each class (--n + --n-val of {used[1]}); "
                        f"use --skip {used[0]} or more so the coefficient search is held out")


def direction_prompts(cfg: SteerDefenseConfig) -> tuple[list[Any], list[Any]]:
    """Harmful and harmless search prompts: `direction` split, numbers skip .. skip + n - 1
    (never prompts the direction was selected on: see `check_held_out`)."""
    from refusalscope.data.load import load_split

    check_held_out(cfg)
    out = tuple(load_split("direction", harmless=h, n=cfg.skip + cfg.n)[cfg.skip:]
                for h in (False, True))
    if not out[0] or not out[1]:
        raise UserError(f"the direction split has no prompts after --skip {cfg.skip}")
    return out[0], out[1]


def search(handle: Any, cfg: SteerDefenseConfig, prompts: tuple[list[Any], list[Any]],
           hooks: dict[float, list[Any]], sink: Any, *, batch_size: int = 16,
           on_alpha: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per alpha: harmful RRR and harmless over-refusal with Wilson CIs."""
    from refusalscope.generation import GenerateConfig
    from refusalscope.interp.steer_eval import eval_condition, make_scorer

    scorer = make_scorer(cfg.scorer)
    gcfg = GenerateConfig(model=cfg.model, split="direction", n=cfg.n,
                          max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    table = []
    for a in cfg.alphas:
        h, l = (eval_condition(handle, f"{side}/add={a:g}", ps, hooks[a], gcfg, scorer, sink,
                               batch_size=batch_size)
                for side, ps in zip(("harmful", "harmless"), prompts, strict=True))
        row = {"alpha": a, "n": h["n"], "rrr": h["refusal_rate"], "rrr_ci_low": h["ci_low"],
               "rrr_ci_high": h["ci_high"], "over_refusal": l["refusal_rate"],
               "over_refusal_ci_low": l["ci_low"], "over_refusal_ci_high": l["ci_high"],
               "harmful_degenerate": h["degenerate_rate"],
               "harmless_degenerate": l["degenerate_rate"],
               "margin": h["refusal_rate"] - l["refusal_rate"]}
        table.append(row)
        if on_alpha is not None:
            on_alpha(row)
    return table


def _hooks(handle: Any, cfg: SteerDefenseConfig) -> dict[float, list[Any]]:
    """Per alpha, the addition hooks (none at 0); bad layers fail here, before any run."""
    from refusalscope.interp.steering import SteerSpec

    assert cfg.directions is not None
    return {a: [] if a == 0 else SteerSpec("add", cfg.directions, alpha=a,
                                           layers=cfg.layers).hooks(handle)
            for a in cfg.alphas}


def spec_string(cfg: SteerDefenseConfig, alpha: float) -> str:
    """The resolved `generate --steer` spec for `alpha`, pinned by sha256.

    Alpha 0 gives a spec too (adding 0 x v changes no output): a run of the defense that chose
    not to steer still says it is one (`study.points` reads `add:` as the steering defense).
    """
    from refusalscope.interp.steering import SteerSpec

    assert cfg.directions is not None
    return SteerSpec("add", cfg.directions, alpha=alpha, layers=cfg.layers).resolve().to_string()


def run_defend_steer(cfg: SteerDefenseConfig, *, options: Any = None, batch_size: int = 16,
                     on_alpha: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Search alpha on the direction split, then (optionally) evaluate; returns the Run.

    Example:
        run = run_defend_steer(SteerDefenseConfig(model="qwen2.5-coder-0.5b",
                               adapter="artifacts/runs/<attack-lora run>",
                               directions="artifacts/runs/<probe-sweep run>/directions.h5"))
    """
    import time

    from refusalscope.fileio import atomic_write_json, read_jsonl, sha256_file
    from refusalscope.generation import generation_ledger
    from refusalscope.interp.directions import load_directions
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

    prompts = direction_prompts(cfg)
    handle = ModelHandle.load(cfg.model, adapter=cfg.adapter, options=options)
    assert cfg.directions is not None
    load_directions(cfg.directions, handle)  # missing / other model: one line, before any run
    hooks = _hooks(handle, cfg)
    cfg = replace(cfg, directions=str(Path(cfg.directions).resolve()),
                  directions_sha256=sha256_file(cfg.directions))
    run = Run.create(COMMAND, cfg.to_dict(), model=cfg.model, seed=cfg.seed,
                     harmful_content=True, input_runs=[cfg.adapter] if cfg.adapter else None)
    with run.guard():
        t0 = time.perf_counter()
        table = search(handle, cfg, prompts, hooks, run.file("search_generations.jsonl"),
                       batch_size=batch_size, on_alpha=on_alpha)
        compute = generation_ledger(handle, read_jsonl(run.file("search_generations.jsonl")),
                                    time.perf_counter() - t0).to_dict()
        atomic_write_json(run.file("compute.json"), compute)
        alpha, why = select_alpha(table, cfg.rule, cfg.target)
        chosen = {"alpha": alpha, "why": why, "steer": spec_string(cfg, alpha),
                  "prompt_ids": {"harmful": [p.id for p in prompts[0]],
                                 "harmless": [p.id for p in prompts[1]]}}
        del handle, hooks
        ev = evaluate(cfg, alpha, options=options, batch_size=batch_size) if cfg.eval_n else {}
        write_outputs(run, cfg, table, chosen, ev)
    run.manifest.extra.update({"defense": "steer", "chosen": chosen, "eval": ev,
                               "compute": compute})
    run.finish("success")
    return run


# ---------------------------------------------------------------- evaluation and files
SIDES = (("harmful", "rrr"), ("harmless", "over_refusal"))


def evaluate(cfg: Any, alpha: float, *, options: Any = None,
             batch_size: int = 16) -> dict[str, Any]:
    """`generate` + score runs on the first `cfg.eval_n` eval prompts of each side, at alpha 0
    (the attacked model) and at `alpha`; {alpha: {side: {run, rate, ci, wilson95}}}.

    The alpha is an argument: it was fixed on the direction split before this is called.
    """
    from refusalscope.generation import GenerateConfig, run_generate
    from refusalscope.interp.steer_eval import make_scorer
    from refusalscope.scoring import BootstrapSpec
    from refusalscope.scoring.score import score_run

    scorer = make_scorer(cfg.scorer)
    out: dict[str, Any] = {}
    for a in sorted({0.0, alpha}):
        out[f"{a:g}"] = {}
        for side, metric in SIDES:
            gcfg = GenerateConfig(model=cfg.model, split="eval", n=cfg.eval_n,
                                  harmless=side == "harmless", adapter=cfg.adapter,
                                  max_new_tokens=cfg.eval_max_new_tokens, seed=cfg.seed,
                                  steer=None if a == 0 else spec_string(cfg, a))
            run = run_generate(gcfg, options=options, batch_size=batch_size)
            m = score_run(run.path, scorer, bootstrap=BootstrapSpec(seed=cfg.seed)).metrics[metric]
            out[f"{a:g}"][side] = {"run": str(run.path), "n": m["n"], "rate": m["rate"],
                                   "ci": m["ci"], "wilson95": m["wilson95"]}
    return out


def write_outputs(run: Any, cfg: Any, table: list[dict[str, Any]], chosen: dict[str, Any],
                  ev: dict[str, Any]) -> None:
    """`search.json`/`.csv`, `steer.txt`, `eval.json` (if evaluated), `defense.png`/`.pdf`."""
    from refusalscope.fileio import atomic_write_json

    atomic_write_json(run.file("search.json"), {"rule": cfg.rule, "target": cfg.target,
                                                "split": "direction", "table": table,
                                                "chosen": chosen})
    with open(run.file("search.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    run.file("steer.txt").write_text(chosen["steer"] + "\n", encoding="utf-8")
    if ev:
        atomic_write_json(run.file("eval.json"), ev)
    plot_defense(table, chosen["alpha"], ev, run.file("defense.png"), cfg.model)


def plot_defense(table: list[dict[str, Any]], alpha: float, ev: dict[str, Any], png: Any,
                 title: str) -> None:
    """RRR and over-refusal vs alpha (direction split, Wilson CIs); eval points as squares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refusalscope.interp.steer_eval import save_rate_figure

    xs = [r["alpha"] for r in table]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, colour in (("rrr", "RRR (harmful)", "C3"),
                               ("over_refusal", "over-refusal (harmless)", "C0")):
        ys = [r[key] for r in table]
        err = [[max(y - r[f"{key}_ci_low"], 0) for y, r in zip(ys, table, strict=True)],
               [max(r[f"{key}_ci_high"] - y, 0) for y, r in zip(ys, table, strict=True)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colour,
                    label=f"{label}, direction split")
        side = "harmful" if key == "rrr" else "harmless"
        pts = [(float(a), v[side]) for a, v in ev.items()]
        if pts:
            ax.errorbar([a for a, _ in pts], [p["rate"] for _, p in pts],
                        yerr=[[max(p["rate"] - p["ci"][0], 0) for _, p in pts],
                              [max(p["ci"][1] - p["rate"], 0) for _, p in pts]],
                        fmt="s", mfc="none", capsize=3, color=colour, label=f"{label}, eval")
    ax.axvline(alpha, color="k", ls=":", lw=1, label=f"chosen alpha {alpha:g}")
    save_rate_figure(fig, ax, png, xlabel="addition coefficient alpha (x difference-in-means)",
                     ylabel="refusal rate", title=f"{title}: steering defense after the attack")
