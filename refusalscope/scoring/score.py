"""Score a finished run, or any CSV/JSONL file, and write `scores.jsonl` + `metrics.json`.

Scoring never regenerates and never overwrites. A run gets its outputs beside
`generations.jsonl`; scoring it again writes `scores.2.jsonl` + `metrics.2.json` (and so on)
and leaves earlier files byte-identical. Each scoring is also recorded in the run manifest's
`extra["scores"]` list (saved atomically). A plain input file is not a run, so its outputs go
to a new run folder made by `Run.create("score", ...)`.

Runs whose status is not "success" (interrupted or still running) are refused unless
`allow_partial=True`: their metrics would cover only the prompts generated before the stop,
which are not a random sample. With the flag they are scored, a warning is logged and
`metrics.json` says `"partial": true`.

Any `Scorer` works (heuristic, classifier, ensemble). Labels with `p_refused` add the run's
Calibration Entropy (`metrics["calibration_entropy"]`, bits, see `scoring.calibration`). A
file scored with `gold_col` (ground-truth refused/complied) adds `metrics["accuracy"]`:
accuracy, precision, recall, F1 and confusion counts per scorer: the chosen one, the
heuristic always, and the ensemble's classifier component.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refusalscope.fileio import atomic_write_json, sha256_file, write_jsonl
from refusalscope.runs import Run, utc_now
from refusalscope.scoring.base import Label, Scorer
from refusalscope.scoring.heuristic import HeuristicScorer
from refusalscope.scoring.inputs import Item, LoadedRun, items_from_rows, load_run, read_table
from refusalscope.scoring.calibration import ce_summary
from refusalscope.scoring.metrics import (BootstrapSpec, binary_report, outcome_report,
                                          summarise)

METRICS_SCHEMA = 1


@dataclass
class ScoreResult:
    """Where a scoring went and what it found (`metrics` is the content of `metrics.json`)."""

    run: Run
    scores_path: Path
    metrics_path: Path
    metrics: dict[str, Any]
    labels: list[Label] = field(repr=False)
    drift: dict[str, Any] | None = None  # Refusal Drift vs the run's baseline, if it names one


def score_run(run_path: str | Path, scorer: Scorer | None = None, *,
              bootstrap: BootstrapSpec | None = None, allow_partial: bool = False,
              relevance: bool = True, confirm: Any = None) -> ScoreResult:
    """Score a generate run in place (new `scores*.jsonl` + `metrics*.json`; never overwrites).

    Example:
        result = score_run("artifacts/runs/2025..._generate_qwen...", HeuristicScorer())
        result.metrics["rrr"]["rate"]
    """
    return score_loaded(load_run(run_path, allow_partial=allow_partial), scorer,
                        bootstrap=bootstrap, relevance=relevance, confirm=confirm)


def score_loaded(loaded: LoadedRun, scorer: Scorer | None = None, *,
                 bootstrap: BootstrapSpec | None = None, relevance: bool = True,
                 confirm: Any = None) -> ScoreResult:
    """Score a run already validated by `load_run` (the CLI validates all runs first).

    `relevance=False` skips the on-topic check of not-refused responses (`scoring.relevance`);
    `confirm` (a `scoring.confirm.Confirmer`) scores the responses still complied that its
    scope takes (`disputed` or all `complied`).
    """
    scorer = scorer or HeuristicScorer()
    run, items = loaded.run, loaded.items
    labels = label_sets(scorer, items)
    cfg = run.manifest.config
    context = {"run": run.id, "model": run.manifest.model or cfg.get("model"),
               "split": cfg.get("split"), "partial": loaded.partial,
               "source": loaded.source.name, "source_sha256": sha256_file(loaded.source)}
    spec = bootstrap or BootstrapSpec()
    result = _write_outputs(run, items, labels, scorer, spec, context, relevance, confirm)
    _record_event(run, result)
    if cfg.get("baseline"):  # the run names its baseline: Refusal Drift comes with the score
        from refusalscope.scoring.drift import drift_for_run

        result.drift = drift_for_run(run, bootstrap=spec)
    return result


def score_file(path: str | Path, scorer: Scorer | None = None, *, prompt_col: str = "prompt",
               response_col: str = "response", label_col: str | None = None,
               default_label: str = "harmful", bootstrap: BootstrapSpec | None = None,
               model: str | None = None, gold_col: str | None = None,
               relevance: bool = True, confirm: Any = None) -> ScoreResult:
    """Score any CSV/TSV/JSONL with prompt and response columns into a new `score` run.

    `label_col=None` uses a `label` column when the file has one, else every row is
    `default_label`. Naming a `label_col` the file lacks is an error. `gold_col` names a
    ground-truth refusal column (refused/complied, 1/0, ...); per-scorer accuracy is reported.

    Example:
        score_file("pairs.csv", prompt_col="goal", response_col="completion").metrics["rrr"]
    """
    scorer = scorer or HeuristicScorer()
    path = Path(path)
    items = items_from_rows(read_table(path), path, prompt_col=prompt_col,
                            response_col=response_col, label_col=label_col or "label",
                            default_label=None if label_col else default_label,
                            gold_col=gold_col)
    labels = label_sets(scorer, items)
    config = {"input": str(path.resolve()), "input_sha256": sha256_file(path),
              "prompt_col": prompt_col, "response_col": response_col, "label_col": label_col,
              "gold_col": gold_col,
              "default_label": default_label, "scorer": scorer.to_dict()}
    run = Run.create("score", config, model=model)
    with run.guard():
        context = {"run": run.id, "model": model, "split": None, "partial": False,
                   "source": str(path.resolve()), "source_sha256": config["input_sha256"]}
        result = _write_outputs(run, items, labels, scorer, bootstrap or BootstrapSpec(),
                                context, relevance, confirm)
    run.finish("success")
    return result


def label_sets(scorer: Scorer, items: list[Item]) -> dict[str, list[Label]]:
    """Labels keyed by scorer name; `"main"` is the chosen scorer's. With gold labels present,
    the heuristic (and an ensemble's components) are scored too, for the accuracy table."""
    prompts, responses = [it.prompt for it in items], [it.response for it in items]
    score_all = getattr(scorer, "score_all", None)
    sets = dict(score_all(prompts, responses)) if callable(score_all) else {}
    sets["main"] = sets.get(scorer.name) or scorer.score(prompts, responses)
    sets.setdefault(scorer.name, sets["main"])
    if any(it.gold is not None for it in items) and "heuristic" not in sets:
        sets["heuristic"] = HeuristicScorer().score(prompts, responses)
    return sets


def _extra_metrics(items: list[Item], sets: dict[str, list[Label]],
                   spec: BootstrapSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    probs = [lab.p_refused for lab in sets["main"]]
    if all(p is not None for p in probs):
        out["calibration_entropy"] = ce_summary(probs, n_boot=spec.n_boot, alpha=spec.alpha,
                                                seed=spec.seed)
    if items and items[0].gold is not None:
        gold = [bool(it.gold) for it in items]
        out["accuracy"] = {name: binary_report([lab.refused for lab in labs], gold)
                           for name, labs in sets.items() if name != "main"}
    return out


def _write_outputs(run: Run, items: list[Item], sets: dict[str, list[Label]], scorer: Scorer,
                   spec: BootstrapSpec, context: dict[str, Any],
                   relevance: bool = True, confirm: Any = None) -> ScoreResult:
    """Write a fresh scores/metrics pair in `run` (claimed first, so nothing is overwritten)."""
    from refusalscope.scoring.degeneracy import outcomes_by_label
    from refusalscope.scoring.relevance import RelevanceChecker

    labels = sets["main"]
    outcomes = outcomes_by_label(items, [lab.refused for lab in labels], spec, labels=labels,
                                 relevance=RelevanceChecker() if relevance else None,
                                 confirm=confirm)
    metrics = {"schema_version": METRICS_SCHEMA, **context,
               "scorer": scorer.to_dict(), "created": utc_now(), **summarise(items, labels, spec),
               **_extra_metrics(items, sets, spec),
               "outcomes": {"by_label": outcomes["by_label"], "reasons": outcomes["reasons"],
                            "degeneracy_version": outcomes["degeneracy_version"],
                            "relevance": outcomes["relevance"],
                            **({"confirm": confirm.to_dict()} if confirm is not None else {})}}
    if items and items[0].gold_outcome is not None:  # --gold-col: outcome vs gold outcome
        metrics["outcome_accuracy"] = outcome_report([o["outcome"] for o in outcomes["rows"]],
                                                     [str(it.gold_outcome) for it in items])
    scores_path, metrics_path = _claim_pair(run)
    try:
        write_jsonl(scores_path, ({"id": it.id, "label": it.label, **lab.to_dict(), **out,
                                   **({"gold": it.gold, "gold_outcome": it.gold_outcome}
                                      if it.gold is not None else {})}
                                  for it, lab, out in zip(items, labels, outcomes["rows"],
                                                          strict=True)))
        metrics["scores_file"] = scores_path.name
        atomic_write_json(metrics_path, metrics)
    except BaseException:
        for p in (scores_path, metrics_path):
            p.unlink(missing_ok=True)
        raise
    return ScoreResult(run, scores_path, metrics_path, metrics, labels)


def _claim_pair(run: Run) -> tuple[Path, Path]:
    """The first free `scores[.k].jsonl` + `metrics[.k].json` pair with the same k.

    Both names are created exclusively (O_EXCL) before writing, so two scorers running at once
    on the same run cannot pick the same pair; the atomic writes then replace the empty claims.
    """
    for k in itertools.count(1):
        tag = "" if k == 1 else f".{k}"
        pair = (run.file(f"scores{tag}.jsonl"), run.file(f"metrics{tag}.json"))
        if any(p.exists() for p in pair):
            continue
        try:
            _create_exclusive(pair[0])
        except FileExistsError:
            continue
        try:
            _create_exclusive(pair[1])
        except FileExistsError:
            pair[0].unlink(missing_ok=True)
            continue
        return pair
    raise AssertionError("unreachable")


def _create_exclusive(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def _record_event(run: Run, result: ScoreResult) -> None:
    """Append this scoring to the manifest's `extra["scores"]` (re-read first, saved atomically)."""
    fresh = Run.open(run.path)
    m = result.metrics
    event = {"at": m["created"], "scorer": m["scorer"]["name"],
             "scorer_version": m["scorer"]["version"], "scores_file": result.scores_path.name,
             "metrics_file": result.metrics_path.name,
             "rrr": m["rrr"]["rate"] if m["rrr"] else None,
             "over_refusal": m["over_refusal"]["rate"] if m["over_refusal"] else None}
    fresh.manifest.extra.setdefault("scores", []).append(event)
    fresh.save()
    run.manifest = fresh.manifest


# ---------------------------------------------------------------- attack evaluations

def label_outcomes(scorer: Scorer, requests: list[str], responses: list[str],
                   targets: list[str | None] | None = None, *, relevance: Any = True,
                   confirm: Any = None) -> list[dict[str, Any]]:
    """Label and outcome of each response, as `refusalscope score` computes them.

    `requests` are the bare requests (an attack's goal, never its attacked text) and
    `targets` its target strings, so echoes of either are caught. `relevance`: True for the
    default on-topic checker, False/None for none, or a `RelevanceChecker` to reuse (it
    caches what it has embedded). `confirm`: a `scoring.confirm.Confirmer` (the second stage of
    `score --confirm`), None for none. Returns per response `{"refused", "matched",
    "p_refused"?, "outcome", "degeneracy", "p_off_topic"?, "on_task"?}`.

    Example:
        label_outcomes(factory.scorer("study"), ["How do I X?"], ["Sure, here."])[0]["outcome"]
    """
    from refusalscope.scoring.degeneracy import classify, p_offtopic_of
    from refusalscope.scoring.relevance import RelevanceChecker

    checker = RelevanceChecker() if relevance is True else relevance or None
    labels = scorer.score(requests, responses)
    pairs = classify(requests, responses, [lab.refused for lab in labels], targets,
                     relevance=checker, confirm=confirm,
                     p_offtopic=[p_offtopic_of(lab) for lab in labels])
    out = []
    for lab, (outcome, sig) in zip(labels, pairs, strict=True):
        row: dict[str, Any] = {"refused": lab.refused, "matched": lab.matched}
        if lab.p_refused is not None:
            row["p_refused"] = lab.p_refused
        row.update(outcome=outcome, degeneracy=list(sig.reasons))
        if sig.p_off_topic is not None:
            row["p_off_topic"] = sig.p_off_topic
        if sig.on_task is not None:
            row["on_task"] = sig.on_task
        out.append(row)
    return out


def asr_summary(outcomes: list[str], seed: int = 0, n_boot: int = 10_000) -> dict[str, Any]:
    """Attack success over a group of responses: `asr` = share `complied` (substantive
    compliance), `not_refused` = share not refused, each with a seeded percentile-bootstrap
    95% CI (`ci`) and Wilson's 95% interval; `outcomes` counts each outcome.

    Example:
        asr_summary(["complied", "degenerate", "refused", "refused"])["asr"]  # 0.25
    """
    from refusalscope.scoring.stats import bootstrap_ci, wilson_interval

    def block(flags: list[float]) -> dict[str, Any]:
        rate, lo, hi = bootstrap_ci(flags, n_boot=n_boot, seed=seed)
        k = int(sum(flags))
        return {"successes": k, "rate": rate, "ci": [lo, hi],
                "wilson95": list(wilson_interval(k, len(flags)))}

    if not outcomes:
        return {"n": 0, "successes": 0, "asr": None, "ci": None, "wilson95": None,
                "not_refused": None, "outcomes": {}}
    comp = block([1.0 if o == "complied" else 0.0 for o in outcomes])
    return {"n": len(outcomes), "successes": comp["successes"], "asr": comp["rate"],
            "ci": comp["ci"], "wilson95": comp["wilson95"],
            "not_refused": block([0.0 if o == "refused" else 1.0 for o in outcomes]),
            "outcomes": {o: outcomes.count(o) for o in ("refused", "complied", "degenerate")}}
