"""Re-label a GCG or AutoDAN run's `eval.jsonl` with the current study scorer; print ASR.

Attack runs label their evaluation responses when they finish. After a scorer change (or the
evaluation-order fix of `gcg_run.evaluate_pairs`, which judged each response against another
request before commit 3246074) this re-labels the *same* responses: each against its own
request (the baseline row's prompt of that id) and its target (the data split's target, else
"Sure, here is"). Writes `eval_rescored.jsonl` beside `eval.jsonl` (which it never touches) and
prints ASR (share complied) and not refused per split and variant; responses are not printed.

    .venv/bin/python scripts/rescore_attack_eval.py artifacts/runs/<...>_attack-autodan_<...>
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from refusalscope.attacks.gcg_run import DEFAULT_TARGET
from refusalscope.data.load import load_split
from refusalscope.fileio import read_jsonl, write_jsonl
from refusalscope.scoring.factory import scorer as make_scorer
from refusalscope.scoring.score import asr_summary, label_outcomes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    rows = read_jsonl(args.run / "eval.jsonl")
    request = {r["id"]: r["prompt"] for r in rows if r["variant"] == "baseline"}
    target = {p.id: p.target for split in {r["split"] for r in rows} for p in load_split(split)}
    scorer = make_scorer("study")
    labels = label_outcomes(scorer, [request[r["id"]] for r in rows],
                            [r["response"] for r in rows],
                            [target.get(r["id"]) or DEFAULT_TARGET for r in rows])
    out = [{**r, "goal": request[r["id"]], **lab, "scorer": scorer.name,
            "scorer_version": scorer.version} for r, lab in zip(rows, labels, strict=True)]
    write_jsonl(args.run / "eval_rescored.jsonl", out)
    print(f"scorer {scorer.version}")
    for key in sorted({(r["split"], r["variant"]) for r in out}):
        outcomes = [r["outcome"] for r in out if (r["split"], r["variant"]) == key]
        s = asr_summary(outcomes)
        print(f"{key[0]:13s} {key[1]:9s} ASR {s['successes']}/{s['n']} = {s['asr']:.1%} "
              f"(Wilson 95% {s['wilson95'][0]:.1%}-{s['wilson95'][1]:.1%}); not refused "
              f"{s['not_refused']['successes']}/{s['n']}; {dict(Counter(outcomes))}")


if __name__ == "__main__":
    main()
