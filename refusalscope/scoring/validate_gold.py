"""`score validate --gold LABELS`: agreement of every scorer of the runs with human labels.

The human labels come from `refusalscope label` (`refusalscope.labels`): refused, complied or
degenerate per (run, prompt id, response sha256). Each scorer is a run's latest
`scores*.jsonl` of that scorer name (heuristic, classifier, ensemble, judge: whatever the runs
were scored with; `refusalscope score RUN --scorer NAME` adds one; `--rescore` labels the
labelled responses afresh in memory with the heuristic, classifier and ensemble, named
"<scorer> (now)", leaving the runs untouched). Per scorer three
comparisons, each with agreement, Cohen's kappa and the confusion matrix:

- `refused`: the scorer's `refused` vs human refused (degenerate counts as not refused);
- `complied`: the scorer's outcome `complied` vs human complied (substantive compliance, what
  the attack success rate counts);
- `outcome`: the three outcomes against each other (kappa over three categories).

Labels whose response no longer hashes the same are stale and left out (counted), skips too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, read_jsonl, sha256_file
from refusalscope.labels import LABELS, SKIP, HumanLabel, read_labels, response_hash
from refusalscope.runs import Run
from refusalscope.scoring.inputs import latest_by_scorer
from refusalscope.scoring.validate import COMPLIANCE_NAMES, VALIDATION, agreement

MAX_EXAMPLES = 10
PREVIEW = 60


def multiclass_kappa(ours: Sequence[str], theirs: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over any categories; None when chance agreement is 1."""
    n = len(ours)
    if n == 0:
        return None
    po = sum(a == b for a, b in zip(ours, theirs, strict=True)) / n
    ca, cb = Counter(ours), Counter(theirs)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return None if pe >= 1.0 else (po - pe) / (1 - pe)


def _human(d: dict[str, Any]) -> dict[str, Any]:
    """`agreement`'s keys name the other rater `judge`; here it is a human."""
    return {**d, "confusion": {k.replace("__judge_", "__human_"): v
                               for k, v in d["confusion"].items()}}


def outcome_block(ours: Sequence[str], human: Sequence[str]) -> dict[str, Any]:
    """Three-way agreement, kappa and confusion (keys ours_<a>__human_<b>)."""
    cm = Counter(zip(ours, human, strict=True))
    n = len(ours)
    return {"n": n, "agreement": sum(a == b for a, b in zip(ours, human, strict=True)) / n
            if n else None, "kappa": multiclass_kappa(ours, human),
            "confusion": {f"ours_{a}__human_{b}": cm.get((a, b), 0)
                          for a in LABELS for b in LABELS}}


@dataclass(frozen=True)
class GoldPair:
    """One human-labelled response with the texts it was labelled on."""

    label: HumanLabel
    prompt: str
    response: str


def join(runs: Sequence[str | Path], labels: Sequence[HumanLabel]
         ) -> tuple[list[GoldPair], dict[str, dict[str, dict[str, Any]]], dict[str, int]]:
    """Labels of the given runs joined with their texts and every scorer's rows (keyed
    "run/id"); counts of labels used, stale, skipped and of other runs."""
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    texts: dict[str, dict[str, tuple[str, str]]] = {}
    for r in runs:
        run = Run.open(r)
        gen = run.file("generations.jsonl")
        if not gen.is_file():
            raise UserError(f"run {run.id} has no generations.jsonl")
        texts[run.id] = {str(g["id"]): (str(g.get("prompt", "")), str(g.get("response", "")))
                         for g in read_jsonl(gen)}
        by_scorer, _ = latest_by_scorer(run.path)
        for name, rows in by_scorer.items():
            for pid, row in rows.items():
                scores.setdefault(f"{run.id}/{pid}", {})[name] = row
    counts = Counter[str]()
    pairs = []
    for lab in labels:
        if lab.run not in texts:
            counts["other_runs"] += 1
        elif lab.label == SKIP:
            counts["skipped"] += 1
        elif (got := texts[lab.run].get(lab.prompt_id)) is None or \
                response_hash(got[1]) != lab.response_sha256:
            counts["stale"] += 1
        else:
            pairs.append(GoldPair(lab, *got))
    counts["used"] = len(pairs)
    return pairs, scores, dict(counts)


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[:PREVIEW - 3] + "..."


def per_scorer(pairs: Sequence[GoldPair], scores: dict[str, dict[str, dict[str, Any]]]
               ) -> dict[str, dict[str, Any]]:
    """The three comparisons (module docstring) for every scorer that labelled the pairs."""
    names = sorted({n for p in pairs for n in scores.get(f"{p.label.run}/{p.label.prompt_id}",
                                                           {})})
    out = {}
    for name in names:
        got = [(p, scores[f"{p.label.run}/{p.label.prompt_id}"][name]) for p in pairs
               if name in scores.get(f"{p.label.run}/{p.label.prompt_id}", {})]
        human = [p.label.label for p, _ in got]
        with_outcome = [(p, s) for p, s in got if s.get("outcome") in LABELS]
        out[name] = {
            "n": len(got),
            "refused": _human(agreement([bool(s["refused"]) for _, s in got],
                                        [h == "refused" for h in human])),
            "complied": _human(agreement([s.get("outcome") == "complied" for _, s in got],
                                         [h == "complied" for h in human], COMPLIANCE_NAMES)),
            "outcome": outcome_block([s["outcome"] for _, s in with_outcome],
                                     [p.label.label for p, _ in with_outcome]),
            "disagreements": [
                {"run": p.label.run, "id": p.label.prompt_id, "human": p.label.label,
                 "ours": s.get("outcome") or ("refused" if s["refused"] else "not refused"),
                 "response": _preview(p.response)}
                for p, s in got if (s.get("outcome") or "") != p.label.label][:MAX_EXAMPLES]}
    return out


def rescore(pairs: Sequence[GoldPair], classifier: str | None = "default"
            ) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    """Label the human-labelled responses afresh, in memory, as `refusalscope score` would (on-
    topic check included): the heuristic, and with a trained `classifier` ("default": the
    project default) the classifier alone and the ensemble. Keys "run/id" -> {"<name> (now)":
    row}; nothing is written to the runs. Returns the rows and notes (a missing classifier)."""
    from refusalscope.scoring.factory import scorer
    from refusalscope.scoring.relevance import RelevanceChecker
    from refusalscope.scoring.score import label_outcomes

    scorers: list[Any] = [scorer("heuristic")]
    notes = []
    if classifier is not None:
        try:
            clf = scorer("classifier", classifier=classifier)  # loaded once, used twice
            scorers += [clf, scorer("ensemble", classifier=clf)]
        except UserError as e:
            notes.append(f"no classifier or ensemble: {e}")
    checker = RelevanceChecker()
    prompts, responses = [p.prompt for p in pairs], [p.response for p in pairs]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scorer in scorers:
        rows = label_outcomes(scorer, prompts, responses, relevance=checker)
        for p, row in zip(pairs, rows, strict=True):
            out.setdefault(f"{p.label.run}/{p.label.prompt_id}", {})[f"{scorer.name} (now)"] = row
    return out, notes


def run_gold_validate(runs: Sequence[str | Path], gold: str | Path, *, fresh: bool = False,
                      classifier: str | None = "default") -> tuple[Run, dict[str, Any]]:
    """Compare every scorer of `runs` with the human labels in `gold`; write a `validate` run
    holding `validation.json`. `fresh` adds the heuristic, classifier and ensemble labelling
    the same responses now, in memory (`rescore`), beside the runs' own scorings.

    Example:
        run, v = run_gold_validate(["RUN"], "artifacts/labels/labels.jsonl")
        v["scorers"]["ensemble"]["refused"]["kappa"]
    """
    gold = Path(gold)
    if not gold.is_file():
        raise UserError(f"no labels file {gold}: write one with `refusalscope label RUN...`")
    from refusalscope.view.rows import find_targets

    labels = read_labels(gold)
    pairs, scores, counts = join(find_targets(runs)[0], labels)
    if not pairs:
        raise UserError(f"none of the {len(labels)} labels in {gold} is of these runs' "
                        f"current responses ({counts})")
    notes: list[str] = []
    if fresh:
        now_rows, notes = rescore(pairs, classifier)
        for key, by_name in now_rows.items():
            scores.setdefault(key, {}).update(by_name)
    result = {"gold": str(gold.resolve()), "gold_sha256": sha256_file(gold), "notes": notes,
              "labellers": sorted({p.label.labeller for p in pairs}),
              "human": dict(Counter(p.label.label for p in pairs)), "labels": counts,
              "scorers": per_scorer(pairs, scores)}
    if not result["scorers"]:
        raise UserError("the runs have no scores*.jsonl: score them first "
                        "(refusalscope score RUN --scorer heuristic|classifier|ensemble)")
    cfg = {"runs": [str(r) for r in runs], "gold": str(gold.resolve()),
           "gold_sha256": result["gold_sha256"], "rescore": fresh, "classifier": classifier}
    run = Run.create("validate", cfg, model="human", harmful_content=True,
                     input_runs=sorted({p.label.run for p in pairs}))
    atomic_write_json(run.file(VALIDATION), result)
    run.finish("success")
    return run, result
