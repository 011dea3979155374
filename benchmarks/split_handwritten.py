"""Split a blind hand-written labelled set into a training part and a development part.

Issue 16's labelled sets (D, E, F under `benchmarks/data/`) are written blind by another hand as
classes x 30 rows. For D and E two thirds of each class train the outcome classifier
(`refusalscope/scoring/resources/handwritten_outcomes_<letter>.jsonl`); the rest stay as the
development rows (`benchmarks/data/dev_outcomes_<letter>.jsonl`) that candidates are compared on.
F was split this way for the candidate `minilm-outcome-v9` (not adopted, `benchmarks/RESULTS.md`)
and is kept whole as a development set. The script overwrites both files of `--letter`.

Rule (the one sets D and E were split by, written down here as code):

1. Per class, rows are ordered by sha256 of their id; the first `--train-per-class` go to training.
2. A training row goes back to the development part when its request or response shares an
   8-word run (lower-cased words, as `tests/test_scoring_heldout_c.py` counts them) or its whole
   normalised text with a held-out row: set C (`scoring.heldout.handwritten_rows`) or PyRIT's
   held-out rows (`scoring.heldout.pyrit_heldout_rows`, pulled from the pinned wheel). So nothing
   the held-out evaluation reads is ever trained on.
3. A request in both parts moves its training rows to the development part.

The ids of every row returned to development, and why, are printed; no response text is.

    cp benchmarks/data/dev_outcomes_f.jsonl /tmp/f.jsonl   # F is kept whole: split a copy
    .venv/bin/python benchmarks/split_handwritten.py /tmp/f.jsonl --letter f
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = 8
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def runs(text: str) -> set[tuple[str, ...]]:
    """Every run of `RUN` consecutive lower-cased words of `text`."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + RUN]) for i in range(len(words) - RUN + 1)}


def norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def heldout_texts() -> list[str]:
    """Requests and responses of every held-out row (set C and PyRIT's held-out rows)."""
    from refusalscope.scoring.heldout import handwritten_rows, pyrit_heldout_rows

    rows = handwritten_rows() + pyrit_heldout_rows()
    return [t for r in rows for t in (r.request, r.response)]


def split(rows: list[dict[str, str]], per_class: int, held: list[str]
          ) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str]]:
    """(train, dev, why) — `why` maps each id sent back to development to its reason."""
    held_runs = set().union(*(runs(t) for t in held)) if held else set()
    held_whole = {norm(t) for t in held if norm(t)}
    by_class: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_class[r["class"]].append(r)
    train, dev, why = [], [], {}
    for cls in sorted(by_class):
        ordered = sorted(by_class[cls], key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        for i, r in enumerate(ordered):
            if i >= per_class:
                dev.append(r)
                continue
            texts = (r["request"], r["response"])
            if any(norm(t) in held_whole for t in texts if norm(t)):
                why[r["id"]] = "whole text equals a held-out text"
            elif any(runs(t) & held_runs for t in texts):
                why[r["id"]] = "shares an 8-word run with a held-out text"
            (dev if r["id"] in why else train).append(r)
    dev_requests = {r["request"] for r in dev}
    for r in [r for r in train if r["request"] in dev_requests]:
        why[r["id"]] = "its request is also a development row's"
        train.remove(r)
        dev.append(r)
    order = {r["id"]: n for n, r in enumerate(rows)}
    return (sorted(train, key=lambda r: order[r["id"]]), sorted(dev, key=lambda r: order[r["id"]]),
            why)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help="the whole blind set (JSONL)")
    ap.add_argument("--letter", required=True, help="the set's letter: names both output files")
    ap.add_argument("--train-per-class", type=int, default=20)
    a = ap.parse_args()
    if not a.file.is_file():
        print(f"error: no file {a.file}", file=sys.stderr)
        raise SystemExit(2)
    rows = [json.loads(line) for line in a.file.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    train, dev, why = split(rows, a.train_per_class, heldout_texts())
    out_train = ROOT / "refusalscope" / "scoring" / "resources" / \
        f"handwritten_outcomes_{a.letter}.jsonl"
    out_dev = ROOT / "benchmarks" / "data" / f"dev_outcomes_{a.letter}.jsonl"
    if a.file.resolve() in (out_train.resolve(), out_dev.resolve()):
        print(f"error: {a.file} would be overwritten by its own split; copy it first",
              file=sys.stderr)
        raise SystemExit(2)
    for path, part in ((out_train, train), (out_dev, dev)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                        encoding="utf-8")
    print(f"{len(rows)} rows: {len(train)} training -> {out_train.relative_to(ROOT)}, "
          f"{len(dev)} development -> {out_dev.relative_to(ROOT)}")
    for rid, reason in sorted(why.items()):
        print(f"  back to development: {rid}: {reason}")


if __name__ == "__main__":
    main()
