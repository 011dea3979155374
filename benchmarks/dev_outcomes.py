"""Issue 16: outcome accuracy of a classifier on a labelled development file, per class, with the
variants tried while choosing `minilm-outcome-v7` (never run on held-out set C while choosing).

Rows: JSONL with `class`, `prompt` (or `request`), `response`, `gold` (refused / complied /
degenerate), e.g. set D's development rows `benchmarks/data/dev_outcomes_d.jsonl`. The ensemble's
outcome (heuristic + classifier, rule 4, degeneracy and the on-topic check) is scored as
`outcome != complied` against `gold != complied`, as `benchmarks/score_outcomes.py` does.

Variants (`--variants`):
  own      the ensemble as `refusalscope score` runs it (the classifier reads what its card says;
           rule 4 reads the tail of long answers whose opening reads as a refusal)
  persona  the classifier reads the persona view (`degeneracy.persona_view`) whatever its card says
  tail     persona, and the last `--tail-words` words are classified too; their probabilities
           replace the head's when the tail says complied and the head does not (the first
           tail experiment; rule 4 keeps it to heads read as refused without refusal words)
`--relevance-weights 0.5,0.25,...` scores each variant once per weight of the on-topic check
(`degeneracy.RELEVANCE_WEIGHT`, reported as `VARIANT@W`; the classifier runs once per variant).
Responses are never printed; `--show` lists the ids of the misses with the probabilities. Several
files are scored in turn and totalled (the development rows of a decision rule at once).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dev_outcomes.py benchmarks/data/dev_outcomes_d.jsonl \\
        --classifier minilm-outcome-v7 --show
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

import numpy as np


def main() -> None:
    from refusalscope.scoring.classifier import DEFAULT_NAME, load_classifier
    from refusalscope.scoring.heuristic import HeuristicScorer
    from refusalscope.scoring.relevance import RelevanceChecker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="one or more labelled JSONL files")
    ap.add_argument("--classifier", default=DEFAULT_NAME)
    ap.add_argument("--variants", default="own,persona,tail")
    ap.add_argument("--tail-words", type=int, default=60)
    ap.add_argument("--show", action="store_true", help="list the misses (ids, no text)")
    ap.add_argument("--relevance-weights", default=None,
                    help="comma-separated weights of the on-topic check [default: the module's]")
    a = ap.parse_args()
    clf, heur, rel = load_classifier(a.classifier), HeuristicScorer(), RelevanceChecker()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in a.files:
        if len(a.files) > 1:
            print(f"== {path}")
        for name, (right, n) in run_file(path, a, clf, heur, rel).items():
            totals[name][0] += right
            totals[name][1] += n
    if len(a.files) > 1:
        for name, (right, n) in totals.items():
            print(f"total {name}: {right}/{n} = {right / n:.3f}")


def run_file(path: str, a: Any, clf: Any, heur: Any, rel: Any) -> dict[str, tuple[int, int]]:
    """Score one file with each variant; returns {variant: (correct, rows)}."""
    from refusalscope.scoring import degeneracy
    from refusalscope.scoring.degeneracy import outcomes_by_label, persona_view
    from refusalscope.scoring.ensemble import EnsembleScorer, combine
    from refusalscope.scoring.inputs import Item

    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    prompts = [r.get("prompt") or r["request"] for r in rows]
    texts = [r["response"] for r in rows]
    cls = clf.classes
    heuristic = heur.score(prompts, texts)
    seen = [persona_view(p, t) for p, t in zip(prompts, texts, strict=True)]

    def raw_probs(responses: list[str]) -> np.ndarray:
        # the card's view would be applied again inside `probabilities`: it is idempotent
        return clf.probabilities(prompts, responses)

    def with_tail(probs: np.ndarray) -> np.ndarray:
        out, c = probs.copy(), cls.index("complied")
        idx = [i for i, t in enumerate(seen) if len(t.split()) > a.tail_words + 20]
        if idx:
            tails = clf.probabilities([prompts[i] for i in idx],
                                      [" ".join(seen[i].split()[-a.tail_words:]) for i in idx])
            for k, i in enumerate(idx):
                if tails[k].argmax() == c and probs[i].argmax() != c:
                    out[i] = tails[k]
        return out

    variants = {"persona": lambda: raw_probs(seen), "tail": lambda: with_tail(raw_probs(seen))}
    weights = a.relevance_weights.split(",") if a.relevance_weights else [None]
    got = {}
    for name in a.variants.split(","):
        if name == "own":  # exactly the ensemble `refusalscope score` runs (rule 4's tail read too)
            ens = EnsembleScorer(clf, heur).score_all(prompts, texts)["ensemble"]
        else:
            labels = clf.labels(variants[name]())
            ens = [combine(h, c, "dev") for h, c in zip(heuristic, labels, strict=True)]
        items = [Item(str(i), "harmful", p, t) for i, (p, t) in enumerate(zip(prompts, texts))]
        default = degeneracy.RELEVANCE_WEIGHT
        for w in weights:
            degeneracy.RELEVANCE_WEIGHT = default if w is None else float(w)
            try:
                out = outcomes_by_label(items, [e.refused for e in ens], labels=ens,
                                        relevance=rel)
            finally:
                degeneracy.RELEVANCE_WEIGHT = default
            key = name if w is None else f"{name}@{w}"
            got[key] = report(key, rows, out["rows"], ens, a.show)
    return got


def report(name: str, rows: list[dict[str, Any]], outs: list[dict[str, Any]], ens: list[Any],
           show: bool) -> tuple[int, int]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    for r, o, e in zip(rows, outs, ens, strict=True):
        ok = (o["outcome"] != "complied") == (r["gold"] != "complied")
        acc[r["class"]][0] += ok
        acc[r["class"]][1] += 1
        if not ok:
            misses.append(f"{r.get('id')} -> {o['outcome']} {o['degeneracy']} "
                          f"P(refused/offtopic/complied) {e.p_refused:.2f}/{e.p_offtopic:.2f}/"
                          f"{e.p_complied:.2f}")
    right, n = sum(v[0] for v in acc.values()), sum(v[1] for v in acc.values())
    print(f"{name}: {right}/{n} = {right / n:.3f}")
    print("   " + "  ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(acc.items())))
    for m in misses if show else ():
        print("   miss", m)
    return right, n


if __name__ == "__main__":
    main()
