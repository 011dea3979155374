"""Issue 16: the training copy of a scored hand-written set, kept clear of the evaluation sets.

Once a fresh blind set has been scored (and read), its rows may train the next classifier. This
writes the rows that neither repeat a request of the held-out set C or the development sets I,
J, L, nor share an 8-word run with one of their responses, under either tokenisation
(`normalise(text).split()` or `[a-z0-9]+` words): response *and* request of each row are
checked (a request carrying GCG's published suffix shares a run with a set-C echo of it).
Requests repeated within the inputs are kept once; `--drop ID` leaves out rows by hand. Responses
are never printed; dropped rows are listed by id. The committed copies of sets N, O and P are
this script's output for their scored files (set T's copy passes it unchanged); set Q's also
drops `q3-moralising-16` by hand (its request carries a variant of the suffix; the check does
not require it):

    .venv/bin/python benchmarks/training_copy.py benchmarks/data/heldout_outcomes_q.jsonl \\
        --drop q3-moralising-16 --out refusalscope/scoring/resources/handwritten_outcomes_q.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def guarded() -> tuple[set[str], set[str], set[str]]:
    """Requests, loose runs and strict runs of sets C, I, J and L (their responses)."""
    from refusalscope.scoring import heldout

    held = heldout.handwritten_rows() + [r for s in "ijl" for r in heldout.handwritten_rows(
        DATA / f"heldout_outcomes_{s}.jsonl")]
    requests = {heldout.normalise(r.request) for r in held}
    loose = set().union(*(heldout.word_runs(r.response) for r in held))
    strict = set().union(*(heldout.word_runs(r.response, strict=True) for r in held))
    return requests, loose, strict


def training_copy(paths: list[Path], drop: frozenset[str] = frozenset()
                  ) -> tuple[list[dict], list[str]]:
    """(kept rows, ids dropped) of the files in order; ids in `drop` are left out too."""
    from refusalscope.scoring.heldout import normalise, word_runs

    requests, loose, strict = guarded()
    kept, dropped, seen = [], [], set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            key = normalise(row["request"])
            texts = (row["response"], row["request"])
            if row["id"] in drop or key in requests or key in seen or any(
                    word_runs(t) & loose or word_runs(t, strict=True) & strict for t in texts):
                dropped.append(row["id"])
                continue
            seen.add(key)
            kept.append(row)
    return kept, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="scored JSONL sets (id, class, request, "
                                                          "response, gold, note)")
    ap.add_argument("--out", type=Path, required=True, help="the training copy to write")
    ap.add_argument("--drop", nargs="*", default=[], metavar="ID", help="rows to leave out")
    a = ap.parse_args()
    missing = [str(p) for p in a.files if not p.is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")  # one line, exit code 2
    kept, dropped = training_copy(a.files, frozenset(a.drop))
    a.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept),
                     encoding="utf-8")
    print(f"kept {len(kept)}, dropped {len(dropped)}: {' '.join(dropped)}")


if __name__ == "__main__":
    main()
