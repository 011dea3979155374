"""`steer eval`: refusal rate of harmful prompts with the direction ablated, and of harmless
prompts vs the addition coefficient, generated and scored in one run folder.

Conditions: ``harmful/none``, ``harmful/ablate``, then ``harmless/add=A`` for each alpha
(alpha 0 is the unsteered harmless baseline). Each row of `generations.jsonl` carries its
`condition`; `steer_eval.json`/`.csv` hold refusal and degenerate rates with Wilson 95% CIs;
`steer_eval.png`/`.pdf` plot them. The run holds completions to harmful prompts: it is marked
harmful.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from typing import Any

from refusalscope.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SteerEvalConfig:
    """What to evaluate. Saved in the run manifest (with the directions file's sha256)."""

    model: str
    directions: str
    alphas: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
    layers: tuple[int, ...] | None = None  # addition layers (None: the selected layer)
    n: int = 32
    split: str = "eval"
    max_new_tokens: int = 64
    scorer: str = "heuristic"  # heuristic | ensemble
    harmful: bool = True  # also run harmful/none and harmful/ablate
    directions_sha256: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be at least 1 (got {self.n})")
        if not self.alphas:
            raise UserError("--alpha needs at least one coefficient")
        if self.scorer not in ("heuristic", "ensemble"):
            raise UserError(f"--scorer {self.scorer!r}: heuristic or ensemble")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alphas"] = list(self.alphas)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d


INCOHERENT = frozenset({"repetitive", "empty"})


def _summary(condition: str, rows: list[dict[str, Any]], refused: list[bool]) -> dict[str, Any]:
    from refusalscope.scoring.degeneracy import classify
    from refusalscope.scoring.stats import wilson_interval

    n = len(rows)
    k = sum(refused)
    classified = classify([r["prompt"] for r in rows], [r["response"] for r in rows], refused)
    deg = sum(o == "degenerate" for o, _ in classified)
    # A refusal that loops ("I cannot proceed as I cannot proceed as ...") or is empty counts as
    # refused but not as coherent: strong steering produces such text.
    coherent = sum(o == "refused" and not INCOHERENT.intersection(sig.reasons)
                   for o, sig in classified)
    lo, hi = wilson_interval(k, n)
    dlo, dhi = wilson_interval(deg, n)
    clo, chi = wilson_interval(coherent, n)
    return {"condition": condition, "n": n, "refused": k, "refusal_rate": k / n,
            "ci_low": lo, "ci_high": hi, "degenerate": deg, "degenerate_rate": deg / n,
            "degenerate_ci_low": dlo, "degenerate_ci_high": dhi,
            "refused_coherent": coherent, "coherent_refusal_rate": coherent / n,
            "coherent_ci_low": clo, "coherent_ci_high": chi}


def eval_condition(handle: Any, name: str, prompts: list[Any], hooks: list[Any], gcfg: Any,
                   scorer: Any, sink: Any, *, batch_size: int = 16) -> dict[str, Any]:
    """Generate `prompts` under `hooks`, score them, append the rows (with `condition` = `name`
    and `refused`) to the JSONL file `sink`; return the condition's summary (rates, Wilson CIs).
    """
    from refusalscope.fileio import append_jsonl
    from refusalscope.generation import generate_rows

    rows = [{**r, "condition": name} for r in generate_rows(
        handle, prompts, gcfg, batch_size=batch_size, interventions=hooks)]
    labels = scorer.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    for r, lab in zip(rows, labels, strict=True):
        append_jsonl(sink, {**r, "refused": lab.refused})
    return _summary(name, rows, [lab.refused for lab in labels])


def run_steer_eval(cfg: SteerEvalConfig, *, options: Any = None, batch_size: int = 16,
                   on_condition: Any = None) -> Any:
    """Generate and score every condition; returns the finished Run."""
    from dataclasses import replace

    from refusalscope.data.load import load_split
    from refusalscope.fileio import atomic_write_json, sha256_file
    from refusalscope.generation import GenerateConfig
    from refusalscope.interp.directions import load_directions
    from refusalscope.interp.steering import SteerSpec
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run
    from refusalscope.scoring.factory import scorer as make_scorer

    harmful = load_split(cfg.split, n=cfg.n) if cfg.harmful else []
    harmless = load_split(cfg.split, harmless=True, n=cfg.n)
    scorer = make_scorer(cfg.scorer)
    handle = ModelHandle.load(cfg.model, options=options)
    load_directions(cfg.directions, handle)  # one-line error before any run folder exists
    cfg = replace(cfg, directions_sha256=sha256_file(cfg.directions))
    conds: list[tuple[str, list[Any], list[Any]]] = [] if not cfg.harmful else [
        ("harmful/none", harmful, []),
        ("harmful/ablate", harmful, SteerSpec("ablate", cfg.directions).hooks(handle))]
    for a in cfg.alphas:
        hooks = [] if a == 0 else SteerSpec("add", cfg.directions, alpha=a,
                                            layers=cfg.layers).hooks(handle)
        conds.append((f"harmless/add={a:g}", harmless, hooks))
    run = Run.create("steer-eval", cfg.to_dict(), model=cfg.model, seed=cfg.seed,
                     harmful_content=cfg.harmful)
    gcfg = GenerateConfig(model=cfg.model, split=cfg.split, n=cfg.n,
                          max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    results = []
    with run.guard():
        for i, (name, prompts, hooks) in enumerate(conds):
            results.append(eval_condition(handle, name, prompts, hooks, gcfg, scorer,
                                          run.file("generations.jsonl"), batch_size=batch_size))
            if on_condition is not None:
                on_condition(i + 1, len(conds), results[-1])
        atomic_write_json(run.file("steer_eval.json"), {"scorer": scorer.to_dict(),
                                                        "results": results})
        with open(run.file("steer_eval.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(results[0]))
            w.writeheader()
            w.writerows(results)
        plot_steer_eval(results, run.file("steer_eval.png"), cfg.model)
    run.manifest.extra["results"] = results
    run.finish("success")
    return run


def plot_steer_eval(results: list[dict[str, Any]], png: Any, model: str) -> None:
    """Harmless refusal and degenerate rates vs alpha, with the harmful rates as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    add = [r for r in results if r["condition"].startswith("harmless/add=")]
    xs = [float(r["condition"].split("=")[1]) for r in add]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, lo, hi in (
            ("refusal_rate", "harmless refusal", "ci_low", "ci_high"),
            ("coherent_refusal_rate", "harmless refusal, coherent (not looping)",
             "coherent_ci_low", "coherent_ci_high"),
            ("degenerate_rate", "degenerate (not refused)", "degenerate_ci_low",
             "degenerate_ci_high")):
        if any(key not in r for r in add):
            continue
        ys = [r[key] for r in add]
        ax.errorbar(xs, ys, yerr=[[max(y - r[lo], 0) for y, r in zip(ys, add, strict=True)],
                                  [max(r[hi] - y, 0) for y, r in zip(ys, add, strict=True)]],
                    marker="o", capsize=3, label=label)
    styles = {"harmful/none": ("k", "--"), "harmful/ablate": ("r", ":")}
    for r in results:
        if r["condition"] in styles:
            c, ls = styles[r["condition"]]
            ax.axhline(r["refusal_rate"], color=c, ls=ls, lw=1,
                       label=f"{r['condition']} refusal {r['refusal_rate']:.0%}")
    save_rate_figure(fig, ax, png, xlabel="addition coefficient (x difference-in-means)",
                     ylabel="rate", title=f"{model}: steering")


def save_rate_figure(fig: Any, ax: Any, png: Any, *, xlabel: str, ylabel: str,
                     title: str) -> None:
    """Label a rate-vs-coefficient axis (y in [0, 1]), save `png` and its `.pdf`, close."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    fig.savefig(png.with_suffix(".pdf"))
    plt.close(fig)
