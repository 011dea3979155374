"""Scoring speed: responses/second of the heuristic, the trained classifier, the ensemble with
and without the on-topic check, all on the *same* N responses in one process.

Responses: PyRIT human-labelled responses, topped up with generations from local runs when
`--runs` is given (never printed). Configurations, each warmed up on 16 responses first:
  1. heuristic phrase matcher;
  2. classifier, batched (batches sorted by length, dynamic padding, inference mode);
  3. the same classifier one response at a time (batch 1), on the same N (`--no-bs1` skips):
     isolates the effect of batching;
  4. ensemble + outcome, relevance off (`before`): what `refusalscope score --scorer ensemble`
     computed before the on-topic check (labels + degeneracy signals);
  5. ensemble + outcome, relevance on (`after`): the same plus the MiniLM on-topic check of
     every response neither refused nor already degenerate (a fresh checker each time, so
     nothing is cached between repetitions; the embedder is loaded and warmed beforehand).
4 and 5 alternate `--reps` times (before, after, before, after, ...) so drifting load on a
shared CPU hits both; the median of each is reported, and the after/before throughput ratio
is printed last.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_score.py --n 1000 \
        --classifier minilm-refusal-v2
"""

from __future__ import annotations

import argparse
import glob
import statistics
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


def outcome_fn(ens, emb, relevance: bool, batch: int = 16):  # type: ignore[no-untyped-def]
    """Ensemble labels + outcomes, as `score` computes them (relevance on or off)."""
    from refusalscope.scoring.degeneracy import classify, p_offtopic_of
    from refusalscope.scoring.relevance import RelevanceChecker

    def run(prompts: list[str], resps: list[str]) -> list[str]:
        labels = ens.score(prompts, resps)
        checker = RelevanceChecker(embedder=emb, batch_size=batch) if relevance else None
        out = classify(prompts, resps, [lab.refused for lab in labels], relevance=checker,
                       p_offtopic=[p_offtopic_of(lab) for lab in labels])
        run.last = out  # type: ignore[attr-defined]
        return [o for o, _ in out]
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--classifier", default=None, help="default: scoring.classifier.DEFAULT_NAME")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--no-bs1", action="store_true", help="skip the batch-1 classifier")
    ap.add_argument("--runs", default=None, help="glob of generations.jsonl files to add")
    ap.add_argument("--st-embedder", action="store_true",
                    help="relevance via sentence-transformers' encode at batch 64 (the embedder "
                         "before scoring.meanpool's bare forward), to measure the old ratio")
    ap.add_argument("--dump", default=None,
                    help="write each response's outcome, reasons and P(off-topic) (relevance on)"
                         " to this JSON file, to compare embedders' verdicts")
    args = ap.parse_args()

    import torch

    from refusalscope.scoring.classifier import encode
    from refusalscope.scoring.factory import scorer
    from refusalscope.scoring.relevance import shared_embedder

    prompts, resps = responses(args.n, args.runs)
    heur = scorer("heuristic")
    clf = scorer("classifier", classifier=args.classifier)
    clf.batch_size = args.batch_size
    ens = scorer("ensemble", classifier=clf, heuristic=heur)
    t0 = time.perf_counter()
    emb = shared_embedder()
    if args.st_embedder:
        emb.fast = None
    load_s = time.perf_counter() - t0
    lens = [len(x) for x in encode(clf.tokenizer, prompts, resps,
                                   int(clf.card["config"]["max_length"]))]
    print(f"n={len(resps)} classifier={clf.version} threads={torch.get_num_threads()} "
          f"tokens/pair mean={sum(lens) / len(lens):.0f} max={max(lens)} "
          f"embedder load {load_s:.1f} s (once per process)")
    print("embedder:", "sentence-transformers encode, batch 64" if emb.fast is None
          else "bare mean-pooling forward (scoring.meanpool), batch 16")
    before = outcome_fn(ens, emb, False)
    after = outcome_fn(ens, emb, True, 64 if args.st_embedder else 16)
    for warm in (heur.score, clf.score, before, after):
        warm(prompts[:16], resps[:16])

    n = len(resps)
    rows = [("heuristic", timed(heur.score, prompts, resps)),
            (f"classifier batched (bs={args.batch_size}, length-sorted)",
             timed(clf.score, prompts, resps))]
    if not args.no_bs1:
        clf.batch_size = 1
        rows.append(("classifier bs=1", timed(clf.score, prompts, resps)))
        clf.batch_size = args.batch_size
    t_before, t_after = [], []
    for _ in range(args.reps):
        t_before.append(timed(before, prompts, resps))
        t_after.append(timed(after, prompts, resps))
    outs = after(prompts, resps)
    if args.dump:
        import json

        with open(args.dump, "w", encoding="utf-8") as f:
            json.dump([[o, list(sig.reasons), sig.p_off_topic] for o, sig in after.last], f)
    checked = sum(o != "refused" for o in before(prompts, resps))
    rows += [("ensemble + outcome, relevance off (before)", statistics.median(t_before)),
             ("ensemble + outcome, relevance on (after)", statistics.median(t_after))]
    for name, secs in rows:
        print(f"{name:48s} {n:5d} responses  {secs:8.2f} s  {n / secs:9.1f} responses/s")
    print(f"reps: before {[round(t, 2) for t in t_before]} s, after "
          f"{[round(t, 2) for t in t_after]} s; responses not refused (relevance candidates): "
          f"{checked}/{n}; outcomes after: "
          f"{ {o: outs.count(o) for o in ('refused', 'complied', 'degenerate')} }")
    if not args.no_bs1:
        print(f"classifier batching speed-up vs bs=1: {rows[2][1] / rows[1][1]:.2f}x")
    ratio = statistics.median(t_before) / statistics.median(t_after)
    print(f"throughput ratio after/before (relevance on/off): {ratio:.2f}")


if __name__ == "__main__":
    main()
