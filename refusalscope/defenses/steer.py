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
from typing import TYPE_CHECKING, Any

from refusalscope.defenses.base import RUNTIME, DefendedHandle, DefenseResult, Progress
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

log = logging.getLogger(__name__)

COMMAND = "defend-steer"
SEARCH_GENERATIONS = "search_generations.jsonl"
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
    from refusalscope.interp.steer_eval import eval_condition
    from refusalscope.scoring.factory import scorer as make_scorer

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


class SteerDefense:
    """The refusal direction added back while generating (module doc): kind runtime.

    Example:
        run = run_defense(STEER, SteerDefenseConfig(model="qwen2.5-coder-0.5b",
                          adapter="artifacts/runs/<attack-lora run>",
                          directions="artifacts/runs/<probe-sweep run>/directions.h5"))
    """

    name = "steer"
    kind = RUNTIME
    config_cls = SteerDefenseConfig
    work = "generate"  # `study plan`'s measured rate
    resumable = False  # a search is redone from the start
    harmful_content = True
    study_keys = ("alphas", "n", "skip", "rule", "target", "max_new_tokens", "sweep_n",
                  "sweep_n_val", "positions", "seed")
    # The sweep that makes the direction (study only); skip None: past its prompts.
    study_defaults = {"skip": None, "sweep_n": 32, "sweep_n_val": 16,
                      "positions": "post-instruction"}
    study_inputs = {"directions": ("sweep_n", "sweep_n_val", "positions")}

    def cost(self, cfg: SteerDefenseConfig, model_info: ParamCounts) -> float:
        """Both sides' `n` prompts generated at every alpha (steering's d FLOPs per position
        left out; the `eval_n` evaluation runs count their own)."""
        from refusalscope.attacks.gcg_run import PROMPT_TOKENS
        from refusalscope.compute import generation_flops

        return float(len(cfg.alphas) * 2 * cfg.n
                     * generation_flops(model_info, PROMPT_TOKENS, cfg.max_new_tokens))

    def resources(self, cfg: SteerDefenseConfig | None) -> dict[str, float]:
        return {"cpus": 2, "gpus": 1}

    def prepare(self, handle: ModelHandle | None, cfg: SteerDefenseConfig) -> SteerDefenseConfig:
        """Search prompts held out from the sweep (before loading); then the directions file
        of this model and its layers, pinned by path and sha256."""
        from refusalscope.fileio import sha256_file
        from refusalscope.interp.directions import load_directions

        if handle is None:
            direction_prompts(cfg)
            return cfg
        assert cfg.directions is not None
        load_directions(cfg.directions, handle)  # missing / other model: one line
        _hooks(handle, cfg)  # bad layers fail here
        return replace(cfg, directions=str(Path(cfg.directions).resolve()),
                       directions_sha256=sha256_file(cfg.directions))

    def run(self, handle: ModelHandle, cfg: SteerDefenseConfig, *, run: Run | None = None,
            progress: Progress | None = None, batch_size: int | None = None) -> DefenseResult:
        """The alpha search (generations into `run`, or a temporary file) and the choice."""
        import time

        from refusalscope.fileio import process_tempdir, read_jsonl
        from refusalscope.generation import generation_ledger

        prompts = direction_prompts(cfg)
        sink = (run.file(SEARCH_GENERATIONS) if run is not None
                else process_tempdir("refusalscope-steer-") / SEARCH_GENERATIONS)
        t0 = time.perf_counter()
        table = search(handle, cfg, prompts, _hooks(handle, cfg), sink,
                       batch_size=batch_size or 16, on_alpha=progress)
        compute = generation_ledger(handle, read_jsonl(sink),
                                    time.perf_counter() - t0).to_dict()
        alpha, why = select_alpha(table, cfg.rule, cfg.target)
        chosen = {"alpha": alpha, "why": why, "steer": spec_string(cfg, alpha),
                  "prompt_ids": {"harmful": [p.id for p in prompts[0]],
                                 "harmless": [p.id for p in prompts[1]]}}
        return DefenseResult(self.name, self.kind, cfg.to_dict(),
                             {"steer": chosen["steer"], "alpha": alpha}, compute, log=table,
                             extra={"chosen": chosen})

    def apply(self, handle: ModelHandle, result: DefenseResult) -> ModelHandle:
        """`handle` with the chosen addition hooks always on."""
        from refusalscope.interp.steering import SteerSpec

        hooks = SteerSpec.parse(result.artefact["steer"]).hooks(handle)
        return DefendedHandle(handle, hooks=hooks, defense=self.name)

    def write(self, run: Run, result: DefenseResult, *, options: Any = None,
              batch_size: int | None = None) -> None:
        """`compute.json`, the eval runs (`eval_n` > 0), the tables, `steer.txt`, the figure."""
        from refusalscope.fileio import atomic_write_json

        cfg = SteerDefenseConfig.from_dict(result.config)
        chosen = result.extra["chosen"]
        atomic_write_json(run.file("compute.json"), result.compute)
        ev = (evaluate(cfg, chosen["alpha"], options=options, batch_size=batch_size or 16)
              if cfg.eval_n else {})
        result.extra["eval"] = ev
        write_outputs(run, cfg, result.log, chosen, ev)
        run.manifest.extra.update({"chosen": chosen, "eval": ev})

    def outputs(self, run: Run) -> dict[str, Any]:
        chosen = run.manifest.extra["chosen"]
        return {"alpha": chosen["alpha"], "steer": chosen["steer"]}

    def generation(self, outputs: dict[str, Any]) -> dict[str, Any]:
        return {"steer": outputs["steer"]}

    def study_table(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        """`alphas` a non-empty list; `skip` (None) past the sweep's n + n_val prompts."""
        alphas = params["alphas"] if isinstance(params["alphas"], list) else [params["alphas"]]
        if not alphas:
            raise UserError(f"empty grid at {where}.alphas: give at least one value")
        skip = params["skip"]
        if skip is None:
            skip = int(params["sweep_n"]) + int(params["sweep_n_val"])
        return {**params, "alphas": alphas, "skip": skip}


# ---------------------------------------------------------------- evaluation and files
SIDES = (("harmful", "rrr"), ("harmless", "over_refusal"))


def evaluate(cfg: Any, alpha: float, *, options: Any = None,
             batch_size: int = 16) -> dict[str, Any]:
    """`generate` + score runs on the first `cfg.eval_n` eval prompts of each side, at alpha 0
    (the attacked model) and at `alpha`; {alpha: {side: {run, rate, ci, wilson95}}}.

    The alpha is an argument: it was fixed on the direction split before this is called.
    """
    from refusalscope.generation import GenerateConfig, run_generate
    from refusalscope.scoring import BootstrapSpec
    from refusalscope.scoring.factory import scorer as make_scorer
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


STEER = SteerDefense()
