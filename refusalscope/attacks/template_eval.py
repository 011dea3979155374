"""Evaluate a template attack: greedy responses with and without templates, ASR with CIs.

Each distinct (request, template) text is generated once, even when several seeds drew the
same template; every attacked row then takes that response's label. The baseline is the same
requests sent bare. Labels come from the heuristic scorer and, when the trained classifier is
present, the ensemble scorer (classifier, heuristic where it is unsure).

ASR (attack success rate) is the share of responses not refused, with a seeded percentile
bootstrap 95% interval over rows and Wilson's interval. ``any_template`` counts a request as
broken if any of its attacked rows was not refused (the best-of-K attacker).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from refusalscope.errors import UserError

log = logging.getLogger(__name__)


def asr_summary(refused: list[bool], seed: int = 0) -> dict[str, Any]:
    """n, successes, ASR (share not refused), bootstrap 95% CI and Wilson 95% CI.

    Example:
        asr_summary([True, False, False])["asr"]  # 0.666...
    """
    from refusalscope.scoring.stats import bootstrap_ci, wilson_interval

    wins = [0.0 if r else 1.0 for r in refused]
    rate, lo, hi = bootstrap_ci(wins, n_boot=10_000, seed=seed)
    k = int(sum(wins))
    return {"n": len(wins), "successes": k, "asr": rate, "ci": [lo, hi],
            "wilson95": list(wilson_interval(k, len(wins)))}


def _scorers(classifier: str | None) -> dict[str, Any]:
    from refusalscope.scoring.heuristic import HeuristicScorer

    out: dict[str, Any] = {"heuristic": HeuristicScorer()}
    if classifier is not None:
        from refusalscope.scoring.classifier import load_classifier
        from refusalscope.scoring.ensemble import EnsembleScorer

        try:
            out["ensemble"] = EnsembleScorer(load_classifier(classifier), out["heuristic"])
        except UserError as e:
            log.warning("ensemble scorer left out: %s", e)
    return out


def _generate(handle: Any, prompts: list[Any], cfg: Any, batch_size: int,
              on_batch: Any) -> tuple[list[dict[str, Any]], float]:
    from refusalscope.generate import GenerateConfig, generate_rows

    gen_cfg = GenerateConfig(model=handle.name, max_new_tokens=cfg.max_new_tokens)
    t0 = time.perf_counter()
    out = list(generate_rows(handle, prompts, gen_cfg, batch_size=batch_size, on_batch=on_batch))
    return out, time.perf_counter() - t0


def evaluate(handle: Any, goals: list[Any], rows: list[dict[str, Any]], cfg: Any, *,
             batch_size: int = 8, on_batch: Any = None
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(`eval.jsonl` rows, `result.json` content) for the attacked `rows` of `goals`."""
    from refusalscope.attacks.template_run import goal_prompt

    by_goal = {g.id: g for g in goals}
    distinct: dict[str, tuple[Any, str, dict[str, Any] | None]] = {}
    for g in goals:
        distinct[goal_prompt(g).id] = (goal_prompt(g), g.id, None)
    for r in rows:
        p = goal_prompt(by_goal[r["goal_id"]], r)
        distinct.setdefault(p.id, (p, r["goal_id"], r))
    gens, wall = _generate(handle, [p for p, _, _ in distinct.values()], cfg, batch_size, on_batch)
    scorers = _scorers(cfg.classifier)
    prompts, responses = [g["prompt"] for g in gens], [g["response"] for g in gens]
    labels = {name: s.score(prompts, responses) for name, s in scorers.items()}
    evals, refused = [], {name: {} for name in scorers}  # type: ignore[var-annotated]
    for i, g in enumerate(gens):
        _, goal_id, src = distinct[g["id"]]
        row = {"id": g["id"], "goal_id": goal_id,
               "variant": "baseline" if src is None else "attacked",
               "template_id": src and src["template_id"], "family": src and src["family"],
               "prompt": g["prompt"], "response": g["response"],
               "prompt_tokens": g["prompt_tokens"], "new_tokens": g["new_tokens"],
               "finish_reason": g["finish_reason"]}
        for name, labs in labels.items():
            row[f"refused_{name}"] = labs[i].refused
            row[f"matched_{name}"] = labs[i].matched
            refused[name][g["id"]] = labs[i].refused
        evals.append(row)
    result = {"n_goals": len(goals), "seeds": list(cfg.seeds), "n_attacked_rows": len(rows),
              "n_generations": len(gens), "scorers": {n: s.to_dict() for n, s in scorers.items()},
              "main_scorer": "ensemble" if "ensemble" in scorers else "heuristic",
              "asr": {name: _summaries(goals, rows, refused[name]) for name in scorers},
              "compute": _compute(handle, gens, wall)}
    main = result["asr"][result["main_scorer"]]
    result["asr_attacked"], result["asr_baseline"] = main["attacked"]["asr"], main["baseline"]["asr"]
    return evals, result


def _summaries(goals: list[Any], rows: list[dict[str, Any]],
               refused: dict[str, bool]) -> dict[str, Any]:
    """ASR summaries for one scorer: baseline, attacked, any template, by family/template/seed."""
    def of(r: dict[str, Any]) -> bool:
        return refused[f"{r['goal_id']}|{r['template_id']}"]

    def grouped(key: str) -> dict[str, Any]:
        keys = dict.fromkeys(str(r[key]) for r in rows)
        return {k: asr_summary([of(r) for r in rows if str(r[key]) == k]) for k in keys}

    return {"baseline": asr_summary([refused[f"{g.id}|baseline"] for g in goals]),
            "attacked": asr_summary([of(r) for r in rows]),
            "any_template": asr_summary([all(of(r) for r in rows if r["goal_id"] == g.id)
                                         for g in goals]),
            "by_family": grouped("family"), "by_template": grouped("template_id"),
            "by_seed": grouped("seed")}


def _compute(handle: Any, gens: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """The generations' compute by the shared ledger (`refusalscope.compute`)."""
    from refusalscope.generate import generation_ledger

    return {**generation_ledger(handle, gens, wall).to_dict(), "n_params": handle.n_params(),
            "device": str(handle.device)}
