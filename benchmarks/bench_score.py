"""Scoring speed: responses/second of the heuristic, the trained classifier and embeddings.

One process, the same N responses for every scorer (PyRIT human-labelled responses, topped up
with generations from local runs when `--runs` is given; never printed):
  1. heuristic phrase matcher;
  2. classifier, batched (batches sorted by length, dynamic padding, inference mode);
  3. baseline: the same classifier one response at a time (batch 1), on the first
     `--baseline-n` responses: isolates the effect of batching;
  4. sentence embeddings (`scoring.drift.load_embedder`, MiniLM, batch 64).
Each scorer is warmed up on 16 responses first. Prints responses/s and the batching ratio.

    .venv/bin/python benchmarks/bench_score.py --n 1000 --classifier minilm-outcome-v3 \
        --runs '/tmp/meas/artifacts/runs/*/generations.jsonl'
"""

from __future__ import annotations

import argparse
import glob
import time


def responses(n: int, runs_glob: str | None) -> tuple[list[str], list[str]]:
    from refusalscope.fileio import read_jsonl
    from refusalscope.scoring.labelled import pyrit_examples

    pairs = [(e.prompt, e.response) for e in pyrit_examples()[0]]
    for path in sorted(glob.glob(runs_glob)) if runs_glob else []:
        pairs += [(r.get("prompt") or "", r.get("response") or "") for r in read_jsonl(path)]
    while len(pairs) < n:  # repeat only if the sources hold fewer than n
        pairs += pairs[: n - len(pairs)]
    pairs = pairs[:n]
    return [p for p, _ in pairs], [r for _, r in pairs]


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--classifier", default="minilm-outcome-v3")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--baseline-n", type=int, default=100)
    ap.add_argument("--runs", default=None, help="glob of generations.jsonl files to add")
    args = ap.parse_args()

    import torch

    from refusalscope.scoring.classifier import encode, load_classifier
    from refusalscope.scoring.drift import load_embedder
    from refusalscope.scoring.heuristic import HeuristicScorer

    prompts, resps = responses(args.n, args.runs)
    heur = HeuristicScorer()
    clf = load_classifier(args.classifier)
    clf.batch_size = args.batch_size
    emb = load_embedder()
    lens = [len(x) for x in encode(clf.tokenizer, prompts, resps,
                                   int(clf.card["config"]["max_length"]))]
    print(f"n={len(resps)} classifier={clf.version} threads={torch.get_num_threads()} "
          f"tokens/pair mean={sum(lens) / len(lens):.0f} max={max(lens)}")
    for warm in (heur.score, clf.score):
        warm(prompts[:16], resps[:16])
    emb.encode(resps[:16])

    rows = [("heuristic", len(resps), timed(heur.score, prompts, resps)),
            (f"classifier batched (bs={args.batch_size}, length-sorted)", len(resps),
             timed(clf.score, prompts, resps))]
    clf.batch_size = 1
    k = min(args.baseline_n, len(resps))
    rows.append((f"classifier baseline (bs=1, first {k})", k,
                 timed(clf.score, prompts[:k], resps[:k])))
    rows.append(("embeddings MiniLM (bs=64)", len(resps), timed(emb.encode, resps)))
    for name, n, secs in rows:
        print(f"{name:48s} {n:5d} responses  {secs:8.2f} s  {n / secs:9.1f} responses/s")
    batched, single = rows[1][1] / rows[1][2], rows[2][1] / rows[2][2]
    print(f"classifier batching speed-up vs bs=1: {batched / single:.2f}x")


if __name__ == "__main__":
    main()
